//! Force sync's rough edges (issue 19), each driven through the public sans-IO API
//! (`execute_force`, `poll_request`, `handle_response`, `poll_event`) against a
//! hand-written server. Each test guards against one bug the engine had:
//!
//! - a confirmed force-from-server whose pull failed was dropped silently: the app only saw
//!   a `SyncFailed` it could not tell from an ordinary sync's, and never learnt the force
//!   had not happened;
//! - a sync requested while a force-from-server ran was lost;
//! - a force-from-server sent its pull while the app was offline, unlike every other sync;
//! - `execute_force` returned `Killed` after the force push had committed (the kill was in
//!   the sync it started), so the caller could not tell whether the force took effect;
//! - a record deleted on the server between two pages of a force-from-server stayed live
//!   on the device (the replacement ignored the pages' `deletedIds`);
//! - a kill between two pages of a force-from-server must leave the old data, and the
//!   pages staged so far must not leak into the next force.

use serde_json::{json, Value};
use sync_engine::testing::{open_engine_in, EPOCH_MS};
use sync_engine::wire::{data_response, error_response, ErrorCode, SyncRequest};
use sync_engine::{
    CrashHook, CrashPoint, Engine, ForceOutcome, HlcStamp, ListOptions, ManualClock, OpStatus,
    SyncError, SyncEvent, SyncFailure, SyncTrigger, TransportError, TransportErrorKind, WriteError,
};

const ENTITY: &str = "Identity";

fn open(dir: &std::path::Path) -> Engine {
    let mut engine = open_engine_in(dir, "acme", ManualClock::new(EPOCH_MS), 3);
    engine.set_auth_token("token-acme").unwrap();
    engine
}

struct CrashAt(CrashPoint);
impl CrashHook for CrashAt {
    fn should_crash(&mut self, point: CrashPoint) -> bool {
        point == self.0
    }
}

/// One live server row as a pull page carries it.
fn item(n: u32, name: &str) -> Value {
    json!({
        "id": format!("srv-{n}"),
        "clientId": format!("0190c0de-0000-7000-8000-{n:012}"),
        "spaceId": "s1",
        "version": 1,
        "updatedAt": HlcStamp::new(EPOCH_MS - 1_000, 0),
        "data": { "name": name },
    })
}

/// A pull page answering `request`.
fn page(request: &SyncRequest, items: Vec<Value>, deleted_ids: &[&str], has_more: bool) -> Value {
    data_response(
        &request.operation_name,
        json!({
            "items": items,
            "deletedIds": deleted_ids,
            "lastSyncAt": format!("cursor-{}", request.request_id),
            "versionHash": null,
            "hasMore": has_more,
        }),
    )
}

/// What the server (or the network) answers to a request.
type Answer = Box<dyn Fn(&SyncRequest) -> Result<Value, TransportError>>;

fn events(engine: &mut Engine) -> Vec<SyncEvent> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

fn names(engine: &Engine) -> Vec<String> {
    let mut names: Vec<String> = engine
        .list(ENTITY, None, ListOptions::default())
        .unwrap()
        .into_iter()
        .map(|record| record.data["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn force_from_server(engine: &mut Engine) -> ForceOutcome {
    let plan = engine.plan_force_from_server(ENTITY).unwrap();
    engine.execute_force(plan.confirm()).unwrap()
}

fn force_failed(events: &[SyncEvent]) -> Option<&SyncFailure> {
    events.iter().find_map(|event| match event {
        SyncEvent::ForceFailed { entity, reason } if entity == ENTITY => Some(reason),
        _ => None,
    })
}

#[test]
fn a_force_from_server_whose_pull_fails_reports_it_and_discards_nothing() {
    // Proves: whatever ends a force-from-server's pull early — a transport failure before
    // or after some pages arrived, a server error, a refused token, a malformed page —
    // the app gets a `ForceFailed` for the entity with the reason; the local records, ops
    // and conflicts are untouched; no retry of the force is scheduled (a retry would keep
    // the entity locked for writes for the whole backoff); the entity is writable again.
    let failures: Vec<(&str, usize, Answer, SyncFailure)> = vec![
        (
            "unreachable",
            0,
            Box::new(|_| Err(TransportError::unreachable("no route"))),
            SyncFailure::Transport {
                kind: TransportErrorKind::Unreachable,
                message: "no route".to_owned(),
            },
        ),
        (
            "timeout after a page",
            1,
            Box::new(|_| Err(TransportError::timeout("no answer"))),
            SyncFailure::Transport {
                kind: TransportErrorKind::Timeout,
                message: "no answer".to_owned(),
            },
        ),
        (
            "server busy",
            0,
            Box::new(|_| Ok(error_response(ErrorCode::ServerBusy, "busy"))),
            SyncFailure::ServerError {
                code: Some(ErrorCode::ServerBusy),
                message: "busy".to_owned(),
            },
        ),
        (
            "unauthorized",
            1,
            Box::new(|_| Ok(error_response(ErrorCode::Unauthorized, "who?"))),
            SyncFailure::AuthRequired {
                message: "who?".to_owned(),
            },
        ),
        (
            "malformed",
            0,
            Box::new(|r: &SyncRequest| Ok(data_response(&r.operation_name, json!({"items": 7})))),
            SyncFailure::InvalidAnswer {
                reason: "malformed pull response".to_owned(),
            },
        ),
    ];
    for (case, good_pages, failure, expected) in failures {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = open(dir.path());
        engine
            .create(ENTITY, "s1", json!({"name": "local"}))
            .unwrap();
        let before = (names(&engine), engine.queued_ops().unwrap());
        events(&mut engine);

        assert_eq!(
            force_from_server(&mut engine),
            ForceOutcome::FromServerAccepted
        );
        for n in 0..good_pages {
            let request = engine.poll_request().expect("a force pull page");
            let answer = page(&request, vec![item(n as u32, "server")], &[], true);
            engine
                .handle_response(request.request_id, Ok(answer))
                .unwrap();
        }
        let request = engine.poll_request().expect("a force pull page");
        engine
            .handle_response(request.request_id, failure(&request))
            .unwrap();

        let events = events(&mut engine);
        let reason =
            force_failed(&events).unwrap_or_else(|| panic!("{case}: no ForceFailed in {events:?}"));
        assert_eq!(reason, &expected, "{case}: the app reads why");
        assert!(
            !events.iter().any(|event| matches!(
                event,
                SyncEvent::ForceCompleted { .. } | SyncEvent::SyncFailed { .. }
            )),
            "{case}: {events:?}"
        );
        assert_eq!(
            (names(&engine), engine.queued_ops().unwrap()),
            before,
            "{case}: nothing discarded"
        );
        assert!(engine.poll_request().is_none(), "{case}");
        assert!(!engine.status().unwrap().syncing, "{case}");
        engine.handle_timeout().unwrap();
        assert!(engine.poll_request().is_none(), "{case}: no retry is due");
        engine
            .create(ENTITY, "s1", json!({"name": "after"}))
            .expect("writable again");
        engine.check_invariants().unwrap();
    }
}

#[test]
fn a_sync_requested_while_a_force_runs_runs_after_it() {
    // Proves: "sync now" (or a timer) during a force-from-server is not lost: once the
    // force ends — completed or failed — the requested sync starts and pushes what other
    // entities queued meanwhile. A sync the force abandoned when it began runs too. A
    // second force meanwhile is refused.
    for force_succeeds in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = open(dir.path());
        force_from_server(&mut engine);
        let force_pull = engine.poll_request().unwrap();
        engine
            .create("Group", "s1", json!({"name": "queued meanwhile"}))
            .unwrap();
        engine.sync_now().unwrap();
        assert!(engine.poll_request().is_none(), "one run at a time");
        let second = engine.plan_force_push_local("Group").unwrap();
        assert!(
            matches!(
                engine.execute_force(second.confirm()),
                Err(WriteError::SyncInProgress(_))
            ),
            "one force at a time: the first one's outcome is still awaited"
        );

        let answer = if force_succeeds {
            Ok(page(&force_pull, vec![item(1, "server")], &[], false))
        } else {
            Err(TransportError::unreachable("down"))
        };
        engine
            .handle_response(force_pull.request_id, answer)
            .unwrap();
        let events = events(&mut engine);
        assert!(
            events.contains(&SyncEvent::SyncStarted {
                trigger: SyncTrigger::Manual
            }),
            "force succeeded: {force_succeeds}: {events:?}"
        );
        let next = engine.poll_request().expect("the requested sync runs");
        assert_eq!(next.operation_name, "syncPushGroup");
    }

    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    engine
        .create("Group", "s1", json!({"name": "pending"}))
        .unwrap();
    engine.sync_now().unwrap();
    let abandoned = engine.poll_request().unwrap();
    assert_eq!(abandoned.operation_name, "syncPushGroup");
    force_from_server(&mut engine);
    let force_pull = engine.poll_request().unwrap();
    let answer = page(&force_pull, vec![], &[], false);
    engine
        .handle_response(force_pull.request_id, Ok(answer))
        .unwrap();
    let next = engine
        .poll_request()
        .expect("the abandoned sync runs again");
    assert_eq!(next.operation_name, "syncPushGroup");
}

#[test]
fn a_force_from_server_while_offline_fails_at_once_and_sends_nothing() {
    // Proves: offline, a force-from-server sends no request (like every other sync) and
    // ends at once with `ForceFailed`, discarding nothing and leaving the entity writable;
    // a force push offline commits its marks and pushes them once back online.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    engine
        .create(ENTITY, "s1", json!({"name": "local"}))
        .unwrap();
    engine.handle_network_change(false).unwrap();
    events(&mut engine);

    force_from_server(&mut engine);
    assert_eq!(engine.poll_request(), None, "offline: nothing is sent");
    let events = events(&mut engine);
    assert!(force_failed(&events).is_some(), "{events:?}");
    assert!(!engine.status().unwrap().syncing);
    assert_eq!(names(&engine), ["local"]);
    engine
        .create(ENTITY, "s1", json!({"name": "still writable"}))
        .unwrap();

    let plan = engine.plan_force_push_local(ENTITY).unwrap();
    assert_eq!(
        engine.execute_force(plan.confirm()).unwrap(),
        ForceOutcome::PushCommitted
    );
    assert_eq!(engine.poll_request(), None);
    assert!(engine.queued_ops().unwrap().iter().all(|op| op.force));
    engine.handle_network_change(true).unwrap();
    let push = engine
        .poll_request()
        .expect("back online, the forced ops go");
    assert_eq!(push.operation_name, "syncPushIdentity");
}

#[test]
fn a_force_push_killed_in_the_sync_it_started_reports_the_commit() {
    // Proves: when the app is killed in the sync a force push starts, after the force's own
    // transaction committed, `execute_force` says the force committed; the kill surfaces at
    // the next call, the dead engine hands out no request, and the reopened database holds
    // the forced ops.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    engine
        .create(ENTITY, "s1", json!({"name": "mine"}))
        .unwrap();
    engine.set_crash_hook(Box::new(CrashAt(CrashPoint::AfterMarkSending)));
    let plan = engine.plan_force_push_local(ENTITY).unwrap();

    let outcome = engine.execute_force(plan.confirm());
    assert!(
        matches!(outcome, Ok(ForceOutcome::PushCommitted)),
        "{outcome:?}"
    );
    assert_eq!(engine.killed_at(), Some(CrashPoint::AfterMarkSending));
    assert_eq!(engine.poll_request(), None, "a dead app sends nothing");
    assert!(matches!(
        engine.sync_now(),
        Err(SyncError::Killed(CrashPoint::AfterMarkSending))
    ));
    assert!(matches!(
        engine.create(ENTITY, "s1", json!({})),
        Err(WriteError::Killed(_))
    ));
    drop(engine);

    let engine = open(dir.path());
    let ops = engine.queued_ops().unwrap();
    assert_eq!(ops.len(), 1);
    assert!(ops[0].force);
    assert_eq!(ops[0].status, OpStatus::Pending);
    engine.check_invariants().unwrap();
}

#[test]
fn a_record_deleted_between_force_pages_is_not_kept() {
    // Proves: a force-from-server applies every page's `deletedIds`: a record that a
    // first page lists live and a later page lists deleted (it was deleted on the server
    // between the two requests) is not live on the device afterwards.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    force_from_server(&mut engine);
    let first = engine.poll_request().unwrap();
    let answer = page(
        &first,
        vec![item(1, "deleted later"), item(2, "kept")],
        &[],
        true,
    );
    engine
        .handle_response(first.request_id, Ok(answer))
        .unwrap();
    let second = engine.poll_request().unwrap();
    let answer = page(&second, vec![item(3, "last")], &["srv-1"], false);
    engine
        .handle_response(second.request_id, Ok(answer))
        .unwrap();

    assert!(events(&mut engine).contains(&SyncEvent::ForceCompleted {
        entity: ENTITY.to_owned()
    }));
    assert_eq!(names(&engine), ["kept", "last"]);
    engine.check_invariants().unwrap();
}

#[test]
fn a_kill_between_force_pages_keeps_the_old_data_and_stages_nothing_for_later() {
    // Proves: a kill between two pages of a force-from-server (after a page was staged)
    // leaves the old records and ops as they were; after the reopen, a new force replaces
    // the entity with exactly its own pages — nothing the killed force staged leaks in.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    engine
        .create(ENTITY, "s1", json!({"name": "local"}))
        .unwrap();
    let ops_before = engine.queued_ops().unwrap();
    engine.set_crash_hook(Box::new(CrashAt(CrashPoint::BetweenPullPages)));
    force_from_server(&mut engine);
    let first = engine.poll_request().unwrap();
    let answer = page(
        &first,
        vec![item(1, "staged by the killed force")],
        &[],
        true,
    );
    let killed = engine.handle_response(first.request_id, Ok(answer));
    assert!(
        matches!(killed, Err(SyncError::Killed(CrashPoint::BetweenPullPages))),
        "{killed:?}"
    );
    drop(engine);

    let mut engine = open(dir.path());
    engine.check_invariants().unwrap();
    assert_eq!(names(&engine), ["local"]);
    assert_eq!(engine.queued_ops().unwrap(), ops_before);
    force_from_server(&mut engine);
    let request = engine.poll_request().unwrap();
    assert_eq!(
        request.variables.to_json()["lastSyncAt"],
        Value::Null,
        "from the start"
    );
    let answer = page(&request, vec![item(2, "server")], &[], false);
    engine
        .handle_response(request.request_id, Ok(answer))
        .unwrap();
    assert!(events(&mut engine).contains(&SyncEvent::ForceCompleted {
        entity: ENTITY.to_owned()
    }));
    assert_eq!(names(&engine), ["server"]);
    assert!(engine.queued_ops().unwrap().is_empty());
    engine.check_invariants().unwrap();
}

#[test]
fn a_force_cancelled_mid_way_reports_it_and_leaves_nothing_staged() {
    // Proves: a force-from-server abandoned between two pages (here by a space wipe, which
    // cancels what runs) ends with `ForceFailed`, keeps the entity's records as they were,
    // and leaves no staged page behind (`check_invariants` looks); answers to its pull
    // that arrive afterwards are ignored.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    engine
        .create(ENTITY, "s1", json!({"name": "local"}))
        .unwrap();
    force_from_server(&mut engine);
    let first = engine.poll_request().unwrap();
    let answer = page(&first, vec![item(1, "staged")], &[], true);
    engine
        .handle_response(first.request_id, Ok(answer))
        .unwrap();
    let second = engine.poll_request().unwrap();
    events(&mut engine);

    engine.wipe_space("s9").unwrap();
    let reason = force_failed(&events(&mut engine)).cloned();
    assert_eq!(reason, Some(SyncFailure::Cancelled));
    engine.check_invariants().unwrap();
    let late = page(&second, vec![item(2, "late")], &[], false);
    engine.handle_response(second.request_id, Ok(late)).unwrap();
    assert!(events(&mut engine).is_empty());
    assert_eq!(names(&engine), ["local"]);
    assert_eq!(engine.queued_ops().unwrap().len(), 1);
}

#[test]
fn a_server_id_given_to_two_records_by_two_force_pages_is_refused() {
    // Proves: each force page is checked as it arrives, but one server id handed to two
    // different records by two different pages only shows in the whole pull: the
    // replacement is refused with `ForceFailed`, nothing is replaced, nothing stays staged.
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    engine
        .create(ENTITY, "s1", json!({"name": "local"}))
        .unwrap();
    force_from_server(&mut engine);
    let first = engine.poll_request().unwrap();
    let answer = page(&first, vec![item(1, "first owner")], &[], true);
    engine
        .handle_response(first.request_id, Ok(answer))
        .unwrap();
    let second = engine.poll_request().unwrap();
    let mut impostor = item(2, "second owner");
    impostor["id"] = json!("srv-1");
    let answer = page(&second, vec![impostor], &[], false);
    engine
        .handle_response(second.request_id, Ok(answer))
        .unwrap();

    let events = events(&mut engine);
    let reason = force_failed(&events).unwrap_or_else(|| panic!("{events:?}"));
    assert!(
        matches!(reason, SyncFailure::InvalidAnswer { reason } if reason.contains("srv-1")),
        "{reason:?}"
    );
    assert_eq!(names(&engine), ["local"]);
    assert_eq!(engine.queued_ops().unwrap().len(), 1);
    engine.check_invariants().unwrap();
}
