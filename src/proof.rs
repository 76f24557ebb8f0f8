//! The proof log's cryptography: how an event becomes bytes, is chained and signed, and how
//! anyone holding the station's public key checks an exported log offline.
//!
//! Canonical encoding (documented in ARCHITECTURE.md): the event as a JSON object with every
//! field except `hash` and `sig` (so `prev_hash` *is* covered), keys in byte order, no white
//! space, values as serde_json writes them. Fields are flat scalars only, so the encoding has no
//! nesting rules to get wrong. `hash` = SHA-256 of those bytes; `sig` = Ed25519 over the 32
//! hash bytes. The first event's `prev_hash` is 64 zeros.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
pub const KEY_FILE: &str = "station.key";

/// An event's fields, before sealing (no `seq`, `prev_hash`, `hash`, `sig`).
pub type Fields = Map<String, Value>;

/// A sealed event exactly as stored and exported: all fields plus `seq`, `prev_hash`, `hash`, `sig`.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedEvent {
    pub seq: i64,
    /// Canonical encoding: the hashed bytes.
    pub body: String,
    pub hash: String,
    pub sig: String,
}

impl SealedEvent {
    /// The export line: the stored canonical body with `hash` and `sig` appended, spliced as
    /// text (no parse, no re-encoding: the exported bytes are the hashed bytes).
    pub fn export_line(&self) -> String {
        let open = self.body.strip_suffix('}').expect("stored bodies are JSON objects");
        format!("{open},\"hash\":\"{}\",\"sig\":\"{}\"}}", self.hash, self.sig)
    }

    /// The export form as a JSON object: the body's fields plus `hash` and `sig`.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut object: Map<String, Value> = serde_json::from_str(&self.body).expect("stored bodies are JSON objects");
        object.insert("hash".into(), Value::String(self.hash.clone()));
        object.insert("sig".into(), Value::String(self.sig.clone()));
        object
    }
}

/// Canonical bytes of an event object (any `hash`/`sig` members are left out).
pub fn canonical(object: &Map<String, Value>) -> Result<String, String> {
    let mut sorted = BTreeMap::new();
    for (key, value) in object {
        if key == "hash" || key == "sig" {
            continue;
        }
        if value.is_object() || value.is_array() {
            return Err(format!("field `{key}` is not a scalar"));
        }
        sorted.insert(key.as_str(), value);
    }
    Ok(serde_json::to_string(&sorted).expect("scalars serialise"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The station's signing key, kept in `<data_dir>/station.key` (hex seed, mode 0600).
pub struct StationKey {
    signing: SigningKey,
}

impl StationKey {
    /// Loads the key, creating it on first use. Safe when two processes start at once: the key
    /// is written to a private temporary file and hard-linked into place, which either wins
    /// whole or finds the other process's key already there.
    pub fn load_or_create(data_dir: &Path) -> io::Result<StationKey> {
        let path = data_dir.join(KEY_FILE);
        if !path.exists() {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| io::Error::other(format!("no randomness for the station key: {e}")))?;
            let mut candidate = tempfile::Builder::new()
                .prefix(".station.key-")
                .permissions(fs::Permissions::from_mode(0o600))
                .tempfile_in(data_dir)?;
            candidate.write_all(format!("{}\n", hex::encode(seed)).as_bytes())?;
            candidate.as_file().sync_all()?;
            match fs::hard_link(candidate.path(), &path) {
                Ok(()) => fs::File::open(data_dir)?.sync_all()?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let text = fs::read_to_string(&path)?;
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| io::Error::other(format!("{} is not a station key (64 hex digits)", path.display())))?;
        Ok(StationKey { signing: SigningKey::from_bytes(&bytes) })
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().to_bytes())
    }

    /// Seals `fields` as event `seq` following `prev_hash`.
    pub fn seal(&self, seq: i64, prev_hash: &str, mut fields: Fields) -> SealedEvent {
        fields.insert("seq".into(), Value::from(seq));
        fields.insert("prev_hash".into(), Value::String(prev_hash.to_owned()));
        let body = canonical(&fields).expect("event fields are scalars");
        let digest = Sha256::digest(body.as_bytes());
        let sig = self.signing.sign(&digest);
        SealedEvent { seq, body, hash: hex::encode(digest), sig: hex::encode(sig.to_bytes()) }
    }
}

/// Summary of a log that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub events: usize,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub last_hash: Option<String>,
}

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {why}", match seq { Some(seq) => format!("seq {seq} (line {line})"), None => format!("line {line}") })]
pub struct Broken {
    pub line: usize,
    pub seq: Option<i64>,
    pub why: String,
}

pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| "the public key must be 64 hex digits (see `loa station`)".to_owned())
}

/// Checks every event's hash, signature and link to the one before, and that `seq` has no gap.
/// `expect_prev`: the `hash` of the last event of the previous pull, to prove nothing was cut
/// between pulls; without it a log starting at seq 1 must start from the genesis hash.
pub fn verify<'a>(
    events: impl IntoIterator<Item = (usize, &'a Map<String, Value>)>,
    key: &VerifyingKey,
    expect_prev: Option<&str>,
) -> Result<Verified, Broken> {
    let mut summary = Verified { events: 0, first_seq: None, last_seq: None, last_hash: None };
    let mut station: Option<String> = None;
    for (line, event) in events {
        let seq = event.get("seq").and_then(Value::as_i64);
        let broken = |why: String| Broken { line, seq, why };
        let seq = seq.ok_or_else(|| broken("no integer `seq`".into()))?;
        let text = |name: &str| event.get(name).and_then(Value::as_str).ok_or_else(|| broken(format!("no `{name}`")));
        let (hash, sig, prev) = (text("hash")?, text("sig")?, text("prev_hash")?);
        let station_id = text("station_id")?;

        match (&summary.last_seq, &summary.last_hash) {
            (Some(last), Some(last_hash)) => {
                if seq != last + 1 {
                    return Err(broken(format!(
                        "expected seq {} after {last}: events are missing or out of order",
                        last + 1
                    )));
                }
                if prev != last_hash {
                    return Err(broken(
                        "prev_hash does not match the previous event's hash: the chain is broken here".into(),
                    ));
                }
            }
            _ => match expect_prev {
                Some(expected) if prev != expected => {
                    return Err(broken(format!(
                        "prev_hash {prev} is not the expected {expected}: events between the pulls are missing"
                    )));
                }
                None if seq == 1 && prev != GENESIS_HASH => {
                    return Err(broken("the first event must follow the genesis hash".into()));
                }
                _ => {}
            },
        }
        if station.get_or_insert_with(|| station_id.to_owned()) != station_id {
            return Err(broken(format!("station_id {station_id} differs from the log's {}", station.unwrap())));
        }
        let body = canonical(event).map_err(broken)?;
        if sha256_hex(body.as_bytes()) != hash {
            return Err(broken("hash does not match the event's contents: the event was altered".into()));
        }
        let digest = hex::decode(hash).map_err(|_| broken("hash is not hex".into()))?;
        let signature = hex::decode(sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or_else(|| broken("sig is not 128 hex digits".into()))?;
        key.verify_strict(&digest, &signature)
            .map_err(|_| broken("signature does not verify with this station's public key".into()))?;

        summary.events += 1;
        summary.first_seq.get_or_insert(seq);
        summary.last_seq = Some(seq);
        summary.last_hash = Some(hash.to_owned());
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> StationKey {
        StationKey { signing: SigningKey::from_bytes(&[7; 32]) }
    }

    fn chain(n: i64) -> Vec<Map<String, Value>> {
        let key = key();
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut fields = Fields::new();
                fields.insert("station_id".into(), "s".into());
                fields.insert("kind".into(), "clip_added".into());
                fields.insert("title".into(), "Bản tin \"CCHC\"\n".into());
                fields.insert("peak_dbfs".into(), Value::from(-3.24));
                let sealed = key.seal(seq, &prev, fields);
                prev = sealed.hash.clone();
                sealed.to_json()
            })
            .collect()
    }

    fn check(events: &[Map<String, Value>], expect_prev: Option<&str>) -> Result<Verified, Broken> {
        verify(events.iter().enumerate().map(|(i, e)| (i + 1, e)), &key().signing.verifying_key(), expect_prev)
    }

    #[test]
    fn the_export_line_is_the_json_object() {
        let sealed = key().seal(1, GENESIS_HASH, Fields::new());
        let parsed: Map<String, Value> = serde_json::from_str(&sealed.export_line()).unwrap();
        assert_eq!(parsed, sealed.to_json());
    }

    #[test]
    fn canonical_form_is_sorted_and_compact() {
        let mut fields = Fields::new();
        fields.insert("b".into(), Value::from(1));
        fields.insert("a".into(), "Đài".into());
        fields.insert("sig".into(), "x".into());
        assert_eq!(canonical(&fields).unwrap(), r#"{"a":"Đài","b":1}"#);
    }

    #[test]
    fn an_intact_chain_verifies_after_a_json_round_trip() {
        let events = chain(5);
        let reparsed: Vec<Map<String, Value>> =
            events.iter().map(|e| serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap()).collect();
        let summary = check(&reparsed, None).unwrap();
        assert_eq!((summary.events, summary.first_seq, summary.last_seq), (5, Some(1), Some(5)));
        let tail = &reparsed[2..];
        let prev = reparsed[1]["hash"].as_str().unwrap();
        assert!(check(tail, Some(prev)).is_ok());
        assert!(check(tail, Some(GENESIS_HASH)).unwrap_err().why.contains("between the pulls"));
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let events = chain(4);
        let mut edited = events.clone();
        edited[2].insert("peak_dbfs".into(), Value::from(-1.0));
        assert_eq!(check(&edited, None).unwrap_err().seq, Some(3));
        assert!(check(&edited, None).unwrap_err().why.contains("altered"));

        let mut deleted = events.clone();
        deleted.remove(1);
        assert!(check(&deleted, None).unwrap_err().why.contains("expected seq 2"));

        let mut swapped = events.clone();
        swapped.swap(1, 2);
        assert_eq!(check(&swapped, None).unwrap_err().seq, Some(3));

        let other = StationKey { signing: SigningKey::from_bytes(&[9; 32]) };
        let mut forged = events.clone();
        let mut fields = Fields::new();
        fields.insert("station_id".into(), "s".into());
        let fake = other.seal(3, events[1]["hash"].as_str().unwrap(), fields).to_json();
        forged[2] = fake;
        forged.truncate(3);
        assert!(check(&forged, None).unwrap_err().why.contains("signature"));
    }
}
