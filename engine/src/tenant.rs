//! Tenant ids and the file each tenant's database lives in.
//!
//! One tenant, one SQLite file: `{prefix}{tenantId}` in a directory the caller gives.
//! This module decides which names are safe; it never opens or deletes files itself.

use crate::error::OpenError;
use std::path::{Path, PathBuf};

/// The default file-name prefix, as the specification names tenant databases.
pub const DEFAULT_DB_PREFIX: &str = "trackhub_db_";
const NAME_LEN_MAX: usize = 64;

/// A validated tenant id: 1–64 characters from `[A-Za-z0-9_-]`, so it can never name a
/// path outside the database directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<TenantId, OpenError> {
        if is_safe_name(raw) {
            Ok(TenantId(raw.to_owned()))
        } else {
            Err(OpenError::InvalidTenantId(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A safe name: 1-64 characters from `[A-Za-z0-9_-]`. Tenant ids and space ids follow it
/// (the schema's CHECK on `space_id` columns states the same rule).
pub(crate) fn is_safe_name(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= NAME_LEN_MAX
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where tenant databases live and how their files are named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbLocation {
    dir: PathBuf,
    prefix: String,
}

impl DbLocation {
    pub fn new(dir: impl Into<PathBuf>) -> DbLocation {
        DbLocation {
            dir: dir.into(),
            prefix: DEFAULT_DB_PREFIX.to_owned(),
        }
    }

    /// A custom file-name prefix (same character rules as a tenant id; may be empty).
    pub fn with_prefix(mut self, prefix: &str) -> Result<DbLocation, OpenError> {
        if !prefix.is_empty() && !is_safe_name(prefix) {
            return Err(OpenError::InvalidDbPrefix(prefix.to_owned()));
        }
        self.prefix = prefix.to_owned();
        Ok(self)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The main database file of `tenant`.
    pub fn db_path(&self, tenant: &TenantId) -> PathBuf {
        let path = self.dir.join(format!("{}{}", self.prefix, tenant.as_str()));
        assert_eq!(path.parent(), Some(self.dir.as_path()));
        path
    }

    /// Every file SQLite may create for `tenant`: the database, its rollback journal,
    /// and the WAL and shared-memory files.
    pub fn db_files(&self, tenant: &TenantId) -> [PathBuf; 4] {
        let main = self.db_path(tenant);
        let with_suffix = |suffix: &str| {
            let mut name = main.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        [
            with_suffix("-wal"),
            with_suffix("-shm"),
            with_suffix("-journal"),
            main,
        ]
    }
}

#[cfg(test)]
mod tests {
    //! Tenant ids that could escape the directory, or are empty or malformed, are refused.
    use super::*;

    #[test]
    fn rejects_unsafe_tenant_ids() {
        for bad in [
            "",
            "../etc",
            "a/b",
            "a\\b",
            "..",
            ".",
            "a b",
            "tenant\0",
            "é",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(TenantId::parse(bad), Err(OpenError::InvalidTenantId(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn accepts_plain_ids_and_names_files_inside_dir() {
        let tenant = TenantId::parse("acme-42_x").unwrap();
        let location = DbLocation::new("/data/dbs");
        assert_eq!(
            location.db_path(&tenant),
            PathBuf::from("/data/dbs/trackhub_db_acme-42_x")
        );
        let custom = location.with_prefix("app_").unwrap();
        assert_eq!(
            custom.db_path(&tenant),
            PathBuf::from("/data/dbs/app_acme-42_x")
        );
        assert!(DbLocation::new("/d").with_prefix("../x").is_err());
    }
}
