//! The head statement: a station's answer to an office's challenge, signed with the station's
//! key: "my log ends at seq N with hash H, now, in answer to challenge C". A page of events proves
//! what the log holds, not that the station served it just now: a proxy that replays the page the
//! office already has would look like a clean, quiet contact forever. The challenge is fresh for
//! every pull, so only the station's key, now, can answer it.
//!
//! Encoded as a receipt is (canonical bytes, `hash`, `sig` spliced into one line; ARCHITECTURE.md,
//! "Head statement"), outside any chain.

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use super::{Fields, StationKey, check_statement, sign_statement};

/// The `kind` of a head statement.
pub const KIND: &str = "head";

/// What a head statement says.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadStatement {
    pub station_id: String,
    pub head_seq: i64,
    pub head_hash: String,
    /// The office's challenge, 64 lowercase hex digits.
    pub challenge: String,
    /// UTC ms the station signed it.
    pub at: i64,
}

/// Whether `text` is a challenge as an office makes one: 32 random bytes in lowercase hex.
pub fn is_challenge(text: &str) -> bool {
    super::is_hex64(text)
}

/// A fresh challenge (32 random bytes, hex).
pub fn new_challenge() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("no randomness for a challenge: {e}")))?;
    Ok(hex::encode(bytes))
}

impl HeadStatement {
    pub fn sign(&self, key: &StationKey) -> String {
        let mut fields = Fields::new();
        fields.insert("kind".into(), Value::from(KIND));
        fields.insert("station_id".into(), Value::from(self.station_id.as_str()));
        fields.insert("head_seq".into(), Value::from(self.head_seq));
        fields.insert("head_hash".into(), Value::from(self.head_hash.as_str()));
        fields.insert("challenge".into(), Value::from(self.challenge.as_str()));
        fields.insert("at".into(), Value::from(self.at));
        sign_statement(key, &fields)
    }

    /// Reads a statement line signed by `key`, with exactly the members above.
    pub fn check(line: &str, key: &VerifyingKey) -> Result<HeadStatement, String> {
        let fields = check_statement(line, key)?;
        let text =
            |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned).ok_or(format!("no `{name}`"));
        let number = |name: &str| fields.get(name).and_then(Value::as_i64).ok_or(format!("no `{name}` integer"));
        if fields.len() != 6 || text("kind")? != KIND {
            return Err("not a head statement (kind, station_id, head_seq, head_hash, challenge, at)".into());
        }
        Ok(HeadStatement {
            station_id: text("station_id")?,
            head_seq: number("head_seq")?,
            head_hash: text("head_hash")?,
            challenge: text("challenge")?,
            at: number("at")?,
        })
    }
}

/// Signs the head statement for `station_id`'s head `(seq, hash)` over `challenge` at `now`.
pub fn answer(key: &StationKey, station_id: &str, head: (i64, &str), challenge: &str, now: DateTime<Utc>) -> String {
    HeadStatement {
        station_id: station_id.to_owned(),
        head_seq: head.0,
        head_hash: head.1.to_owned(),
        challenge: challenge.to_owned(),
        at: now.timestamp_millis(),
    }
    .sign(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_checks_only_with_its_key_and_unaltered() {
        let key = StationKey::from_seed([4; 32]);
        let challenge = new_challenge().unwrap();
        assert!(is_challenge(&challenge) && !is_challenge("abc") && !is_challenge(&challenge.to_uppercase()));
        let now = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let line = answer(&key, "ward-a", (7, &"b".repeat(64)), &challenge, now);
        let public = crate::proof::parse_public_key(&key.public_key_hex()).unwrap();
        let statement = HeadStatement::check(&line, &public).unwrap();
        assert_eq!((statement.head_seq, statement.challenge.as_str()), (7, challenge.as_str()));
        let other = crate::proof::parse_public_key(&StationKey::from_seed([5; 32]).public_key_hex()).unwrap();
        assert!(HeadStatement::check(&line, &other).is_err());
        assert!(HeadStatement::check(&line.replace("\"head_seq\":7", "\"head_seq\":8"), &public).is_err());
    }
}
