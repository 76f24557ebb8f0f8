//! Checking a chain of events: the district's `loa verify`, and the station's check of its own
//! log. Fails closed: a file must start where the caller says (seq 1, or the head it holds), every
//! line must be exactly the signed bytes, and every key the log declares must be the key it is
//! checked with, or a change the log itself proves (rotation) or the auditor accepts (replacement).

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Map, Value};

use super::events::Kind;
use super::{
    GENESIS_HASH, SealedEvent, canonical, parse_public_key, read_body, schema, sha256_hex, signed_by, split_line,
};

/// What the caller knows before reading a log.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The event (seq, hash) the log must begin with: the last one the caller already holds.
    /// Without it the log must begin at seq 1 from the genesis hash.
    pub head: Option<(i64, String)>,
    /// Every event must carry this `station_id` (else: all the first event's).
    pub station_id: Option<String>,
    /// `key_replaced` events the auditor has accepted, by seq.
    pub accepted_replacements: BTreeSet<i64>,
    /// Events up to this seq were checked before: their signatures are not checked again
    /// (encoding, hashes and links still are). 0 for an auditor.
    pub signatures_checked_through: i64,
}

/// A change of key that the log records.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyChange {
    pub seq: i64,
    /// `key_rotated` or `key_replaced`.
    pub kind: &'static str,
    pub from: String,
    pub to: String,
}

/// Summary of a log that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub events: usize,
    pub first_seq: i64,
    pub last_seq: i64,
    pub last_hash: String,
    pub station_id: String,
    /// The key in force after the last event (the one to pin for the next pull).
    pub public_key: String,
    pub key_changes: Vec<KeyChange>,
}

/// What kind of thing is wrong, for a caller that acts on it (the office raises an alarm of
/// the matching kind); `why` says it in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The bytes are not one canonical, flat event object with the fields every event has.
    Encoding,
    /// The hash is not the SHA-256 of the bytes, or the link to the previous event is broken.
    Hash,
    /// Seqs are missing or out of order.
    Gap,
    /// The signature does not verify with the key in force.
    Signature,
    /// Another station's event.
    Station,
    /// The log declares another key than the one in force, or replaced its key unaccepted.
    Key,
    /// The log does not begin where the caller said (seq 1, or the head it holds), or is empty.
    Start,
    /// A properly signed event whose members do not match its kind (`proof::schema`).
    Schema,
}

/// What the verifier read of an event it accepted (parsed, never found by substring).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Checked {
    pub seq: i64,
    pub at: i64,
    pub kind: Kind,
}

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {why}", match seq { Some(seq) => format!("seq {seq} (line {line})"), None => format!("line {line}") })]
pub struct Broken {
    pub line: usize,
    pub seq: Option<i64>,
    pub fault: Fault,
    pub why: String,
    /// The SHA-256 of the event's bytes as found, when they could be read.
    pub computed_hash: Option<String>,
}

/// Checks events one at a time, in order.
pub struct ChainVerifier {
    key: VerifyingKey,
    key_hex: String,
    expect: Expect,
    station_id: Option<String>,
    first_seq: Option<i64>,
    last: Option<(i64, String)>,
    events: usize,
    key_changes: Vec<KeyChange>,
    /// Signatures still to check, in batches (`deferring_signatures`); `None`: each at once.
    deferred: Option<Vec<Deferred>>,
}

/// A signature whose check is deferred to the next batch.
struct Deferred {
    line: usize,
    seq: i64,
    computed_hash: String,
    digest: [u8; 32],
    signature: Signature,
    key: VerifyingKey,
}

/// Signatures checked together (the batch equation's cost per signature falls with size).
const BATCH: usize = 1024;

impl ChainVerifier {
    /// Checks signatures in batches (Ed25519 batch verification) instead of one by one: for a
    /// caller that verifies many events and acts only on what [`flush`](Self::flush) (or
    /// [`finish`](Self::finish)) confirms. A failing batch is checked one by one (strictly),
    /// so the first bad signature is named as it would be without batching. Key changes are
    /// checked strictly, at once. The batch equation, unlike `verify_strict`, does not refuse a
    /// small-order `R`; only the key's holder can make such a signature, and its bytes are
    /// still exactly the chained, hashed ones.
    pub fn deferring_signatures(mut self) -> ChainVerifier {
        self.deferred = Some(Vec::new());
        self
    }

    /// The key in force after the events checked so far (hex).
    pub fn key_in_force(&self) -> &str {
        &self.key_hex
    }

    /// Checks the deferred signatures; the first bad one, if any.
    pub fn flush(&mut self) -> Result<(), Broken> {
        let Some(pending) = self.deferred.as_mut().filter(|p| !p.is_empty()) else { return Ok(()) };
        let messages: Vec<&[u8]> = pending.iter().map(|d| d.digest.as_slice()).collect();
        let signatures: Vec<Signature> = pending.iter().map(|d| d.signature).collect();
        let keys: Vec<VerifyingKey> = pending.iter().map(|d| d.key).collect();
        let outcome = if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            Ok(())
        } else {
            match pending.iter().find(|d| d.key.verify_strict(&d.digest, &d.signature).is_err()) {
                Some(bad) => Err(Broken {
                    line: bad.line,
                    seq: Some(bad.seq),
                    fault: Fault::Signature,
                    why: format!(
                        "signature does not verify with the station's public key {}",
                        hex::encode(bad.key.to_bytes())
                    ),
                    computed_hash: Some(bad.computed_hash.clone()),
                }),
                None => Ok(()),
            }
        };
        pending.clear();
        outcome
    }

    /// `key`: the pinned key: the one the log's first event is signed with, or with
    /// `expect.head`, the key in force after that head (as the verify that checked it said).
    pub fn new(key: VerifyingKey, expect: Expect) -> ChainVerifier {
        ChainVerifier {
            key_hex: hex::encode(key.to_bytes()),
            key,
            station_id: expect.station_id.clone(),
            expect,
            first_seq: None,
            last: None,
            events: 0,
            key_changes: Vec::new(),
            deferred: None,
        }
    }

    /// A verifier for the events that follow `last` (seq, hash), which the caller already
    /// trusts; `key` is the key in force after it.
    pub fn after(key: VerifyingKey, last: (i64, String), expect: Expect) -> ChainVerifier {
        ChainVerifier { last: Some(last), ..ChainVerifier::new(key, expect) }
    }

    /// The next export line (without its line end).
    pub fn line(&mut self, line: usize, text: &str) -> Result<Checked, Broken> {
        let (body, hash, sig) = split_line(text).map_err(|why| Broken {
            line,
            seq: None,
            fault: Fault::Encoding,
            why,
            computed_hash: None,
        })?;
        self.check(line, &body, hash, sig, None)
    }

    /// The next event as the station stores it.
    pub fn stored(&mut self, line: usize, event: &SealedEvent) -> Result<(), Broken> {
        if event.seq <= self.expect.signatures_checked_through && self.last.is_some() {
            if let Some(known) = self.known(line, event) {
                return known;
            }
        }
        self.check(line, &event.body, &event.hash, &event.sig, Some(event.seq)).map(drop)
    }

    /// An event this station checked whole before (signature included): its bytes still hash to
    /// its `hash` and it still links to the one before, read without a parse. That is enough:
    /// changing any byte changes its hash, which breaks the next event's link or, for the last
    /// checked event, the hash the checkpoint remembers. `None`: check it whole (a key change,
    /// or a body whose members are not where the canonical encoding puts them).
    fn known(&mut self, line: usize, event: &SealedEvent) -> Option<Result<(), Broken>> {
        let body = event.body.as_str();
        if body.contains("\"kind\":\"key_") {
            return None;
        }
        let text = |needle: &str| {
            let start = body.find(needle)? + needle.len();
            body[start..].find('"').map(|end| &body[start..start + end])
        };
        let (prev, station_id) = (text("\"prev_hash\":\"")?, text("\"station_id\":\"")?);
        let computed = sha256_hex(body.as_bytes());
        let broken = |fault, why: String| Broken {
            line,
            seq: Some(event.seq),
            fault,
            why,
            computed_hash: Some(computed.clone()),
        };
        let (last_seq, last_hash) = self.last.as_ref()?;
        let outcome = if computed != event.hash {
            Err(broken(Fault::Hash, "hash does not match the event's contents: the event was altered".into()))
        } else if event.seq != last_seq + 1 {
            Err(broken(
                Fault::Gap,
                format!("expected seq {} after {last_seq}: events are missing or out of order", last_seq + 1),
            ))
        } else if prev != last_hash {
            Err(broken(
                Fault::Hash,
                "prev_hash does not match the previous event's hash: the chain is broken here".into(),
            ))
        } else if self.station_id.as_deref().is_some_and(|expected| expected != station_id) {
            Err(broken(Fault::Station, format!("station_id \"{station_id}\" is not the station's")))
        } else {
            self.events += 1;
            self.first_seq.get_or_insert(event.seq);
            self.station_id.get_or_insert_with(|| station_id.to_owned());
            self.last = Some((event.seq, event.hash.clone()));
            Ok(())
        };
        Some(outcome)
    }

    pub fn finish(mut self) -> Result<Verified, Broken> {
        self.flush()?;
        let (Some(first_seq), Some((last_seq, last_hash)), Some(station_id)) =
            (self.first_seq, self.last, self.station_id)
        else {
            let why = match &self.expect.head {
                Some((seq, _)) => format!(
                    "the log holds no events, but it must begin with seq {seq}, the head you hold: the \
                     station has gone back (restored from an old backup, or replaced) or the pull was cut"
                ),
                None => "the log holds no events; a whole log begins at seq 1".to_owned(),
            };
            return Err(Broken { line: 0, seq: None, fault: Fault::Start, why, computed_hash: None });
        };
        Ok(Verified {
            events: self.events,
            first_seq,
            last_seq,
            last_hash,
            station_id,
            public_key: self.key_hex,
            key_changes: self.key_changes,
        })
    }

    fn check(
        &mut self,
        line: usize,
        body: &str,
        hash: &str,
        sig: &str,
        stored_seq: Option<i64>,
    ) -> Result<Checked, Broken> {
        let computed = sha256_hex(body.as_bytes());
        let object = read_body(body);
        // For the message even when the body is refused: a lenient parse's `seq`.
        let lenient = || serde_json::from_str::<Map<String, Value>>(body).ok().and_then(|o| o.get("seq")?.as_i64());
        let seq =
            object.as_ref().ok().and_then(|o| o.get("seq")).and_then(Value::as_i64).or_else(lenient).or(stored_seq);
        let broken = |fault, why: String| Broken { line, seq, fault, why, computed_hash: Some(computed.clone()) };
        let encoding = |why: String| broken(Fault::Encoding, why);
        let object = object.map_err(encoding)?;
        let seq = seq.filter(|s| *s >= 1).ok_or_else(|| encoding("no `seq` (a whole number from 1)".into()))?;
        if stored_seq.is_some_and(|stored| stored != seq) {
            return Err(encoding(format!("stored as seq {} but its body says seq {seq}", stored_seq.unwrap_or(0))));
        }
        if canonical(&object) != body {
            return Err(encoding(
                "the event's bytes are not its canonical encoding (RFC 8785): white space, escapes, \
                 number form or key order were changed, so they are not the bytes the station signed"
                    .into(),
            ));
        }
        let text =
            |name: &str| object.get(name).and_then(Value::as_str).ok_or_else(|| encoding(format!("no `{name}` text")));
        let (prev, station_id, kind) = (text("prev_hash")?, text("station_id")?, text("kind")?);

        match &self.last {
            Some((last_seq, last_hash)) => {
                if seq != last_seq + 1 {
                    return Err(broken(
                        Fault::Gap,
                        format!("expected seq {} after {last_seq}: events are missing or out of order", last_seq + 1),
                    ));
                }
                if prev != last_hash {
                    return Err(broken(
                        Fault::Hash,
                        "prev_hash does not match the previous event's hash: the chain is broken here".into(),
                    ));
                }
            }
            None => match &self.expect.head {
                Some((head_seq, head_hash)) => {
                    if seq != *head_seq || hash != head_hash || computed != hash {
                        return Err(broken(
                            Fault::Start,
                            format!(
                                "the log must begin with the head you hold, seq {head_seq} hash {head_hash}; it \
                             begins with seq {seq} hash {hash}: the station has gone back or been replaced, \
                             or the pull does not overlap the last one"
                            ),
                        ));
                    }
                    // The same bytes the caller verified before: the key in force after them is
                    // the one it was given. Only the station must still be the same.
                    if self.station_id.as_deref().is_some_and(|expected| expected != station_id) {
                        return Err(broken(
                            Fault::Station,
                            format!("station_id \"{station_id}\" is not the expected one"),
                        ));
                    }
                    let kind = schema::check(&object).map_err(|e| broken(Fault::Schema, e.to_string()))?;
                    self.station_id.get_or_insert_with(|| station_id.to_owned());
                    self.events += 1;
                    self.first_seq = Some(seq);
                    self.last = Some((seq, hash.to_owned()));
                    return Ok(Checked { seq, at: at_of(&object), kind });
                }
                None if seq != 1 => {
                    return Err(broken(
                        Fault::Start,
                        format!(
                            "the log begins at seq {seq}, not 1: events before it are missing. To check a \
                         partial pull give --expect-head SEQ:HASH of the last event you hold"
                        ),
                    ));
                }
                None if prev != GENESIS_HASH => {
                    return Err(broken(Fault::Start, "the first event must follow the genesis hash (64 zeros)".into()));
                }
                None => {}
            },
        }
        match &self.station_id {
            Some(expected) if expected != station_id => {
                return Err(broken(
                    Fault::Station,
                    format!("station_id \"{station_id}\" is not \"{expected}\": this is another station's event"),
                ));
            }
            Some(_) => {}
            None => self.station_id = Some(station_id.to_owned()),
        }
        if computed != hash {
            return Err(broken(Fault::Hash, "hash does not match the event's contents: the event was altered".into()));
        }
        // A body its kind does not allow: signed by the key in force (a station that wrote
        // what no loa writes), or not signed at all (then that is what is wrong).
        let checked_kind = schema::check(&object).map_err(|e| {
            if signed_by(&self.key, hash, sig) {
                broken(Fault::Schema, format!("{e}; the event is signed by the station's key, but no loa writes it"))
            } else {
                broken(
                    Fault::Signature,
                    format!("signature does not verify with the station's public key {}", self.key_hex),
                )
            }
        })?;

        // The key that signs this event, and the key in force after it.
        let declared =
            |name: &str| text(name).and_then(|k| parse_public_key(k).map_err(|e| encoding(format!("{name}: {e}"))));
        let (signer, next) = match kind {
            "key_replaced" => {
                let new = declared("public_key")?;
                let old = object.get("old_public_key").and_then(Value::as_str);
                if !self.expect.accepted_replacements.contains(&seq) {
                    return Err(broken(
                        Fault::Key,
                        format!(
                            "the station replaced its key: it reports key {} lost and signs from here with {}. \
                         Nothing proves this is the same station; only if you have confirmed it with the \
                         station, accept it with --accept-key-replacement {seq}",
                            old.unwrap_or("(unknown)"),
                            hex::encode(new.to_bytes())
                        ),
                    ));
                }
                if old.is_some_and(|old| old != self.key_hex) {
                    return Err(broken(
                        Fault::Key,
                        format!(
                            "key_replaced names the old key {}, but the log was signed with {}",
                            old.unwrap_or_default(),
                            self.key_hex
                        ),
                    ));
                }
                (new, Some(new))
            }
            "key_rotated" => {
                self.declares_current(&object, "public_key").map_err(|why| broken(Fault::Key, why))?;
                (self.key, Some(declared("new_public_key")?))
            }
            "station_started" => {
                self.declares_current(&object, "public_key").map_err(|why| broken(Fault::Key, why))?;
                (self.key, None)
            }
            _ => (self.key, None),
        };
        if seq > self.expect.signatures_checked_through || next.is_some() {
            let digest = hex::decode(hash).map_err(|_| encoding("hash is not hex".into()))?;
            let signature = hex::decode(sig)
                .ok()
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .map(|b| Signature::from_bytes(&b))
                .ok_or_else(|| encoding("sig is not 128 hex digits".into()))?;
            let digest = <[u8; 32]>::try_from(digest).map_err(|_| encoding("hash is not 64 hex digits".into()))?;
            match self.deferred.as_mut().filter(|_| next.is_none()) {
                Some(pending) => {
                    let computed_hash = computed.clone();
                    pending.push(Deferred { line, seq, computed_hash, digest, signature, key: signer });
                    if pending.len() >= BATCH {
                        self.flush()?;
                    }
                }
                None => {
                    self.flush()?;
                    signer.verify_strict(&digest, &signature).map_err(|_| {
                        broken(
                            Fault::Signature,
                            format!(
                                "signature does not verify with the station's public key {}",
                                hex::encode(signer.to_bytes())
                            ),
                        )
                    })?;
                }
            }
        }
        if let Some(next) = next {
            let to = hex::encode(next.to_bytes());
            let kind = if kind == "key_rotated" { "key_rotated" } else { "key_replaced" };
            self.key_changes.push(KeyChange { seq, kind, from: self.key_hex.clone(), to: to.clone() });
            (self.key, self.key_hex) = (next, to);
        }
        self.events += 1;
        self.first_seq.get_or_insert(seq);
        self.last = Some((seq, hash.to_owned()));
        Ok(Checked { seq, at: at_of(&object), kind: checked_kind })
    }

    /// An event that names the key in force (`station_started`, `key_rotated`) must name this one.
    fn declares_current(&self, object: &Map<String, Value>, field: &str) -> Result<(), String> {
        match object.get(field).and_then(Value::as_str) {
            Some(key) if key == self.key_hex => Ok(()),
            Some(key) => Err(format!(
                "the log declares its key as {key}, but it is checked with {}: it is another station's \
                 log, or the station's key was changed without a key_rotated event",
                self.key_hex
            )),
            None => Err(format!("no `{field}`")),
        }
    }
}

/// `at` of an event whose schema was checked (an integer).
fn at_of(object: &Map<String, Value>) -> i64 {
    object.get("at").and_then(Value::as_i64).unwrap_or_default()
}
