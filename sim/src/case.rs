//! Case files: one run of the random world written down — its seed, its knobs (possibly
//! edited: fault classes off, fewer devices, tenants or spaces, a shorter safety phase),
//! the planted defects, and the user actions and faults it kept, with their virtual times —
//! so that `syncsim replay --case FILE` runs it again.
//!
//! A case replays through the world's kept set: an action the case does not list is left
//! out (its draws still taken, so the actions after it stay as they were), and a fault
//! fires only if the case lists its opportunity. A case recorded from a seed lists every
//! action and every fault the seed's run had, and replays with the seed's trace hash.
//!
//! This module reads, checks, writes and runs cases; a file that is not a valid case is a
//! [`CaseError`], never a panic. It never decides what a case keeps: that is the shrinker's
//! (`shrink/`) or the recorder's.

use crate::kernel::{Failure, FaultId, FiredFault};
use crate::profile::Knobs;
use crate::rng::Ratio;
use crate::server::{Defect, ServerDefects};
use crate::world::{run_seed_with_knobs, ActionRecord, KeptSet, Recording, RunOptions, SeedReport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// The version of the case file format this build reads and writes.
pub const CASE_FORMAT: u32 = 1;

/// One run of the random world, written down.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// [`CASE_FORMAT`].
    pub format: u32,
    pub seed: u64,
    /// The run's configuration; `knobs.profile` names the profile it came from.
    pub knobs: Knobs,
    #[serde(default)]
    pub defects: Vec<Defect>,
    /// Faults never stop and only safety invariants are checked (`--safety-only`).
    #[serde(default)]
    pub safety_only: bool,
    /// Devices (by index) left out of the world: they start logged out and, with none of
    /// their actions kept, never open.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub absent_devices: BTreeSet<usize>,
    /// What the recorded run came to, for the reader and for replay to compare with.
    pub recorded: RecordedOutcome,
    /// The actions that act, in the order they acted.
    pub actions: Vec<ActionRecord>,
    /// The faults that fire, in the order they fired.
    pub faults: Vec<FiredFault>,
}

/// The outcome of the run a case was recorded from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedOutcome {
    pub failure: Option<Failure>,
    pub events: u64,
    pub virtual_ms: u64,
    pub trace_hash: String,
}

/// Why a file is not a case this build can replay.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaseError {
    /// The file could not be read or written.
    Io { path: String, error: std::io::Error },
    /// Not JSON, or JSON of another shape (the message names the line and column).
    Json(serde_json::Error),
    /// Well-formed, but not a case that can run (the message says which field and why).
    Invalid(String),
}

impl std::fmt::Display for CaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaseError::Io { path, error } => write!(f, "case file {path}: {error}"),
            CaseError::Json(error) => write!(f, "not a case file: {error}"),
            CaseError::Invalid(message) => write!(f, "invalid case file: {message}"),
        }
    }
}

impl std::error::Error for CaseError {}

impl Case {
    /// Runs `seed` with `knobs`, recording every action and fault, and writes it down as a
    /// case; also returns the run's report.
    pub fn record(
        seed: u64,
        knobs: Knobs,
        defects: &[Defect],
        safety_only: bool,
    ) -> (Case, SeedReport) {
        let options = RunOptions {
            defects: ServerDefects::planting(defects.iter().copied()),
            safety_only,
            record: true,
            ..RunOptions::default()
        };
        let report = run_seed_with_knobs(seed, knobs.clone(), &options);
        let case = Case::from_report(seed, knobs, defects, safety_only, &report);
        (case, report)
    }

    /// The case of a recorded run (`report` of a run with [`RunOptions::record`]).
    pub fn from_report(
        seed: u64,
        knobs: Knobs,
        defects: &[Defect],
        safety_only: bool,
        report: &SeedReport,
    ) -> Case {
        let Recording { actions, faults } = report
            .recording
            .clone()
            .expect("a case is written from a recorded run");
        Case {
            format: CASE_FORMAT,
            seed,
            knobs,
            defects: defects.to_vec(),
            safety_only,
            absent_devices: BTreeSet::new(),
            recorded: RecordedOutcome {
                failure: report.failure.clone(),
                events: report.events,
                virtual_ms: report.virtual_ms,
                trace_hash: report.trace_hash.clone(),
            },
            actions,
            faults,
        }
    }

    /// What the case keeps of the run.
    pub fn kept(&self) -> KeptSet {
        KeptSet {
            actions: self.actions.iter().map(ActionRecord::id).collect(),
            faults: self.faults.iter().map(FiredFault::id).collect(),
        }
    }

    /// Runs the seed with the case's knobs and defects, keeping `kept` only, recording
    /// what acted and fired.
    pub fn run_kept(&self, kept: KeptSet, keep_trace: bool) -> SeedReport {
        let options = RunOptions {
            keep_trace,
            defects: ServerDefects::planting(self.defects.iter().copied()),
            safety_only: self.safety_only,
            record: true,
            kept: Some(kept),
            absent_devices: self.absent_devices.clone(),
            // The case's knobs hold exactly the classes it runs with.
            classes_off: std::collections::BTreeSet::new(),
        };
        run_seed_with_knobs(self.seed, self.knobs.clone(), &options)
    }

    /// Replays the case (every trace line kept with `keep_trace`).
    pub fn replay(&self, keep_trace: bool) -> SeedReport {
        self.run_kept(self.kept(), keep_trace)
    }

    /// The case's actions that a replay (`report`) did not take as the case says: another
    /// kind or sub-seed under the same number, or never reached. Empty for a case recorded
    /// by this build from these knobs; otherwise the case came from another version of the
    /// simulator or had its knobs edited by hand, and replays another run.
    pub fn actions_replayed_otherwise(&self, report: &SeedReport) -> Vec<ActionRecord> {
        let replayed = report
            .recording
            .as_ref()
            .map(|recording| recording.actions.as_slice())
            .unwrap_or_default();
        self.actions
            .iter()
            .filter(|action| {
                !replayed.iter().any(|other| {
                    other.id() == action.id()
                        && other.kind == action.kind
                        && other.sub_seed == action.sub_seed
                })
            })
            .cloned()
            .collect()
    }

    /// The case as pretty JSON, the form case files are written in.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a case serializes")
    }

    /// Reads a case from JSON text and checks it can run.
    pub fn parse(text: &str) -> Result<Case, CaseError> {
        let case: Case = serde_json::from_str(text).map_err(CaseError::Json)?;
        case.validate()?;
        Ok(case)
    }

    pub fn load(path: &Path) -> Result<Case, CaseError> {
        let text = std::fs::read_to_string(path).map_err(|error| CaseError::Io {
            path: path.display().to_string(),
            error,
        })?;
        Case::parse(&text)
    }

    pub fn save(&self, path: &Path) -> Result<(), CaseError> {
        std::fs::write(path, self.to_json() + "\n").map_err(|error| CaseError::Io {
            path: path.display().to_string(),
            error,
        })
    }

    /// Checks what serde cannot: a format this build reads, knobs inside the ranges the
    /// world can run (a hand-edited file may hold anything), and lists that name each
    /// action and fault once, only faults of classes the knobs switch on.
    pub fn validate(&self) -> Result<(), CaseError> {
        let invalid = |message: String| Err(CaseError::Invalid(message));
        if self.format != CASE_FORMAT {
            return invalid(format!(
                "format {} (this build reads format {CASE_FORMAT})",
                self.format
            ));
        }
        validate_knobs(&self.knobs).map_err(CaseError::Invalid)?;
        if let Some(device) = self
            .absent_devices
            .last()
            .filter(|d| **d >= self.knobs.devices)
        {
            return invalid(format!(
                "absent device {device} is not one of the knobs' {} devices",
                self.knobs.devices
            ));
        }
        let mut actions = BTreeSet::new();
        for action in &self.actions {
            if !actions.insert(action.id()) {
                return invalid(format!(
                    "action {:?} #{} is listed twice",
                    action.stream, action.number
                ));
            }
        }
        let mut faults: BTreeSet<FaultId> = BTreeSet::new();
        for fault in &self.faults {
            if self.knobs.fault(fault.class).is_zero() {
                return invalid(format!(
                    "fault {} #{} is listed, but the knobs switch {} off",
                    fault.class.name(),
                    fault.opportunity,
                    fault.class.name()
                ));
            }
            if !faults.insert(fault.id()) {
                return invalid(format!(
                    "fault {} #{} is listed twice",
                    fault.class.name(),
                    fault.opportunity
                ));
            }
        }
        Ok(())
    }
}

/// The largest world a case may ask for: beyond the profiles' ranges, still runnable.
const DEVICES_MAX: usize = 16;
const TENANTS_MAX: usize = 16;
const SPACES_MAX: usize = 64;
/// Ten years: clock offsets and jumps stay far from overflowing virtual time.
const CLOCK_MS_MAX: u64 = 10 * 365 * 86_400_000;
/// One simulated day of safety phase.
const SAFETY_MS_MAX: u64 = 86_400_000;

fn validate_knobs(knobs: &Knobs) -> Result<(), String> {
    let within = |name: &str, value: u64, low: u64, high: u64| {
        if (low..=high).contains(&value) {
            Ok(())
        } else {
            Err(format!(
                "knobs.{name} is {value}, not within {low}..={high}"
            ))
        }
    };
    within("devices", knobs.devices as u64, 1, DEVICES_MAX as u64)?;
    within("tenants", knobs.tenants as u64, 1, TENANTS_MAX as u64)?;
    within(
        "spaces_per_tenant",
        knobs.spaces_per_tenant as u64,
        1,
        SPACES_MAX as u64,
    )?;
    within(
        "safety_duration_ms",
        knobs.safety_duration_ms,
        0,
        SAFETY_MS_MAX,
    )?;
    within(
        "liveness_rounds_max",
        knobs.liveness_rounds_max as u64,
        1,
        100,
    )?;
    within("action_gap_ms_max", knobs.action_gap_ms_max, 1, 3_600_000)?;
    within(
        "network_delay_ms_max",
        knobs.network_delay_ms_max,
        0,
        3_600_000,
    )?;
    within("request_timeout_ms", knobs.request_timeout_ms, 1, 3_600_000)?;
    within(
        "clock_offset_ms_max",
        knobs.clock_offset_ms_max,
        0,
        CLOCK_MS_MAX,
    )?;
    within("clock_drift_ppm_max", knobs.clock_drift_ppm_max, 0, 100_000)?;
    within(
        "clock_jump_ms_max",
        knobs.clock_jump_ms_max,
        0,
        CLOCK_MS_MAX,
    )?;
    within("bulk_create_max", knobs.bulk_create_max as u64, 1, 100_000)?;
    within("push_batch_max", knobs.push_batch_max as u64, 1, 10_000)?;
    within("pull_page_limit", knobs.pull_page_limit as u64, 1, 10_000)?;
    if knobs.workload_weights.iter().all(|weight| *weight == 0) {
        return Err("knobs.workload_weights are all zero".to_owned());
    }
    if knobs
        .workload_weights
        .iter()
        .any(|weight| *weight > 1_000_000)
    {
        return Err("knobs.workload_weights: a weight above 1000000".to_owned());
    }
    let ratios = knobs
        .faults
        .iter()
        .map(|(class, ratio)| (format!("faults.{}", class.name()), *ratio))
        .chain([
            ("concurrent_edit".to_owned(), knobs.concurrent_edit),
            ("inflight_actions".to_owned(), knobs.inflight_actions),
            (
                "lifecycle_after_kill".to_owned(),
                knobs.lifecycle_after_kill,
            ),
            ("invalid_write".to_owned(), knobs.invalid_write),
            ("large_write".to_owned(), knobs.large_write),
        ]);
    for (name, ratio) in ratios {
        let Ratio {
            numerator,
            denominator,
        } = ratio;
        if denominator == 0 || numerator > denominator {
            return Err(format!(
                "knobs.{name} is {numerator}/{denominator}, not a probability"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! A case written to JSON reads back as the same case, and files that are not cases
    //! this build can run are refused with an error that names the problem.
    use super::*;
    use crate::profile::{FaultClass, Profile};

    fn small_case() -> Case {
        let mut knobs = Knobs::quiet();
        knobs
            .faults
            .insert(FaultClass::RequestLost, Ratio::new(1, 10));
        Case {
            format: CASE_FORMAT,
            seed: 3,
            knobs,
            defects: vec![Defect::SkipOpIdDedupe],
            safety_only: false,
            absent_devices: BTreeSet::from([1]),
            recorded: RecordedOutcome {
                failure: None,
                events: 10,
                virtual_ms: 1_000,
                trace_hash: "00".to_owned(),
            },
            actions: vec![ActionRecord {
                stream: crate::world::ActionStream::Workload,
                number: 0,
                at_ms: 5,
                device: "d0".to_owned(),
                kind: "Create".to_owned(),
                sub_seed: 9,
            }],
            faults: vec![FiredFault {
                class: FaultClass::RequestLost,
                opportunity: 2,
                at_ms: 7,
            }],
        }
    }

    #[test]
    fn a_case_reads_back_from_its_json() {
        let case = small_case();
        assert_eq!(
            Case::parse(&case.to_json()).expect("a written case parses"),
            case
        );
        assert!(case.to_json().contains("\"skip_op_id_dedupe\""));
        assert_eq!(case.knobs.profile, Profile::Lite);
    }

    // Proves serde spells defects as `--defect` does, so a case names them as commands do.
    #[test]
    fn defect_names_in_case_files_are_the_command_line_names() {
        for &defect in Defect::ALL {
            let json = serde_json::to_string(&defect).expect("a defect serializes");
            assert_eq!(json, format!("\"{}\"", defect.name()));
        }
    }

    #[test]
    fn files_that_are_not_runnable_cases_are_refused_with_the_reason() {
        let check = |edit: &dyn Fn(&mut serde_json::Value), expected: &str| {
            let mut json: serde_json::Value =
                serde_json::from_str(&small_case().to_json()).expect("json");
            edit(&mut json);
            let error = Case::parse(&json.to_string()).expect_err(expected);
            assert!(
                error.to_string().contains(expected),
                "{error} lacks {expected}"
            );
        };
        check(&|json| json["format"] = 99.into(), "format 99");
        check(
            &|json| json["absent_devices"] = serde_json::json!([2]),
            "absent device 2 is not one of the knobs' 2 devices",
        );
        check(
            &|json| json["knobs"]["devices"] = 0.into(),
            "knobs.devices is 0",
        );
        check(
            &|json| json["knobs"]["concurrent_edit"]["numerator"] = 5.into(),
            "knobs.concurrent_edit is 5/1",
        );
        check(
            &|json| {
                json["knobs"]["workload_weights"] =
                    serde_json::json!([0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            },
            "workload_weights are all zero",
        );
        check(
            &|json| json["faults"][0]["class"] = "delay".into(),
            "the knobs switch delay off",
        );
        check(
            &|json| {
                let action = json["actions"][0].clone();
                json["actions"].as_array_mut().expect("a list").push(action);
            },
            "listed twice",
        );
        check(
            &|json| json["defects"] = serde_json::json!(["no_such"]),
            "unknown variant",
        );
        check(&|json| json["surprise"] = true.into(), "unknown field");
        check(&|json| json["knobs"]["faults"] = 3.into(), "line 1");
        assert!(matches!(Case::parse("not json"), Err(CaseError::Json(_))));
        let missing = Case::load(Path::new("/nonexistent/case.json")).expect_err("no file");
        assert!(
            missing.to_string().contains("/nonexistent/case.json"),
            "{missing}"
        );
    }
}
