//! Plausibility: what a station may not claim even with its own key. A signature proves the
//! station said it; it does not make true an airing dated next year, two airings at once, an
//! airing while its own log says it was stopped, or an hour played in a minute. The office keeps
//! such events (the chain is whole) but flags each (`implausible`) and never counts it as aired.
//!
//! Pure: the state carried from one contact to the next (`Context`) is stored with the station's
//! head, and each event moves it on.

use serde::{Deserialize, Serialize};

/// How far a station's clock may step back between two events before it is not believed.
pub const CLOCK_STEP_MS: i64 = 10 * 60_000;
/// How far ahead of the office's clock an event may be dated.
pub const FUTURE_MS: i64 = 10 * 60_000;
/// The earliest time an event can be from (1 January 2024): loa did not exist before.
pub const EPOCH_MS: i64 = 1_704_067_200_000;
/// Two airings may overlap by the device's buffer (the next one's first frame is taken while
/// the last of the one before still plays out), no more.
pub const OVERLAP_MS: i64 = 2_000;
/// A completed airing's audio went out at most twice as fast as real time, plus what a device's
/// buffers may hold unreported: the station's own bound for "heard" (`air::engine::evidence`:
/// twice real time, beyond the buffer and 5 s), with the buffer taken as 5 s more.
pub const PLAYED_SLACK_MS: i64 = 10_000;

/// What the office remembers of a station's log between contacts, for judging the next events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// The last event's `at`.
    pub last_at: Option<i64>,
    /// When the latest airing ended (its `ended_at`).
    pub last_airing_end: Option<i64>,
    /// The station said it stopped at this time and has not started since.
    pub stopped_at: Option<i64>,
    /// The last stretch the station's log says it was stopped: (stopped, started again).
    pub last_down: Option<(i64, i64)>,
    /// Airings started and not ended (their seqs).
    pub open_airings: Vec<i64>,
    /// Airings open when the station last started: its recovery must end each before it airs on.
    pub awaiting_recovery: Vec<i64>,
    /// Airings whose start was not believed: their end is not either.
    #[serde(default)]
    pub doubted: Vec<i64>,
}

/// The members plausibility reads (every kind's optional).
#[derive(Deserialize)]
struct Members<'a> {
    seq: i64,
    at: i64,
    kind: &'a str,
    airing_seq: Option<i64>,
    started_at: Option<i64>,
    ended_at: Option<i64>,
    played_ms: Option<i64>,
    status: Option<&'a str>,
    scheduled_at: Option<i64>,
    last_scheduled_at: Option<i64>,
}

impl Context {
    /// Moves on past the event (verified, schema-checked: its `seq`, `kind`, `at` and body), at
    /// the office's `now`; what is implausible about it, if anything. Only an airing's body is
    /// read again.
    pub fn observe(&mut self, (seq, kind, at): (i64, &str, i64), body: &str, now: i64) -> Option<String> {
        let e = if kind.starts_with("airing_") || kind == "slot_missed" {
            match serde_json::from_str::<Members>(body) {
                Ok(e) => e,
                Err(_) => return Some("the event cannot be read for plausibility".into()),
            }
        } else {
            Members {
                seq,
                at,
                kind,
                airing_seq: None,
                started_at: None,
                ended_at: None,
                played_ms: None,
                status: None,
                scheduled_at: None,
                last_scheduled_at: None,
            }
        };
        let mut why = Vec::new();
        if e.at > now + FUTURE_MS {
            why.push(format!("dated {} min ahead of the office's clock", (e.at - now) / 60_000));
        }
        if e.at < EPOCH_MS {
            why.push("dated before 2024, before any loa station existed".to_owned());
        }
        if let Some(last) = self.last_at.filter(|last| e.at < last - CLOCK_STEP_MS) {
            why.push(format!("dated {} min before the event before it", (last - e.at) / 60_000));
        }
        self.last_at = Some(self.last_at.map_or(e.at, |last| last.max(e.at)));
        match e.kind {
            "station_stopped" => self.stopped_at = Some(e.at),
            "station_started" => {
                if let Some(stopped) = self.stopped_at.take() {
                    self.last_down = Some((stopped, e.at));
                }
                self.awaiting_recovery = self.open_airings.clone();
            }
            "airing_started" => {
                if let Some(stopped) = self.stopped_at {
                    why.push(format!("an airing began after the station said it stopped (at {stopped})"));
                    self.doubted.push(e.seq);
                }
                if !self.awaiting_recovery.is_empty() {
                    why.push(format!(
                        "airing(s) {:?}, open when the station last started, were never ended by its recovery",
                        self.awaiting_recovery
                    ));
                    self.awaiting_recovery.clear();
                }
                self.open_airings.push(e.seq);
            }
            "airing_ended" => {
                let started = e.airing_seq.unwrap_or_default();
                self.open_airings.retain(|seq| *seq != started);
                self.awaiting_recovery.retain(|seq| *seq != started);
                if self.doubted.contains(&started) {
                    self.doubted.retain(|seq| *seq != started);
                    why.push(format!("its start (seq {started}) was not believed"));
                }
                why.extend(self.airing(&e));
            }
            "slot_missed" => {
                // Missed is judged only once an instant has come and gone.
                let last = e.last_scheduled_at.or(e.scheduled_at).unwrap_or_default();
                if last > e.at {
                    why.push(format!("it records a slot at {last} missed before that time came"));
                }
            }
            _ => {}
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// What is implausible about an airing's measured times.
    fn airing(&mut self, e: &Members) -> Vec<String> {
        let mut why = Vec::new();
        let (Some(start), Some(end)) = (e.started_at, e.ended_at) else { return why };
        let played = e.played_ms.unwrap_or_default();
        if end < start {
            why.push("it ended before it started".to_owned());
        }
        if e.status == Some("completed") && played > 2 * (end - start) + PLAYED_SLACK_MS {
            why.push(format!("{played} ms played in {} ms between its start and end", end - start));
        }
        if let Some(previous) = self.last_airing_end.filter(|previous| start < previous - OVERLAP_MS) {
            why.push(format!("it began {} ms before the airing before it ended", previous - start));
        }
        if end > e.at + OVERLAP_MS {
            why.push("it ended after it was recorded".to_owned());
        }
        if let Some((stopped, restarted)) = self.last_down.filter(|(down, up)| start < *up && end > *down) {
            why.push(format!("it aired while the station's log says it was stopped ({stopped}–{restarted})"));
        }
        self.last_airing_end = Some(self.last_airing_end.map_or(end, |previous| previous.max(end)));
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000_000;

    /// `observe` with the seq, kind and at the verifier would have read from `body`.
    fn observe(context: &mut Context, body: &str, now: i64) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let head = (v["seq"].as_i64().unwrap(), v["kind"].as_str().unwrap(), v["at"].as_i64().unwrap());
        context.observe(head, body, now)
    }

    fn body(seq: i64, at: i64, kind: &str, extra: &str) -> String {
        format!("{{\"at\":{at},\"kind\":\"{kind}\",\"seq\":{seq}{extra}}}")
    }

    fn ended(seq: i64, airing: i64, start: i64, end: i64, played: i64) -> String {
        body(
            seq,
            end + 10,
            "airing_ended",
            &format!(
                ",\"airing_seq\":{airing},\"started_at\":{start},\"ended_at\":{end},\"played_ms\":{played},\"status\":\"completed\""
            ),
        )
    }

    #[test]
    fn an_honest_log_is_plausible() {
        let mut context = Context::default();
        let log = [
            body(1, T, "station_started", ""),
            body(2, T + 1_000, "airing_started", ""),
            ended(3, 2, T + 2_000, T + 62_000, 60_000),
            body(4, T + 62_500, "airing_started", ""),
            ended(5, 4, T + 62_600, T + 92_600, 30_000),
            body(6, T + 100_000, "station_stopped", ""),
            body(7, T + 900_000, "station_started", ""),
        ];
        for event in &log {
            assert_eq!(observe(&mut context, event, T + 1_000_000), None, "{event}");
        }
    }

    #[test]
    fn each_implausible_claim_is_named() {
        let now = T;
        let fresh = || {
            let mut c = Context::default();
            observe(&mut c, &body(1, T - 3_600_000, "station_started", ""), now);
            c
        };
        let judge = |events: &[String]| {
            let mut c = fresh();
            events.iter().filter_map(|e| observe(&mut c, e, now)).collect::<Vec<_>>().join(" | ")
        };
        assert!(judge(&[body(2, T + 86_400_000, "station_stopped", "")]).contains("ahead"));
        assert!(judge(&[body(2, 1_000, "station_stopped", "")]).contains("before 2024"));
        assert!(judge(&[body(2, T - 7_200_000, "station_stopped", "")]).contains("before the event before it"));
        let overlapping = [
            body(2, T - 600_000, "airing_started", ""),
            ended(3, 2, T - 600_000, T - 540_000, 60_000),
            body(4, T - 530_000, "airing_started", ""),
            ended(5, 4, T - 570_000, T - 510_000, 60_000),
        ];
        assert!(judge(&overlapping).contains("before the airing before it ended"));
        let hour_in_a_minute =
            [body(2, T - 600_000, "airing_started", ""), ended(3, 2, T - 600_000, T - 540_000, 3_600_000)];
        assert!(judge(&hour_in_a_minute).contains("3600000 ms played in 60000 ms"));
        let while_stopped = [
            body(2, T - 3_000_000, "station_stopped", ""),
            body(3, T - 1_000_000, "station_started", ""),
            body(4, T - 900_000, "airing_started", ""),
            ended(5, 4, T - 2_000_000, T - 1_940_000, 60_000),
        ];
        assert!(judge(&while_stopped).contains("while the station's log says it was stopped"));
        let airing_after_stop =
            [body(2, T - 3_000_000, "station_stopped", ""), body(3, T - 2_900_000, "airing_started", "")];
        assert!(judge(&airing_after_stop).contains("after the station said it stopped"));
        let never_recovered = [
            body(2, T - 3_000_000, "airing_started", ""),
            body(3, T - 2_000_000, "station_started", ""),
            body(4, T - 1_900_000, "airing_started", ""),
        ];
        assert!(judge(&never_recovered).contains("never ended by its recovery"));
        let missed = |first: i64, last: i64| {
            body(2, T - 1_000_000, "slot_missed", &format!(",\"scheduled_at\":{first},\"last_scheduled_at\":{last}"))
        };
        assert_eq!(judge(&[missed(T - 3_000_000, T - 1_000_000)]), "", "a run up to its recording");
        assert!(judge(&[missed(T - 3_000_000, T - 900_000)]).contains("missed before that time came"));
    }
}
