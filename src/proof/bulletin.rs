//! What the office sends down to its stations (issue 25): a bulletin's manifest and its
//! withdrawal, each a signed statement in the events' own encoding (RFC 8785, SHA-256, Ed25519
//! by the office's key; ARCHITECTURE.md, "Bulletin manifests"). Written once here, signed by the
//! office and read by the station: a station takes a manifest only if the key it pins signed
//! it, it is addressed to the station, and its window has not passed — each refusal a reason
//! the station records.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::clip::{ClipMeta, Priority};
use crate::proof::{Fields, StationKey, check_statement, sign_statement};

/// Which stations a bulletin is for: `"all"` of the office's, or a list of ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stations {
    All(AllStations),
    Listed(Vec<String>),
}

/// The word `"all"`, and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllStations {
    All,
}

impl Stations {
    pub fn includes(&self, station: &str) -> bool {
        match self {
            Stations::All(_) => true,
            Stations::Listed(ids) => ids.iter().any(|id| id == station),
        }
    }
}

/// A bulletin as the office signs it. `id` is its place in the office's log (the feed's
/// order); `sha256`, `bytes` and `duration_ms` are what the station checks the audio against;
/// `valid_from` and `valid_until` are inclusive station-local dates; `airings` is how many
/// completed airings each station owes within them (priority and normal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub kind: ManifestKind,
    pub office: String,
    pub office_key: String,
    pub id: i64,
    pub sha256: String,
    pub bytes: u64,
    pub duration_ms: u64,
    pub title: String,
    pub topic: String,
    pub language: String,
    pub priority: Priority,
    pub stations: Stations,
    pub valid_from: NaiveDate,
    pub valid_until: NaiveDate,
    pub airings: u32,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManifestKind {
    Bulletin,
}

/// The office takes a bulletin back: stations stop airing it and say so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    pub kind: WithdrawalKind,
    pub office: String,
    pub office_key: String,
    pub id: i64,
    pub at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalKind {
    BulletinWithdrawn,
}

/// One statement of the office's feed, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Bulletin(Manifest),
    Withdrawn(Withdrawal),
}

named_enum! {
    /// Why a station refuses a bulletin (recorded in its `bulletin_refused` event).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Refusal("a bulletin refusal") {
        /// Not signed by the office key this station pins, or its bytes are not what was signed.
        BadSignature = "bad_signature",
        /// Signed, but not a manifest or withdrawal as specified (a member missing, unknown or
        /// of the wrong type).
        Malformed = "malformed",
        /// Addressed to other stations.
        NotForThisStation = "not_for_this_station",
        /// Its window ended before the station received it.
        Expired = "expired",
        /// The audio downloaded is not the file the manifest names (its SHA-256 or size).
        HashMismatch = "hash_mismatch",
        /// The audio did not pass the station's playability gate, or its length is not the
        /// manifest's.
        NotPlayable = "not_playable",
        /// The office withdrew it.
        Withdrawn = "withdrawn",
    }
}

/// A refusal with its particulars, in words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Refused {
    pub reason: Refusal,
    pub detail: String,
}

fn refused(reason: Refusal, detail: impl Into<String>) -> Refused {
    Refused { reason, detail: detail.into() }
}

fn fields_of(value: &impl Serialize) -> Fields {
    match serde_json::to_value(value).expect("a manifest serialises") {
        Value::Object(fields) => fields,
        _ => unreachable!("a struct serialises to an object"),
    }
}

impl Manifest {
    /// The signed line the office publishes.
    pub fn sign(&self, key: &StationKey) -> String {
        sign_statement(key, &fields_of(self))
    }
}

impl Withdrawal {
    pub fn sign(&self, key: &StationKey) -> String {
        sign_statement(key, &fields_of(self))
    }
}

/// Reads one line of the office's feed for `station` on its local date `today`, with the
/// office key the station pins: the notice, or why it is refused. A manifest whose window has
/// passed is refused `expired`; one not begun yet is taken (the station airs it from
/// `valid_from`).
pub fn read(
    line: &str,
    office_key: &ed25519_dalek::VerifyingKey,
    station: &str,
    today: NaiveDate,
) -> Result<Notice, Refused> {
    let fields = check_statement(line, office_key).map_err(|why| refused(Refusal::BadSignature, why))?;
    let value = Value::Object(fields);
    let declared = hex::encode(office_key.as_bytes());
    let notice = match value["kind"].as_str() {
        Some("bulletin") => Notice::Bulletin(
            serde_json::from_value(value).map_err(|e| refused(Refusal::Malformed, format!("a bulletin: {e}")))?,
        ),
        Some("bulletin_withdrawn") => Notice::Withdrawn(
            serde_json::from_value(value).map_err(|e| refused(Refusal::Malformed, format!("a withdrawal: {e}")))?,
        ),
        other => {
            return Err(refused(Refusal::Malformed, format!("kind {other:?} is not bulletin or bulletin_withdrawn")));
        }
    };
    let office_key_named = match &notice {
        Notice::Bulletin(m) => &m.office_key,
        Notice::Withdrawn(w) => &w.office_key,
    };
    if *office_key_named != declared {
        return Err(refused(Refusal::BadSignature, "it names another office key than the one that signed it"));
    }
    if let Notice::Bulletin(manifest) = &notice {
        check_manifest(manifest, station, today)?;
    }
    Ok(notice)
}

fn check_manifest(m: &Manifest, station: &str, today: NaiveDate) -> Result<(), Refused> {
    let malformed = |what: &str| Err(refused(Refusal::Malformed, what.to_owned()));
    if !crate::proof::is_hex64(&m.sha256) {
        return malformed("sha256 is not 64 lowercase hex digits");
    }
    if m.id < 1 || m.bytes == 0 || m.duration_ms == 0 || m.airings == 0 {
        return malformed("id, bytes, duration_ms and airings must be positive");
    }
    // Integers every JSON implementation reads exactly, as the station's own events must hold.
    let safe = crate::proof::schema::MAX_SAFE_INTEGER;
    let beyond = [("id", m.id), ("created_at", m.created_at)].into_iter().find(|(_, n)| n.abs() > safe).map(|(f, _)| f);
    let beyond = beyond.or_else(|| {
        [("bytes", m.bytes), ("duration_ms", m.duration_ms)].into_iter().find(|(_, n)| *n > safe as u64).map(|(f, _)| f)
    });
    if let Some(field) = beyond {
        return malformed(&format!("{field} is beyond 2^53 - 1, which no JSON reader reads exactly"));
    }
    // What an operator's upload may say, the office's bulletin may too, and no more.
    let meta = ClipMeta {
        title: m.title.clone(),
        topic: m.topic.clone(),
        language: m.language.clone(),
        priority: m.priority,
        valid_from: Some(m.valid_from),
        valid_until: Some(m.valid_until),
    };
    if let Err(e) = meta.check() {
        return malformed(&e.to_string());
    }
    if m.valid_until < m.valid_from {
        return malformed("valid_until is before valid_from");
    }
    if !m.stations.includes(station) {
        return Err(refused(Refusal::NotForThisStation, format!("bulletin {} is for other stations", m.id)));
    }
    if m.valid_until < today {
        return Err(refused(Refusal::Expired, format!("its window ended on {}", m.valid_until)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> StationKey {
        StationKey::from_seed([seed; 32])
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    fn manifest(office: &StationKey, stations: Stations) -> Manifest {
        Manifest {
            kind: ManifestKind::Bulletin,
            office: "UBND xã Phú Thủy".into(),
            office_key: office.public_key_hex(),
            id: 7,
            sha256: "a".repeat(64),
            bytes: 100_098,
            duration_ms: 25_021,
            title: "Bản tin CCHC tháng 12".into(),
            topic: "cchc".into(),
            language: "vi".into(),
            priority: Priority::Priority,
            stations,
            valid_from: day(1),
            valid_until: day(7),
            airings: 2,
            created_at: 1_796_000_000_000,
        }
    }

    #[test]
    fn a_signed_manifest_reads_back_at_the_stations_it_names_within_its_window() {
        let office = key(1);
        let sent = manifest(&office, Stations::Listed(vec!["phu-thuy".into(), "binh-an".into()]));
        let line = sent.sign(&office);
        assert!(line.starts_with("{\"airings\":2,\"bytes\":100098,"), "RFC 8785 orders the members: {line}");
        assert_eq!(
            read(&line, &office.signing().verifying_key(), "binh-an", day(3)),
            Ok(Notice::Bulletin(sent.clone()))
        );
        let all = manifest(&office, Stations::All(AllStations::All)).sign(&office);
        assert!(all.contains("\"stations\":\"all\""), "{all}");
        assert!(read(&all, &office.signing().verifying_key(), "any-station", day(1)).is_ok());
        // Not begun yet: taken, aired from valid_from.
        assert!(read(&line, &office.signing().verifying_key(), "phu-thuy", day(1).pred_opt().unwrap()).is_ok());
    }

    #[test]
    fn every_class_of_bad_manifest_is_refused_with_its_reason() {
        let office = key(1);
        let reason = |line: &str, station: &str, today: NaiveDate| {
            read(line, &office.signing().verifying_key(), station, today).map(|_| ()).map_err(|r| r.reason)
        };
        let good = manifest(&office, Stations::Listed(vec!["phu-thuy".into()])).sign(&office);
        // Another key signed it (a forged office), or it names another key than its signer's.
        let forged = manifest(&office, Stations::Listed(vec!["phu-thuy".into()])).sign(&key(2));
        assert_eq!(reason(&forged, "phu-thuy", day(3)), Err(Refusal::BadSignature));
        let mut other = manifest(&office, Stations::Listed(vec!["phu-thuy".into()]));
        other.office_key = key(2).public_key_hex();
        assert_eq!(reason(&other.sign(&office), "phu-thuy", day(3)), Err(Refusal::BadSignature));
        // An edited byte: the title, the window, the station list.
        for (from, to) in [("Bản tin", "Bản tín"), ("2026-12-07", "2026-12-31"), ("phu-thuy", "binh-an")] {
            assert_eq!(reason(&good.replacen(from, to, 1), "phu-thuy", day(3)), Err(Refusal::BadSignature), "{to}");
        }
        assert_eq!(reason(&good, "binh-an", day(3)), Err(Refusal::NotForThisStation));
        assert_eq!(reason(&good, "phu-thuy", day(8)), Err(Refusal::Expired));
        // Signed by the office but not a manifest as specified.
        let mut fields = fields_of(&manifest(&office, Stations::Listed(vec!["phu-thuy".into()])));
        fields.insert("extra".into(), Value::from(1));
        assert_eq!(reason(&sign_statement(&office, &fields), "phu-thuy", day(3)), Err(Refusal::Malformed));
        fields.remove("extra");
        fields.insert("priority".into(), Value::from("urgent"));
        assert_eq!(reason(&sign_statement(&office, &fields), "phu-thuy", day(3)), Err(Refusal::Malformed));
        fields.insert("priority".into(), Value::from("normal"));
        fields.insert("valid_until".into(), Value::from("2026-11-30"));
        assert_eq!(reason(&sign_statement(&office, &fields), "phu-thuy", day(3)), Err(Refusal::Malformed));
        fields.insert("stations".into(), Value::from("some"));
        assert_eq!(reason(&sign_statement(&office, &fields), "phu-thuy", day(3)), Err(Refusal::Malformed));
    }

    #[test]
    fn a_withdrawal_is_read_only_from_the_pinned_office() {
        let office = key(1);
        let withdrawal = Withdrawal {
            kind: WithdrawalKind::BulletinWithdrawn,
            office: "UBND xã Phú Thủy".into(),
            office_key: office.public_key_hex(),
            id: 7,
            at: 1_796_000_000_000,
        };
        let line = withdrawal.sign(&office);
        assert_eq!(
            read(&line, &office.signing().verifying_key(), "phu-thuy", day(3)),
            Ok(Notice::Withdrawn(withdrawal.clone()))
        );
        let forged = withdrawal.sign(&key(3));
        assert_eq!(
            read(&forged, &office.signing().verifying_key(), "phu-thuy", day(3)).unwrap_err().reason,
            Refusal::BadSignature
        );
    }
}
