//! Verification with memory: what the office does with a batch of a station's events, pulled
//! or pushed. Each event is checked exactly as `loa verify` checks it (bytes, hash, link,
//! signature with the key in force, gapless seq, station id), and against what the office
//! already holds: a station whose head is behind the held one, or that no longer serves an
//! event the office holds, has gone back (`rollback`); a validly signed event at a held seq
//! with another hash is a `fork` (both kept). Like a transparency-log witness, the office only
//! moves a station's head forward along the chain it has seen.
//!
//! Pure: the caller reads what is held from the store and writes what this decides.

use ed25519_dalek::VerifyingKey;

use crate::district::plausible::Context;
use crate::district::store::{Held, HeldEvent};
use crate::proof::head::HeadStatement;
use crate::proof::{ChainVerifier, Expect, Fault, parse_public_key, sha256_hex, signed_by, split_line};

named_enum! {
    /// The alarms the office raises (stable names: other tools read them).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum AlarmKind("an alarm kind") {
        BadHash = "bad_hash",
        BadSignature = "bad_signature",
        Gap = "gap",
        WrongStation = "wrong_station",
        KeyChanged = "key_changed",
        Rollback = "rollback",
        Fork = "fork",
        /// A properly signed event whose members do not match its kind (the schema).
        BadEvent = "bad_event",
        /// A properly signed claim the office does not believe (dated ahead or before loa, two
        /// airings at once, an airing while stopped, more played than the airing lasted…): kept,
        /// never counted as aired.
        Implausible = "implausible",
        /// The station itself reports its log damaged, tampered with (triggers removed, tail
        /// cut) or behind the office's receipt: what the office holds is now the only whole copy.
        LogTampered = "log_tampered",
        /// An answer the office cannot tell is fresh: no valid head statement over this pull's
        /// challenge, a head behind the one held, or a pull past its deadline.
        Stale = "stale",
        Unreachable = "unreachable",
    }
}

/// Something wrong, to be raised as an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: AlarmKind,
    pub seq: Option<i64>,
    pub detail: String,
    /// The event as received, kept with the alarm (a fork's other event).
    pub evidence: Option<String>,
}

/// What came from the station.
#[derive(Debug, Clone, Default)]
pub struct Batch<'a> {
    /// Export lines, in the order received.
    pub lines: Vec<&'a str>,
    /// The station's head as it reported it (a pull's page), if it did.
    pub reported_head: Option<i64>,
    /// The public key the station reports, if it did.
    pub reported_key: Option<&'a str>,
    /// The seq the batch was asked to follow: a pull asks from one before the held head, so its
    /// first event must be the held head.
    pub after_seq: i64,
    /// A pull's challenge and the station's head statement over it, if it sent one.
    pub freshness: Option<Freshness<'a>>,
    /// Nothing in the answer proves it fresh (a push without a statement over the challenge the
    /// office issued): what verifies is kept, but it is no contact.
    pub unproven: bool,
}

/// What makes a pull's answer provably fresh.
#[derive(Debug, Clone, Copy)]
pub struct Freshness<'a> {
    /// The challenge the office sent with this pull.
    pub challenge: &'a str,
    /// The station's signed head statement over it.
    pub statement: Option<&'a str>,
}

/// What the office should store and raise.
#[derive(Debug, Default)]
pub struct Decision {
    /// Verified new events, in order, to store.
    pub accepted: Vec<HeldEvent>,
    /// The key in force after the last accepted event.
    pub key: String,
    pub findings: Vec<Finding>,
    /// Plausibility's memory after the last accepted event.
    pub context: Context,
    /// Accepted events the office does not believe: (seq, why).
    pub implausible: Vec<(i64, String)>,
}

/// What the office brings to a batch: the station it must come from, what it holds of it, and
/// the `key_replaced` events its clerk accepted (by seq).
pub struct Holding<'a> {
    pub station_id: &'a str,
    pub held: &'a Held,
    pub accepted_replacements: &'a [i64],
    /// The office's clock (UTC ms): nothing is believed dated far after it.
    pub now: i64,
}

/// Checks `batch` against what the office holds. `held_hash(seq)` reads the hash of a held
/// event.
pub fn witness(holding: &Holding, held_hash: impl Fn(i64) -> Option<String>, batch: &Batch) -> Decision {
    let mut decision = chain(holding, &held_hash, batch);
    let mut context = holding.held.context.clone();
    for event in &decision.accepted {
        if ["log_damaged", "log_tampered", "log_behind_receipt"].contains(&event.kind.as_str()) {
            let detail = format!(
                "seq {}: the station reports its own log {}: keep what the office holds of it",
                event.seq,
                event.kind.trim_start_matches("log_").replace('_', " ")
            );
            decision.findings.push(Finding {
                kind: AlarmKind::LogTampered,
                seq: Some(event.seq),
                detail,
                evidence: None,
            });
        }
        if let Some(why) = context.observe((event.seq, &event.kind, event.at), &event.body, holding.now) {
            let detail = format!("seq {}: {why}; the event is kept but not counted as aired", event.seq);
            decision.findings.push(Finding {
                kind: AlarmKind::Implausible,
                seq: Some(event.seq),
                detail,
                evidence: None,
            });
            decision.implausible.push((event.seq, why));
        }
    }
    decision.context = context;
    if let Some(freshness) = batch.freshness {
        let hash_at = |seq: i64| match decision.accepted.iter().find(|e| e.seq == seq) {
            Some(event) => Some(event.hash.clone()),
            None => held_hash(seq),
        };
        let (station_id, held_seq) = (holding.station_id, holding.held.head_seq);
        if let Err(why) = fresh(freshness, &decision.key, station_id, held_seq, batch.reported_head, hash_at) {
            let evidence = freshness.statement.map(str::to_owned);
            decision.findings.push(Finding { kind: AlarmKind::Stale, seq: batch.reported_head, detail: why, evidence });
        }
    }
    decision
}

/// The batch's events against the chain the office holds (no freshness).
fn chain(holding: &Holding, held_hash: &impl Fn(i64) -> Option<String>, batch: &Batch) -> Decision {
    let Holding { station_id, held, accepted_replacements, .. } = *holding;
    let mut decision = Decision { key: held.key.clone(), ..Decision::default() };
    let finding = |kind, seq, detail: String, evidence: Option<&str>| Finding {
        kind,
        seq,
        detail,
        evidence: evidence.map(str::to_owned),
    };
    if let Some(head) = batch.reported_head.filter(|head| *head < held.head_seq) {
        decision.findings.push(finding(
            AlarmKind::Rollback,
            Some(head + 1),
            format!(
                "the station's log ends at seq {head}, behind seq {} which the office holds: it was restored \
                 from an old copy or replaced; events {}–{} are gone from it",
                held.head_seq,
                head + 1,
                held.head_seq
            ),
            None,
        ));
    }
    let Ok(key) = parse_public_key(&held.key) else {
        decision.findings.push(finding(AlarmKind::KeyChanged, None, "the held key is not a key".into(), None));
        return decision;
    };

    // Events the office holds already: each must be the very event held. One that is not is a
    // fork if any key the held log was signed with signed it.
    let signers: Vec<VerifyingKey> =
        held.earlier_keys.iter().filter_map(|k| parse_public_key(k).ok()).chain(std::iter::once(key)).collect();
    let repeated = held_lines(&batch.lines, held.head_seq);
    for &(index, seq) in &repeated {
        if let Some(conflict) = check_held(batch.lines[index], seq, &signers, held_hash(seq)) {
            decision.findings.push(conflict);
        }
    }
    let new: Vec<(usize, &str)> =
        batch.lines.iter().enumerate().skip(repeated.len()).map(|(index, line)| (index + 1, *line)).collect();
    let serves_head =
        held.head_seq == 0 || batch.after_seq >= held.head_seq || repeated.iter().any(|(_, seq)| *seq == held.head_seq);
    if !serves_head && !decision.findings.iter().any(|f| f.kind == AlarmKind::Rollback) {
        decision.findings.push(finding(
            AlarmKind::Rollback,
            Some(held.head_seq),
            format!(
                "the station no longer serves seq {}, the last event the office holds: its log was restored \
                 from an old copy or replaced",
                held.head_seq
            ),
            None,
        ));
    }
    // A station whose history differs from the office's cannot extend it.
    if decision.findings.iter().any(|f| matches!(f.kind, AlarmKind::Fork | AlarmKind::Rollback)) {
        report_other_key(&mut decision, batch.reported_key);
        return decision;
    }

    let expect = Expect {
        station_id: Some(station_id.to_owned()),
        accepted_replacements: accepted_replacements.iter().copied().collect(),
        ..Expect::default()
    };
    let verifier = if held.head_seq == 0 {
        ChainVerifier::new(key, expect)
    } else {
        ChainVerifier::after(key, (held.head_seq, held.head_hash.clone()), expect)
    };
    let mut verifier = verifier.deferring_signatures();
    for (line_number, line) in new {
        match verifier.line(line_number, line) {
            Ok(checked) => {
                let (body, hash, sig) = split_line(line).expect("the verifier split it");
                decision.accepted.push(HeldEvent {
                    seq: checked.seq,
                    at: checked.at,
                    kind: checked.kind.as_str().to_owned(),
                    body,
                    hash: hash.to_owned(),
                    sig: sig.to_owned(),
                });
            }
            Err(broken) => {
                // A signature deferred before this line may be the first thing wrong.
                let broken = verifier.flush().err().unwrap_or(broken);
                decision.accepted.retain(|e| broken.seq.is_none_or(|bad| e.seq < bad));
                let kind = match broken.fault {
                    Fault::Encoding | Fault::Hash => AlarmKind::BadHash,
                    Fault::Gap | Fault::Start => AlarmKind::Gap,
                    Fault::Signature => AlarmKind::BadSignature,
                    Fault::Station => AlarmKind::WrongStation,
                    Fault::Key => AlarmKind::KeyChanged,
                    Fault::Schema => AlarmKind::BadEvent,
                };
                decision.findings.push(finding(kind, broken.seq, broken.to_string(), Some(line)));
                break;
            }
        }
    }
    if decision.findings.is_empty() {
        if let Err(broken) = verifier.flush() {
            decision.accepted.retain(|e| broken.seq.is_none_or(|bad| e.seq < bad));
            decision.findings.push(finding(AlarmKind::BadSignature, broken.seq, broken.to_string(), None));
        }
    }
    if !decision.accepted.is_empty() {
        decision.key = verifier.key_in_force().to_owned();
    }
    report_other_key(&mut decision, batch.reported_key);
    decision
}

/// Whether the station's head statement answers this pull's challenge now, with the key in force,
/// for the head it reported and not behind what the office holds.
fn fresh(
    freshness: Freshness,
    key: &str,
    station_id: &str,
    held_seq: i64,
    reported_head: Option<i64>,
    hash_at: impl Fn(i64) -> Option<String>,
) -> Result<(), String> {
    let replayed = "it may be an answer replayed by something between the office and the station";
    let line = freshness.statement.ok_or_else(|| {
        format!("the station's answer carries no head statement over the office's challenge: {replayed}, or loa on the box is too old")
    })?;
    let key = parse_public_key(key)?;
    let statement = HeadStatement::check(line, &key)
        .map_err(|e| format!("the head statement does not check with the station's key ({e}): {replayed}"))?;
    if statement.challenge != freshness.challenge || statement.station_id != station_id {
        return Err(format!("the head statement answers another challenge or station: {replayed}"));
    }
    if reported_head.is_some_and(|head| head != statement.head_seq) {
        return Err(format!(
            "the head statement names seq {}, the page seq {}: {replayed}",
            statement.head_seq,
            reported_head.unwrap_or(0)
        ));
    }
    if statement.head_seq < held_seq {
        return Err(format!(
            "the station's signed head is seq {}, behind seq {held_seq} which the office holds",
            statement.head_seq
        ));
    }
    if hash_at(statement.head_seq).is_some_and(|hash| hash != statement.head_hash) {
        return Err(format!("the head statement's hash at seq {} is not the event's", statement.head_seq));
    }
    Ok(())
}

/// A station that reports another key than the one in force after what the office verified
/// (a rotation it logged is followed first) was replaced, or changed its key outside its log.
fn report_other_key(decision: &mut Decision, reported: Option<&str>) {
    if let Some(reported) = reported.filter(|k| *k != decision.key) {
        decision.findings.push(Finding {
            kind: AlarmKind::KeyChanged,
            seq: None,
            detail: format!(
                "the station now reports public key {reported}, not {} which the office holds: the box was \
                 replaced, or its key changed outside its log",
                decision.key
            ),
            evidence: None,
        });
    }
}

/// A line at a seq the office holds: the same event (nothing to say), or what it is.
fn check_held(line: &str, seq: i64, keys: &[VerifyingKey], held: Option<String>) -> Option<Finding> {
    let Ok((body, hash, sig)) = split_line(line) else {
        return Some(Finding {
            kind: AlarmKind::BadHash,
            seq: Some(seq),
            detail: format!("seq {seq}: not an export line"),
            evidence: Some(line.to_owned()),
        });
    };
    let computed = sha256_hex(body.as_bytes());
    if held.as_deref() == Some(hash) && computed == hash {
        return None;
    }
    if computed != hash {
        return Some(Finding {
            kind: AlarmKind::BadHash,
            seq: Some(seq),
            detail: format!("seq {seq}: the hash does not match the event's bytes: it was altered on the way"),
            evidence: Some(line.to_owned()),
        });
    }
    if !keys.iter().any(|key| signed_by(key, hash, sig)) {
        return Some(Finding {
            kind: AlarmKind::BadSignature,
            seq: Some(seq),
            detail: format!(
                "seq {seq}: an event the office holds comes back with another hash, not signed by the station's key"
            ),
            evidence: Some(line.to_owned()),
        });
    }
    Some(Finding {
        kind: AlarmKind::Fork,
        seq: Some(seq),
        detail: format!(
            "seq {seq}: the station signed another event at a seq the office holds (held {}, now {hash}): its log \
             forked, e.g. restored from an old copy and aired again; both events are kept",
            held.unwrap_or_default()
        ),
        evidence: Some(line.to_owned()),
    })
}

/// The leading lines of a batch at seqs the office holds already, as (index, seq): a station
/// sends its events in order, so the first line past the held head ends them, and only those
/// are parsed here (the verifier reads the rest, and names a line out of order).
pub fn held_lines(lines: &[&str], head_seq: i64) -> Vec<(usize, i64)> {
    lines
        .iter()
        .map(|line| seq_of(line))
        .enumerate()
        .map_while(|(index, seq)| Some((index, seq.filter(|s| *s <= head_seq)?)))
        .collect()
}

/// The `seq` of an export line, parsed (a member named `x"seq` or a `seq` given twice cannot
/// pass for it); `None` if the line is not an event with an integer `seq`.
pub fn seq_of(line: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: i64,
    }
    let (body, _, _) = split_line(line).ok()?;
    serde_json::from_str::<Seq>(&body).ok().map(|s| s.seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::{Fields, GENESIS_HASH, StationKey};
    use serde_json::Value;

    fn key(seed: u8) -> StationKey {
        StationKey::from_seed([seed; 32])
    }

    /// `n` export lines of station `id` signed by `key`, from seq 1; `note` varies the bodies.
    fn log(key: &StationKey, id: &str, n: i64, note: &str) -> Vec<String> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut fields = Fields::new();
                fields.insert("kind".into(), Value::from("station_stopped"));
                fields.insert("reason".into(), Value::from(format!("{note} {seq}")));
                fields.insert("station_id".into(), Value::from(id));
                fields.insert("at".into(), Value::from(1_800_000_000_000i64 + seq));
                let sealed = key.seal(seq, &prev, fields);
                prev = sealed.hash.clone();
                sealed.export_line()
            })
            .collect()
    }

    fn held_after(lines: &[String], key: &StationKey) -> (Held, std::collections::HashMap<i64, String>) {
        let hashes: std::collections::HashMap<i64, String> =
            lines.iter().map(|l| (seq_of(l).unwrap(), split_line(l).unwrap().1.to_owned())).collect();
        let last = lines.last().unwrap();
        let held = Held {
            head_seq: seq_of(last).unwrap(),
            head_hash: split_line(last).unwrap().1.to_owned(),
            key: key.public_key_hex(),
            ..Held::default()
        };
        (held, hashes)
    }

    fn judge(held: &Held, hashes: &std::collections::HashMap<i64, String>, lines: &[String], after: i64) -> Decision {
        let batch = Batch { lines: lines.iter().map(String::as_str).collect(), after_seq: after, ..Batch::default() };
        witness(&holding(held), |seq| hashes.get(&seq).cloned(), &batch)
    }

    /// What the office holds of station "a", with no replacement accepted.
    fn holding(held: &Held) -> Holding<'_> {
        Holding { station_id: "a", held, accepted_replacements: &[], now: 1_800_000_000_000 + 3_600_000 }
    }

    fn kinds(decision: &Decision) -> Vec<AlarmKind> {
        decision.findings.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_log_from_genesis_then_a_pull_overlapping_the_head_are_accepted() {
        let k = key(1);
        let lines = log(&k, "a", 30, "x");
        let fresh = Held { key: k.public_key_hex(), ..Held::default() };
        let first = judge(&fresh, &Default::default(), &lines[..20], 0);
        assert_eq!((first.accepted.len(), kinds(&first)), (20, vec![]));
        let (held, hashes) = held_after(&lines[..20], &k);
        let next = judge(&held, &hashes, &lines[19..], 19);
        assert_eq!((next.accepted.len(), kinds(&next)), (10, vec![]), "the held head is not stored twice");
        assert_eq!(next.accepted[0].seq, 21);
    }

    #[test]
    fn each_kind_of_wrong_is_named_and_only_what_came_before_it_is_kept() {
        let k = key(1);
        let lines = log(&k, "a", 30, "x");
        let (held, hashes) = held_after(&lines[..10], &k);
        let pull = |edit: &dyn Fn(&mut Vec<String>)| {
            let mut batch = lines[9..].to_vec();
            edit(&mut batch);
            judge(&held, &hashes, &batch, 9)
        };
        // A missing event.
        let gap = pull(&|b| drop(b.remove(5)));
        assert_eq!((kinds(&gap), gap.accepted.len()), (vec![AlarmKind::Gap], 4));
        // A byte changed on the way.
        let edited = pull(&|b| b[3] = b[3].replace("x 13", "y 13"));
        assert_eq!((kinds(&edited), edited.accepted.len()), (vec![AlarmKind::BadHash], 2));
        // The same event signed by another key, in the middle of a batch: the batch check fails
        // and the one-by-one check names it; the events before it are kept.
        let other = log(&key(2), "a", 30, "x");
        assert_eq!(split_line(&other[17]).unwrap().1, split_line(&lines[17]).unwrap().1, "same bytes, same hash");
        let forged = pull(&|b| b[8] = other[17].clone());
        assert_eq!((kinds(&forged), forged.accepted.len()), (vec![AlarmKind::BadSignature], 7));
        assert_eq!(forged.findings[0].seq, Some(18));
        // Another station's log.
        let elsewhere = log(&k, "b", 30, "x");
        let wrong = judge(&Held { key: k.public_key_hex(), ..Held::default() }, &Default::default(), &elsewhere, 0);
        assert_eq!(kinds(&wrong), vec![AlarmKind::WrongStation]);
    }

    #[test]
    fn a_signed_event_its_kind_does_not_allow_is_a_bad_event_and_what_came_before_is_kept() {
        let k = key(1);
        let mut lines = log(&k, "a", 5, "x");
        let prev = split_line(&lines[3]).unwrap().1.to_owned();
        let mut fields: Fields = serde_json::from_str(&split_line(&lines[4]).unwrap().0).unwrap();
        fields.remove("seq");
        fields.remove("prev_hash");
        fields.insert("reason".into(), Value::from(7));
        lines[4] = k.seal(5, &prev, fields).export_line();
        let fresh = Held { key: k.public_key_hex(), ..Held::default() };
        let decision = judge(&fresh, &Default::default(), &lines, 0);
        assert_eq!((kinds(&decision), decision.accepted.len()), (vec![AlarmKind::BadEvent], 4));
        assert!(decision.findings[0].detail.contains("`reason`"), "{}", decision.findings[0].detail);
        assert_eq!(decision.findings[0].seq, Some(5));
    }

    #[test]
    fn only_a_head_statement_over_this_challenge_with_the_key_in_force_is_a_fresh_answer() {
        let k = key(1);
        let lines = log(&k, "a", 10, "x");
        let (held, hashes) = held_after(&lines, &k);
        let challenge = "c".repeat(64);
        let head = (10, split_line(&lines[9]).unwrap().1);
        let at = chrono::DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let answer = |key: &StationKey, seq: i64, hash: &str, over: &str| {
            crate::proof::head::answer(key, "a", (seq, hash), over, at)
        };
        let pull = |statement: Option<&str>, reported: i64| {
            let batch = Batch {
                lines: lines[9..].iter().map(String::as_str).collect(),
                reported_head: Some(reported),
                after_seq: 9,
                freshness: Some(Freshness { challenge: &challenge, statement }),
                ..Batch::default()
            };
            kinds(&witness(&holding(&held), |seq| hashes.get(&seq).cloned(), &batch))
        };
        assert_eq!(pull(Some(&answer(&k, head.0, head.1, &challenge)), 10), vec![]);
        assert_eq!(pull(None, 10), vec![AlarmKind::Stale], "a replayed page has no statement");
        assert_eq!(pull(Some(&answer(&k, head.0, head.1, &"d".repeat(64))), 10), vec![AlarmKind::Stale], "an old one");
        assert_eq!(pull(Some(&answer(&key(2), head.0, head.1, &challenge)), 10), vec![AlarmKind::Stale], "another key");
        assert_eq!(
            pull(Some(&answer(&k, 10, &"0".repeat(64), &challenge)), 10),
            vec![AlarmKind::Stale],
            "another hash"
        );
        let behind = pull(Some(&answer(&k, 9, split_line(&lines[8]).unwrap().1, &challenge)), 9);
        assert!(behind.contains(&AlarmKind::Stale) && behind.contains(&AlarmKind::Rollback), "{behind:?}");
    }

    #[test]
    fn a_station_that_went_back_or_forked_cannot_extend_what_is_held() {
        let k = key(1);
        let lines = log(&k, "a", 30, "x");
        let (held, hashes) = held_after(&lines[..20], &k);
        // Restored from an old copy: it reports an earlier head and serves nothing at the held one.
        let batch = Batch {
            lines: lines[..12].iter().map(String::as_str).collect(),
            reported_head: Some(12),
            after_seq: 19,
            ..Batch::default()
        };
        let back = witness(&holding(&held), |seq| hashes.get(&seq).cloned(), &batch);
        assert_eq!(kinds(&back), vec![AlarmKind::Rollback]);
        assert!(back.accepted.is_empty());
        // Restored and aired on: a validly signed other event at a held seq.
        let other_history = log(&k, "a", 25, "restored");
        let fork = judge(&held, &hashes, &other_history[19..], 19);
        assert_eq!(kinds(&fork), vec![AlarmKind::Fork]);
        assert_eq!(fork.findings[0].evidence.as_deref(), Some(other_history[19].as_str()), "the other event is kept");
        assert!(fork.accepted.is_empty());
        // A replaced box: a new key, from seq 1 again, and it says so.
        let new_box = log(&key(3), "a", 25, "x");
        let new_key = key(3).public_key_hex();
        let batch = Batch {
            lines: new_box[19..].iter().map(String::as_str).collect(),
            reported_key: Some(&new_key),
            after_seq: 19,
            ..Batch::default()
        };
        let replaced = witness(&holding(&held), |seq| hashes.get(&seq).cloned(), &batch);
        assert!(kinds(&replaced).contains(&AlarmKind::KeyChanged), "{:?}", kinds(&replaced));
        assert!(kinds(&replaced).contains(&AlarmKind::BadSignature), "{:?}", kinds(&replaced));
    }

    #[test]
    fn a_fork_signed_with_a_key_from_before_a_rotation_is_still_a_fork() {
        let (old, new) = (key(1), key(2));
        let mut lines = log(&old, "a", 5, "x");
        let mut prev = split_line(&lines[4]).unwrap().1.to_owned();
        let mut seal = |signer: &StationKey, seq: i64, mut fields: Fields| {
            fields.insert("station_id".into(), Value::from("a"));
            fields.insert("at".into(), Value::from(1_800_000_000_000i64 + seq));
            let sealed = signer.seal(seq, &prev, fields);
            prev = sealed.hash.clone();
            sealed.export_line()
        };
        let mut rotated = Fields::new();
        rotated.insert("kind".into(), Value::from("key_rotated"));
        rotated.insert("public_key".into(), Value::from(old.public_key_hex()));
        rotated.insert("new_public_key".into(), Value::from(new.public_key_hex()));
        lines.push(seal(&old, 6, rotated));
        for seq in 7..=9 {
            let mut note = Fields::new();
            note.insert("kind".into(), Value::from("station_stopped"));
            note.insert("reason".into(), Value::from(format!("x {seq}")));
            lines.push(seal(&new, seq, note));
        }
        // The whole log verifies from genesis and leaves the new key in force.
        let fresh = Held { key: old.public_key_hex(), ..Held::default() };
        let first = judge(&fresh, &Default::default(), &lines, 0);
        assert_eq!((first.accepted.len(), kinds(&first), first.key.clone()), (9, vec![], new.public_key_hex()));

        // Another event at seq 3, signed by the key of that time.
        let (mut held, hashes) = held_after(&lines, &new);
        let other = log(&old, "a", 5, "restored");
        let without_history = judge(&held, &hashes, &other[2..3], 2);
        assert_eq!(kinds(&without_history), vec![AlarmKind::BadSignature, AlarmKind::Rollback]);
        held.earlier_keys = vec![old.public_key_hex()];
        let with_history = judge(&held, &hashes, &other[2..3], 2);
        assert_eq!(kinds(&with_history)[0], AlarmKind::Fork);
    }
}
