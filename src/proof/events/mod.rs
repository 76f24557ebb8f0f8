//! What each proof event records. One constructor per kind, so every airing event carries the
//! same fields wherever it is written, and a report never has to join back to mutable tables.
//!
//! Evidence fields (`played_ms`, levels, `started_at`) come only from what the player measured
//! at the audio output; plan fields (`planned_ms`, `scheduled_at`) say what was intended.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::clip::{Clip, Priority};
use crate::model::level::{FLOOR_CDBFS, centi};
use crate::proof::Fields;
use crate::time::slots::InstantRun;

mod bulletins;
mod integrity;
pub use bulletins::{bulletin_received, bulletin_refused, bulletin_withdrawn};
pub use integrity::{Damage, key_replaced, key_rotated, log_behind_receipt, log_damaged, log_tampered};

named_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum AiringStatus("an airing status") {
        /// Played to the end, not silent.
        Completed = "completed",
        /// Some audio reached the device, but not all of it (stream died, stalled, or silent).
        Partial = "partial",
        /// Stopped by shutdown, or found unfinished after a crash or power cut.
        Interrupted = "interrupted",
        /// Cut off by an emergency bulletin.
        Preempted = "preempted",
        /// Nothing reached the device.
        Failed = "failed",
    }
}

named_enum! {
    /// Why a slot's instant passed without an airing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum MissReason("a reason for a missed slot") {
        /// The station was not running (power cut, crash, stopped).
        StationDown = "station_down",
        /// The slot fell while the previous program was still airing, and passed its grace.
        PreviousAiringOverran = "previous_airing_overran",
        /// The wall clock stepped over it.
        ClockJumped = "clock_jumped",
        /// Nothing in the library could air in it.
        NoEligibleClip = "no_eligible_clip",
    }
}

named_enum! {
    /// What an event records: the `kind` field of every event in the log.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Kind("an event kind") {
        StationStarted = "station_started",
        StationStopped = "station_stopped",
        ClipAdded = "clip_added",
        ClipRetired = "clip_retired",
        TokenCreated = "token_created",
        TokenRevoked = "token_revoked",
        AiringStarted = "airing_started",
        AiringEnded = "airing_ended",
        AmplifierHookFailed = "amplifier_hook_failed",
        SlotMissed = "slot_missed",
        LogDamaged = "log_damaged",
        KeyRotated = "key_rotated",
        KeyReplaced = "key_replaced",
        LogBehindReceipt = "log_behind_receipt",
        LogTampered = "log_tampered",
        BulletinReceived = "bulletin_received",
        BulletinRefused = "bulletin_refused",
        BulletinWithdrawn = "bulletin_withdrawn",
    }
}

/// What the reports read of a logged event: its seq, time and hash, and for the end of an
/// airing or a missed slot what they count. Read from the event's own fields; other kinds are
/// [`Counted::Other`].
#[derive(Debug, Clone)]
pub struct Logged {
    pub seq: i64,
    pub at: i64,
    /// The event's hash (not part of its body: filled in from the stored event).
    pub hash: String,
    pub what: Counted,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Counted {
    AiringEnded {
        status: AiringStatus,
        played_ms: u64,
        topic: String,
        language: String,
        peak: bool,
        /// Whether the station's clock was synchronised when it recorded the airing.
        clock_synced: bool,
    },
    SlotMissed {
        reason: MissReason,
        /// How many instants of the slot the event records missed (a run; 1 for one instant).
        count: u64,
    },
    Other,
}

/// The members reports read, as one flat shape (every kind's members optional): one pass over
/// the body, strings borrowed where they need no unescaping.
#[derive(Deserialize)]
struct CountedMembers<'a> {
    seq: i64,
    at: i64,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    status: Option<std::borrow::Cow<'a, str>>,
    played_ms: Option<u64>,
    topic: Option<String>,
    language: Option<String>,
    peak: Option<bool>,
    clock_synced: Option<bool>,
    #[serde(borrow)]
    reason: Option<std::borrow::Cow<'a, str>>,
    count: Option<u64>,
}

impl Logged {
    /// Reads a stored event: its body, and the hash stored with it.
    pub fn of(event: &crate::proof::SealedEvent) -> serde_json::Result<Logged> {
        Logged::parse(&event.body, &event.hash)
    }

    /// Reads an event from its body and the hash it was stored with.
    pub fn parse(body: &str, hash: &str) -> serde_json::Result<Logged> {
        use serde::de::Error;
        let m: CountedMembers = serde_json::from_str(body)?;
        let missing = |name: &str| serde_json::Error::custom(format!("{} without `{name}`", m.kind));
        let what = match m.kind.as_ref() {
            "airing_ended" => Counted::AiringEnded {
                status: m
                    .status
                    .as_deref()
                    .ok_or_else(|| missing("status"))?
                    .parse()
                    .map_err(serde_json::Error::custom)?,
                played_ms: m.played_ms.ok_or_else(|| missing("played_ms"))?,
                topic: m.topic.ok_or_else(|| missing("topic"))?,
                language: m.language.ok_or_else(|| missing("language"))?,
                peak: m.peak.ok_or_else(|| missing("peak"))?,
                clock_synced: m.clock_synced.ok_or_else(|| missing("clock_synced"))?,
            },
            "slot_missed" => Counted::SlotMissed {
                reason: m
                    .reason
                    .as_deref()
                    .ok_or_else(|| missing("reason"))?
                    .parse()
                    .map_err(serde_json::Error::custom)?,
                count: m.count.unwrap_or(1),
            },
            _ => Counted::Other,
        };
        Ok(Logged { seq: m.seq, at: m.at, hash: hash.to_owned(), what })
    }
}

/// What is about to air: the plan half of an airing record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiringPlan {
    /// `None` for an item aired at once, outside any slot.
    pub slot: Option<String>,
    pub peak: bool,
    pub scheduled_at: Option<i64>,
    pub clip_id: i64,
    pub clip_sha256: String,
    pub title: String,
    pub topic: String,
    pub language: String,
    pub priority: Priority,
    pub planned_ms: u64,
    /// Gain applied toward the loudness target, in hundredths of a dB.
    pub gain_cdb: i64,
    /// The quota this airing was planned to serve (its label), if any.
    #[serde(default)]
    pub quota: Option<String>,
    /// Whether the amplifier's `before_air` hook succeeded for this block of airings (absent
    /// when no hook is configured), and why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_air_ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_air_detail: Option<String>,
}

/// The result of an amplifier hook command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookOutcome {
    pub ok: bool,
    /// Why it failed: exit status and the last line it wrote, a timeout, or a start error.
    pub detail: Option<String>,
}

impl AiringPlan {
    pub fn new(clip: &Clip, slot: Option<(&str, bool, DateTime<Utc>)>, gain_db: f64) -> AiringPlan {
        AiringPlan {
            slot: slot.map(|(name, _, _)| name.to_owned()),
            peak: slot.is_some_and(|(_, peak, _)| peak),
            scheduled_at: slot.map(|(_, _, at)| at.timestamp_millis()),
            clip_id: clip.id,
            clip_sha256: clip.sha256.clone(),
            title: clip.meta.title.clone(),
            topic: clip.meta.topic.clone(),
            language: clip.meta.language.clone(),
            priority: clip.meta.priority,
            planned_ms: clip.audio.duration_ms,
            gain_cdb: centi(gain_db),
            quota: None,
            before_air_ok: None,
            before_air_detail: None,
        }
    }

    /// Records how the block's `before_air` hook went (nothing if there is none).
    pub fn with_before_air(self, outcome: Option<&HookOutcome>) -> AiringPlan {
        AiringPlan {
            before_air_ok: outcome.map(|o| o.ok),
            before_air_detail: outcome.and_then(|o| o.detail.clone()),
            ..self
        }
    }
}

/// What was measured at the audio output: the evidence half of an airing record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AiringEvidence {
    /// Wall time of the first frame the device pulled; `None` if none was.
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub played_ms: u64,
    /// Levels after gain, in hundredths of a dBFS.
    pub peak_cdbfs: i64,
    pub rms_cdbfs: i64,
    pub silent_ms: u64,
    /// From the moment the clip was due out (the slot's instant for its first clip, else the
    /// end of the clip before) to the first frame the device pulled.
    pub first_frame_latency_ms: Option<i64>,
    pub status: AiringStatus,
    pub reason: Option<String>,
}

impl AiringEvidence {
    /// An airing of which nothing was measured at the output.
    pub fn unmeasured(status: AiringStatus, ended_at: Option<i64>, played_ms: u64, reason: String) -> AiringEvidence {
        AiringEvidence {
            started_at: None,
            ended_at,
            played_ms,
            peak_cdbfs: FLOOR_CDBFS,
            rms_cdbfs: FLOOR_CDBFS,
            silent_ms: 0,
            first_frame_latency_ms: None,
            status,
            reason: Some(reason),
        }
    }
}

/// An event of `kind` made of the fields of each serialisable struct in `parts`.
fn fields<const N: usize>(kind: Kind, parts: [Value; N]) -> Fields {
    let mut map = Fields::new();
    map.insert("kind".into(), Value::from(kind.as_str()));
    for part in parts {
        match part {
            Value::Object(object) => map.extend(object),
            other => unreachable!("event parts are structs, got {other}"),
        }
    }
    map
}

fn part(value: &impl Serialize) -> Value {
    serde_json::to_value(value).expect("event parts serialise")
}

#[derive(Serialize)]
struct Synced {
    clock_synced: bool,
}

/// How the station judged its wall clock at start (see `Engine::wait_for_trusted_clock`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ClockAtStart {
    /// How far the clock read before the last recorded event when the station went on air
    /// (0 when it did not): a non-zero value means it runs on a clock it could not trust.
    pub clock_behind_ms: i64,
    /// How long the station waited for NTP before going on air.
    pub clock_waited_ms: u64,
}

pub fn station_started(
    version: &str,
    public_key: &str,
    last_alive_at: Option<i64>,
    clock: ClockAtStart,
    clock_synced: bool,
) -> Fields {
    #[derive(Serialize)]
    struct Started<'a> {
        version: &'a str,
        /// The rules the events after it are written and judged by.
        encoding: &'static str,
        public_key: &'a str,
        /// Last heartbeat of the previous run: the station was down from then until now.
        last_alive_at: Option<i64>,
    }
    let started = Started { version, encoding: crate::proof::ENCODING, public_key, last_alive_at };
    fields(Kind::StationStarted, [part(&started), part(&clock), part(&Synced { clock_synced })])
}

pub fn station_stopped(reason: &str) -> Fields {
    #[derive(Serialize)]
    struct Stopped<'a> {
        reason: &'a str,
    }
    fields(Kind::StationStopped, [part(&Stopped { reason })])
}

#[derive(Serialize)]
struct ClipFacts<'a> {
    clip_id: i64,
    clip_sha256: &'a str,
    title: &'a str,
    topic: &'a str,
    language: &'a str,
    priority: Priority,
    duration_ms: u64,
    valid_from: Option<String>,
    valid_until: Option<String>,
}

impl<'a> From<&'a Clip> for ClipFacts<'a> {
    fn from(clip: &'a Clip) -> Self {
        ClipFacts {
            clip_id: clip.id,
            clip_sha256: &clip.sha256,
            title: &clip.meta.title,
            topic: &clip.meta.topic,
            language: &clip.meta.language,
            priority: clip.meta.priority,
            duration_ms: clip.audio.duration_ms,
            valid_from: clip.meta.valid_from.map(|d| d.to_string()),
            valid_until: clip.meta.valid_until.map(|d| d.to_string()),
        }
    }
}

pub fn clip_added(clip: &Clip) -> Fields {
    fields(Kind::ClipAdded, [part(&ClipFacts::from(clip))])
}

/// A clip taken off the air: by an operator (`reason` absent), or set aside by the station
/// itself because it cannot be played (`reason` says why).
pub fn clip_retired(clip: &Clip, reason: Option<&str>) -> Fields {
    #[derive(Serialize)]
    struct Why<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    }
    fields(Kind::ClipRetired, [part(&ClipFacts::from(clip)), part(&Why { reason })])
}

/// `token_created` / `token_revoked`: who may act on the station (never the secret).
pub fn token(token: &crate::model::token::Token, kind: Kind) -> Fields {
    #[derive(Serialize)]
    struct TokenFacts<'a> {
        token_id: i64,
        role: &'a str,
        label: &'a str,
    }
    fields(kind, [part(&TokenFacts { token_id: token.id, role: token.role.as_str(), label: &token.label })])
}

pub fn airing_started(plan: &AiringPlan, clock_synced: bool) -> Fields {
    fields(Kind::AiringStarted, [part(plan), part(&Synced { clock_synced })])
}

pub fn airing_ended(airing_seq: i64, plan: &AiringPlan, evidence: &AiringEvidence, clock_synced: bool) -> Fields {
    #[derive(Serialize)]
    struct Link {
        airing_seq: i64,
    }
    fields(Kind::AiringEnded, [part(&Link { airing_seq }), part(plan), part(evidence), part(&Synced { clock_synced })])
}

/// `after_air` failed once the block's airings had ended (a failed `before_air` is on the
/// airings themselves).
pub fn amplifier_hook_failed(hook: &str, slot: Option<&str>, outcome: &HookOutcome, clock_synced: bool) -> Fields {
    #[derive(Serialize)]
    struct Failed<'a> {
        hook: &'a str,
        slot: Option<&'a str>,
        detail: Option<&'a str>,
    }
    let failed = Failed { hook, slot, detail: outcome.detail.as_deref() };
    fields(Kind::AmplifierHookFailed, [part(&failed), part(&Synced { clock_synced })])
}

/// A slot instant not aired, or a run of one slot's consecutive instants missed for one reason
/// (`last_scheduled_at` and `count` only for a run of two or more: an event of one instant is as
/// it always was).
pub fn slot_missed(slot: &str, peak: bool, missed: InstantRun, reason: MissReason, clock_synced: bool) -> Fields {
    #[derive(Serialize)]
    struct Missed<'a> {
        slot: &'a str,
        peak: bool,
        scheduled_at: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        last_scheduled_at: Option<i64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
        status: &'a str,
        reason: MissReason,
    }
    let run = missed.count > 1;
    let missed = Missed {
        slot,
        peak,
        scheduled_at: missed.first.timestamp_millis(),
        last_scheduled_at: run.then(|| missed.last.timestamp_millis()),
        count: run.then_some(missed.count),
        status: "missed",
        reason,
    };
    fields(Kind::SlotMissed, [part(&missed), part(&Synced { clock_synced })])
}
