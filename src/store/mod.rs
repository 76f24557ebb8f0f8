//! The station's memory: one SQLite file, `<data_dir>/loa.sqlite`.
//!
//! This is the only module that touches rusqlite. The store is synchronous; the daemon keeps it
//! on its own thread ([`StoreHandle`]) so the async runtime never waits on disk. Schema changes
//! are migrations (rusqlite_migration), never edits of old ones.
//!
//! The proof log is appended here and nowhere else: each append reads the last hash and writes
//! the next event inside one IMMEDIATE transaction, so the daemon and a CLI command writing at the
//! same time still produce one linear, gapless chain. Clip changes and their events commit together.

mod access;
mod bulletins;
mod clips;
mod handle;
mod log;
mod queue;
mod upkeep;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension};
use rusqlite_migration::{M, Migrations};

pub use bulletins::OfficeBulletin;
pub use clips::Inserted;
pub use handle::StoreHandle;
pub use log::{AiringCounts, EventQuery};
pub use queue::PendingNow;
pub use upkeep::{BackupSummary, Heartbeat};

use crate::proof::{KeyError, StationKey};

pub const DATABASE_FILE: &str = "loa.sqlite";

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("v1_clips.sql")),
        M::up(include_str!("v2_events.sql")),
        M::up(include_str!("v3_tokens_queue.sql")),
        M::up(include_str!("v4_chain_checked.sql")),
        M::up(include_str!("v5_pairings.sql")),
    ])
});

pub(super) const APPEND_ONLY_GUARD: &str = include_str!("append_only.sql");

/// Writers (the daemon and a CLI command run beside it) wait this long for each other.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the station database {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("cannot bring the station database up to date: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("station database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("station database file error: {0}")]
    File(std::io::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(
        "the station database {} is damaged ({finding}). loa will not run on it and will not replace it: \
         its proof log is evidence. To recover: stop loa and keep a copy of {}; then copy your latest \
         `loa backup` file over {} (station.key and clips/ stay as they are), or salvage what is readable \
         with `sqlite3 {} .recover | sqlite3 recovered.sqlite` and move that into place",
        path.display(), path.parent().unwrap_or(path).display(), path.display(), path.display()
    )]
    Damaged { path: PathBuf, finding: String },
    #[error(
        "station.id is \"{configured}\", but the proof log in {} was made by station \"{logged}\": a log \
         belongs to one station. If this box is still \"{logged}\", put id = \"{logged}\" back in the config; \
         if it is a new station, give it a new station.data_dir and keep the old one (it is evidence)",
        path.display()
    )]
    OtherStation { path: PathBuf, configured: String, logged: String },
    /// An event its kind does not allow: never signed, never written (a defect of the caller).
    #[error("refused to write an event the proof log's verifier would refuse: {0}")]
    Unverifiable(String),
}

impl StoreError {
    /// A mistake in the configuration rather than in the store (the CLI exits 2 for it).
    pub fn is_config(&self) -> bool {
        matches!(self, StoreError::OtherStation { .. })
    }
}

/// Who seals events: the station's id (in every event) and its signing key.
struct Sealer {
    station_id: String,
    key: StationKey,
}

/// Which key a store is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChoice {
    /// `station.key`, which must sign the log (made only for an empty log).
    Station,
    /// A new key to continue a log whose key is lost (`loa key replace --lost`).
    ReplacingLost,
}

pub struct Store {
    conn: Connection,
    sealer: Sealer,
}

/// Checks the database in `data_dir` (if there is one yet) with `PRAGMA integrity_check`
/// before anything writes to it. The daemon refuses to start on a damaged store.
pub fn check_integrity(data_dir: &Path) -> Result<(), StoreError> {
    let path = data_dir.join(DATABASE_FILE);
    if !path.exists() {
        return Ok(());
    }
    let damaged = |finding: String| StoreError::Damaged { path: path.clone(), finding };
    let conn = Connection::open(&path).map_err(|source| StoreError::Open { path: path.clone(), source })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    integrity_findings(&conn).map_err(|e| damaged(e.to_string()))?.map_or(Ok(()), |finding| Err(damaged(finding)))
}

/// `None` when `integrity_check` says ok, else its first findings.
pub(super) fn integrity_findings(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare("PRAGMA integrity_check(5)")?;
    let findings: Vec<String> = stmt.query_map([], |row| row.get(0))?.collect::<Result<_, _>>()?;
    if findings == ["ok"] {
        return Ok(None);
    }
    // One line for the operator: SQLite's findings may span lines and open with a header.
    let lines =
        findings.iter().flat_map(|f| f.lines()).map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("***"));
    Ok(Some(lines.take(3).collect::<Vec<_>>().join("; ")))
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir`, applies pending migrations and
    /// loads the station key, which must be the key the log is signed under (see `proof::key`).
    pub fn open(data_dir: &Path, station_id: &str) -> Result<Store, StoreError> {
        Store::open_with(data_dir, station_id, KeyChoice::Station)
    }

    pub fn open_with(data_dir: &Path, station_id: &str, choice: KeyChoice) -> Result<Store, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        let open_error = |source| StoreError::Open { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_error)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_error)?;
        migrate(data_dir, &mut conn)?;
        // Another id in the config than the log's is a configuration mistake, refused before
        // anything is read or written under the new id.
        same_station(&conn, data_dir, station_id)?;
        let log = log::log_keys(&conn, i64::MAX)?;
        let key = match choice {
            KeyChoice::Station => StationKey::for_log(data_dir, &log)?,
            KeyChoice::ReplacingLost => StationKey::for_lost_key(data_dir, &log)?,
        };
        Ok(Store { conn, sealer: Sealer { station_id: station_id.to_owned(), key } })
    }

    pub fn public_key_hex(&self) -> String {
        self.sealer.key.public_key_hex()
    }

    pub fn station_id(&self) -> &str {
        &self.sealer.station_id
    }
}

/// The station the log in `conn` belongs to (its first event names it) must be `station_id`.
fn same_station(conn: &Connection, data_dir: &Path, station_id: &str) -> Result<(), StoreError> {
    let logged: Option<String> = conn
        .query_row("SELECT json_extract(body, '$.station_id') FROM events ORDER BY seq LIMIT 1", [], |r| r.get(0))
        .optional()?
        .flatten();
    match logged.filter(|logged| logged != station_id) {
        Some(logged) => {
            Err(StoreError::OtherStation { path: data_dir.to_owned(), configured: station_id.to_owned(), logged })
        }
        None => Ok(()),
    }
}

/// `check-config`'s look at `data_dir`, which creates nothing: whether a log there belongs to
/// another station than `station_id`.
pub fn check_station_id(data_dir: &Path, station_id: &str) -> Result<(), StoreError> {
    let path = data_dir.join(DATABASE_FILE);
    if !path.exists() {
        return Ok(());
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| StoreError::Open { path: path.clone(), source })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let has_events: bool =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'events'", [], |r| r.get::<_, i64>(0))? > 0;
    if has_events { same_station(&conn, data_dir, station_id) } else { Ok(()) }
}

/// Brings the schema up to date under an exclusive lock: the daemon and a CLI command starting
/// together on a new station must not both create the tables.
fn migrate(data_dir: &Path, conn: &mut Connection) -> Result<(), StoreError> {
    let lock_path = data_dir.join(".migrate.lock");
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| {
        StoreError::Open { path: lock_path.clone(), source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)) }
    })?;
    // Released when `lock` is dropped.
    if let Err(e) = crate::ops::sys::flock(&lock, libc::LOCK_EX) {
        return Err(StoreError::Open { path: lock_path, source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)) });
    }
    // Switching to WAL takes a lock that waits for no busy handler; once set it stays set, so
    // only a new database (under this lock) ever switches.
    let mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    MIGRATIONS.to_latest(conn)?;
    Ok(())
}

/// Every instant is stored as RFC 3339 UTC with milliseconds, so text order is time order.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::clip::{AudioFacts, ClipMeta};
    use crate::model::queue::Wanted;
    use crate::proof::events;
    use chrono::NaiveDate;

    use crate::model::clip::Priority;

    fn open(dir: &Path) -> Store {
        Store::open(dir, "test").unwrap()
    }

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().expect("migrations apply cleanly to an empty database");
    }

    fn meta() -> ClipMeta {
        ClipMeta {
            title: "Bản tin".into(),
            topic: "cchc".into(),
            language: "vi".into(),
            priority: Priority::Normal,
            valid_from: None,
            valid_until: NaiveDate::from_ymd_opt(2026, 12, 31),
        }
    }

    fn audio() -> AudioFacts {
        AudioFacts {
            duration_ms: 2000,
            sample_rate: 44100,
            channels: 2,
            loudness_lufs: -16.0,
            peak_dbfs: -1.0,
            true_peak_dbfs: -0.9,
        }
    }

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn opens_in_wal_mode_with_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mode: String = store.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        let fk: i64 = store.conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
        assert_eq!((mode.as_str(), fk), ("wal", 1));
    }

    #[test]
    fn clips_round_trip_and_are_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let Inserted::New(clip) = store.insert_clip(SHA, 1234, &meta(), &audio(), Utc::now()).unwrap() else {
            panic!("new clip")
        };
        assert_eq!((clip.meta.clone(), clip.audio.clone(), clip.size_bytes), (meta(), audio(), 1234));
        assert_eq!(store.clip(clip.id).unwrap(), Some(clip.clone()));
        let refused = store.conn.execute("DELETE FROM clips", []).unwrap_err().to_string();
        assert!(refused.contains("never deleted"), "{refused}");
        assert_eq!(store.clips().unwrap().len(), 1);
    }

    #[test]
    fn queue_items_wait_until_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let Inserted::New(clip) = store.insert_clip(SHA, 1, &meta(), &audio(), Utc::now()).unwrap() else { panic!() };
        let now = store.enqueue(clip.id, Wanted::Now, Utc::now()).unwrap();
        store.enqueue(clip.id, Wanted::NextSlot, Utc::now()).unwrap();
        assert_eq!(store.pending_queue(Wanted::Now).unwrap(), std::slice::from_ref(&now));
        store.take_queue_item(now.id, Utc::now()).unwrap();
        assert!(store.pending_queue(Wanted::Now).unwrap().is_empty());
        assert_eq!(store.pending_queue(Wanted::NextSlot).unwrap().len(), 1);
    }

    #[test]
    fn events_are_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.append(Utc::now(), events::station_stopped("test")).unwrap();
        for sql in ["UPDATE events SET sig = sig", "DELETE FROM events"] {
            let refused = store.conn.execute(sql, []).unwrap_err().to_string();
            assert!(refused.contains("append-only"), "{sql}: {refused}");
        }
    }

    #[test]
    fn a_checkpoint_empties_the_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        for _ in 0..50 {
            store.append(Utc::now(), events::station_stopped("test")).unwrap();
        }
        let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
        assert!(std::fs::metadata(&wal).unwrap().len() > 0, "appends go to the WAL first");
        assert!(store.checkpoint().unwrap(), "no reader holds it back");
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "TRUNCATE leaves an empty WAL");
        assert_eq!(store.events(EventQuery::default()).unwrap().len(), 50, "nothing lost");
    }

    #[test]
    fn a_backup_is_a_checked_self_contained_copy_and_never_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.insert_clip(SHA, 1000, &meta(), &audio(), Utc::now()).unwrap();
        store.append(Utc::now(), events::station_stopped("test")).unwrap();
        let copy = dir.path().join("copy.sqlite");
        let summary = store.backup(&copy).unwrap();
        assert_eq!((summary.events, summary.last_seq, summary.clips), (2, Some(2), 1));
        assert!(!dir.path().join("copy.partial").exists());
        let copied = Connection::open(&copy).unwrap();
        let mode: String = copied.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete", "no -wal file needed beside the copy");
        let bodies = |c: &Connection| -> Vec<String> {
            c.prepare("SELECT body FROM events ORDER BY seq")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(bodies(&copied), bodies(&store.conn));
        assert!(check_integrity(dir.path()).is_ok());

        let nowhere = dir.path().join("no/such/dir/copy.sqlite");
        assert!(store.backup(&nowhere).is_err());
        assert!(!nowhere.with_extension("partial").exists());
    }

    #[test]
    fn a_damaged_database_is_refused_with_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = open(dir.path());
            for i in 0..200 {
                store.append(Utc::now(), events::station_stopped(&format!("padding {i:0>200}"))).unwrap();
            }
            store.checkpoint().unwrap();
        }
        let path = dir.path().join(DATABASE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 16 * 4096, "several pages to damage");
        bytes[8 * 4096..12 * 4096].fill(0xA5); // whole b-tree pages of the proof log
        std::fs::write(&path, &bytes).unwrap();

        let message = check_integrity(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains("is damaged") && message.contains("loa backup") && message.contains(".recover"),
            "{message}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "the damaged file is left exactly as found");
        assert!(check_integrity(&dir.path().join("new-station")).is_ok(), "no database yet is fine");
    }

    #[test]
    fn concurrent_inserts_of_the_same_audio_make_one_clip() {
        let dir = tempfile::tempdir().unwrap();
        open(dir.path());
        let outcomes: Vec<Inserted> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| open(dir.path()).insert_clip(SHA, 1, &meta(), &audio(), Utc::now()).unwrap()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let new = outcomes.iter().filter(|o| matches!(o, Inserted::New(_))).count();
        assert_eq!(new, 1, "{outcomes:?}");
        let store = open(dir.path());
        assert_eq!(store.clips().unwrap().len(), 1);
        let events = store.events(EventQuery::default()).unwrap();
        assert_eq!(events.len(), 1, "one clip_added event, not one per attempt");
    }
}
