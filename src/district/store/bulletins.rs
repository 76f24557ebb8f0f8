//! The bulletins the office sent and withdrew, kept only in its own log (`bulletin` and
//! `bulletin_withdrawn` events carrying the signed lines): no table to drift from the log, so
//! the memory check that verifies the log covers them, and a bulletin's `id` is the seq of the
//! event that sent it.

use rusqlite::{OptionalExtension, TransactionBehavior};
use serde::Serialize;

use super::{DistrictStore, DistrictStoreError, ledger, rfc3339};

/// A bulletin as the office's log holds it: the signed manifest, and the signed withdrawal if
/// it was taken back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentBulletin {
    pub id: i64,
    pub sent_at: String,
    pub manifest: String,
    pub withdrawal: Option<String>,
}

/// What withdrawing a bulletin came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Withdrawn {
    Now(String),
    Already,
    NoSuchBulletin,
}

const NOTICES: &str = "SELECT seq, json_extract(body, '$.kind'), json_extract(body, '$.at'), \
    json_extract(body, '$.id'), json_extract(body, '$.line') FROM ledger \
    WHERE json_extract(body, '$.kind') IN ('bulletin', 'bulletin_withdrawn') ORDER BY seq";

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

    /// Every bulletin sent, in order, each with its withdrawal.
    pub fn bulletins(&self) -> Result<Vec<SentBulletin>, DistrictStoreError> {
        let mut stmt = self.conn.prepare_cached(NOTICES)?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, String>(4)?))
        })?;
        let mut sent: Vec<SentBulletin> = Vec::new();
        for row in rows {
            let (kind, at, id, line) = row?;
            match kind.as_str() {
                "bulletin" => sent.push(SentBulletin { id, sent_at: rfc3339(at), manifest: line, withdrawal: None }),
                _ => {
                    if let Some(bulletin) = sent.iter_mut().find(|b| b.id == id) {
                        bulletin.withdrawal = Some(line);
                    }
                }
            }
        }
        Ok(sent)
    }
}
