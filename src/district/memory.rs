//! The office checks its own memory before it reports from it: the database is a file anyone
//! with the machine can edit, so nothing in it is taken on its word. The office's log (signed
//! with `district.key`) is verified and replayed, and every table must say what the log proves:
//! each station's head, key and plausibility memory, every alarm with its evidence and
//! acknowledgement, every token, every finding. Held station events are verified again from their
//! own bytes from seq 1, with the key `district.toml` pins (never one the database supplies),
//! through exactly the head the log names. The first check verifies every signature; it leaves a
//! checkpoint per station in the log, so later checks re-hash and re-link the events up to it
//! (any changed byte breaks a hash) and verify signatures only after it.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use super::config::{DistrictConfig, StationEntry};
use super::store::tables::{AlarmRow, TokenRow};
use super::store::{DistrictStore, DistrictStoreError};
use crate::proof::{ChainVerifier, Expect, GENESIS_HASH, canonical, sha256_hex, signed_by};

/// What the check found: nothing wrong, or each thing wrong in words (what, where).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MemoryCheck {
    pub problems: Vec<String>,
    /// Stations whose held events verified, with the (seq, hash) they verified through: a
    /// checkpoint for the next check.
    #[serde(skip)]
    pub verified: Vec<(String, i64, String)>,
    pub office_events: usize,
    pub station_events: usize,
}

impl MemoryCheck {
    pub fn is_whole(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What the office's log proves a station's row holds.
#[derive(Debug, Default)]
struct Proven {
    enrolled_at: Option<i64>,
    head: Option<(i64, String, String, String)>,
    contact: Option<i64>,
    checked: Option<(i64, String)>,
}

/// What the office's log proves of alarms, tokens and findings.
#[derive(Debug, Default)]
struct Replayed {
    stations: HashMap<String, Proven>,
    alarms: BTreeMap<i64, AlarmRow>,
    tokens: BTreeMap<i64, TokenRow>,
    findings: Vec<(String, i64, String)>,
}

/// Checks the office's memory through connections of its own (the check may run beside the
/// office); `office_key` is the key of `district.key`. Stations are checked on every core.
pub fn check(config: &DistrictConfig, office_key: &VerifyingKey) -> Result<MemoryCheck, DistrictStoreError> {
    let reader = DistrictStore::open(&config.data_dir)?;
    // One state is judged: the log, the tables and how far each station's events go are read in
    // one snapshot. The workers below verify only what that snapshot's log says was verified,
    // which a concurrent ingest only ever appends to.
    reader.begin_snapshot()?;
    let mut out = MemoryCheck::default();
    for guard in reader.missing_guards()? {
        out.problems.push(format!("the database's guard {guard} was removed: its table can be edited unseen"));
    }
    let replayed = replay(&reader, office_key, &mut out)?;
    compare_tables(&reader, &replayed, &mut out)?;
    for station in &config.stations {
        let head_seq = replayed.stations.get(&station.id).and_then(|p| p.head.as_ref()).map_or(0, |h| h.0);
        if let Some(seq) = reader.first_held_after(&station.id, head_seq)? {
            out.problems.push(format!(
                "station {}: the database holds events from seq {seq} beyond seq {head_seq}, the last the office's \
                 log says it verified: they were inserted behind its back",
                station.id
            ));
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(config.stations.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parts: Vec<Result<MemoryCheck, DistrictStoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let reader = DistrictStore::open(&config.data_dir)?;
                    let mut part = MemoryCheck::default();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(station) = config.stations.get(i) else { return Ok(part) };
                        check_station(&reader, station, replayed.stations.get(&station.id), &mut part)?;
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a check worker does not panic")).collect()
    });
    for part in parts {
        let part = part?;
        out.problems.extend(part.problems);
        out.verified.extend(part.verified);
        out.station_events += part.station_events;
    }
    for id in reader.stations_with_events()? {
        if !replayed.stations.contains_key(&id) {
            out.problems.push(format!("events of station {id} are held, but the office's log never enrolled it"));
        }
    }
    Ok(out)
}

fn replay(reader: &DistrictStore, key: &VerifyingKey, out: &mut MemoryCheck) -> Result<Replayed, DistrictStoreError> {
    let mut replayed = Replayed::default();
    let mut prev = GENESIS_HASH.to_owned();
    for (index, event) in reader.ledger()?.iter().enumerate() {
        let broken = |why: &str| format!("the office's log is broken at seq {}: {why}", event.seq);
        let fields = match crate::proof::read_body(&event.body) {
            Ok(fields) => fields,
            Err(why) => {
                out.problems.push(broken(&why));
                return Ok(replayed);
            }
        };
        let why = if event.seq != index as i64 + 1 {
            Some("an event is missing or out of order")
        } else if canonical(&fields) != event.body || sha256_hex(event.body.as_bytes()) != event.hash {
            Some("its bytes were changed")
        } else if fields.get("prev_hash").and_then(Value::as_str) != Some(prev.as_str()) {
            Some("it does not follow the event before it")
        } else if !signed_by(key, &event.hash, &event.sig) {
            Some("it is not signed by district.key")
        } else {
            None
        };
        if let Some(why) = why {
            out.problems.push(broken(why));
            return Ok(replayed);
        }
        prev = event.hash.clone();
        out.office_events += 1;
        apply(&mut replayed, &fields);
    }
    Ok(replayed)
}

/// Moves the replayed state past one office event.
fn apply(replayed: &mut Replayed, f: &serde_json::Map<String, Value>) {
    let text = |name: &str| f.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let number = |name: &str| f.get(name).and_then(Value::as_i64);
    let station = text("station_id");
    match f.get("kind").and_then(Value::as_str).unwrap_or_default() {
        "enrolled" => replayed.stations.entry(station).or_default().enrolled_at = number("enrolled_at"),
        "held" => {
            let head = (number("head_seq").unwrap_or(0), text("head_hash"), text("key"), text("context"));
            replayed.stations.entry(station).or_default().head = Some(head);
        }
        "contact" => replayed.stations.entry(station).or_default().contact = number("ok_at"),
        "checked" => {
            replayed.stations.entry(station).or_default().checked = number("event_seq").map(|s| (s, text("hash")))
        }
        "finding" => replayed.findings.push((station, number("event_seq").unwrap_or(0), text("why"))),
        "alarm" => {
            let alarm = AlarmRow {
                id: number("alarm_id").unwrap_or(0),
                station_id: station,
                kind: text("alarm_kind"),
                seq: number("event_seq"),
                detail: text("detail"),
                note: None,
                evidence_sha256: f.get("evidence_sha256").and_then(Value::as_str).map(str::to_owned),
            };
            replayed.alarms.insert(alarm.id, alarm);
        }
        "ack" => {
            if let Some(alarm) = replayed.alarms.get_mut(&number("alarm_id").unwrap_or(0)) {
                alarm.note = Some(text("note"));
            }
        }
        "token" => {
            let id = number("token_id").unwrap_or(0);
            let token =
                TokenRow { id, role: text("role"), owner: text("owner"), sha256: text("token_sha256"), revoked: false };
            replayed.tokens.insert(id, token);
        }
        "revoke" => {
            if let Some(token) = replayed.tokens.get_mut(&number("token_id").unwrap_or(0)) {
                token.revoked = true;
            }
        }
        _ => {}
    }
}

fn compare_tables(
    reader: &DistrictStore,
    replayed: &Replayed,
    out: &mut MemoryCheck,
) -> Result<(), DistrictStoreError> {
    let grain = super::store::CONTACT_GRAIN_MS;
    let rows = reader.station_rows()?;
    for row in &rows {
        let Some(proven) = replayed.stations.get(&row.id) else {
            out.problems.push(format!("station {}: its row was added to the database, not by the office", row.id));
            continue;
        };
        let (head_seq, head_hash, key, context) = match &proven.head {
            Some((seq, hash, key, context)) => (*seq, hash.as_str(), Some(key.as_str()), context.as_str()),
            None => (0, "", None, "{}"),
        };
        let mut wrong = Vec::new();
        if row.head_seq != head_seq || row.head_hash != head_hash {
            wrong.push(format!("head {}:{} (the log proves {head_seq}:{head_hash})", row.head_seq, row.head_hash));
        }
        if key.is_some_and(|key| key != row.key) {
            wrong.push(format!("key {} (the log proves {})", row.key, key.unwrap_or_default()));
        }
        if row.context != context {
            wrong.push("its plausibility memory".to_owned());
        }
        if proven.enrolled_at != Some(row.enrolled_at) {
            wrong.push("when it was enrolled".to_owned());
        }
        let contact_ok = match (row.last_ok_at, proven.contact) {
            (None, None) => true,
            (Some(at), Some(logged)) => at >= logged && at - logged < grain,
            _ => false,
        };
        if !contact_ok {
            wrong.push("its last clean contact".to_owned());
        }
        if !wrong.is_empty() {
            out.problems.push(format!("station {}: the database was edited: {}", row.id, wrong.join(", ")));
        }
    }
    for id in replayed.stations.keys().filter(|id| !rows.iter().any(|r| &r.id == *id)) {
        out.problems.push(format!("station {id}: its row was deleted from the database"));
    }
    let alarms = reader.alarm_rows()?;
    for (id, proven) in &replayed.alarms {
        let (kind, station) = (&proven.kind, &proven.station_id);
        match alarms.iter().find(|a| a.id == *id) {
            None => out.problems.push(format!("alarm {id} ({kind}, station {station}) was deleted from the database")),
            Some(row) if row != proven => {
                out.problems.push(format!("alarm {id} ({kind}, station {station}) was edited in the database"))
            }
            Some(_) => {}
        }
    }
    for a in alarms.iter().filter(|a| !replayed.alarms.contains_key(&a.id)) {
        out.problems.push(format!("alarm {} ({}) was added to the database, not by the office", a.id, a.kind));
    }
    let tokens = reader.token_rows()?;
    for (id, proven) in &replayed.tokens {
        let (role, owner) = (&proven.role, &proven.owner);
        match tokens.iter().find(|t| t.id == *id) {
            Some(row) if row == proven => {}
            Some(_) => out.problems.push(format!("token {id} ({role} {owner}) was edited in the database")),
            None => out.problems.push(format!("token {id} ({role} {owner}) was deleted from the database")),
        }
    }
    for t in tokens.iter().filter(|t| !replayed.tokens.contains_key(&t.id)) {
        out.problems
            .push(format!("token {} ({} {}) was added to the database, not by the office", t.id, t.role, t.owner));
    }
    let findings = reader.implausible_rows()?;
    let mut proven = replayed.findings.clone();
    proven.sort();
    if findings != proven {
        out.problems.push("the implausible findings were edited in the database".to_owned());
    }
    Ok(())
}

/// Events held per read.
const CHUNK: i64 = 20_000;

/// A station's held events, verified from seq 1 with the pinned key through the proven head.
fn check_station(
    reader: &DistrictStore,
    station: &StationEntry,
    proven: Option<&Proven>,
    out: &mut MemoryCheck,
) -> Result<(), DistrictStoreError> {
    let (head_seq, head_hash) = match proven.and_then(|p| p.head.as_ref()) {
        Some((seq, hash, _, _)) => (*seq, hash.clone()),
        None => (0, String::new()),
    };
    let checked = proven.and_then(|p| p.checked.clone()).filter(|(seq, _)| *seq <= head_seq);
    let expect = Expect {
        station_id: Some(station.id.clone()),
        accepted_replacements: station.accepted_replacements.iter().copied().collect(),
        signatures_checked_through: checked.as_ref().map_or(0, |c| c.0),
        ..Expect::default()
    };
    let mut verifier = ChainVerifier::new(station.public_key, expect).deferring_signatures();
    let (mut after, mut count) = (0, 0usize);
    loop {
        let events = reader.held_events(&station.id, after, CHUNK)?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        // What lies beyond the head was judged in the snapshot (`check`).
        for event in events.iter().take_while(|e| e.seq <= head_seq) {
            count += 1;
            if let Err(broken) = verifier.stored(count, event) {
                out.problems.push(held_damage(station, head_seq, &broken));
                return Ok(());
            }
        }
        if after >= head_seq {
            break;
        }
    }
    if count == 0 && head_seq == 0 {
        return Ok(());
    }
    match verifier.finish() {
        Ok(verified) if verified.last_seq == head_seq && verified.last_hash == head_hash => {
            out.station_events += verified.events;
            if checked.as_ref().is_none_or(|(seq, _)| *seq < head_seq) {
                out.verified.push((station.id.clone(), head_seq, head_hash));
            }
        }
        Ok(verified) => out.problems.push(format!(
            "station {}: the held events end at seq {}, but the office's log says it verified through seq {head_seq}: \
             events were deleted from the database",
            station.id, verified.last_seq
        )),
        Err(broken) => out.problems.push(held_damage(station, head_seq, &broken)),
    }
    Ok(())
}

/// A held event that no longer verifies: edited in the database, or — when the pinned key does
/// not sign what the office accepted — a key changed in district.toml after events were held.
fn held_damage(station: &StationEntry, head_seq: i64, broken: &crate::proof::Broken) -> String {
    let seq = broken.seq.unwrap_or(0);
    if matches!(broken.fault, crate::proof::Fault::Signature | crate::proof::Fault::Key) && seq == 1 && head_seq > 0 {
        return format!(
            "station {}: district.toml pins public_key {} but the events the office holds from seq 1 are not \
             signed by it ({broken}): put back the key they were accepted under, or ask the office's maintainer",
            station.id,
            hex::encode(station.public_key.to_bytes())
        );
    }
    format!("station {}: held event seq {seq} no longer verifies ({broken}): the database was edited", station.id)
}
