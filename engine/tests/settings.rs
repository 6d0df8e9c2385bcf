//! The sync schedule is the app's to set: `EngineOptions::settings` moves the interval,
//! the after-write delay, the backoff and the request deadline, and settings the timers
//! cannot run on are refused before anything is opened.

use serde_json::json;
use sync_engine::testing::{example_registry, EPOCH_MS};
use sync_engine::{
    ConfigError, DbLocation, Engine, EngineOptions, Env, ManualClock, OpStatus, OpenError,
    SeededEntropy, SyncEvent, SyncFailure, SyncSettings, SyncTrigger, TenantId, TransportErrorKind,
};

fn open_with(dir: &std::path::Path, clock: &ManualClock, settings: SyncSettings) -> Engine {
    let mut options = EngineOptions::new(
        DbLocation::new(dir),
        TenantId::parse("acme").expect("a valid tenant id"),
        example_registry(),
    );
    options.settings = settings;
    options.sync_after_write = true;
    let mut engine =
        Engine::open(options, Env::new(clock.clone(), SeededEntropy::new(3))).expect("open");
    engine.set_auth_token("token-acme").expect("store token");
    engine
}

fn drain(engine: &mut Engine) -> Vec<SyncEvent> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

fn sync_triggers(engine: &mut Engine) -> Vec<SyncTrigger> {
    drain(engine)
        .into_iter()
        .filter_map(|event| match event {
            SyncEvent::SyncStarted { trigger } => Some(trigger),
            _ => None,
        })
        .collect()
}

// Proves the interval and the after-write delay are the settings' values: the next timer
// is due exactly then, and firing it starts its sync.
#[test]
fn the_interval_and_the_after_write_delay_follow_the_settings() {
    let mut settings = SyncSettings::default();
    settings.interval_ms = 60_000;
    settings.after_write_delay_ms = 2_000;

    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(EPOCH_MS);
    let mut engine = open_with(dir.path(), &clock, settings);
    assert_eq!(engine.poll_timeout(), Some(EPOCH_MS + 60_000));
    clock.set_ms(EPOCH_MS + 60_000);
    engine.handle_timeout().expect("fire the interval");
    assert_eq!(sync_triggers(&mut engine), [SyncTrigger::Interval]);
    assert_eq!(engine.poll_timeout(), Some(EPOCH_MS + 120_000));

    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(EPOCH_MS);
    let mut engine = open_with(dir.path(), &clock, settings);
    engine
        .create("Space", "s1", json!({ "name": "a" }))
        .expect("create");
    assert_eq!(engine.poll_timeout(), Some(EPOCH_MS + 2_000));
    clock.set_ms(EPOCH_MS + 2_000);
    engine.handle_timeout().expect("fire the after-write delay");
    assert_eq!(sync_triggers(&mut engine), [SyncTrigger::AfterWrite]);
}

// Proves a request past the deadline fails the sync as a transport timeout, retried
// within the configured backoff, and that its late answer changes nothing.
#[test]
fn a_request_past_its_deadline_times_out_and_its_late_answer_is_ignored() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(EPOCH_MS);
    let mut settings = SyncSettings::default();
    settings.request_deadline_ms = Some(5_000);
    settings.backoff_base_ms = 10_000;
    settings.backoff_cap_ms = 10_000;
    let mut engine = open_with(dir.path(), &clock, settings);
    let id = engine
        .create("Space", "s1", json!({ "name": "a" }))
        .expect("create");
    engine.sync_now().expect("sync now");
    let request = engine.poll_request().expect("a push");
    assert_eq!(engine.poll_timeout(), Some(EPOCH_MS + 5_000));

    clock.set_ms(EPOCH_MS + 4_999);
    engine.handle_timeout().expect("nothing due yet");
    assert!(
        !drain(&mut engine)
            .iter()
            .any(|event| matches!(event, SyncEvent::SyncFailed { .. })),
        "the deadline fired early"
    );
    clock.set_ms(EPOCH_MS + 5_000);
    engine.handle_timeout().expect("the deadline");
    let failed = drain(&mut engine)
        .into_iter()
        .find_map(|event| match event {
            SyncEvent::SyncFailed {
                reason,
                retry_at_ms,
            } => Some((reason, retry_at_ms)),
            _ => None,
        });
    let (reason, retry_at_ms) = failed.expect("the sync failed at its deadline");
    assert!(
        matches!(
            reason,
            SyncFailure::Transport {
                kind: TransportErrorKind::Timeout,
                ..
            }
        ),
        "{reason:?}"
    );
    let retry_at_ms = retry_at_ms.expect("a timeout is retried");
    assert!((EPOCH_MS + 10_000..=EPOCH_MS + 15_000).contains(&retry_at_ms));

    let late = sync_engine::wire::data_response(&request.operation_name, json!({ "results": [] }));
    engine
        .handle_response(request.request_id, Ok(late))
        .expect("a late answer is ignored");
    assert!(drain(&mut engine).is_empty());
    let ops = engine.queued_ops().expect("read the queue");
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].status, OpStatus::Pending);
    assert_eq!(ops[0].entity_id, id);
}

// Proves settings the timers cannot run on are refused with a clear error before the
// database is created.
#[test]
fn impossible_settings_are_refused_and_create_nothing() {
    let mut zero_interval = SyncSettings::default();
    zero_interval.interval_ms = 0;
    let mut cap_below_base = SyncSettings::default();
    cap_below_base.backoff_cap_ms = 10;
    let mut zero_deadline = SyncSettings::default();
    zero_deadline.request_deadline_ms = Some(0);
    for settings in [zero_interval, cap_below_base, zero_deadline] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut options = EngineOptions::new(
            DbLocation::new(dir.path().join("db")),
            TenantId::parse("acme").expect("a valid tenant id"),
            example_registry(),
        );
        options.settings = settings;
        let env = Env::new(ManualClock::new(EPOCH_MS), SeededEntropy::new(3));
        match Engine::open(options, env) {
            Err(OpenError::Config(ConfigError::InvalidSetting(message))) => {
                assert!(!message.is_empty())
            }
            other => panic!("{settings:?} was not refused: {other:?}"),
        }
        assert!(
            !dir.path().join("db").exists(),
            "{settings:?} created files"
        );
    }
}
