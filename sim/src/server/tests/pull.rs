//! Pull: pagination inside one commit stamp, deleted rows as `deletedIds`, `versionHash`.

use super::*;

#[test]
fn pagination_survives_page_boundaries_inside_one_commit_stamp() {
    // Proves paging with limit 1000 over 2,500 rows written by pushes of 700, 1000 and
    // 800 rows (so both page boundaries fall among rows sharing one stamp) returns every
    // row exactly once, and an incremental pull afterwards sees only what changed.
    let mut server = server();
    let mut next = 0;
    for batch_len in [700, 1000, 800] {
        let items = (next..next + batch_len)
            .map(|n| {
                insert(
                    &format!("op-{n}"),
                    &format!("c-{n:05}"),
                    100,
                    json!({"n": n}),
                )
            })
            .collect();
        assert!(push(&mut server, items).iter().all(|result| result.success));
        next += batch_len;
    }
    assert_eq!(server.commit_stamp(TENANT), 3);

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let page = pull(&mut server, cursor.as_deref(), Some(1000));
        seen.extend(pulled_ids(&page));
        pages.push((page.items.len(), page.has_more));
        cursor = Some(page.last_sync_at.clone());
        if !page.has_more {
            break;
        }
    }
    assert_eq!(pages, vec![(1000, true), (1000, true), (500, false)]);
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 2500);
    assert_eq!(unique.len(), 2500);
    let all_ids: BTreeSet<&String> = server
        .records(TENANT)
        .into_iter()
        .map(|record| &record.id)
        .collect();
    assert_eq!(unique, all_ids);

    // Nothing changed: the next pull is empty and keeps the cursor.
    let end = cursor.expect("cursor");
    let empty = pull(&mut server, Some(&end), Some(1000));
    assert!(empty.items.is_empty());
    assert!(!empty.has_more);
    assert_eq!(empty.last_sync_at, end);

    // One row changes: only it comes back, after the cursor.
    let changed_id = seen[10].clone();
    push_one(
        &mut server,
        update("op-change", &changed_id, Some(1), 200, json!({"n": -1})),
    );
    let incremental = pull(&mut server, Some(&end), None);
    assert_eq!(pulled_ids(&incremental), vec![changed_id]);
    assert!(
        incremental.last_sync_at.starts_with("4."),
        "{}",
        incremental.last_sync_at
    );
    server.check_invariants();
}

#[test]
fn deleted_rows_come_back_as_deleted_ids() {
    // Proves a deleted record leaves `items` and shows up in `deletedIds` once.
    let mut server = server();
    let kept = create(&mut server, "c-kept", 100);
    let gone = create(&mut server, "c-gone", 100);
    push_one(&mut server, delete("op-delete", &gone, Some(1), 200));
    let page = pull(&mut server, None, Some(2));
    assert!(
        !page.has_more,
        "a page that ends exactly at the last row has no more"
    );
    assert_eq!(pulled_ids(&page), vec![kept]);
    assert_eq!(page.deleted_ids, vec![gone]);
    let item: PulledItem = serde_json::from_value(page.items[0].clone()).expect("PulledItem");
    assert_eq!(item.client_id, "c-kept");
    assert_eq!(item.space_id, SPACE);
    assert_eq!(item.version, 1);
    assert_eq!(item.updated_at, HlcStamp(100));
}

#[test]
fn version_hash_follows_live_versions() {
    // Proves versionHash equals the wire checksum over live (id, version, data) rows,
    // changes when a version does or a record is deleted, and comes with the last page
    // only.
    let mut server = server();
    let a = create(&mut server, "c-a", 100);
    let b = create(&mut server, "c-b", 100);
    let first = pull(&mut server, None, None).version_hash.expect("hash");
    assert_eq!(
        first,
        wire::version_hash([
            (a.as_str(), 1, &record(&server, &a).data),
            (b.as_str(), 1, &record(&server, &b).data)
        ])
    );
    push_one(
        &mut server,
        update("op-u", &a, Some(1), 200, json!({"v": 1})),
    );
    let second = pull(&mut server, None, None).version_hash.expect("hash");
    assert_ne!(second, first);
    assert_eq!(
        second,
        wire::version_hash([
            (a.as_str(), 2, &record(&server, &a).data),
            (b.as_str(), 1, &record(&server, &b).data)
        ])
    );
    push_one(&mut server, delete("op-d", &b, Some(1), 300));
    // Two rows changed (a, then b's tombstone): a page of one is not the last one and
    // carries no checksum; the last page carries the checksum of the whole entity.
    let first_page = pull(&mut server, None, Some(1));
    assert!(first_page.has_more);
    assert_eq!(first_page.version_hash, None);
    let last_page = pull(&mut server, Some(&first_page.last_sync_at), Some(1));
    assert!(!last_page.has_more);
    let third = last_page.version_hash.expect("hash on the last page");
    assert_eq!(
        third,
        wire::version_hash([(a.as_str(), 2, &record(&server, &a).data)])
    );
}

#[test]
fn a_pulled_item_is_its_wire_type_rendered() {
    // Proves the directly built item JSON is what `serde_json::to_value` renders for the
    // record's `PulledItem`; the literal is exhaustive, so a new wire field breaks it.
    let mut server = server();
    let id = create(&mut server, "c-a", 100);
    let stored = record(&server, &id);
    let expected = serde_json::to_value(wire::PulledItem {
        id: stored.id.clone(),
        client_id: stored.client_id.clone(),
        space_id: stored.space_id.clone(),
        version: stored.version,
        updated_at: stored.updated_at,
        data: stored.data.clone(),
    })
    .expect("wire types serialize");
    assert_eq!(
        crate::server::pull::pulled_item_json(crate::server::pull::pulled_item(stored)),
        expected
    );
    assert_eq!(
        serde_json::to_string(&crate::server::pull::pulled_item_json(
            crate::server::pull::pulled_item(stored)
        ))
        .expect("JSON"),
        serde_json::to_string(&expected).expect("JSON")
    );
}

#[test]
fn a_remembered_version_hash_is_forgotten_when_its_rows_change() {
    // Proves a checksum a last page computed is not handed out again once a record of
    // the entity changed or a purge took a tombstone out of the pull order (with the
    // tombstone-counting defect planted, so the purge changes the checksum).
    let mut server = server();
    server.set_defects(ServerDefects {
        version_hash_counts_tombstones: true,
        ..ServerDefects::default()
    });
    let a = create(&mut server, "c-a", 100);
    let b = create(&mut server, "c-b", 100);
    let first = pull(&mut server, None, None).version_hash.expect("hash");
    assert_eq!(
        pull(&mut server, None, None).version_hash,
        Some(first.clone())
    );
    push_one(&mut server, delete("op-d", &b, Some(1), 200));
    let second = pull(&mut server, None, None).version_hash.expect("hash");
    assert_ne!(second, first);
    server.check_invariants();
    assert_eq!(server.purge_tombstones(TENANT, 0), 1);
    let third = pull(&mut server, None, None).version_hash.expect("hash");
    assert_eq!(
        third,
        wire::version_hash([(a.as_str(), 1, &record(&server, &a).data)])
    );
    server.check_invariants();
}
