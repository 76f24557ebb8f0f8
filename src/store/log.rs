//! The proof log's table (`events`) and what is read from it: appends (one IMMEDIATE
//! transaction each: last hash, then the next event, so concurrent writers keep one gapless
//! chain), pages, the keys the log declares, the self-check's checkpoint, and the facts the
//! engine resumes from (last slot fired, unfinished airings).

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use serde_json::Value;

use super::{APPEND_ONLY_GUARD, Sealer, Store, StoreError};
use crate::proof::{Fields, GENESIS_HASH, KeyError, LogKeys, SealedEvent};

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

#[derive(Debug, Clone, PartialEq)]
pub struct AiringCounts {
    pub by_status: Vec<(String, i64)>,
    /// UTC ms.
    pub last_airing_at: Option<i64>,
}

pub(super) fn append_in(
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
    // The station never signs what its own verifier would refuse: the log stays verifiable
    // whatever a caller (or a line from the network) put into the fields.
    let object = crate::proof::read_body(&event.body).map_err(|why| StoreError::Unverifiable(why.to_string()))?;
    crate::proof::schema::check(&object).map_err(|e| StoreError::Unverifiable(e.to_string()))?;
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
pub(super) fn log_keys(conn: &Connection, through_seq: i64) -> Result<LogKeys, StoreError> {
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

fn event_from_row(row: &Row) -> rusqlite::Result<SealedEvent> {
    Ok(SealedEvent { seq: row.get(0)?, body: row.get(1)?, hash: row.get(2)?, sig: row.get(3)? })
}

impl Store {
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

    /// The station's signed answer to an office's `challenge`: its head `(seq, hash)` now.
    pub fn head_statement(&self, head: (i64, &str), challenge: &str, now: DateTime<Utc>) -> String {
        crate::proof::head::answer(&self.sealer.key, &self.sealer.station_id, head, challenge, now)
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

    /// Whether the log already says it is behind the office's receipt for `receipt_seq`.
    pub fn receipt_gap_recorded(&self, receipt_seq: i64) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM events WHERE kind = 'log_behind_receipt' \
             AND json_extract(body, '$.receipt_seq') = ?1)",
            [receipt_seq],
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

    /// Per slot, the latest scheduled instant that fired (aired or was recorded missed, the last
    /// of a missed run), UTC ms.
    pub fn last_fired_by_slot(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT slot, max(coalesce(json_extract(body, '$.last_scheduled_at'), scheduled_at)) FROM events \
             WHERE slot IS NOT NULL AND kind IN ('airing_started', 'slot_missed') GROUP BY slot",
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

    /// Airing and missed-slot counts by status, and when the latest airing ended, for metrics.
    pub fn airing_counts(&self) -> Result<AiringCounts, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT status, sum(CASE kind WHEN 'slot_missed' THEN coalesce(json_extract(body, '$.count'), 1) ELSE 1 END), \
             max(at) FROM events WHERE kind IN ('airing_ended', 'slot_missed') GROUP BY status ORDER BY status",
        )?;
        let rows: Vec<(String, i64, Option<i64>)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        let last_airing_at = rows.iter().filter(|(status, _, _)| status != "missed").filter_map(|(_, _, at)| *at).max();
        Ok(AiringCounts { by_status: rows.into_iter().map(|(status, n, _)| (status, n)).collect(), last_airing_at })
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
}
