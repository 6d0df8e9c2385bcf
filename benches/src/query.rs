//! The `query` benchmark's scenario: one device holding many records of [`ENTITY`] with
//! an indexed `priority` field, the engine's query of a filtered, ordered page, and the
//! same query in plain SQLite on the same database file (the floor).

use crate::{Device, ENTITY, SPACE_ID, TENANT};
use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use sync_engine::{Direction, Engine, EntityConfig, EntityRegistry, Field, Query, TenantId};

/// The indexed field the query filters and orders on.
pub const FIELD: &str = "priority";

/// Records per page.
pub const PAGE_LEN: usize = 50;

/// The priorities at and above this one match (3 of 10).
const PRIORITY_MIN: i64 = 7;

/// The floor's statement: the engine's query written by hand, reading the columns a
/// record is made of, without type guards, id map or JSON parsing.
const FLOOR_SQL: &str = "SELECT client_id, space_id, version, base_version, updated_at, \
     is_deleted, data FROM records \
     WHERE entity = ?1 AND space_id = ?2 AND is_deleted = 0 \
     AND json_extract(data, '$.priority') >= ?3 AND json_extract(data, '$.done') = 0 \
     ORDER BY json_extract(data, '$.priority'), client_id LIMIT ?4";

/// One device with `count` records (one `create_many`), `priority` declared indexed.
pub struct QueryScenario {
    pub device: Device,
    floor: Connection,
}

impl QueryScenario {
    pub fn new(count: usize) -> QueryScenario {
        let mut config = EntityConfig::new(ENTITY).expect("the bench entity name is valid");
        config.indexed_fields = vec![FIELD.to_owned()];
        let mut registry = EntityRegistry::new();
        registry.register(config).expect("one entity");
        let mut device = Device::open_with(2, registry);
        let items = (0..count).map(|index| {
            json!({
                "title": format!("item {index:06}"),
                "done": index % 4 == 0,
                "priority": (index * 7) % 10,
            })
        });
        device
            .engine
            .create_many(ENTITY, SPACE_ID, items.collect())
            .expect("create the records");
        let tenant = TenantId::parse(TENANT).expect("the bench tenant id is valid");
        let path = sync_engine::DbLocation::new(device.dir()).db_path(&tenant);
        let floor = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the floor's connection");
        QueryScenario { device, floor }
    }

    /// The page the benchmark asks for: live, not done, priority at least 7, by priority.
    pub fn query() -> Query {
        Query::new(ENTITY)
            .space(SPACE_ID)
            .filter(Field("done").eq(false))
            .filter(Field(FIELD).gte(PRIORITY_MIN))
            .order_by(FIELD, Direction::Asc)
            .limit(PAGE_LEN)
    }

    pub fn engine(&self) -> &Engine {
        &self.device.engine
    }

    /// The timed part of the engine: one page, its records' client ids.
    pub fn run(&self) -> Vec<String> {
        let page = self.engine().query(&Self::query()).expect("query");
        page.records
            .into_iter()
            .map(|record| record.client_id)
            .collect()
    }

    /// The timed part of the floor: the same page in plain SQLite.
    pub fn run_floor(&self) -> Vec<String> {
        let mut statement = self.floor.prepare_cached(FLOOR_SQL).expect("prepare");
        let params = rusqlite::params![ENTITY, SPACE_ID, PRIORITY_MIN, PAGE_LEN as i64];
        let rows = statement
            .query_map(params, |row| {
                let _columns: (i64, i64, i64, i64, String) = (
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                );
                row.get(0)
            })
            .expect("query");
        rows.collect::<Result<_, _>>().expect("read the rows")
    }

    /// The engine and the floor return the same full page, and both plans use the index.
    pub fn check(&self) {
        let page = self.run();
        assert_eq!(page.len(), PAGE_LEN);
        assert_eq!(page, self.run_floor());
        let index = format!("query_index:{ENTITY}:{FIELD}");
        let plan = self.engine().query_plan(&Self::query()).expect("plan");
        assert!(plan.iter().any(|step| step.contains(&index)), "{plan:?}");
        let floor_plan: Vec<String> = self
            .floor
            .prepare(&format!("EXPLAIN QUERY PLAN {FLOOR_SQL}"))
            .expect("prepare")
            .query_map(
                rusqlite::params![ENTITY, SPACE_ID, PRIORITY_MIN, PAGE_LEN as i64],
                |row| row.get(3),
            )
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("read the plan");
        assert!(
            floor_plan.iter().any(|step| step.contains(&index)),
            "{floor_plan:?}"
        );
    }
}
