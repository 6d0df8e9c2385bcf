//! Tenant ids and the file each tenant's database lives in.
//!
//! One tenant, one SQLite file in a directory the caller gives: `{prefix}{stem}`, where the
//! stem is the tenant id itself when it is all lower case and does not end like a SQLite
//! companion file (`-wal`, `-shm`, `-journal`), and otherwise the lower-cased id, a dot,
//! and the hex mask of its upper-case positions (`Acme` → `acme.1`). The promise: two
//! tenant ids never share a file — not the database, not a companion — even on a
//! case-insensitive file system (APFS, HFS+, NTFS). This module decides which names are
//! safe; it never opens or deletes files itself (`legacy_names.rs` moves old ones).

use crate::engine::PlantedDefects;
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
    /// The simulator's planted file-handling defects; all off in an app.
    planted: PlantedDefects,
}

impl DbLocation {
    pub fn new(dir: impl Into<PathBuf>) -> DbLocation {
        DbLocation {
            dir: dir.into(),
            prefix: DEFAULT_DB_PREFIX.to_owned(),
            planted: PlantedDefects::default(),
        }
    }

    /// Plants the file-handling defects of `defects` (simulator self-tests only).
    #[doc(hidden)]
    #[cfg(feature = "sim")]
    pub fn with_planted_defects(mut self, defects: PlantedDefects) -> DbLocation {
        self.planted = defects;
        self
    }

    pub(crate) fn planted(&self) -> PlantedDefects {
        self.planted
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

    /// The main database file of `tenant`: `{prefix}{stem}` (see the module header).
    pub fn db_path(&self, tenant: &TenantId) -> PathBuf {
        let stem = if self.planted.lossy_tenant_file_name {
            tenant.as_str().to_ascii_lowercase().replace('-', "_")
        } else {
            file_stem(tenant)
        };
        let path = self.dir.join(format!("{}{stem}", self.prefix));
        assert_eq!(path.parent(), Some(self.dir.as_path()));
        path
    }

    /// Where versions before the case-safe mapping kept `tenant`'s database:
    /// `{prefix}{tenantId}`. Equal to [`DbLocation::db_path`] for most ids.
    pub fn legacy_db_path(&self, tenant: &TenantId) -> PathBuf {
        self.dir.join(format!("{}{}", self.prefix, tenant.as_str()))
    }

    /// Every file SQLite may create for `tenant`: the database, its rollback journal,
    /// and the WAL and shared-memory files.
    pub fn db_files(&self, tenant: &TenantId) -> [PathBuf; 4] {
        with_companions(self.db_path(tenant))
    }

    /// The file whose operating-system lock says a process syncs `tenant`'s database
    /// (`sync_lock.rs`): `{db_path}.sync-lock`, a name no tenant's database can have (a
    /// stem's one dot is followed by hex digits only). The drop of the tenant removes it.
    pub fn sync_lock_path(&self, tenant: &TenantId) -> PathBuf {
        self.beside(tenant, ".sync-lock")
    }

    /// The clock's high-water mark kept outside `tenant`'s database (`clock_mark.rs`):
    /// `{db_path}.clock` (see [`DbLocation::sync_lock_path`] for why no database has it).
    pub fn clock_mark_path(&self, tenant: &TenantId) -> PathBuf {
        self.beside(tenant, ".clock")
    }

    /// The file whose operating-system lock a process holds while it sets `tenant`'s
    /// database up at open: `{db_path}.open-lock` (see [`DbLocation::sync_lock_path`]).
    pub fn open_lock_path(&self, tenant: &TenantId) -> PathBuf {
        self.beside(tenant, ".open-lock")
    }

    /// Where [`recover_corrupt_database`](crate::recover_corrupt_database) keeps a damaged
    /// database of `tenant` for support: `{db_path}.corrupt`. No tenant's database has
    /// that name: a stem holds at most one dot, followed by hex digits only. The drop of
    /// the tenant (a logout) removes it with the database.
    pub fn corrupt_aside_path(&self, tenant: &TenantId) -> PathBuf {
        self.beside(tenant, CORRUPT_ASIDE_SUFFIX)
    }

    /// `tenant`'s database path with `suffix` appended: a file that goes with it.
    fn beside(&self, tenant: &TenantId, suffix: &str) -> PathBuf {
        let mut name = self.db_path(tenant).into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    }

    /// The damaged database kept aside and its companions, as [`DbLocation::db_files`].
    pub fn corrupt_aside_files(&self, tenant: &TenantId) -> [PathBuf; 4] {
        with_companions(self.corrupt_aside_path(tenant))
    }

    /// [`DbLocation::db_files`] under the legacy name.
    pub fn legacy_db_files(&self, tenant: &TenantId) -> [PathBuf; 4] {
        with_companions(self.legacy_db_path(tenant))
    }
}

/// What a damaged database kept aside adds to its name (see
/// [`DbLocation::corrupt_aside_path`]).
pub const CORRUPT_ASIDE_SUFFIX: &str = ".corrupt";

/// The suffixes SQLite appends to a database's name for the files beside it.
pub const COMPANION_SUFFIXES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The companions of `main` (WAL, shared memory, rollback journal), then `main` itself.
fn with_companions(main: PathBuf) -> [PathBuf; 4] {
    let with_suffix = |suffix: &str| {
        let mut name = main.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    [
        with_suffix(COMPANION_SUFFIXES[0]),
        with_suffix(COMPANION_SUFFIXES[1]),
        with_suffix(COMPANION_SUFFIXES[2]),
        main,
    ]
}

/// The file-name form of a tenant id, injective under case folding. An all-lower-case id
/// that does not end like a companion file keeps its name (as every id did before this
/// mapping). Any other id becomes its lower-case form, a dot (never in an id, so the two
/// forms cannot meet) and the lower-case hex mask of its upper-case positions; such a name
/// ends in a hex digit, so it never ends like a companion either, and no tenant's database
/// is another tenant's WAL.
fn file_stem(tenant: &TenantId) -> String {
    let id = tenant.as_str();
    let upper_mask = id
        .bytes()
        .enumerate()
        .filter(|(_, byte)| byte.is_ascii_uppercase())
        .fold(0u64, |mask, (at, _)| mask | 1 << at);
    let companion_like = COMPANION_SUFFIXES
        .iter()
        .any(|suffix| id.to_ascii_lowercase().ends_with(suffix));
    if upper_mask == 0 && !companion_like {
        id.to_owned()
    } else {
        format!("{}.{upper_mask:x}", id.to_ascii_lowercase())
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
        let custom = location.clone().with_prefix("app_").unwrap();
        assert_eq!(
            custom.db_path(&tenant),
            PathBuf::from("/data/dbs/app_acme-42_x")
        );
        assert!(DbLocation::new("/d").with_prefix("../x").is_err());
        for (id, file) in [
            ("Acme", "trackhub_db_acme.1"),
            ("x-wal", "trackhub_db_x-wal.0"),
        ] {
            let tenant = TenantId::parse(id).unwrap();
            assert_eq!(location.db_path(&tenant), Path::new("/data/dbs").join(file));
        }
    }

    /// A file name as a case-insensitive file system (APFS, HFS+, NTFS) compares it:
    /// upper-casing first also folds `ſ` and the Kelvin sign onto ASCII letters.
    fn folded(path: &Path) -> String {
        path.to_string_lossy().to_uppercase().to_lowercase()
    }

    /// The first file two tenants would share on a case-insensitive file system.
    fn shared_file(location: &DbLocation, a: &TenantId, b: &TenantId) -> Option<String> {
        let theirs: Vec<String> = location.db_files(b).iter().map(|p| folded(p)).collect();
        location
            .db_files(a)
            .iter()
            .map(|p| folded(p))
            .find(|name| theirs.contains(name))
    }

    #[test]
    fn tenants_never_share_a_file_even_on_case_insensitive_file_systems() {
        // Regression: the file name was the prefix and the raw id, so `Acme` and `acme`
        // opened one database on APFS or NTFS, and the database of tenant `x-wal` was
        // tenant `x`'s write-ahead log on every file system.
        let location = DbLocation::new("/data/dbs");
        let max = "Z".repeat(64);
        let max_folded = "z".repeat(64);
        for (a, b) in [
            ("Acme", "acme"),
            ("ACME", "acme"),
            ("aCmE-1", "AcMe-1"),
            ("x", "x-wal"),
            ("x", "x-shm"),
            ("x", "x-journal"),
            ("x", "X-WAL"),
            ("X", "x-Journal"),
            (max.as_str(), max_folded.as_str()),
        ] {
            let (a, b) = (TenantId::parse(a).unwrap(), TenantId::parse(b).unwrap());
            assert_eq!(shared_file(&location, &a, &b), None, "{a} and {b}");
        }
    }

    proptest::proptest! {
        #[test]
        fn distinct_ids_map_to_disjoint_file_sets_under_case_folding(
            a in "[A-Za-z0-9_-]{1,64}",
            edits in proptest::collection::vec((0usize..64, 0u8..4), 1..4),
        ) {
            // `b` is `a` with a few characters flipped in case, swapped between `-` and
            // `_`, or a companion suffix appended: the ids most likely to collide.
            let mut b: Vec<char> = a.chars().collect();
            for (at, kind) in edits {
                let at = at % b.len();
                match kind {
                    0 => b[at] = if b[at].is_ascii_uppercase() {
                        b[at].to_ascii_lowercase()
                    } else {
                        b[at].to_ascii_uppercase()
                    },
                    1 => b[at] = match b[at] { '-' => '_', '_' => '-', other => other },
                    2 => b.truncate(at.max(1)),
                    _ => b.extend("-wal".chars()),
                }
            }
            let b: String = b.into_iter().take(64).collect();
            let location = DbLocation::new("/d").with_prefix("App_").unwrap();
            let (ta, tb) = (TenantId::parse(&a).unwrap(), TenantId::parse(&b).unwrap());
            if ta != tb {
                proptest::prop_assert_eq!(shared_file(&location, &ta, &tb), None);
            }
        }
    }
}
