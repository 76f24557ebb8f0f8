//! API tokens and pairing codes, kept as SHA-256 only; each creation and revocation is an event.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::log::append_in;
use super::{Sealer, Store, StoreError, timestamp};
use crate::model::token::{Role, Token};
use crate::proof::events;

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
    append_in(tx, sealer, at, events::token(&token, events::Kind::TokenCreated))?;
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

impl Store {
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
            append_in(&tx, &self.sealer, at, events::token(token, events::Kind::TokenRevoked))?;
        }
        tx.commit()?;
        Ok(token)
    }
}
