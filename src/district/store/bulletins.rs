//! The bulletins the office sent and withdrew, kept only in its own log (`bulletin` and
//! `bulletin_withdrawn` events carrying the signed lines): no table to drift from the log, so
//! the memory check that verifies the log covers them, and a bulletin's `id` is the seq of the
//! event that sent it.

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::{DistrictStore, DistrictStoreError, HeldEvent, ledger};

/// A line of the office's feed as its log holds it: a bulletin's signed manifest (`seq` =
/// `id`) or a signed withdrawal of bulletin `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedNotice {
    pub seq: i64,
    pub id: i64,
    pub withdrawal: bool,
    pub at: i64,
    pub line: String,
}

/// What withdrawing a bulletin came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Withdrawn {
    Now(String),
    Already,
    NoSuchBulletin,
}

/// After a seq (the primary key: a long-poll reads only what is new).
const NOTICES: &str = "SELECT seq, json_extract(body, '$.kind'), json_extract(body, '$.at'), \
    json_extract(body, '$.id'), json_extract(body, '$.line') FROM ledger \
    WHERE seq > ?1 AND json_extract(body, '$.kind') IN ('bulletin', 'bulletin_withdrawn') ORDER BY seq";

impl DistrictStore {
    /// Sends a bulletin: `sign` makes its signed manifest for the id it will have (the seq of
    /// the event that records it), in the same transaction. Returns the id.
    pub fn send_bulletin(&mut self, sign: impl FnOnce(i64) -> String, now: i64) -> Result<i64, DistrictStoreError> {
        let key = self.ledger_key()?.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id: i64 = tx.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger", [], |r| r.get(0))?;
        let fields = ledger::fields([("id", id.into()), ("line", sign(id).into())]);
        ledger::append(&tx, &key, "bulletin", fields, now)?;
        tx.commit()?;
        Ok(id)
    }

    /// The last seq of the office's log.
    pub fn ledger_head(&self) -> Result<i64, DistrictStoreError> {
        Ok(self.conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM ledger", [], |r| r.get(0))?)
    }

    /// The last event of the office's log: its seq and hash (0 and the genesis hash when empty).
    pub fn ledger_head_event(&self) -> Result<(i64, String), DistrictStoreError> {
        let last = self
            .conn
            .query_row("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(last.unwrap_or_else(|| (0, crate::proof::GENESIS_HASH.to_owned())))
    }

    /// The hash of the office's event at `seq`, if its log reaches it.
    pub fn ledger_hash(&self, seq: i64) -> Result<Option<String>, DistrictStoreError> {
        Ok(self.conn.query_row("SELECT hash FROM ledger WHERE seq = ?1", [seq], |r| r.get(0)).optional()?)
    }

    /// The highest seq a recovery (`office_recovered`) declared lost: no id up to it is used again.
    pub fn recovered_through(&self) -> Result<i64, DistrictStoreError> {
        let sql = "SELECT COALESCE(MAX(json_extract(body, '$.lost_through')), 0) FROM ledger \
                   WHERE json_extract(body, '$.kind') = 'office_recovered'";
        Ok(self.conn.query_row(sql, [], |r| r.get(0))?)
    }

    /// Records a recovery past `lost_through`: `office_recovered` events, one at least, until the
    /// log's head reaches it, so the next bulletin's id is beyond every one a station has seen.
    /// Returns the new head.
    pub fn recover_through(&mut self, lost_through: i64, stations: &str, now: i64) -> Result<i64, DistrictStoreError> {
        let key = self.ledger_key()?.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let head = |tx: &rusqlite::Transaction| -> rusqlite::Result<i64> {
            tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM ledger", [], |r| r.get(0))
        };
        let fields = || ledger::fields([("lost_through", lost_through.into()), ("stations", stations.into())]);
        ledger::append(&tx, &key, "office_recovered", fields(), now)?;
        while head(&tx)? < lost_through {
            ledger::append(&tx, &key, "office_recovered", fields(), now)?;
        }
        let reached = head(&tx)?;
        tx.commit()?;
        Ok(reached)
    }

    /// Withdraws bulletin `id` with the signed line `sign` makes, once.
    pub fn withdraw_bulletin(
        &mut self,
        id: i64,
        sign: impl FnOnce() -> String,
        now: i64,
    ) -> Result<Withdrawn, DistrictStoreError> {
        let key = self.ledger_key()?.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let kind = |kind: &str| {
            tx.query_row(
                "SELECT 1 FROM ledger WHERE json_extract(body, '$.kind') = ?1 AND json_extract(body, '$.id') = ?2",
                rusqlite::params![kind, id],
                |_| Ok(()),
            )
            .optional()
        };
        if kind("bulletin")?.is_none() {
            return Ok(Withdrawn::NoSuchBulletin);
        }
        if kind("bulletin_withdrawn")?.is_some() {
            return Ok(Withdrawn::Already);
        }
        let line = sign();
        let fields = ledger::fields([("id", id.into()), ("line", line.clone().into())]);
        ledger::append(&tx, &key, "bulletin_withdrawn", fields, now)?;
        tx.commit()?;
        Ok(Withdrawn::Now(line))
    }

    /// The bulletins sent and withdrawn after `after` (a seq of the office's log), in order.
    pub fn notices(&self, after: i64) -> Result<Vec<LoggedNotice>, DistrictStoreError> {
        let mut stmt = self.conn.prepare_cached(NOTICES)?;
        let rows = stmt.query_map([after], |r| {
            Ok(LoggedNotice {
                seq: r.get(0)?,
                withdrawal: r.get::<_, String>(1)? == "bulletin_withdrawn",
                at: r.get(2)?,
                id: r.get(3)?,
                line: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What a station's held log says of bulletin `id`: its `bulletin_*` events, and the
    /// endings of the airings of the clip it became (after it was received), in order.
    pub fn bulletin_trail(&self, station_id: &str, id: i64) -> Result<Vec<HeldEvent>, DistrictStoreError> {
        let mut stmt = self.conn.prepare_cached(
            "WITH clips AS (SELECT seq, json_extract(body, '$.clip_id') AS clip_id FROM events \
               WHERE station_id = ?1 AND kind = 'bulletin_received' AND json_extract(body, '$.bulletin_id') = ?2) \
             SELECT seq, at, kind, body, hash, sig FROM events WHERE station_id = ?1 AND ( \
               (kind IN ('bulletin_received', 'bulletin_refused', 'bulletin_withdrawn') \
                 AND json_extract(body, '$.bulletin_id') = ?2) \
               OR (kind = 'airing_ended' AND EXISTS (SELECT 1 FROM clips \
                 WHERE clips.clip_id = json_extract(events.body, '$.clip_id') AND events.seq > clips.seq))) \
             ORDER BY seq",
        )?;
        Ok(stmt.query_map(rusqlite::params![station_id, id], super::held_event)?.collect::<Result<_, _>>()?)
    }
}
