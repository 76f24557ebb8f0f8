//! The station's memory: one SQLite file, `<data_dir>/loa.sqlite`.
//!
//! This is the only module that touches rusqlite. The store is synchronous; the daemon keeps it
//! on its own thread ([`StoreHandle`]) so the async runtime never waits on disk. Schema changes
//! are migrations (rusqlite_migration), never edits of old ones.
//!
//! The proof log is appended here and nowhere else: each append reads the last hash and writes
//! the next event inside one IMMEDIATE transaction, so the daemon and a CLI command writing at the
//! same time still produce one linear, gapless chain. Clip changes and their events commit together.

mod handle;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};
use serde_json::Value;

pub use handle::StoreHandle;

use crate::model::clip::{AudioFacts, Clip, ClipMeta};
use crate::model::token::{Role, Token};
use crate::proof::events;
use crate::proof::{Fields, GENESIS_HASH, KeyError, LogKeys, SealedEvent, StationKey};

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

const APPEND_ONLY_GUARD: &str = include_str!("append_only.sql");

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
}

/// The outcome of adding audio the library may already hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    New(Clip),
    /// The same SHA-256 is already in the library; nothing was added.
    Existing(Clip),
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

/// The daemon's last sign of life, kept outside the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub at: i64,
    /// The airing in progress then (its `airing_started` seq) and how far it had played.
    pub airing: Option<(i64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Wanted {
    NextSlot,
    Now,
}

impl Wanted {
    pub fn as_str(self) -> &'static str {
        match self {
            Wanted::NextSlot => "next_slot",
            Wanted::Now => "now",
        }
    }
}

/// A bulletin an operator asked to air.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct QueueItem {
    pub id: i64,
    pub clip_id: i64,
    pub when: Wanted,
    pub created_at: String,
    pub taken_at: Option<String>,
}

/// What is queued to air at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingNow {
    pub any: bool,
    pub emergency: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AiringCounts {
    pub by_status: Vec<(String, i64)>,
    /// UTC ms.
    pub last_airing_at: Option<i64>,
}

/// Which events to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventQuery {
    pub after_seq: i64,
    /// UTC milliseconds, inclusive.
    pub from: Option<i64>,
    /// UTC milliseconds, exclusive.
    pub to: Option<i64>,
    pub limit: Option<u32>,
    /// Only events up to this seq (inclusive): a page consistent with a head read before it.
    pub through_seq: Option<i64>,
}

const CLIP_COLUMNS: &str = "id, sha256, title, topic, language, priority, valid_from, valid_until, duration_ms, \
     sample_rate, channels, loudness_lufs, peak_dbfs, true_peak_dbfs, size_bytes, created_at, retired_at";

/// What `Store::backup` copied.
#[derive(Debug, Clone, Copy)]
pub struct BackupSummary {
    pub events: i64,
    pub last_seq: Option<i64>,
    pub clips: i64,
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
fn integrity_findings(conn: &Connection) -> rusqlite::Result<Option<String>> {
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
        let log = log_keys(&conn, i64::MAX)?;
        let key = match choice {
            KeyChoice::Station => StationKey::for_log(data_dir, &log)?,
            KeyChoice::ReplacingLost => StationKey::for_lost_key(data_dir, &log)?,
        };
        Ok(Store { conn, sealer: Sealer { station_id: station_id.to_owned(), key } })
    }

    /// What the log up to `seq` (inclusive) says about its key.
    pub fn log_keys(&self, through_seq: i64) -> Result<LogKeys, StoreError> {
        log_keys(&self.conn, through_seq)
    }

    /// The key in force after event `through_seq` by the log's declarations, if any.
    pub fn declared_key(&self, through_seq: i64) -> Result<Option<String>, StoreError> {
        declared_key(&self.conn, through_seq)
    }

    /// The last event's seq and hash: (0, genesis) for an empty log.
    pub fn head(&self) -> Result<(i64, String), StoreError> {
        let head = self
            .conn
            .query_row("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(head.unwrap_or_else(|| (0, GENESIS_HASH.to_owned())))
    }

    /// The log's first key declaration: its seq and the key the events before it were signed
    /// with (`station_started`/`key_rotated`'s `public_key`, `key_replaced`'s old key, which is
    /// null when a lost key was never declared).
    pub fn first_key_declaration(&self) -> Result<Option<(i64, Option<String>)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, CASE kind WHEN 'key_replaced' THEN json_extract(body, '$.old_public_key') \
                 ELSE json_extract(body, '$.public_key') END FROM events \
                 WHERE kind IN ('station_started', 'key_rotated', 'key_replaced') ORDER BY seq LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Where the station's check of its own chain got to: (seq, hash, key in force after it).
    pub fn chain_checked(&self) -> Result<Option<(i64, String, String)>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT seq, hash, public_key FROM chain_checked WHERE id = 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?)
    }

    pub fn set_chain_checked(&mut self, seq: i64, hash: &str, public_key: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO chain_checked (id, seq, hash, public_key) VALUES (1, ?1, ?2, ?3) ON CONFLICT (id) \
             DO UPDATE SET seq = excluded.seq, hash = excluded.hash, public_key = excluded.public_key",
            params![seq, hash, public_key],
        )?;
        Ok(())
    }

    /// Seqs of the log's `key_replaced` events.
    pub fn key_replacements(&self) -> Result<Vec<i64>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT seq FROM events WHERE kind = 'key_replaced' ORDER BY seq")?;
        let seqs = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(seqs)
    }

    /// When the station's first event was recorded (UTC ms): since then it has existed.
    pub fn first_event_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.conn.query_row("SELECT at FROM events WHERE seq = 1", [], |r| r.get(0)).optional()?)
    }

    /// The stored hash of event `seq`.
    pub fn event_hash(&self, seq: i64) -> Result<Option<String>, StoreError> {
        Ok(self.conn.query_row("SELECT hash FROM events WHERE seq = ?1", [seq], |r| r.get(0)).optional()?)
    }

    /// The earliest damage the log records about itself (`log_damaged`): (seq, why).
    pub fn recorded_damage(&self) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT json_extract(body, '$.damaged_seq'), json_extract(body, '$.reason') FROM events \
                 WHERE kind = 'log_damaged' ORDER BY json_extract(body, '$.damaged_seq') LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Whether a `log_damaged` event already names `seq`.
    pub fn damage_recorded(&self, seq: i64) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM events WHERE kind = 'log_damaged' AND json_extract(body, '$.damaged_seq') = ?1)",
            [seq],
            |r| r.get(0),
        )?)
    }

    /// Puts back the triggers that keep the log append-only if someone removed them, and says
    /// whether any was missing: then the whole log must be checked again.
    pub fn restore_append_only_guard(&mut self) -> Result<bool, StoreError> {
        let present: i64 = self.conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events' \
             AND name IN ('events_are_never_updated', 'events_are_never_deleted')",
            [],
            |r| r.get(0),
        )?;
        if present == 2 {
            return Ok(false);
        }
        self.conn.execute_batch(APPEND_ONLY_GUARD)?;
        Ok(true)
    }

    pub fn public_key_hex(&self) -> String {
        self.sealer.key.public_key_hex()
    }

    pub fn station_id(&self) -> &str {
        &self.sealer.station_id
    }

    /// Appends many events in one transaction (one fsync): still one linear chain.
    pub fn append_batch(
        &mut self,
        events: impl IntoIterator<Item = (DateTime<Utc>, Fields)>,
    ) -> Result<usize, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut count = 0;
        for (at, fields) in events {
            append_in(&tx, &self.sealer, at, fields)?;
            count += 1;
        }
        tx.commit()?;
        Ok(count)
    }

    /// Appends one event at `at`; returns it sealed.
    pub fn append(&mut self, at: DateTime<Utc>, fields: Fields) -> Result<SealedEvent, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let event = append_in(&tx, &self.sealer, at, fields)?;
        tx.commit()?;
        Ok(event)
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
        if added == 1 {
            append_in(&tx, &self.sealer, created_at, events::clip_added(&clip))?;
        }
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
    /// time. `None` when no clip has this id. `reason`: why the station itself set it aside.
    pub fn retire_clip(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<Option<Clip>, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let retired = tx.execute(
            "UPDATE clips SET retired_at = ?2 WHERE id = ?1 AND retired_at IS NULL",
            params![id, timestamp(at)],
        )?;
        let clip =
            tx.query_row(&format!("SELECT {CLIP_COLUMNS} FROM clips WHERE id = ?1"), [id], clip_from_row).optional()?;
        if let (1, Some(clip)) = (retired, &clip) {
            append_in(&tx, &self.sealer, at, events::clip_retired(clip, reason))?;
        }
        tx.commit()?;
        Ok(clip)
    }

    /// Clips that may air on any day (not retired), oldest first.
    pub fn active_clips(&self) -> Result<Vec<Clip>, StoreError> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {CLIP_COLUMNS} FROM clips WHERE retired_at IS NULL ORDER BY id"))?;
        let clips = stmt.query_map([], clip_from_row)?.collect::<Result<_, _>>()?;
        Ok(clips)
    }

    pub fn events(&self, query: EventQuery) -> Result<Vec<SealedEvent>, StoreError> {
        // Time bounds only when asked: `at` is computed from the body, so a plain page by seq
        // stays a primary-key range scan.
        let mut sql = "SELECT seq, body, hash, sig FROM events WHERE seq > ?1 AND seq <= ?5".to_owned();
        if query.from.is_some() {
            sql.push_str(" AND at >= ?2");
        }
        if query.to.is_some() {
            sql.push_str(" AND at < ?3");
        }
        sql.push_str(" ORDER BY seq LIMIT ?4");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let limit = query.limit.map_or(-1, i64::from);
        let rows = stmt.query_map(
            params![query.after_seq, query.from, query.to, limit, query.through_seq.unwrap_or(i64::MAX)],
            event_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per slot, the latest scheduled instant that fired (aired or was recorded missed), UTC ms.
    pub fn last_fired_by_slot(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT slot, max(scheduled_at) FROM events WHERE slot IS NOT NULL \
             AND kind IN ('airing_started', 'slot_missed') GROUP BY slot",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per clip, when it last completed an airing (UTC ms).
    pub fn last_completed_by_clip(&self) -> Result<HashMap<i64, i64>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT clip_id, max(at) FROM events WHERE clip_id IS NOT NULL AND kind = 'airing_ended' \
             AND status = 'completed' GROUP BY clip_id",
        )?;
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Completed airings of `topic` (in `language`, in peak slots when `peak_only`) that ended
    /// in [from, to) UTC ms: what a quota counts.
    pub fn completed_airings(
        &self,
        topic: &str,
        language: Option<&str>,
        peak_only: bool,
        from: i64,
        to: i64,
    ) -> Result<u32, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM events WHERE at >= ?4 AND at < ?5 AND kind = 'airing_ended' AND status = 'completed' \
             AND json_extract(body, '$.topic') = ?1 AND (?2 IS NULL OR json_extract(body, '$.language') = ?2) \
             AND (?3 = 0 OR json_extract(body, '$.peak') = 1)",
            params![topic, language, peak_only, from, to],
            |row| row.get(0),
        )?)
    }

    /// `airing_started` events that have no `airing_ended`: airings a crash cut off.
    pub fn unfinished_airings(&self) -> Result<Vec<SealedEvent>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT s.seq, s.body, s.hash, s.sig FROM events s WHERE s.kind = 'airing_started' AND NOT EXISTS \
             (SELECT 1 FROM events e WHERE e.airing_seq = s.seq AND e.kind = 'airing_ended') ORDER BY s.seq",
        )?;
        let rows = stmt.query_map([], event_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a token by its SHA-256 (the secret itself is never stored).
    pub fn create_token(
        &mut self,
        role: Role,
        label: &str,
        token_sha256: &str,
        at: DateTime<Utc>,
    ) -> Result<Token, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let token = insert_token(&tx, &self.sealer, role.as_str(), label, token_sha256, at)?;
        tx.commit()?;
        Ok(token)
    }

    /// Records a one-time pairing code (by its SHA-256) that will make a `role` token.
    pub fn create_pairing(
        &mut self,
        role: Role,
        label: &str,
        code_sha256: &str,
        at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO pairings (code_sha256, role, label, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![code_sha256, role.as_str(), label, timestamp(at), expires_at.timestamp_millis()],
        )?;
        Ok(())
    }

    /// Redeems a pairing code: if it is known, unused and not expired at `at`, makes its token
    /// (stored as `token_sha256`, recorded in the log) and marks the code used, in one
    /// transaction, so a code works once. `None` otherwise.
    pub fn redeem_pairing(
        &mut self,
        code_sha256: &str,
        token_sha256: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Token>, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let pairing: Option<(i64, String, String)> = tx
            .query_row(
                "SELECT id, role, label FROM pairings WHERE code_sha256 = ?1 AND token_id IS NULL AND expires_at > ?2",
                params![code_sha256, at.timestamp_millis()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((pairing, role, label)) = pairing else { return Ok(None) };
        let token = insert_token(&tx, &self.sealer, &role, &label, token_sha256, at)?;
        tx.execute("UPDATE pairings SET token_id = ?2 WHERE id = ?1", params![pairing, token.id])?;
        tx.commit()?;
        Ok(Some(token))
    }

    pub fn tokens(&self) -> Result<Vec<Token>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id"))?;
        let tokens = stmt.query_map([], token_from_row)?.collect::<Result<_, _>>()?;
        Ok(tokens)
    }

    /// Revokes a token (idempotent); `None` when no token has this id.
    pub fn revoke_token(&mut self, id: i64, at: DateTime<Utc>) -> Result<Option<Token>, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let revoked = tx.execute(
            "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, timestamp(at)],
        )?;
        let token = tx
            .query_row(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"), [id], token_from_row)
            .optional()?;
        if let (1, Some(token)) = (revoked, &token) {
            append_in(&tx, &self.sealer, at, events::token(token, "token_revoked"))?;
        }
        tx.commit()?;
        Ok(token)
    }

    pub fn enqueue(&mut self, clip_id: i64, when: Wanted, at: DateTime<Utc>) -> Result<QueueItem, StoreError> {
        self.conn.execute(
            "INSERT INTO queue (clip_id, wanted, created_at) VALUES (?1, ?2, ?3)",
            params![clip_id, when.as_str(), timestamp(at)],
        )?;
        let id = self.conn.last_insert_rowid();
        Ok(self.conn.query_row(&format!("SELECT {QUEUE_COLUMNS} FROM queue WHERE id = ?1"), [id], queue_from_row)?)
    }

    /// Queue items not yet taken: emergencies first, then in the order they were queued.
    pub fn pending_queue(&self, when: Wanted) -> Result<Vec<QueueItem>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {QUEUE_COLUMNS} FROM queue WHERE taken_at IS NULL AND wanted = ?1 \
             ORDER BY (SELECT priority FROM clips WHERE clips.id = queue.clip_id) = 'emergency' DESC, id"
        ))?;
        let items = stmt.query_map([when.as_str()], queue_from_row)?.collect::<Result<_, _>>()?;
        Ok(items)
    }

    /// Whether anything is queued "now", and whether an emergency is.
    pub fn pending_now(&self) -> Result<PendingNow, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) > 0, coalesce(max(c.priority = 'emergency'), 0) FROM queue q JOIN clips c ON c.id = q.clip_id \
             WHERE q.taken_at IS NULL AND q.wanted = 'now'",
            [],
            |r| Ok(PendingNow { any: r.get(0)?, emergency: r.get(1)? }),
        )?)
    }

    pub fn take_queue_item(&mut self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE queue SET taken_at = ?2 WHERE id = ?1 AND taken_at IS NULL", params![id, timestamp(at)])?;
        Ok(())
    }

    /// Airing and missed-slot counts by status, and when the latest airing ended, for metrics.
    pub fn airing_counts(&self) -> Result<AiringCounts, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT status, count(*), max(at) FROM events WHERE kind IN ('airing_ended', 'slot_missed') GROUP BY status ORDER BY status",
        )?;
        let rows: Vec<(String, i64, Option<i64>)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        let last_airing_at = rows.iter().filter(|(status, _, _)| status != "missed").filter_map(|(_, _, at)| *at).max();
        Ok(AiringCounts { by_status: rows.into_iter().map(|(status, n, _)| (status, n)).collect(), last_airing_at })
    }

    /// Folds the write-ahead log into the database and truncates it, so the log file does not
    /// stay at its high-water mark on a small SD card. Returns false when a reader (a CLI
    /// command) held it back; the next one catches up.
    pub fn checkpoint(&self) -> Result<bool, StoreError> {
        let busy: i64 = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// Copies the database to `destination` with SQLite's online backup: a consistent
    /// snapshot even while the daemon writes. The copy is checked before it is named.
    pub fn backup(&self, destination: &Path) -> Result<BackupSummary, StoreError> {
        let partial = destination.with_extension("partial");
        let result = (|| {
            let mut copy = Connection::open(&partial)?;
            {
                use rusqlite::backup::{Backup, StepResult};
                let backup = Backup::new(&self.conn, &mut copy)?;
                // All pages in one step (-1): a live daemon's writes would restart a stepwise copy.
                let mut attempts = 0;
                while backup.step(-1)? != StepResult::Done {
                    attempts += 1;
                    if attempts > 100 {
                        return Err(StoreError::Sql(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some("the database stayed locked for 10 s; try again".into()),
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            copy.pragma_update(None, "journal_mode", "DELETE")?; // one self-contained file
            if let Some(finding) = integrity_findings(&copy)? {
                return Err(StoreError::Damaged { path: partial.clone(), finding });
            }
            let (events, last_seq) =
                copy.query_row("SELECT count(*), max(seq) FROM events", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let clips = copy.query_row("SELECT count(*) FROM clips", [], |r| r.get(0))?;
            copy.close().map_err(|(_, e)| e)?;
            std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(StoreError::File)?;
            std::fs::rename(&partial, destination).map_err(StoreError::File)?;
            Ok(BackupSummary { events, last_seq, clips })
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    /// Whether the database answers a trivial query (for health checks).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// The latest `at` in the proof log, or the last heartbeat if later: the station has been
    /// alive at least until then, so a clock reading earlier is wrong.
    pub fn last_recorded_at(&self) -> Result<Option<i64>, StoreError> {
        let at = self.conn.query_row(
            "SELECT max(coalesce((SELECT max(at) FROM events), 0), coalesce((SELECT at FROM heartbeat WHERE id = 1), 0))",
            [],
            |row| row.get::<_, i64>(0),
        )?;
        Ok((at > 0).then_some(at))
    }

    pub fn heartbeat(&self) -> Result<Option<Heartbeat>, StoreError> {
        let row = self
            .conn
            .query_row("SELECT at, airing_seq, played_ms FROM heartbeat WHERE id = 1", [], |row| {
                let airing: Option<i64> = row.get(1)?;
                let played: Option<i64> = row.get(2)?;
                Ok(Heartbeat { at: row.get(0)?, airing: airing.map(|seq| (seq, played.unwrap_or(0) as u64)) })
            })
            .optional()?;
        Ok(row)
    }

    pub fn beat(&mut self, beat: Heartbeat) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO heartbeat (id, at, airing_seq, played_ms) VALUES (1, ?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET at = excluded.at, airing_seq = excluded.airing_seq, played_ms = excluded.played_ms",
            params![beat.at, beat.airing.map(|(seq, _)| seq), beat.airing.map(|(_, ms)| ms as i64)],
        )?;
        Ok(())
    }
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

fn append_in(
    tx: &Transaction,
    sealer: &Sealer,
    at: DateTime<Utc>,
    mut fields: Fields,
) -> Result<SealedEvent, StoreError> {
    // The tip, and the key it puts in force if it changed the key: a writer that opened its key
    // before a rotation must not sign after it.
    let last: Option<(i64, String, Option<String>)> = tx
        .query_row(
            "SELECT seq, hash, CASE kind WHEN 'key_rotated' THEN json_extract(body, '$.new_public_key') \
             WHEN 'key_replaced' THEN json_extract(body, '$.public_key') END FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (last_seq, prev_hash, changed_to) = last.unwrap_or((0, GENESIS_HASH.to_owned(), None));
    if let Some(declared) = changed_to.filter(|key| *key != sealer.key.public_key_hex()) {
        let path = PathBuf::from(crate::proof::KEY_FILE);
        return Err(KeyError::Mismatch { path, declared: Some(declared), found: sealer.key.public_key_hex() }.into());
    }
    fields.insert("station_id".into(), Value::from(sealer.station_id.as_str()));
    fields.insert("at".into(), Value::from(at.timestamp_millis()));
    let event = sealer.key.seal(last_seq + 1, &prev_hash, fields);
    tx.execute(
        "INSERT INTO events (seq, body, hash, sig) VALUES (?1, ?2, ?3, ?4)",
        params![event.seq, event.body, event.hash, event.sig],
    )?;
    Ok(event)
}

/// The key the log's latest declaration up to `through_seq` puts in force.
fn declared_key(conn: &Connection, through_seq: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT CASE kind WHEN 'key_rotated' THEN json_extract(body, '$.new_public_key') \
             ELSE json_extract(body, '$.public_key') END FROM events \
             WHERE seq <= ?1 AND kind IN ('station_started', 'key_rotated', 'key_replaced') ORDER BY seq DESC LIMIT 1",
            [through_seq],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// What the log up to `through_seq` says about its key (see `proof::key`).
fn log_keys(conn: &Connection, through_seq: i64) -> Result<LogKeys, StoreError> {
    // Seqs are gapless from 1: the last one is the count (and a lookup, not a scan).
    let events =
        conn.query_row("SELECT coalesce(max(seq), 0) FROM events WHERE seq <= ?1", [through_seq], |r| r.get(0))?;
    let declared = declared_key(conn, through_seq)?;
    let tip = conn
        .query_row(
            "SELECT seq, body, hash, sig FROM events WHERE seq <= ?1 ORDER BY seq DESC LIMIT 1",
            [through_seq],
            event_from_row,
        )
        .optional()?;
    Ok(LogKeys { events, declared, tip })
}

/// Stores a token (by its SHA-256) and its `token_created` event, inside `tx`.
fn insert_token(
    tx: &Transaction,
    sealer: &Sealer,
    role: &str,
    label: &str,
    token_sha256: &str,
    at: DateTime<Utc>,
) -> Result<Token, StoreError> {
    tx.execute(
        "INSERT INTO tokens (role, label, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![role, label, token_sha256, timestamp(at)],
    )?;
    let token = tx.query_row(
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"),
        [tx.last_insert_rowid()],
        token_from_row,
    )?;
    append_in(tx, sealer, at, events::token(&token, "token_created"))?;
    Ok(token)
}

const TOKEN_COLUMNS: &str = "id, role, label, token_sha256, created_at, revoked_at";

fn token_from_row(row: &Row) -> rusqlite::Result<Token> {
    let role: String = row.get(1)?;
    Ok(Token {
        id: row.get(0)?,
        role: role
            .parse()
            .map_err(|e: String| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into()))?,
        label: row.get(2)?,
        token_sha256: row.get(3)?,
        created_at: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}

const QUEUE_COLUMNS: &str = "id, clip_id, wanted, created_at, taken_at";

fn queue_from_row(row: &Row) -> rusqlite::Result<QueueItem> {
    let wanted: String = row.get(2)?;
    Ok(QueueItem {
        id: row.get(0)?,
        clip_id: row.get(1)?,
        when: if wanted == "now" { Wanted::Now } else { Wanted::NextSlot },
        created_at: row.get(3)?,
        taken_at: row.get(4)?,
    })
}

fn event_from_row(row: &Row) -> rusqlite::Result<SealedEvent> {
    Ok(SealedEvent { seq: row.get(0)?, body: row.get(1)?, hash: row.get(2)?, sig: row.get(3)? })
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
