//! The contract checks, one function each, in the order a run takes them. Each writes
//! only records of its own and fails with a sentence saying which promise broke.

use super::{data_of, ensure, error_code, CheckResult, Failed, Session, Who};
use serde_json::{json, Value};
use std::collections::BTreeMap;

type Check = fn(&mut Session) -> CheckResult;

/// Every check, by name, in run order.
pub(super) const CHECKS: [(&str, Check); 8] = [
    ("push_replay_by_op_id", push_replay_by_op_id),
    ("insert_with_known_client_id", insert_with_known_client_id),
    ("stale_base_version_conflicts", stale_base_version_conflicts),
    ("pages_resume_inside_a_commit", pages_resume_inside_a_commit),
    (
        "deletes_reach_an_earlier_cursor",
        deletes_reach_an_earlier_cursor,
    ),
    ("tenants_are_isolated", tenants_are_isolated),
    (
        "version_hash_matches_pulled_data",
        version_hash_matches_pulled_data,
    ),
    (
        "malformed_push_changes_nothing",
        malformed_push_changes_nothing,
    ),
];

/// The checks' names, in run order.
pub const CHECK_NAMES: [&str; 8] = [
    CHECKS[0].0,
    CHECKS[1].0,
    CHECKS[2].0,
    CHECKS[3].0,
    CHECKS[4].0,
    CHECKS[5].0,
    CHECKS[6].0,
    CHECKS[7].0,
];

/// The same push sent twice (its answer lost, say) has one effect, and the second answer
/// is the first one's.
fn push_replay_by_op_id(session: &mut Session) -> CheckResult {
    let before = session.cursor_now()?;
    let client_id = session.fresh("replayed");
    let stamp = session.stamp(0);
    let item = session.insert(&client_id, json!({ "title": "sent twice" }), stamp);
    let first = session.push_one_ok(item.clone())?;
    let second = session.push_results(Who::A, vec![item])?.remove(0);
    ensure(second == first, || {
        format!("the replay answered {second}, the first push {first}")
    })?;
    let pulled = session.pull(before)?;
    let rows = pulled.with_client_id(&client_id);
    ensure(rows.len() == 1 && rows[0]["version"] == 1, || {
        format!(
            "after the replay, clientId {client_id} has {} rows {rows:?} (one, at version 1, expected)",
            rows.len()
        )
    })?;
    Ok("a replayed opId answers the stored result; one row, version 1".to_owned())
}

/// An insert re-sent under a new opId (a device that lost the answer and re-issued the
/// op) returns the record its clientId already has, never a second one.
fn insert_with_known_client_id(session: &mut Session) -> CheckResult {
    let before = session.cursor_now()?;
    let client_id = session.fresh("reinserted");
    let stamp = session.stamp(0);
    let item = session.insert(&client_id, json!({ "title": "first send" }), stamp);
    let first = session.push_one_ok(item)?;
    let stamp = session.stamp(1);
    let again = session.insert(&client_id, json!({ "title": "first send" }), stamp);
    let second = session.push_one_ok(again)?;
    ensure(second["id"] == first["id"], || {
        format!(
            "the re-sent insert got id {}, the record's id is {}",
            second["id"], first["id"]
        )
    })?;
    let pulled = session.pull(before)?;
    let rows = pulled.with_client_id(&client_id);
    ensure(rows.len() == 1, || {
        format!("clientId {client_id} has {} rows: {rows:?}", rows.len())
    })?;
    Ok(format!(
        "the re-sent insert returned the existing id {}",
        first["id"]
    ))
}

/// A write based on a version the server has moved past is refused with the conflict
/// payload: the server's data, version and stamp.
fn stale_base_version_conflicts(session: &mut Session) -> CheckResult {
    let client_id = session.fresh("contended");
    let stamp = session.stamp(0);
    let insert = session.insert(&client_id, json!({ "title": "v1" }), stamp);
    let created = session.push_one_ok(insert)?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let newer = session.stamp(20);
    let update = session.write("update", &id, 1, json!({ "title": "v2" }), newer);
    session.push_one_ok(update)?;
    // Based on version 1, and older than the write that made version 2.
    let older = session.stamp(10);
    let stale = session.write("update", &id, 1, json!({ "title": "stale" }), older);
    let result = session.push_results(Who::A, vec![stale])?.remove(0);
    ensure(result["success"] == false, || {
        format!("an update based on version 1 of a version-2 record succeeded: {result}")
    })?;
    let conflict = &result["conflict"];
    ensure(
        conflict["serverVersion"] == 2 && conflict["serverData"]["title"] == "v2",
        || format!("the refusal does not carry the server's version 2 and its data: {result}"),
    )?;
    Ok(format!(
        "refused with {} and the server's version 2",
        result["errorCode"]
    ))
}

/// Pages of a pull resume where the last one ended, also when the boundary falls inside
/// one commit: a push of five rows read two at a time arrives whole, once each.
fn pages_resume_inside_a_commit(session: &mut Session) -> CheckResult {
    let before = session.cursor_now()?;
    let mut client_ids = Vec::new();
    let mut items = Vec::new();
    for index in 0..5 {
        let client_id = session.fresh("paged");
        let stamp = session.stamp(0);
        items.push(session.insert(
            &client_id,
            json!({ "title": format!("row {index}") }),
            stamp,
        ));
        client_ids.push(client_id);
    }
    let results = session.push_results(Who::A, items)?;
    ensure(
        results.iter().all(|result| result["success"] == true),
        || format!("a valid batch was refused: {results:?}"),
    )?;
    let tenant_id = session.config.tenant_a.tenant_id.clone();
    let pulled = session.pull_for(Who::A, &tenant_id, before, 2)?;
    ensure(pulled.page_sizes.iter().all(|&size| size <= 2), || {
        format!("pages of limit 2 held {:?} rows", pulled.page_sizes)
    })?;
    for client_id in &client_ids {
        let rows = pulled.with_client_id(client_id);
        ensure(rows.len() == 1, || {
            format!(
                "one commit of five rows, read in pages of {:?}: clientId {client_id} came {} times",
                pulled.page_sizes,
                rows.len()
            )
        })?;
    }
    Ok(format!(
        "five rows of one commit came once each, in pages of {:?}",
        pulled.page_sizes
    ))
}

/// A delete reaches a device whose cursor was taken while the record was alive.
fn deletes_reach_an_earlier_cursor(session: &mut Session) -> CheckResult {
    let client_id = session.fresh("deleted");
    let stamp = session.stamp(0);
    let insert = session.insert(&client_id, json!({ "title": "to delete" }), stamp);
    let created = session.push_one_ok(insert)?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let cursor = session.cursor_now()?;
    let stamp = session.stamp(10);
    let delete = session.write("delete", &id, 1, json!({}), stamp);
    session.push_one_ok(delete)?;
    let pulled = session.pull(cursor)?;
    ensure(pulled.deleted_ids.contains(&id), || {
        format!("a pull from a cursor taken before the delete has no deletedIds entry for {id}")
    })?;
    ensure(pulled.with_client_id(&client_id).is_empty(), || {
        format!("the deleted record {id} still comes as a live item")
    })?;
    Ok(format!("{id} arrived in deletedIds"))
}

/// Tenant B's token neither reads nor writes tenant A's records, whatever tenant the
/// request names.
fn tenants_are_isolated(session: &mut Session) -> CheckResult {
    let client_id = session.fresh("private");
    let stamp = session.stamp(0);
    let insert = session.insert(&client_id, json!({ "title": "tenant A only" }), stamp);
    let created = session.push_one_ok(insert)?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let tenant_a = session.config.tenant_a.tenant_id.clone();
    let tenant_b = session.config.tenant_b.tenant_id.clone();

    let stamp = session.stamp(10);
    let intrusion = session.write("update", &id, 1, json!({ "title": "written by B" }), stamp);
    let answer = session.push_for(Who::B, &tenant_a, vec![intrusion])?;
    let refused = error_code(&answer).is_some()
        || answer["data"]["syncPushSpace"]["results"][0]["success"] == false;
    ensure(refused, || {
        format!("tenant B's token wrote to tenant {tenant_a}: {answer}")
    })?;

    let variables = json!({ "lastSyncAt": null, "tenantId": tenant_a, "limit": 1000 });
    let answer = session.send(Who::B, "syncPullSpace", variables)?;
    let leaked = answer["data"]["syncPullSpace"]["items"]
        .as_array()
        .is_some_and(|items| items.iter().any(|item| item["id"] == id.as_str()));
    ensure(!leaked, || {
        format!("tenant B's token read tenant {tenant_a}'s record {id}")
    })?;
    let own = session.pull_for(Who::B, &tenant_b, None, 1000)?;
    ensure(own.with_client_id(&client_id).is_empty(), || {
        format!("tenant {tenant_b} pulls tenant {tenant_a}'s record {id}")
    })?;
    let check = session.pull(None)?;
    let rows = check.with_client_id(&client_id);
    ensure(
        rows.len() == 1 && rows[0]["version"] == 1 && rows[0]["data"]["title"] == "tenant A only",
        || format!("tenant A's record changed after tenant B's requests: {rows:?}"),
    )?;
    Ok("tenant B's token was refused and tenant A's record is unchanged".to_owned())
}

/// The last page's `versionHash` is the checksum of exactly the live records the pages
/// delivered, their data included (a deleted record is part of the run, so tombstones
/// are tested too).
fn version_hash_matches_pulled_data(session: &mut Session) -> CheckResult {
    for index in 0..2 {
        let client_id = session.fresh("hashed");
        let stamp = session.stamp(0);
        let insert = session.insert(
            &client_id,
            json!({ "title": format!("hashed {index}") }),
            stamp,
        );
        let created = session.push_one_ok(insert)?;
        if index == 0 {
            let id = created["id"].as_str().unwrap_or_default().to_owned();
            let stamp = session.stamp(10);
            let delete = session.write("delete", &id, 1, json!({}), stamp);
            session.push_one_ok(delete)?;
        }
    }
    let pulled = session.pull(None)?;
    // Replay the pages as a device would: later rows replace earlier ones.
    let mut live: BTreeMap<String, Value> = BTreeMap::new();
    for item in &pulled.items {
        if let Some(id) = item["id"].as_str() {
            live.insert(id.to_owned(), item.clone());
        }
    }
    for id in &pulled.deleted_ids {
        live.remove(id);
    }
    let no_data = serde_json::Map::new();
    let expected = sync_engine::wire::version_hash(live.iter().map(|(id, item)| {
        let version = item["version"].as_i64().unwrap_or(-1);
        (
            id.as_str(),
            version,
            item["data"].as_object().unwrap_or(&no_data),
        )
    }));
    let answered = pulled
        .version_hash
        .ok_or_else(|| Failed("the last page carries no versionHash".to_owned()))?;
    ensure(answered == expected, || {
        format!(
            "versionHash {answered}, but the {} live records pulled hash to {expected}",
            live.len()
        )
    })?;
    Ok(format!("{} live records hash to {expected}", live.len()))
}

/// Malformed requests get an error and change nothing: a batch with one bad item
/// (an empty `opId`) applies none of its items, and a body that is not JSON is refused.
fn malformed_push_changes_nothing(session: &mut Session) -> CheckResult {
    let before = session.cursor_now()?;
    let client_id = session.fresh("never");
    let stamp = session.stamp(0);
    let valid = session.insert(&client_id, json!({ "title": "in a bad batch" }), stamp);
    let other = session.fresh("never");
    let stamp = session.stamp(0);
    let mut bad = session.insert(&other, json!({ "title": "bad opId" }), stamp);
    bad["opId"] = json!("");
    let answer = session.push(Who::A, vec![valid, bad])?;
    let code = error_code(&answer);
    let refused = code.is_some() || data_of(&answer, "syncPushSpace").is_err();
    ensure(refused, || {
        format!("a batch with an empty opId was answered without an error: {answer}")
    })?;
    let raw = session.send_raw(Who::A, "application/json", "{\"query\": \"mutation {")?;
    let raw_refused = !(200..300).contains(&raw.status)
        || raw
            .json
            .as_ref()
            .is_some_and(|body| body.get("errors").is_some());
    ensure(raw_refused, || {
        format!(
            "a truncated JSON body was answered HTTP {} without errors",
            raw.status
        )
    })?;
    let pulled = session.pull(before)?;
    let applied: Vec<&Value> = pulled
        .with_client_id(&client_id)
        .into_iter()
        .chain(pulled.with_client_id(&other))
        .collect();
    ensure(applied.is_empty(), || {
        format!("the refused batch left rows behind: {applied:?}")
    })?;
    Ok(format!(
        "refused ({}) and nothing applied",
        code.unwrap_or_else(|| "an error".to_owned())
    ))
}
