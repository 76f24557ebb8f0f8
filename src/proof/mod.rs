//! The proof log's cryptography: how an event becomes bytes, is chained and signed, and how
//! anyone holding the station's public key checks an exported log offline.
//!
//! The encoding is a standard so that an auditor can check a log in any language from
//! ARCHITECTURE.md alone ("Event encoding"): the **canonical encoding** of an event is RFC 8785
//! (JSON Canonicalization Scheme) of the event object without `hash` and `sig`; `hash` is the
//! hex SHA-256 of those bytes and `sig` the hex Ed25519 signature of the 32 raw hash bytes. An
//! export line is those bytes with `,"hash":…,"sig":…` spliced in before the closing brace, so
//! the signed bytes travel verbatim and a verifier checks the line byte for byte.
//!
//! Measured values are integers (milliseconds, hundredths of a dB): no verifier depends on how
//! a library formats a float.

pub mod bulletin;
pub mod events;
pub mod export;
pub mod head;
mod key;
pub mod office_head;
pub mod schema;
mod verify;

pub use crate::model::key::parse_public_key;
pub use key::{KEY_FILE, KeyError, LogKeys, StationKey, finish_rotation, load_or_create};
pub use verify::{Broken, ChainVerifier, Checked, Expect, Fault, KeyChange, Verified};

use ed25519_dalek::Signer;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The event encoding and judging rules this build writes by, named in every `station_started`
/// (`encoding`). A change to how events are encoded, or to what a kind may contain beyond
/// adding an optional member, is a new name: verifiers judge the events after each
/// `station_started` by the rules it names, so old events are never re-judged by newer rules,
/// and a verifier refuses a name it does not know (a log from a newer loa) rather than guess.
pub const ENCODING: &str = "loa-1";

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

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

/// `,"hash":"` + 64 hex + `","sig":"` + 128 hex + `"}`: what an export line adds to the body.
const LINE_SUFFIX_LEN: usize = 9 + 64 + 9 + 128 + 2;

impl SealedEvent {
    /// The export line: the stored canonical body with `hash` and `sig` spliced in before its
    /// closing brace (no parse, no re-encoding: the exported bytes are the hashed bytes).
    pub fn export_line(&self) -> String {
        let open = self.body.strip_suffix('}').expect("stored bodies are JSON objects");
        format!("{open},\"hash\":\"{}\",\"sig\":\"{}\"}}", self.hash, self.sig)
    }

    /// The body's fields (as covered by `hash`).
    pub fn fields(&self) -> Fields {
        serde_json::from_str(&self.body).expect("stored bodies are JSON objects")
    }
}

/// Splits an export line back into its body (the signed bytes), `hash` and `sig`, exactly:
/// anything that is not a body followed by the fixed `hash`/`sig` suffix is refused, saying what
/// is wrong. Whether the body itself is canonical is the verifier's question.
pub fn split_line(line: &str) -> Result<(String, &str, &str), String> {
    if line.ends_with('\r') {
        return Err("the line ends with a carriage return (the file was converted to Windows line \
                        ends); save the export exactly as the station sent it"
            .into());
    }
    let bad_suffix = || {
        "the line does not end in `,\"hash\":\"<64 hex>\",\"sig\":\"<128 hex>\"}` exactly as the \
             station exports it (the bytes were re-encoded, re-ordered or edited)"
            .to_owned()
    };
    if line.len() < LINE_SUFFIX_LEN + 2 || !line.is_char_boundary(line.len() - LINE_SUFFIX_LEN) {
        return Err(bad_suffix());
    }
    let (open, suffix) = line.split_at(line.len() - LINE_SUFFIX_LEN);
    let hash = suffix.get(9..73).filter(|h| is_lower_hex(h)).ok_or_else(bad_suffix)?;
    let sig = suffix.get(82..210).filter(|s| is_lower_hex(s)).ok_or_else(bad_suffix)?;
    if !suffix.starts_with(",\"hash\":\"") || &suffix[73..82] != "\",\"sig\":\"" || &suffix[210..] != "\"}" {
        return Err(bad_suffix());
    }
    Ok((format!("{open}}}"), hash, sig))
}

/// 64 lowercase hex digits: a SHA-256 as the log writes it, an Ed25519 key, a challenge.
pub fn is_hex64(text: &str) -> bool {
    text.len() == 64 && is_lower_hex(text)
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The canonical encoding (RFC 8785) of an event object; any `hash`/`sig` members are left out.
pub fn canonical(object: &Map<String, Value>) -> String {
    // Bodies hold neither (the usual case, and the hot path of every verifier): no copy.
    if !object.contains_key("hash") && !object.contains_key("sig") {
        return serde_json_canonicalizer::to_string(object).expect("a JSON object encodes");
    }
    let covered: Map<String, Value> =
        object.iter().filter(|(key, _)| *key != "hash" && *key != "sig").map(|(k, v)| (k.clone(), v.clone())).collect();
    serde_json_canonicalizer::to_string(&covered).expect("a JSON object encodes")
}

/// A signed statement outside any chain (the office's receipt), encoded as an event is: the
/// canonical bytes of `fields`, their SHA-256 and the Ed25519 signature of it, as one line.
pub fn sign_statement(key: &StationKey, fields: &Fields) -> String {
    let body = canonical(fields);
    let digest = Sha256::digest(body.as_bytes());
    let sig = key.signing().sign(&digest);
    let open = body.strip_suffix('}').expect("a JSON object");
    format!("{open},\"hash\":\"{}\",\"sig\":\"{}\"}}", hex::encode(digest), hex::encode(sig.to_bytes()))
}

/// Checks a statement line made by [`sign_statement`] with `key`: its fields, or what is wrong.
pub fn check_statement(line: &str, key: &ed25519_dalek::VerifyingKey) -> Result<Fields, String> {
    let (body, hash, sig) = split_line(line)?;
    let fields: Fields = serde_json::from_str(&body).map_err(|e| format!("not a JSON object ({e})"))?;
    if canonical(&fields) != body || sha256_hex(body.as_bytes()) != hash {
        return Err("the statement's bytes are not what was signed".into());
    }
    let digest = hex::decode(hash).map_err(|_| "hash is not hex".to_owned())?;
    let sig = hex::decode(sig).ok().and_then(|b| <[u8; 64]>::try_from(b).ok()).ok_or("sig is not 128 hex digits")?;
    key.verify_strict(&digest, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "the signature does not verify with the office's key".to_owned())?;
    Ok(fields)
}

/// Whether `sig` (hex) is `key`'s strict Ed25519 signature of the digest `hash` (hex).
pub fn signed_by(key: &ed25519_dalek::VerifyingKey, hash: &str, sig: &str) -> bool {
    let (Ok(digest), Some(signature)) = (
        hex::decode(hash),
        hex::decode(sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| ed25519_dalek::Signature::from_bytes(&b)),
    ) else {
        return false;
    };
    key.verify_strict(&digest, &signature).is_ok()
}

/// The body as a flat object of scalars, refusing a key given twice (a JSON parser would keep
/// one of them silently, and the signature covers only the canonical bytes).
pub(crate) fn read_body(body: &str) -> Result<Map<String, Value>, String> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    use std::fmt;
    struct Members;
    impl<'de> Visitor<'de> for Members {
        type Value = Result<Map<String, Value>, String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            // Read every member (stopping early would fail the parse), keep the first problem.
            let (mut object, mut problem) = (Map::new(), None);
            while let Some((key, value)) = access.next_entry::<String, Value>()? {
                if value.is_object() || value.is_array() {
                    problem.get_or_insert_with(|| format!("field `{key}` is not a plain value (events are flat)"));
                }
                if object.contains_key(&key) {
                    problem.get_or_insert_with(|| {
                        format!("field `{key}` appears twice: the bytes are not what the station signed")
                    });
                }
                object.insert(key, value);
            }
            Ok(problem.map_or(Ok(object), Err))
        }
    }
    let mut reader = serde_json::Deserializer::from_str(body);
    let object = reader.deserialize_map(Members).map_err(|e| format!("not a JSON event object ({e})"))?;
    reader.end().map_err(|e| format!("not a JSON event object ({e})"))?;
    object
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl StationKey {
    /// Seals `fields` as event `seq` following `prev_hash`.
    pub fn seal(&self, seq: i64, prev_hash: &str, mut fields: Fields) -> SealedEvent {
        fields.insert("seq".into(), Value::from(seq));
        fields.insert("prev_hash".into(), Value::String(prev_hash.to_owned()));
        let body = canonical(&fields);
        let digest = Sha256::digest(body.as_bytes());
        let sig = self.signing().sign(&digest);
        SealedEvent { seq, body, hash: hex::encode(digest), sig: hex::encode(sig.to_bytes()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_line_splits_back_into_the_sealed_event() {
        let mut fields = Fields::new();
        fields.insert("title".into(), "Bản tin \"CCHC\"\n".into());
        let sealed = StationKey::from_seed([7; 32]).seal(1, GENESIS_HASH, fields);
        let line = sealed.export_line();
        assert_eq!(split_line(&line).unwrap(), (sealed.body.clone(), sealed.hash.as_str(), sealed.sig.as_str()));
        let parsed: Map<String, Value> = serde_json::from_str(&sealed.export_line()).unwrap();
        assert_eq!(parsed["hash"], sealed.hash.as_str());
    }

    #[test]
    fn a_line_with_anything_after_or_inside_the_suffix_is_refused() {
        let line = StationKey::from_seed([7; 32]).seal(1, GENESIS_HASH, Fields::new()).export_line();
        for bad in [
            format!("{line} "),
            format!("{line}\r"),
            line.replacen("\"hash\":\"", "\"hash\": \"", 1),
            line.replace("\",\"sig\":\"", "\",\"Sig\":\""),
            line.to_uppercase(),
            line[..line.len() - 3].to_owned(),
        ] {
            assert!(split_line(&bad).is_err(), "{bad}");
        }
    }

    // RFC 8785 §3.2.2 and §3.2.3: the RFC's own examples of values and of key order (UTF-16
    // code units: the emoji's surrogates sort before U+FB33).
    #[test]
    fn canonical_encoding_is_rfc_8785() {
        let input = r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}"#;
        let object: Map<String, Value> = serde_json::from_str(input).unwrap();
        assert_eq!(
            canonical(&object),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        let sorting = r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#;
        let object: Map<String, Value> = serde_json::from_str(sorting).unwrap();
        let order: Vec<String> =
            canonical(&object).split("\":\"").skip(1).map(|rest| rest.split('"').next().unwrap().to_owned()).collect();
        assert_eq!(
            order,
            [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small Letter O With Diaeresis",
                "Euro Sign",
                "Emoji: Grinning Face",
                "Hebrew Letter Dalet With Dagesh"
            ]
        );
    }

    #[test]
    fn hash_and_sig_are_not_covered() {
        let mut fields = Fields::new();
        fields.insert("b".into(), Value::from(1));
        fields.insert("a".into(), "Đài".into());
        fields.insert("sig".into(), "x".into());
        fields.insert("hash".into(), "y".into());
        assert_eq!(canonical(&fields), r#"{"a":"Đài","b":1}"#);
    }
}
