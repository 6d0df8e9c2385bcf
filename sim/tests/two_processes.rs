//! Two processes of one app on one tenant database (the UI and a background sync task):
//! two engines, each with its own connection, on the same file. Both write and both sync;
//! one sync runs at a time (the sync lock), no op is pushed by both, no stamp is handed
//! out twice, and a lock another connection holds is waited for, never fatal.

use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use sync_engine::wire::SyncRequest;
use sync_engine::{
    DbLocation, Engine, EngineOptions, EntityRegistry, Env, ManualClock, OpStatus, PlantedDefects,
    SeededEntropy, SyncEvent, TenantId, Transport, TransportError,
};
use sync_sim::server::ReferenceServer;

const TENANT: &str = "acme";
const TOKEN: &str = "token-acme";
const START_MS: u64 = 1_700_000_000_000;

fn registry() -> EntityRegistry {
    EntityRegistry::with_defaults(&["Item"]).expect("a valid entity name")
}

fn server() -> ReferenceServer {
    let mut server = ReferenceServer::new(registry());
    server.add_tenant_token(TENANT, TOKEN);
    server
}

/// One process of the app: its own engine on the shared database.
fn open(dir: &std::path::Path, clock: &ManualClock, seed: u64, defects: PlantedDefects) -> Engine {
    let mut options = EngineOptions::new(
        DbLocation::new(dir),
        TenantId::parse(TENANT).expect("a valid tenant id"),
        registry(),
    );
    options.planted_defects = defects;
    let env = Env::new(clock.clone(), SeededEntropy::new(seed));
    let mut engine = Engine::open(options, env).expect("open");
    engine.set_auth_token(TOKEN).expect("store the token");
    engine
}

/// A server shared by the processes' threads.
struct Shared(Arc<Mutex<ReferenceServer>>);

impl Transport for Shared {
    fn send(&mut self, request: &SyncRequest) -> Result<Value, TransportError> {
        Ok(self.0.lock().expect("no thread panicked").handle(request))
    }
}

fn events(engine: &mut Engine) -> Vec<SyncEvent> {
    std::iter::from_fn(|| engine.poll_event()).collect()
}

fn deferred(events: &[SyncEvent]) -> bool {
    events
        .iter()
        .any(|event| matches!(event, SyncEvent::SyncDeferred { .. }))
}

/// Answers every request `engine` hands out until it has none left.
fn answer_all(engine: &mut Engine, server: &mut ReferenceServer) {
    while let Some(request) = engine.poll_request() {
        let answer = server.handle(&request);
        engine
            .handle_response(request.request_id, Ok(answer))
            .expect("the engine takes the answer");
    }
}

// Proves the sync lock: while one process has a push in flight, the other's open leaves
// its ops `sending`, the other's sync is deferred, and its write goes out with the running
// sync, once; the deferred process syncs when its retry comes, after the first let go.
#[test]
fn a_second_process_waits_for_the_running_sync_and_pushes_nothing_twice() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(START_MS);
    let mut server = server();
    let mut app = open(dir.path(), &clock, 1, PlantedDefects::default());
    let first = app
        .create("Item", "s1", json!({ "title": "by the app" }))
        .expect("create");
    app.sync_now().expect("sync");
    let push = app.poll_request().expect("the app's push leaves");

    let mut background = open(dir.path(), &clock, 2, PlantedDefects::default());
    let in_flight: Vec<OpStatus> = background
        .queued_ops()
        .expect("read the queue")
        .iter()
        .map(|op| op.status)
        .collect();
    assert_eq!(
        in_flight,
        [OpStatus::Sending],
        "the second open leaves the first's push in flight alone"
    );
    let second = background
        .create("Item", "s1", json!({ "title": "by the background task" }))
        .expect("the second process writes while the first syncs");
    background.sync_now().expect("sync");
    assert!(deferred(&events(&mut background)), "one sync at a time");
    assert!(background.poll_request().is_none(), "nothing sent");

    let answer = server.handle(&push);
    app.handle_response(push.request_id, Ok(answer))
        .expect("the app takes its answer");
    answer_all(&mut app, &mut server);
    assert!(
        app.queued_ops().expect("read").is_empty(),
        "both writes pushed"
    );
    assert_eq!(server.records(TENANT).len(), 2);

    clock.advance_ms(60_000);
    background.handle_timeout().expect("the retry fires");
    answer_all(&mut background, &mut server);
    assert!(
        events(&mut background).contains(&SyncEvent::SyncCompleted),
        "the deferred process syncs once the lock is free"
    );
    let applied: Vec<&str> = server
        .effects()
        .iter()
        .map(|effect| effect.op_id.as_str())
        .collect();
    assert_eq!(
        applied.len(),
        2,
        "two writes, each applied once: {applied:?}"
    );
    assert_ne!(applied[0], applied[1]);
    for id in [&first, &second] {
        assert!(background
            .get(id)
            .expect("read")
            .expect("kept")
            .server_id
            .is_some());
    }
}

// Proves what a process that died mid-push leaves: the lock goes with it, and the next
// sync of the other process takes the orphaned `sending` ops back and pushes them under
// their own op ids, which the server answers once.
#[test]
fn ops_a_dead_process_left_sending_go_out_with_the_next_sync() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(START_MS);
    let mut server = server();
    let mut background = open(dir.path(), &clock, 1, PlantedDefects::default());
    let mut app = open(dir.path(), &clock, 2, PlantedDefects::default());
    let id = app
        .create("Item", "s1", json!({ "title": "queued by the app" }))
        .expect("create");
    background.sync_now().expect("sync");
    let push = background
        .poll_request()
        .expect("the background push leaves");
    // It reaches the server, then the task is killed before the answer.
    server.handle(&push);
    drop(background);

    app.sync_now().expect("sync");
    answer_all(&mut app, &mut server);
    assert!(events(&mut app).contains(&SyncEvent::SyncCompleted));
    assert!(app.queued_ops().expect("read").is_empty());
    assert_eq!(server.records(TENANT).len(), 1);
    assert_eq!(server.effects().len(), 1, "applied once");
    assert!(app
        .get(&id)
        .expect("read")
        .expect("kept")
        .server_id
        .is_some());
    app.check_invariants().expect("consistent");
}

/// Writes one record from each process in turn, the clock standing still: every stamp
/// the two hand out, in order.
fn stamps_of_interleaved_writes(defects: PlantedDefects) -> Vec<sync_engine::HlcStamp> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(START_MS);
    let mut app = open(dir.path(), &clock, 1, defects);
    let mut background = open(dir.path(), &clock, 2, defects);
    let mut stamps = Vec::new();
    for round in 0..4 {
        for engine in [&mut app, &mut background] {
            let id = engine
                .create("Item", "s1", json!({ "title": format!("round {round}") }))
                .expect("create");
            stamps.push(engine.get(&id).expect("read").expect("kept").updated_at);
        }
    }
    stamps
}

// Proves two processes writing in one millisecond never hand out one stamp: each
// transaction takes in the high-water mark the other persisted. With the planted defect
// (each clock blind to the other's stamps) the same check finds stamps handed out twice.
#[test]
fn two_processes_writing_in_one_millisecond_never_share_a_stamp() {
    let stamps = stamps_of_interleaved_writes(PlantedDefects::default());
    assert!(
        stamps.windows(2).all(|pair| pair[0] < pair[1]),
        "stamps strictly increase across both processes: {stamps:?}"
    );

    let blind = PlantedDefects {
        clock_per_process: true,
        ..PlantedDefects::default()
    };
    let stamps = stamps_of_interleaved_writes(blind);
    let mut unique = stamps.clone();
    unique.sort();
    unique.dedup();
    assert!(
        unique.len() < stamps.len(),
        "the planted defect hands a stamp out twice: {stamps:?}"
    );
}

/// One process on its own thread: writes `writes` records and syncs after every tenth.
fn busy_process(
    dir: std::path::PathBuf,
    clock: ManualClock,
    seed: u64,
    server: Arc<Mutex<ReferenceServer>>,
    writes: usize,
) -> Vec<String> {
    let mut engine = open(&dir, &clock, seed, PlantedDefects::default());
    let mut ids = Vec::new();
    for write in 0..writes {
        let id = engine
            .create("Item", "s1", json!({ "title": format!("{seed}-{write}") }))
            .unwrap_or_else(|error| panic!("process {seed}, write {write}: {error}"));
        if write % 3 == 0 {
            engine
                .update(&id, json!({ "title": format!("{seed}-{write} again") }))
                .unwrap_or_else(|error| panic!("process {seed}, update {write}: {error}"));
        }
        ids.push(id);
        clock.advance_ms(1);
        if write % 10 == 9 {
            engine
                .sync_blocking(&mut Shared(Arc::clone(&server)))
                .unwrap_or_else(|error| panic!("process {seed}, sync {write}: {error}"));
        }
    }
    ids
}

// Proves that two processes racing on real threads never fail for a lock the other holds
// (`busy_timeout`, and transactions that take the write lock as they begin), push every
// write once, and converge: the database ends with every record synced and every stamp
// its own.
#[test]
fn two_processes_on_two_threads_write_and_sync_without_a_busy_failure() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = ManualClock::new(START_MS);
    let server = Arc::new(Mutex::new(server()));
    let writes = 60;
    let threads: Vec<_> = [1, 2]
        .into_iter()
        .map(|seed| {
            let (dir, clock, server) = (dir.path().to_owned(), clock.clone(), Arc::clone(&server));
            std::thread::spawn(move || busy_process(dir, clock, seed, server, writes))
        })
        .collect();
    let ids: Vec<String> = threads
        .into_iter()
        .flat_map(|thread| thread.join().expect("no process failed"))
        .collect();

    // Whatever a deferred sync left queued goes out now.
    let mut engine = open(dir.path(), &clock, 3, PlantedDefects::default());
    engine
        .sync_blocking(&mut Shared(Arc::clone(&server)))
        .expect("the last sync");
    assert!(engine.queued_ops().expect("read").is_empty());
    engine.check_invariants().expect("consistent");
    let records = engine.all_records().expect("read");
    assert_eq!(records.len(), ids.len());
    assert!(records.iter().all(|record| record.server_id.is_some()));
    let mut stamps: Vec<_> = records.iter().map(|record| record.updated_at).collect();
    stamps.sort();
    stamps.dedup();
    assert_eq!(stamps.len(), records.len(), "every stamp handed out once");
    let server = server.lock().expect("no thread panicked");
    assert_eq!(server.records(TENANT).len(), ids.len());
    let creates_and_updates = ids.len() + ids.len().div_ceil(3);
    assert_eq!(
        server.effects().len(),
        creates_and_updates,
        "every write applied once"
    );
    server.check_invariants();
}

// Regression: two processes opening a new database at the same moment both found it
// without a schema and both created it; the second failed with "table records already
// exists". The schema is now read and made under the write lock, in one transaction.
#[test]
fn two_processes_opening_a_new_database_at_once_both_open_it() {
    for attempt in 0..20 {
        let dir = tempfile::tempdir().expect("temporary directory");
        let clock = ManualClock::new(START_MS);
        let start = Arc::new(std::sync::Barrier::new(2));
        let openers: Vec<_> = [1, 2]
            .into_iter()
            .map(|seed| {
                let (dir, clock, start) =
                    (dir.path().to_owned(), clock.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    open(&dir, &clock, seed, PlantedDefects::default())
                })
            })
            .collect();
        for opener in openers {
            let engine = opener
                .join()
                .unwrap_or_else(|_| panic!("attempt {attempt}: an open failed"));
            engine.check_invariants().expect("consistent");
        }
    }
}
