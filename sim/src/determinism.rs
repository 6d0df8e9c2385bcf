//! `syncsim check-determinism`: runs one seed twice with the whole trace kept and says
//! where the two runs part — the first trace line that differs, with the lines before
//! it — or that they agree. A hash only says *that* two runs differ; this says *where*.
//! It compares what the runs recorded and judges nothing else about them.

use crate::profile::Profile;
use crate::world::{run_seed, RunOptions, SeedReport};

/// Lines of context shown before the first difference.
pub const CONTEXT_LINES: usize = 5;

/// The first place two traces differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The index of the first line that differs (or that one trace lacks).
    pub index: usize,
    /// That line in the first run, `None` if the first run's trace ended before it.
    pub first: Option<String>,
    pub second: Option<String>,
    /// Up to [`CONTEXT_LINES`] lines both runs recorded just before it.
    pub context: Vec<String>,
}

/// The first line at which `first` and `second` differ, or `None` if they are equal.
pub fn first_divergence(first: &[String], second: &[String]) -> Option<Divergence> {
    let common = first.len().min(second.len());
    let index = (0..common)
        .find(|&index| first[index] != second[index])
        .or((first.len() != second.len()).then_some(common))?;
    Some(Divergence {
        index,
        first: first.get(index).cloned(),
        second: second.get(index).cloned(),
        context: first[index.saturating_sub(CONTEXT_LINES)..index].to_vec(),
    })
}

/// The two runs of one seed and how they compare.
pub struct DeterminismCheck {
    pub first: SeedReport,
    pub second: SeedReport,
    pub divergence: Option<Divergence>,
}

impl DeterminismCheck {
    /// True if the runs recorded the same lines and the same hash.
    pub fn agrees(&self) -> bool {
        self.divergence.is_none() && self.first.trace_hash == self.second.trace_hash
    }
}

/// Runs `seed` twice with the whole trace kept (state lines included) and compares.
pub fn check_determinism(seed: u64, profile: Profile, options: &RunOptions) -> DeterminismCheck {
    let options = RunOptions {
        keep_trace: true,
        ..options.clone()
    };
    let first = run_seed(seed, profile, &options);
    let second = run_seed(seed, profile, &options);
    let divergence = first_divergence(&first.trace, &second.trace);
    DeterminismCheck {
        first,
        second,
        divergence,
    }
}

#[cfg(test)]
mod tests {
    //! The comparison finds the first differing line wherever it is — in the middle, or
    //! where one trace stops — with the lines before it, and nothing in equal traces.
    use super::*;

    fn lines(count: usize) -> Vec<String> {
        (0..count)
            .map(|index| format!("{index:>9} d0 timer"))
            .collect()
    }

    #[test]
    fn the_first_differing_line_is_found() {
        let first = lines(20);
        let mut second = lines(20);
        second[12] = "       12 d1 timer".to_owned();
        second[15] = "       15 d1 timer".to_owned();
        let divergence = first_divergence(&first, &second).expect("they differ");
        assert_eq!(divergence.index, 12);
        assert_eq!(divergence.first.as_deref(), Some(first[12].as_str()));
        assert_eq!(divergence.second.as_deref(), Some("       12 d1 timer"));
        assert_eq!(divergence.context, first[7..12].to_vec());
    }

    #[test]
    fn a_trace_that_stops_early_diverges_where_it_stops() {
        let long = lines(8);
        let short = lines(3);
        let divergence = first_divergence(&long, &short).expect("they differ");
        assert_eq!(divergence.index, 3);
        assert_eq!(divergence.first.as_deref(), Some(long[3].as_str()));
        assert_eq!(divergence.second, None);
        assert_eq!(divergence.context, long[..3].to_vec());
        assert_eq!(
            first_divergence(&short, &long).map(|found| found.index),
            Some(3)
        );
    }

    // Proves a real seed agrees with itself line by line, state lines included.
    #[test]
    fn a_real_seed_agrees_with_itself() {
        let check = check_determinism(1, Profile::Lite, &RunOptions::default());
        assert!(check.agrees(), "{:?}", check.divergence);
        assert!(check
            .first
            .trace
            .iter()
            .any(|line| line.contains(" state d0 ")));
        assert_eq!(check.first.trace.len(), check.second.trace.len());
    }

    #[test]
    fn equal_traces_do_not_diverge() {
        assert_eq!(first_divergence(&lines(6), &lines(6)), None);
        assert_eq!(first_divergence(&[], &[]), None);
    }
}
