//! The office's receipt: a signed statement that it holds a station's log up to seq N with hash
//! H, at a time. The station keeps the latest one outside its database; if its own log ever ends
//! before N, the database was restored from an old copy, and the station records that loudly at
//! start. Encoded as events are (ARCHITECTURE.md, "Receipts").

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::proof::{Fields, StationKey, sign_statement};

/// The receipt line for `station_id` holding through (`seq`, `hash`) at `at`.
pub fn sign(key: &StationKey, office: &str, station_id: &str, seq: i64, hash: &str, at: DateTime<Utc>) -> String {
    let mut fields = Fields::new();
    fields.insert("kind".into(), Value::from("receipt"));
    fields.insert("office".into(), Value::from(office));
    fields.insert("office_key".into(), Value::from(key.public_key_hex()));
    fields.insert("station_id".into(), Value::from(station_id));
    fields.insert("head_seq".into(), Value::from(seq));
    fields.insert("head_hash".into(), Value::from(hash));
    fields.insert("at".into(), Value::from(at.timestamp_millis()));
    sign_statement(key, &fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_checks_with_the_office_key_and_not_once_altered() {
        let key = StationKey::from_seed([7; 32]);
        let at = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let line = sign(&key, "UBND xã", "ward-a", 41, &"a".repeat(64), at);
        let public = crate::proof::parse_public_key(&key.public_key_hex()).unwrap();
        let fields = crate::proof::check_statement(&line, &public).unwrap();
        assert_eq!((fields["head_seq"].as_i64(), fields["station_id"].as_str()), (Some(41), Some("ward-a")));
        let forged = line.replace("\"head_seq\":41", "\"head_seq\":42");
        assert!(crate::proof::check_statement(&forged, &public).is_err());
        let other = crate::proof::parse_public_key(&StationKey::from_seed([8; 32]).public_key_hex()).unwrap();
        assert!(crate::proof::check_statement(&line, &other).is_err());
    }
}
