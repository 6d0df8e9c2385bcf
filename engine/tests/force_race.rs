//! Regression: a write made while a confirmed force-from-server was still pulling was
//! wiped when the replacement committed, although the plan had not counted it (found by
//! `syncsim` seed 537 of the `default` profile as a lost acknowledged write). Writes to an
//! entity being replaced are now refused with a clear error and change nothing; other
//! entities stay writable.

use serde_json::json;
use sync_engine::testing::open_temp_engine;
use sync_engine::WriteError;

#[test]
fn writes_to_an_entity_being_force_pulled_are_refused_not_lost() {
    let (_dir, mut engine) = open_temp_engine("acme");
    engine.set_auth_token("token-acme").unwrap();
    let existing = engine
        .create("Identity", "s1", json!({"name": "before"}))
        .unwrap();
    let plan = engine.plan_force_from_server("Identity").unwrap();
    assert_eq!(plan.local_changes(), 1);
    engine.execute_force(plan.confirm()).unwrap();
    let request = engine.poll_request().expect("the force pull request");
    assert_eq!(request.operation_name, "syncPullIdentity");

    let refused = engine.create("Identity", "s1", json!({"name": "during"}));
    assert!(
        matches!(refused, Err(WriteError::SyncInProgress(_))),
        "{refused:?}"
    );
    assert!(matches!(
        engine.update(&existing, json!({"name": "x"})),
        Err(WriteError::SyncInProgress(_))
    ));
    assert!(matches!(
        engine.delete(&existing),
        Err(WriteError::SyncInProgress(_))
    ));
    assert_eq!(
        engine
            .list("Identity", None, Default::default())
            .unwrap()
            .len(),
        1,
        "nothing changed"
    );
    assert_eq!(engine.queued_ops().unwrap().len(), 1);

    engine
        .create("Group", "s1", json!({"name": "other entity"}))
        .expect("other entities stay writable");
}
