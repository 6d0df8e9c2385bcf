//! Storage failures reach the app as the engine's own [`StorageError`], whose kind says
//! what happened, without naming the SQLite binding's types; a damaged file at open is
//! the typed `OpenError::Corrupt`.

use sync_engine::testing::EPOCH_MS;
use sync_engine::{
    DbLocation, Engine, EngineOptions, EntityRegistry, Env, ManualClock, OpenError, SeededEntropy,
    TenantId,
};

// Proves a tenant file that is not a database is refused at open with the typed
// `Corrupt` error naming the file (issue 14; `corrupt_open.rs` has the recovery), and the
// file is left as it was.
#[test]
fn a_file_that_is_not_a_database_is_refused_as_corrupt() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let location = DbLocation::new(dir.path());
    let tenant = TenantId::parse("acme").expect("a valid tenant id");
    let path = location.db_path(&tenant);
    let garbage = vec![0x5a_u8; 8192];
    std::fs::write(&path, &garbage).expect("write the file");

    let registry = EntityRegistry::with_defaults(&["Item"]).expect("a valid entity name");
    let options = EngineOptions::new(location, tenant, registry);
    let env = Env::new(ManualClock::new(EPOCH_MS), SeededEntropy::new(1));
    match Engine::open(options, env) {
        Err(OpenError::Corrupt {
            path: named,
            detail,
        }) => {
            assert_eq!(named, path);
            assert!(detail.contains("not a database"), "{detail}");
        }
        other => panic!("expected a corrupt database, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).expect("read the file"), garbage);
}
