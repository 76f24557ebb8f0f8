//! The office's tables read whole, for the check of its memory (`district::memory`): what each
//! row says, to be compared with what the office's log proves.

use rusqlite::params;

use super::{DistrictStore, DistrictStoreError};
use crate::proof::SealedEvent;

/// A `stations` row.
#[derive(Debug, Clone, PartialEq)]
pub struct StationRow {
    pub id: String,
    pub head_seq: i64,
    pub head_hash: String,
    pub key: String,
    pub context: String,
    pub last_ok_at: Option<i64>,
    pub enrolled_at: i64,
}

/// An `alarms` row with the SHA-256 of its evidence (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRow {
    pub id: i64,
    pub station_id: String,
    pub kind: String,
    pub seq: Option<i64>,
    pub detail: String,
    pub note: Option<String>,
    pub evidence_sha256: Option<String>,
}

/// A `tokens` row.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub id: i64,
    pub role: String,
    pub owner: String,
    pub sha256: String,
    pub revoked: bool,
}

/// Every append-only guard the office's database must have.
pub const GUARDS: [&str; 10] = [
    "events_are_never_updated",
    "events_are_never_deleted",
    "alarms_are_never_deleted",
    "alarms_change_only_by_acknowledgement",
    "evidence_is_kept",
    "implausible_is_never_updated",
    "implausible_is_never_deleted",
    "ledger_is_never_updated",
    "ledger_is_never_deleted",
    "tokens_are_never_deleted",
];

impl DistrictStore {
    /// The guards (triggers) that are missing.
    pub fn missing_guards(&self) -> Result<Vec<&'static str>, DistrictStoreError> {
        let mut stmt = self.conn.prepare("SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = ?1")?;
        let mut missing = Vec::new();
        for guard in GUARDS {
            if !stmt.exists([guard])? {
                missing.push(guard);
            }
        }
        Ok(missing)
    }

    pub fn station_rows(&self) -> Result<Vec<StationRow>, DistrictStoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, head_seq, head_hash, key, plausibility, last_ok_at, enrolled_at FROM stations ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(StationRow {
                id: r.get(0)?,
                head_seq: r.get(1)?,
                head_hash: r.get(2)?,
                key: r.get(3)?,
                context: r.get(4)?,
                last_ok_at: r.get(5)?,
                enrolled_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn alarm_rows(&self) -> Result<Vec<AlarmRow>, DistrictStoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.id, a.station_id, a.kind, a.seq, a.detail, a.note, e.line FROM alarms a \
             LEFT JOIN evidence e ON e.alarm_id = a.id ORDER BY a.id, e.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AlarmRow {
                id: r.get(0)?,
                station_id: r.get(1)?,
                kind: r.get(2)?,
                seq: r.get(3)?,
                detail: r.get(4)?,
                note: r.get(5)?,
                evidence_sha256: r.get::<_, Option<String>>(6)?.map(|line| crate::proof::sha256_hex(line.as_bytes())),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn token_rows(&self) -> Result<Vec<TokenRow>, DistrictStoreError> {
        let mut stmt = self.conn.prepare("SELECT id, role, owner, token_sha256, revoked_at FROM tokens ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(TokenRow {
                id: r.get(0)?,
                role: r.get(1)?,
                owner: r.get(2)?,
                sha256: r.get(3)?,
                revoked: r.get::<_, Option<i64>>(4)?.is_some(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every implausible finding: (station, seq, why).
    pub fn implausible_rows(&self) -> Result<Vec<(String, i64, String)>, DistrictStoreError> {
        let mut stmt = self.conn.prepare("SELECT station_id, seq, why FROM implausible ORDER BY station_id, seq")?;
        Ok(stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?)
    }

    /// Held events of a station after `after_seq`, at most `limit`, in order.
    pub fn held_events(
        &self,
        station_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<SealedEvent>, DistrictStoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, body, hash, sig FROM events WHERE station_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![station_id, after_seq, limit], |r| {
            Ok(SealedEvent { seq: r.get(0)?, body: r.get(1)?, hash: r.get(2)?, sig: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stations with held events that the office's log never enrolled.
    pub fn stations_with_events(&self) -> Result<Vec<String>, DistrictStoreError> {
        let mut stmt = self.conn.prepare("SELECT DISTINCT station_id FROM events ORDER BY station_id")?;
        Ok(stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?)
    }

    /// From the next read on, this connection sees the database as it was then, until it is
    /// dropped: a check that reads many tables judges one state, not a mix of before and after
    /// a concurrent ingest.
    pub fn begin_snapshot(&self) -> Result<(), DistrictStoreError> {
        self.conn.execute_batch("BEGIN DEFERRED")?;
        self.conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
        Ok(())
    }

    /// The first held event of `station_id` after `seq`, if any.
    pub fn first_held_after(&self, station_id: &str, seq: i64) -> Result<Option<i64>, DistrictStoreError> {
        let first = self.conn.query_row(
            "SELECT min(seq) FROM events WHERE station_id = ?1 AND seq > ?2",
            params![station_id, seq],
            |r| r.get(0),
        )?;
        Ok(first)
    }
}
