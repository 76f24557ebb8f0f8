//! The station's memory: one SQLite file, `<data_dir>/loa.sqlite`.
//!
//! This is the only module that touches rusqlite. The store is synchronous; the daemon keeps it
//! on its own thread so the async runtime never waits on disk. Schema changes are migrations
//! (rusqlite_migration), never edits of old ones.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};

use crate::clip::{AudioFacts, Clip, ClipMeta};

pub const DATABASE_FILE: &str = "loa.sqlite";

static MIGRATIONS: LazyLock<Migrations<'static>> =
    LazyLock::new(|| Migrations::new(vec![M::up(include_str!("migrations.sql"))]));

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
}

/// The outcome of adding audio the library may already hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    New(Clip),
    /// The same SHA-256 is already in the library; nothing was added.
    Existing(Clip),
}

pub struct Store {
    conn: Connection,
}

const CLIP_COLUMNS: &str = "id, sha256, title, topic, language, priority, valid_from, valid_until, duration_ms, \
     sample_rate, channels, loudness_lufs, peak_dbfs, true_peak_dbfs, size_bytes, created_at, retired_at";

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DATABASE_FILE);
        let open_error = |source| StoreError::Open { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_error)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_error)?;
        MIGRATIONS.to_latest(&mut conn)?;
        Ok(Store { conn })
    }

    /// Adds a clip, or returns the one already holding this SHA-256. Atomic against concurrent
    /// writers: exactly one of two simultaneous inserts of the same audio creates it.
    pub fn insert_clip(
        &mut self,
        sha256: &str,
        size_bytes: u64,
        meta: &ClipMeta,
        audio: &AudioFacts,
        created_at: DateTime<Utc>,
    ) -> Result<Inserted, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let added = tx.execute(
            "INSERT INTO clips (sha256, title, topic, language, priority, valid_from, valid_until, duration_ms, \
             sample_rate, channels, loudness_lufs, peak_dbfs, true_peak_dbfs, size_bytes, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT (sha256) DO NOTHING",
            params![
                sha256,
                meta.title.trim(),
                meta.topic,
                meta.language,
                meta.priority.as_str(),
                meta.valid_from.map(|d| d.to_string()),
                meta.valid_until.map(|d| d.to_string()),
                audio.duration_ms as i64,
                audio.sample_rate,
                audio.channels,
                audio.loudness_lufs,
                audio.peak_dbfs,
                audio.true_peak_dbfs,
                size_bytes as i64,
                timestamp(created_at),
            ],
        )?;
        let clip =
            tx.query_row(&format!("SELECT {CLIP_COLUMNS} FROM clips WHERE sha256 = ?1"), [sha256], clip_from_row)?;
        tx.commit()?;
        Ok(if added == 1 { Inserted::New(clip) } else { Inserted::Existing(clip) })
    }

    pub fn clip(&self, id: i64) -> Result<Option<Clip>, StoreError> {
        let sql = format!("SELECT {CLIP_COLUMNS} FROM clips WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], clip_from_row).optional()?)
    }

    pub fn clip_by_sha256(&self, sha256: &str) -> Result<Option<Clip>, StoreError> {
        let sql = format!("SELECT {CLIP_COLUMNS} FROM clips WHERE sha256 = ?1");
        Ok(self.conn.query_row(&sql, [sha256], clip_from_row).optional()?)
    }

    /// All clips, retired ones included, oldest first.
    pub fn clips(&self) -> Result<Vec<Clip>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {CLIP_COLUMNS} FROM clips ORDER BY id"))?;
        let clips = stmt.query_map([], clip_from_row)?.collect::<Result<_, _>>()?;
        Ok(clips)
    }

    /// Marks a clip retired (kept forever, never aired again). Retiring twice keeps the first
    /// time. `None` when no clip has this id.
    pub fn retire_clip(&mut self, id: i64, at: DateTime<Utc>) -> Result<Option<Clip>, StoreError> {
        self.conn.execute(
            "UPDATE clips SET retired_at = ?2 WHERE id = ?1 AND retired_at IS NULL",
            params![id, timestamp(at)],
        )?;
        self.clip(id)
    }
}

/// Every instant is stored as RFC 3339 UTC with milliseconds, so text order is time order.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn clip_from_row(row: &Row) -> rusqlite::Result<Clip> {
    let date = |index: usize| -> rusqlite::Result<Option<NaiveDate>> {
        row.get::<_, Option<String>>(index)?
            .map(|text| {
                text.parse().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
                })
            })
            .transpose()
    };
    let priority: String = row.get(5)?;
    Ok(Clip {
        id: row.get(0)?,
        sha256: row.get(1)?,
        meta: ClipMeta {
            title: row.get(2)?,
            topic: row.get(3)?,
            language: row.get(4)?,
            priority: priority.parse().map_err(|e: String| {
                rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, e.into())
            })?,
            valid_from: date(6)?,
            valid_until: date(7)?,
        },
        audio: AudioFacts {
            duration_ms: row.get::<_, i64>(8)? as u64,
            sample_rate: row.get(9)?,
            channels: row.get(10)?,
            loudness_lufs: row.get(11)?,
            peak_dbfs: row.get(12)?,
            true_peak_dbfs: row.get(13)?,
        },
        size_bytes: row.get::<_, i64>(14)? as u64,
        created_at: row.get(15)?,
        retired_at: row.get(16)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clip::Priority;

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
        let store = Store::open(dir.path()).unwrap();
        let mode: String = store.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        let fk: i64 = store.conn.pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
        assert_eq!((mode.as_str(), fk), ("wal", 1));
    }

    #[test]
    fn clips_round_trip_and_are_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
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
    fn concurrent_inserts_of_the_same_audio_make_one_clip() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap();
        let outcomes: Vec<Inserted> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        Store::open(dir.path()).unwrap().insert_clip(SHA, 1, &meta(), &audio(), Utc::now()).unwrap()
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let new = outcomes.iter().filter(|o| matches!(o, Inserted::New(_))).count();
        assert_eq!(new, 1, "{outcomes:?}");
        assert_eq!(Store::open(dir.path()).unwrap().clips().unwrap().len(), 1);
    }
}
