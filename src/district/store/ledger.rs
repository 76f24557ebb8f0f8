//! The office's own log: each change to its memory (a station's head moved, an alarm raised or
//! acknowledged, a token made or revoked, a receipt signed, a finding kept) is appended, in the
//! same transaction as the change, as an event chained and signed exactly as a station's are
//! (RFC 8785, SHA-256, Ed25519 by `district.key`; ARCHITECTURE.md, "The office's log"). The
//! tables are what the office reads; the log is what proves them: `district::memory` replays it
//! and finds any table edited behind the office's back.

use rusqlite::{OptionalExtension, Transaction};
use serde_json::Value;

use crate::proof::{Fields, GENESIS_HASH, SealedEvent, StationKey};

/// Appends an office event of `kind` with `fields` at `at` (UTC ms) to the log, inside `tx`.
pub(super) fn append(
    tx: &Transaction,
    key: &StationKey,
    kind: &str,
    mut fields: Fields,
    at: i64,
) -> rusqlite::Result<()> {
    let (last_seq, prev): (i64, String) = tx
        .query_row("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or_else(|| (0, GENESIS_HASH.to_owned()));
    fields.insert("kind".into(), Value::from(kind));
    fields.insert("at".into(), Value::from(at));
    let sealed = key.seal(last_seq + 1, &prev, fields);
    tx.prepare_cached("INSERT INTO ledger (seq, body, hash, sig) VALUES (?1, ?2, ?3, ?4)")?
        .execute(rusqlite::params![sealed.seq, sealed.body, sealed.hash, sealed.sig])?;
    Ok(())
}

/// Fields from `(name, value)` pairs.
pub(super) fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Fields {
    pairs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

/// The whole log, in order.
pub(super) fn read(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<SealedEvent>> {
    let mut stmt = conn.prepare("SELECT seq, body, hash, sig FROM ledger ORDER BY seq")?;
    stmt.query_map([], |r| Ok(SealedEvent { seq: r.get(0)?, body: r.get(1)?, hash: r.get(2)?, sig: r.get(3)? }))?
        .collect()
}
