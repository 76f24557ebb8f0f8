//! The office's head: a statement signed with the office's key, "my own log ends at seq N with
//! hash H", on every page of the bulletin feed. A station keeps the highest it has seen (in its
//! feed cursor) and shows it back on every feed request and push. An office restored from an
//! older copy of its data (its log's tail cut) then learns from any station that it has
//! forgotten what it signed — a later seq than it holds, or another event at that seq — and
//! stops signing bulletins whose ids a station has already passed (`district::behind`).
//!
//! Encoded as a receipt is (canonical bytes, `hash`, `sig` spliced into one line), outside any
//! chain; its members are ASCII, so the line travels as an HTTP header.

use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use super::{Fields, StationKey, check_statement, sign_statement};

/// The `kind` of an office head statement.
pub const KIND: &str = "office_head";

/// What an office head statement says.
#[derive(Debug, Clone, PartialEq)]
pub struct OfficeHead {
    /// The last seq of the office's log (a bulletin's id is its event's seq).
    pub seq: i64,
    /// That event's hash.
    pub hash: String,
    /// UTC ms the office signed it.
    pub at: i64,
}

impl OfficeHead {
    pub fn sign(&self, key: &StationKey) -> String {
        let mut fields = Fields::new();
        fields.insert("kind".into(), Value::from(KIND));
        fields.insert("office_key".into(), Value::from(key.public_key_hex()));
        fields.insert("head_seq".into(), Value::from(self.seq));
        fields.insert("head_hash".into(), Value::from(self.hash.as_str()));
        fields.insert("at".into(), Value::from(self.at));
        sign_statement(key, &fields)
    }

    /// Reads a statement line signed by `key`, with exactly the members above, its seq one the
    /// log can hold and its hash a SHA-256.
    pub fn check(line: &str, key: &VerifyingKey) -> Result<OfficeHead, String> {
        let fields = check_statement(line, key)?;
        if fields.get("kind").and_then(Value::as_str) != Some(KIND) {
            return Err(format!("not an {KIND} statement"));
        }
        if fields.get("office_key").and_then(Value::as_str) != Some(hex::encode(key.as_bytes()).as_str()) {
            return Err("it names another office key than the one that signed it".into());
        }
        if fields.len() != 5 {
            return Err("an office head has exactly kind, office_key, head_seq, head_hash, at".into());
        }
        let number = |name: &str| fields.get(name).and_then(Value::as_i64).ok_or(format!("no `{name}` integer"));
        let (seq, at) = (number("head_seq")?, number("at")?);
        if !(0..=super::schema::MAX_SAFE_INTEGER).contains(&seq) {
            return Err(format!("seq {seq} is not one the log can hold"));
        }
        let hash =
            fields.get("head_hash").and_then(Value::as_str).filter(|h| super::is_hex64(h)).ok_or("no `head_hash`")?;
        Ok(OfficeHead { seq, hash: hash.to_owned(), at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_office_head_checks_with_the_office_key_only_and_not_once_altered() {
        let key = StationKey::from_seed([7; 32]);
        let head = OfficeHead { seq: 41, hash: "a".repeat(64), at: 1_800_000_000_000 };
        let line = head.sign(&key);
        assert!(line.is_ascii());
        let public = crate::proof::parse_public_key(&key.public_key_hex()).unwrap();
        assert_eq!(OfficeHead::check(&line, &public), Ok(head));
        assert!(OfficeHead::check(&line.replace("\"head_seq\":41", "\"head_seq\":42"), &public).is_err());
        let other = crate::proof::parse_public_key(&StationKey::from_seed([8; 32]).public_key_hex()).unwrap();
        assert!(OfficeHead::check(&line, &other).is_err());
        let receipt = crate::proof::sign_statement(&key, &Fields::from_iter([("kind".to_owned(), Value::from("x"))]));
        assert!(OfficeHead::check(&receipt, &public).is_err());
    }
}
