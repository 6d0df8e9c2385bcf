//! Storage failures reach the app as the engine's own [`StorageError`], whose kind says
//! what happened, without naming the SQLite binding's types.

use sync_engine::testing::EPOCH_MS;
use sync_engine::{
    DbLocation, Engine, EngineOptions, EntityRegistry, Env, ManualClock, OpenError, SeededEntropy,
    StorageErrorKind, TenantId,
};

// Proves a tenant file that is not a database is reported as corrupt storage, and the
// file is left as it was.
#[test]
fn a_file_that_is_not_a_database_is_corrupt_storage() {
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
        Err(OpenError::Storage(error)) => {
            assert_eq!(error.kind(), StorageErrorKind::Corrupt, "{error}");
            assert!(std::error::Error::source(&error).is_some());
        }
        other => panic!("expected corrupt storage, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).expect("read the file"), garbage);
}
