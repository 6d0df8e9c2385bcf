//! `Engine::update` follows JSON Merge Patch (RFC 7396): the test cases of the RFC's
//! appendix whose target and patch are objects, applied through the engine, each a
//! durable write whose queued op carries the patched record.

use serde_json::{json, Value};
use sync_engine::testing;

// Proves every object case of RFC 7396 Appendix A gives the RFC's result, both in the
// record the engine returns and stores and in the op it queues for the server.
#[test]
fn updates_follow_rfc_7396() {
    let cases: Vec<(Value, Value, Value)> = vec![
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
        (
            json!({"a": "x"}),
            json!({"a": {"b": 1}}),
            json!({"a": {"b": 1}}),
        ),
    ];
    let (_dir, mut engine) = testing::open_temp_engine("acme");
    for (target, patch, expected) in cases {
        let id = engine
            .create("Space", "s1", target.clone())
            .expect("create");
        let returned = engine.update(&id, patch.clone()).expect("update");
        let expected = expected.as_object().expect("an object").clone();
        assert_eq!(returned.data, expected, "{target} patched with {patch}");
        let stored = engine.get(&id).expect("read").expect("the record");
        assert_eq!(
            stored.data, expected,
            "{target} patched with {patch}: stored"
        );
        let queued = engine
            .queued_ops()
            .expect("read the queue")
            .into_iter()
            .rfind(|op| op.entity_id == id)
            .expect("the update is queued");
        assert_eq!(
            queued.payload, expected,
            "{target} patched with {patch}: queued"
        );
    }
}
