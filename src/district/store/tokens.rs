//! The office's tokens: `push` (a station's, owner = its id) and `clerk` (may acknowledge alarms,
//! owner = the clerk's name), kept as SHA-256, revoked and never deleted; each made and revoked
//! in the office's log.

use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};
use serde::Serialize;

use super::{DistrictStore, DistrictStoreError, ledger, rfc3339};

/// A token the office made, as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfficeToken {
    pub id: i64,
    /// `push` or `clerk`.
    pub role: String,
    /// The station (push) or the clerk's name.
    pub owner: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

fn office_token(r: &Row) -> rusqlite::Result<OfficeToken> {
    Ok(OfficeToken {
        id: r.get(0)?,
        role: r.get(1)?,
        owner: r.get(2)?,
        created_at: rfc3339(r.get(3)?),
        revoked_at: r.get::<_, Option<i64>>(4)?.map(rfc3339),
    })
}

impl DistrictStore {
    /// Stores a token the office made (by its SHA-256): `push` for a station, `clerk` for a
    /// clerk. Returns its id.
    pub fn add_token(&mut self, role: &str, owner: &str, sha256: &str, now: i64) -> Result<i64, DistrictStoreError> {
        let key = self.ledger_key()?.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO tokens (role, owner, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![role, owner, sha256, now],
        )?;
        let id = tx.last_insert_rowid();
        let fields = ledger::fields([
            ("token_id", id.into()),
            ("role", role.into()),
            ("owner", owner.into()),
            ("token_sha256", sha256.into()),
        ]);
        ledger::append(&tx, &key, "token", fields, now)?;
        tx.commit()?;
        Ok(id)
    }

    /// The active tokens of `role`: (owner, SHA-256).
    pub fn active_tokens(&self, role: &str) -> Result<Vec<(String, String)>, DistrictStoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT owner, token_sha256 FROM tokens WHERE role = ?1 AND revoked_at IS NULL")?;
        Ok(stmt.query_map([role], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?)
    }

    /// Every token the office made (never the secrets).
    pub fn tokens(&self) -> Result<Vec<OfficeToken>, DistrictStoreError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id, role, owner, created_at, revoked_at FROM tokens ORDER BY id")?;
        Ok(stmt.query_map([], office_token)?.collect::<Result<_, _>>()?)
    }

    /// Revokes a token: it stops working at once. `None` if there is no such token.
    pub fn revoke_token(&mut self, id: i64, now: i64) -> Result<Option<OfficeToken>, DistrictStoreError> {
        let key = self.ledger_key()?.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if tx.execute("UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL", params![id, now])? == 1
        {
            ledger::append(&tx, &key, "revoke", ledger::fields([("token_id", id.into())]), now)?;
        }
        tx.commit()?;
        Ok(self
            .conn
            .query_row("SELECT id, role, owner, created_at, revoked_at FROM tokens WHERE id = ?1", [id], office_token)
            .optional()?)
    }
}
