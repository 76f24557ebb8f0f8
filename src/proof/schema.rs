//! What each kind of event must contain, declared once. A signature proves who wrote an event,
//! not that it says something the program can count: a properly signed `airing_ended` with a
//! status nobody knows, an `at` that is text, or an integer no other JSON implementation reads
//! the same would otherwise be accepted and break every report after it. `loa verify`, the
//! station's self-check and the office's witness all run the verifier, which runs this check;
//! the Python verifier in CI carries its own copy written from the table in ARCHITECTURE.md,
//! which [`markdown`] prints (tests/it/tidy.rs keeps the two texts equal).
//!
//! Fail closed: an unknown kind, an unknown or missing member, a wrong type or an unknown
//! enumeration value is refused, naming the member.

use serde_json::{Map, Value};

use crate::model::clip::Priority;
use crate::model::token::Role;
use crate::proof::bulletin::Refusal;
use crate::proof::events::{AiringStatus, Kind, MissReason};

/// The largest integer every JSON implementation reads exactly (RFC 8785 §3.2.2.3, I-JSON).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// What a member's value may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Type {
    Text,
    /// 64 lowercase hex digits (a SHA-256 or an Ed25519 public key).
    Hex64,
    /// A whole number within ±(2^53 − 1).
    Integer,
    Boolean,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

/// One member of an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    pub name: &'static str,
    pub ty: Type,
    /// `null` is allowed.
    pub nullable: bool,
    /// The member may be absent (it was added after the kind was first written, or is written
    /// only when it has something to say).
    pub optional: bool,
}

const fn m(name: &'static str, ty: Type) -> Member {
    Member { name, ty, nullable: false, optional: false }
}

impl Member {
    const fn or_null(self) -> Member {
        Member { nullable: true, ..self }
    }
    const fn optional(self) -> Member {
        Member { optional: true, ..self }
    }
}

use Type::{Boolean, Hex64, Integer, OneOf, Text};

/// What every event has.
pub const COMMON: &[Member] =
    &[m("seq", Integer), m("prev_hash", Hex64), m("station_id", Text), m("kind", OneOf(Kind::NAMES)), m("at", Integer)];

const SYNCED: Member = m("clock_synced", Boolean);

/// What names a clip, wherever an event is about one.
const CLIP: &[Member] = &[
    m("clip_id", Integer),
    m("clip_sha256", Hex64),
    m("title", Text),
    m("topic", Text),
    m("language", Text),
    m("priority", OneOf(Priority::NAMES)),
];

const CLIP_FACTS: &[Member] =
    &[m("duration_ms", Integer), m("valid_from", Text).or_null(), m("valid_until", Text).or_null()];

/// The plan half of an airing (`AiringPlan`): its slot, the clip (`CLIP`), then these.
const SLOT: &[Member] = &[m("slot", Text).or_null(), m("peak", Boolean), m("scheduled_at", Integer).or_null()];
const PLAN: &[Member] = &[
    m("planned_ms", Integer),
    m("gain_cdb", Integer),
    m("quota", Text).or_null().optional(),
    m("before_air_ok", Boolean).optional(),
    m("before_air_detail", Text).optional(),
];

/// The evidence half of an airing (`AiringEvidence`).
const EVIDENCE: &[Member] = &[
    m("started_at", Integer).or_null(),
    m("ended_at", Integer).or_null(),
    m("played_ms", Integer),
    m("peak_cdbfs", Integer),
    m("rms_cdbfs", Integer),
    m("silent_ms", Integer),
    m("first_frame_latency_ms", Integer).or_null(),
    m("status", OneOf(AiringStatus::NAMES)),
    m("reason", Text).or_null(),
];

const TOKEN: &[Member] = &[m("token_id", Integer), m("role", OneOf(Role::NAMES)), m("label", Text)];

/// The members of `kind` beside [`COMMON`], in parts (an airing's end is its plan and its
/// evidence).
pub fn members(kind: Kind) -> Vec<&'static [Member]> {
    const STARTED: &[Member] = &[
        m("version", Text),
        m("public_key", Hex64),
        m("last_alive_at", Integer).or_null(),
        m("clock_behind_ms", Integer),
        m("clock_waited_ms", Integer),
        // Absent in logs written before it was recorded: those are `loa-1` too.
        m("encoding", OneOf(&[crate::proof::ENCODING])).optional(),
        SYNCED,
    ];
    const REASON: &[Member] = &[m("reason", Text)];
    const RETIRED_WHY: &[Member] = &[m("reason", Text).optional()];
    const SYNCED_ONLY: &[Member] = &[SYNCED];
    const LINK: &[Member] = &[m("airing_seq", Integer)];
    const HOOK: &[Member] = &[
        m("hook", OneOf(&["before_air", "after_air"])),
        m("slot", Text).or_null(),
        m("detail", Text).or_null(),
        SYNCED,
    ];
    const MISSED: &[Member] = &[
        m("slot", Text),
        m("peak", Boolean),
        m("scheduled_at", Integer),
        // A run of one slot's consecutive instants missed for one reason: its last and how many
        // (`run_rules`); absent for one instant.
        m("last_scheduled_at", Integer).optional(),
        m("count", Integer).optional(),
        m("status", OneOf(&["missed"])),
        m("reason", OneOf(MissReason::NAMES)),
        SYNCED,
    ];
    const DAMAGED: &[Member] =
        &[m("damaged_seq", Integer), m("stored_hash", Text), m("computed_hash", Text), m("reason", Text)];
    const ROTATED: &[Member] = &[m("public_key", Hex64), m("new_public_key", Hex64)];
    const REPLACED: &[Member] = &[m("public_key", Hex64), m("old_public_key", Hex64).or_null(), m("reason", Text)];
    const TAMPERED: &[Member] = &[
        m("reason", Text),
        m("checked_seq", Integer).or_null(),
        m("checked_hash", Text).or_null(),
        m("head_seq", Integer),
    ];
    const BEHIND: &[Member] =
        &[m("office", Text), m("receipt_seq", Integer), m("receipt_hash", Hex64), m("head_seq", Integer)];
    const RECEIVED: &[Member] = &[
        m("bulletin_id", Integer),
        m("office", Text),
        m("manifest_hash", Hex64),
        m("clip_id", Integer),
        m("clip_sha256", Hex64),
        m("priority", OneOf(Priority::NAMES)),
        m("valid_from", Text),
        m("valid_until", Text),
        m("airings", Integer),
    ];
    const REFUSED: &[Member] = &[
        m("bulletin_id", Integer).or_null(),
        m("manifest_hash", Hex64),
        m("reason", OneOf(Refusal::NAMES)),
        m("detail", Text),
    ];
    const WITHDRAWN: &[Member] = &[m("bulletin_id", Integer), m("clip_id", Integer).or_null()];
    match kind {
        Kind::StationStarted => vec![STARTED],
        Kind::StationStopped => vec![REASON],
        Kind::ClipAdded => vec![CLIP, CLIP_FACTS],
        Kind::ClipRetired => vec![CLIP, CLIP_FACTS, RETIRED_WHY],
        Kind::TokenCreated | Kind::TokenRevoked => vec![TOKEN],
        Kind::AiringStarted => vec![SLOT, CLIP, PLAN, SYNCED_ONLY],
        Kind::AiringEnded => vec![LINK, SLOT, CLIP, PLAN, EVIDENCE, SYNCED_ONLY],
        Kind::AmplifierHookFailed => vec![HOOK],
        Kind::SlotMissed => vec![MISSED],
        Kind::LogDamaged => vec![DAMAGED],
        Kind::KeyRotated => vec![ROTATED],
        Kind::KeyReplaced => vec![REPLACED],
        Kind::LogBehindReceipt => vec![BEHIND],
        Kind::LogTampered => vec![TAMPERED],
        Kind::BulletinReceived => vec![RECEIVED],
        Kind::BulletinRefused => vec![REFUSED],
        Kind::BulletinWithdrawn => vec![WITHDRAWN],
    }
}

/// What is wrong with an event's members.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}field `{member}`: {why}", kind.map(|k| format!("{k} ")).unwrap_or_default())]
pub struct SchemaError {
    pub kind: Option<Kind>,
    pub member: String,
    pub why: String,
}

/// Checks a flat event object against its kind's schema, and the rules between its members.
pub fn check(event: &Map<String, Value>) -> Result<Kind, SchemaError> {
    let kind = check_members(event)?;
    if kind == Kind::SlotMissed {
        run_rules(event).map_err(|(member, why)| SchemaError { kind: Some(kind), member: member.into(), why })?;
    }
    Ok(kind)
}

/// A slot fires at most once a second (cron's finest field), so a run of missed instants names
/// both its last instant and its count, or neither; a run is at least two instants, its last
/// after its first, and no more of them than seconds between them.
fn run_rules(event: &Map<String, Value>) -> Result<(), (&'static str, String)> {
    let integer = |name: &str| event.get(name).and_then(Value::as_i64);
    let first = integer("scheduled_at").unwrap_or_default();
    match (integer("last_scheduled_at"), integer("count")) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(("count", "missing: a run names its last instant and how many".into())),
        (None, Some(_)) => Err(("last_scheduled_at", "missing: a run names its last instant and how many".into())),
        (Some(last), _) if last <= first => {
            Err(("last_scheduled_at", format!("{last} is not after scheduled_at {first}")))
        }
        (Some(_), Some(count)) if count < 2 => Err(("count", format!("{count}: a run is two instants or more"))),
        (Some(last), Some(count)) if count - 1 > (last - first) / 1000 => Err((
            "count",
            format!("{count} instants in {} s: a slot fires at most once a second", (last - first) / 1000),
        )),
        (Some(_), Some(_)) => Ok(()),
    }
}

fn check_members(event: &Map<String, Value>) -> Result<Kind, SchemaError> {
    let error = |kind, member: &str, why: String| SchemaError { kind, member: member.to_owned(), why };
    for member in COMMON {
        check_member(member, event.get(member.name)).map_err(|why| error(None, member.name, why))?;
    }
    let kind: Kind = event["kind"].as_str().unwrap_or_default().parse().map_err(|why| error(None, "kind", why))?;
    let parts = members(kind);
    let declared = || COMMON.iter().chain(parts.iter().flat_map(|part| part.iter()));
    let mut present = 0;
    for member in declared() {
        let value = event.get(member.name);
        present += usize::from(value.is_some());
        check_member(member, value).map_err(|why| error(Some(kind), member.name, why))?;
    }
    // Every member present is declared exactly when as many declared ones are present as the
    // event has members; only then is no name looked for.
    if present == event.len() {
        return Ok(kind);
    }
    if let Some(unknown) = event.keys().find(|name| !declared().any(|m| m.name == name.as_str())) {
        return Err(error(
            Some(kind),
            unknown,
            format!("not a member of {kind} events (a program that wrote it is not loa, or is newer than this one)"),
        ));
    }
    Ok(kind)
}

fn check_member(member: &Member, value: Option<&Value>) -> Result<(), String> {
    let value = match value {
        None if member.optional => return Ok(()),
        None => return Err("missing".into()),
        Some(Value::Null) if member.nullable => return Ok(()),
        Some(value) => value,
    };
    let wrong = |expected: &str| Err(format!("{value} is not {expected}"));
    match member.ty {
        Text => match value {
            Value::String(_) => Ok(()),
            _ => wrong("text"),
        },
        Hex64 => match value.as_str() {
            Some(text) if crate::proof::is_hex64(text) => Ok(()),
            _ => wrong("64 lowercase hex digits"),
        },
        Integer => match value.as_i64() {
            Some(n) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&n) => Ok(()),
            Some(_) => wrong("an integer within ±(2^53 − 1)"),
            None if value.is_number() => wrong("an integer within ±(2^53 − 1)"),
            None => wrong("an integer"),
        },
        Boolean => match value {
            Value::Bool(_) => Ok(()),
            _ => wrong("true or false"),
        },
        OneOf(names) => match value.as_str() {
            Some(text) if names.contains(&text) => Ok(()),
            _ => wrong(&format!("one of {}", crate::one_of(names))),
        },
    }
}

/// The schema as the Markdown table ARCHITECTURE.md prints ("Event kinds").
pub fn markdown() -> String {
    let describe = |member: &Member| {
        let ty = match member.ty {
            Text => "text".to_owned(),
            Hex64 => "hex64".to_owned(),
            Integer => "integer".to_owned(),
            Boolean => "boolean".to_owned(),
            OneOf(names) => format!("one of {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
        };
        let null = if member.nullable { " or null" } else { "" };
        let optional = if member.optional { " (may be absent)" } else { "" };
        format!("`{}`: {ty}{null}{optional}", member.name)
    };
    let mut out = String::from("| kind | members beside the common ones |\n|---|---|\n");
    out += &format!("| (every event) | {} |\n", COMMON.iter().map(describe).collect::<Vec<_>>().join("; "));
    for kind in Kind::ALL {
        let list: Vec<String> = members(*kind).iter().flat_map(|part| part.iter()).map(describe).collect();
        out += &format!("| `{kind}` | {} |\n", list.join("; "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(extra: &[(&str, Value)]) -> Map<String, Value> {
        let mut event: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "seq": 2, "prev_hash": "0".repeat(64), "station_id": "a", "kind": "station_stopped", "at": 5,
            "reason": "stopped by the admin",
        }))
        .unwrap();
        for (name, value) in extra {
            event.insert((*name).to_owned(), value.clone());
        }
        event
    }

    fn refusal(extra: &[(&str, Value)]) -> String {
        check(&event(extra)).unwrap_err().to_string()
    }

    #[test]
    fn a_run_in_an_encoding_this_build_does_not_know_is_refused_and_one_without_it_is_loa_1() {
        let started = |encoding: Option<&str>| {
            let mut e = event(&[]);
            e.remove("reason");
            e.insert("kind".into(), "station_started".into());
            for (name, value) in [("version", "0.1.0"), ("public_key", &"a".repeat(64))] {
                e.insert(name.into(), value.into());
            }
            for name in ["clock_behind_ms", "clock_waited_ms"] {
                e.insert(name.into(), 0.into());
            }
            e.insert("last_alive_at".into(), Value::Null);
            e.insert("clock_synced".into(), false.into());
            if let Some(encoding) = encoding {
                e.insert("encoding".into(), encoding.into());
            }
            check(&e)
        };
        assert_eq!(started(Some(crate::proof::ENCODING)), Ok(Kind::StationStarted));
        assert_eq!(started(None), Ok(Kind::StationStarted), "written before the member was: loa-1");
        let newer = started(Some("loa-2")).unwrap_err().to_string();
        assert!(newer.contains("field `encoding`") && newer.contains("loa-2"), "{newer}");
    }

    #[test]
    fn every_class_of_wrong_member_is_refused_by_name() {
        assert_eq!(check(&event(&[])), Ok(Kind::StationStopped));
        assert!(refusal(&[("extra", Value::from(1))]).contains("field `extra`: not a member"));
        assert!(refusal(&[("kind", Value::from("note"))]).contains("field `kind`"));
        assert!(refusal(&[("at", Value::from("5"))]).contains("field `at`: \"5\" is not an integer"));
        assert!(refusal(&[("at", Value::from(5.5))]).contains("field `at`"));
        assert!(refusal(&[("at", Value::Null)]).contains("field `at`"));
        assert!(refusal(&[("at", Value::from(1i64 << 53))]).contains("±(2^53 − 1)"));
        assert!(refusal(&[("at", Value::from(u64::MAX))]).contains("±(2^53 − 1)"));
        assert!(check(&event(&[("at", Value::from(MAX_SAFE_INTEGER))])).is_ok());
        assert!(check(&event(&[("at", Value::from(-MAX_SAFE_INTEGER))])).is_ok());
        assert!(refusal(&[("prev_hash", Value::from("AB".repeat(32)))]).contains("hex"));
        let mut missing = event(&[]);
        missing.remove("reason");
        assert_eq!(check(&missing).unwrap_err().to_string(), "station_stopped field `reason`: missing");
    }

    #[test]
    fn enumerations_take_only_their_names_and_optional_members_may_be_absent() {
        let mut ended: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "seq": 3, "prev_hash": "0".repeat(64), "station_id": "a", "kind": "airing_ended", "at": 9,
            "airing_seq": 2, "slot": "sang", "peak": true, "scheduled_at": 1, "clip_id": 1,
            "clip_sha256": "a".repeat(64), "title": "t", "topic": "cchc", "language": "vi", "priority": "normal",
            "planned_ms": 1000, "gain_cdb": 0, "started_at": 1, "ended_at": 2, "played_ms": 1000,
            "peak_cdbfs": -300, "rms_cdbfs": -2000, "silent_ms": 0, "first_frame_latency_ms": 3,
            "status": "completed", "reason": null, "clock_synced": true,
        }))
        .unwrap();
        assert_eq!(check(&ended), Ok(Kind::AiringEnded), "quota and the hook's outcome may be absent");
        ended.insert("status".into(), Value::from("done"));
        let why = check(&ended).unwrap_err().to_string();
        assert!(why.contains("field `status`") && why.contains("completed"), "{why}");
        ended.insert("status".into(), Value::from("completed"));
        ended.insert("before_air_ok".into(), Value::Null);
        assert!(check(&ended).unwrap_err().to_string().contains("before_air_ok"), "absent, not null");
    }

    #[test]
    fn a_run_of_missed_slots_names_its_last_instant_and_count_and_no_more_than_one_a_second() {
        let missed = |extra: &[(&str, Value)]| {
            let mut e: Map<String, Value> = serde_json::from_value(serde_json::json!({
                "seq": 3, "prev_hash": "0".repeat(64), "station_id": "a", "kind": "slot_missed", "at": 90_000,
                "slot": "sang", "peak": true, "scheduled_at": 10_000, "status": "missed",
                "reason": "station_down", "clock_synced": true,
            }))
            .unwrap();
            for (name, value) in extra {
                e.insert((*name).to_owned(), value.clone());
            }
            check(&e).map_err(|e| e.to_string())
        };
        assert_eq!(missed(&[]), Ok(Kind::SlotMissed), "one instant, as it always was");
        let run = |last: i64, count: i64| missed(&[("last_scheduled_at", last.into()), ("count", count.into())]);
        assert_eq!(run(14_000, 2), Ok(Kind::SlotMissed));
        assert_eq!(run(70_000, 61), Ok(Kind::SlotMissed), "one a second");
        for (last, count, member, why) in [
            (70_000, 62, "count", "at most once a second"),
            (14_000, 1, "count", "two instants or more"),
            (14_000, -5, "count", "two instants or more"),
            (10_000, 2, "last_scheduled_at", "not after"),
            (9_000, 2, "last_scheduled_at", "not after"),
        ] {
            let refused = run(last, count).unwrap_err();
            assert!(refused.contains(&format!("field `{member}`")) && refused.contains(why), "{refused}");
        }
        assert!(missed(&[("count", 2.into())]).unwrap_err().contains("`last_scheduled_at`: missing"));
        assert!(missed(&[("last_scheduled_at", 14_000.into())]).unwrap_err().contains("`count`: missing"));
        assert!(missed(&[("count", Value::Null), ("last_scheduled_at", 14_000.into())]).is_err());
    }

    #[test]
    fn every_kind_has_a_row_in_the_table() {
        let table = markdown();
        for kind in Kind::NAMES {
            assert!(table.contains(&format!("| `{kind}` |")), "{kind}");
        }
    }
}
