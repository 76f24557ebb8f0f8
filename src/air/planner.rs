//! What a slot plays: first one eligible clip for each quota still unmet (the least recently
//! completed of its topic, so listeners hear the bulletins in rotation), then the other
//! eligible clips, most urgent first, then the least recently completed — within the slot's
//! minutes and never the same clip twice in one slot.

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::air::quota::Need;
use crate::model::clip::{Clip, Priority};

/// The office's priority and emergency bulletins (TT 39/2020 "ưu tiên", "khẩn cấp"): those
/// still owed completed airings lead every peak slot of their window; once aired as often as
/// owed they are planned as normal bulletins. An operator's own emergency clip is owed once:
/// after one completed airing it too is planned as a normal one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Owed {
    pub leading: Vec<i64>,
    pub done: std::collections::HashSet<i64>,
}

impl Owed {
    /// From the store's `(clip_id, owed, completed)` rows.
    pub fn of(rows: &[(i64, u32, u32)]) -> Owed {
        let mut owed = Owed::default();
        for &(clip, airings, completed) in rows {
            if completed < airings {
                owed.leading.push(clip);
            } else {
                owed.done.insert(clip);
            }
        }
        owed
    }

    /// The priority `clip` is planned with: its own while still owed, else normal.
    fn priority(&self, clip: &Clip, last_completed: &HashMap<i64, i64>) -> Priority {
        let office_bulletin = self.leading.contains(&clip.id) || self.done.contains(&clip.id);
        let aired_enough = match office_bulletin {
            true => self.done.contains(&clip.id),
            false => clip.meta.priority == Priority::Emergency && last_completed.contains_key(&clip.id),
        };
        if aired_enough { Priority::Normal } else { clip.meta.priority }
    }
}

/// A clip in a slot's program, and the quota (index in the config) it is there to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub clip: Clip,
    pub quota: Option<usize>,
}

/// One item of a slot's program: an operator's "next slot" item (`queue_id`) or the planner's
/// choice (with the quota it serves, if any).
#[derive(Debug, Clone, PartialEq)]
pub struct SlotItem {
    pub clip: Clip,
    pub queue_id: Option<i64>,
    pub quota: Option<usize>,
}

/// The slot a program is for: its local date, its minutes, whether it is a peak slot.
#[derive(Debug, Clone, Copy)]
pub struct SlotFrame {
    pub date: NaiveDate,
    pub budget_ms: u64,
    pub peak: bool,
}

/// A slot's whole program, built here for both the engine (what airs) and `/schedule` (what
/// would air), so the two cannot drift: the operators' "next slot" items first, in queue order,
/// each clip once and only if it is still in the library (`active`: not retired); in a peak
/// slot the office's priority bulletins still owed (`owed`), within their window; then the
/// planner's [`program`] without repeats.
pub fn slot_program(
    active: &[Clip],
    queued: &[(i64, i64)],
    last_completed: &HashMap<i64, i64>,
    frame: SlotFrame,
    needs: &[Need],
    owed: &Owed,
) -> Vec<SlotItem> {
    let SlotFrame { date, budget_ms, peak } = frame;
    let mut items: Vec<SlotItem> = Vec::new();
    for (queue_id, clip_id) in queued {
        let Some(clip) = active.iter().find(|c| c.id == *clip_id && c.retired_at.is_none()) else { continue };
        if !items.iter().any(|item| item.clip.id == clip.id) {
            items.push(SlotItem { clip: clip.clone(), queue_id: Some(*queue_id), quota: None });
        }
    }
    // (The planner's budget is the slot's less what the bulletins leading it take.)
    let mut leading_ms = 0;
    for clip in owed.leading.iter().filter_map(|id| active.iter().find(|c| c.id == *id)).filter(|_| peak) {
        let fits = leading_ms + clip.audio.duration_ms <= budget_ms;
        if fits && is_valid_on(clip, date) && !items.iter().any(|item| item.clip.id == clip.id) {
            leading_ms += clip.audio.duration_ms;
            items.push(SlotItem { clip: clip.clone(), queue_id: None, quota: None });
        }
    }
    let budget_ms = budget_ms - leading_ms;
    for planned in program(active, last_completed, date, budget_ms, needs, owed) {
        if !items.iter().any(|item| item.clip.id == planned.clip.id) {
            items.push(SlotItem { clip: planned.clip, queue_id: None, quota: planned.quota });
        }
    }
    items
}

/// Whether `clip` may air on local date `date` (inclusive validity window).
pub fn is_valid_on(clip: &Clip, date: NaiveDate) -> bool {
    clip.retired_at.is_none()
        && clip.meta.valid_from.is_none_or(|from| from <= date)
        && clip.meta.valid_until.is_none_or(|until| date <= until)
}

/// The program of one slot on local date `date`. `last_completed`: per clip id, when it last
/// completed an airing (UTC ms); never-aired clips come first among equals. `needs`: the
/// quotas this slot should serve.
pub fn program(
    clips: &[Clip],
    last_completed: &HashMap<i64, i64>,
    date: NaiveDate,
    budget_ms: u64,
    needs: &[Need],
    owed: &Owed,
) -> Vec<Planned> {
    let mut eligible: Vec<&Clip> = clips.iter().filter(|clip| is_valid_on(clip, date)).collect();
    let mut used = 0;
    let mut chosen: Vec<Planned> = Vec::new();
    eligible.sort_by_key(|clip| (last_completed.get(&clip.id).copied(), clip.id));
    for need in needs {
        let serves = |clip: &&&Clip| {
            clip.meta.topic == need.topic
                && need.language.as_ref().is_none_or(|l| *l == clip.meta.language)
                && used + clip.audio.duration_ms <= budget_ms
                && !chosen.iter().any(|p| p.clip.id == clip.id)
        };
        if let Some(clip) = eligible.iter().find(serves) {
            used += clip.audio.duration_ms;
            chosen.push(Planned { clip: (*clip).clone(), quota: Some(need.quota) });
        }
    }
    eligible.sort_by_key(|clip| {
        (std::cmp::Reverse(owed.priority(clip, last_completed)), last_completed.get(&clip.id).copied(), clip.id)
    });
    for clip in eligible {
        if used + clip.audio.duration_ms <= budget_ms && !chosen.iter().any(|p| p.clip.id == clip.id) {
            used += clip.audio.duration_ms;
            chosen.push(Planned { clip: clip.clone(), quota: None });
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::clip::{AudioFacts, ClipMeta, Priority};

    fn clip(id: i64, priority: Priority, duration_ms: u64, window: (Option<&str>, Option<&str>)) -> Clip {
        topical(id, priority, duration_ms, window, "cchc", "vi")
    }

    fn topical(
        id: i64,
        priority: Priority,
        duration_ms: u64,
        window: (Option<&str>, Option<&str>),
        topic: &str,
        language: &str,
    ) -> Clip {
        Clip {
            id,
            sha256: format!("{id:064}"),
            meta: ClipMeta {
                title: format!("clip {id}"),
                topic: topic.into(),
                language: language.into(),
                priority,
                valid_from: window.0.map(|d| d.parse().unwrap()),
                valid_until: window.1.map(|d| d.parse().unwrap()),
            },
            audio: AudioFacts {
                duration_ms,
                sample_rate: 44100,
                channels: 1,
                loudness_lufs: -16.0,
                peak_dbfs: -1.0,
                true_peak_dbfs: -1.0,
            },
            size_bytes: 1,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            retired_at: None,
        }
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn ids(program: &[Planned]) -> Vec<i64> {
        program.iter().map(|p| p.clip.id).collect()
    }

    #[test]
    fn priority_first_then_least_recently_completed() {
        let clips = [
            clip(1, Priority::Normal, 60_000, (None, None)),
            clip(2, Priority::Normal, 60_000, (None, None)),
            clip(3, Priority::Priority, 60_000, (None, None)),
            clip(4, Priority::Normal, 60_000, (None, None)),
        ];
        let last = HashMap::from([(1, 300), (2, 100)]); // 4 never aired
        assert_eq!(ids(&program(&clips, &last, date("2026-11-23"), 900_000, &[], &Owed::default())), [3, 4, 2, 1]);
    }

    #[test]
    fn the_budget_is_never_exceeded_and_shorter_clips_fill_it() {
        let clips = [
            clip(1, Priority::Normal, 600_000, (None, None)),
            clip(2, Priority::Normal, 400_000, (None, None)),
            clip(3, Priority::Normal, 300_000, (None, None)),
        ];
        let chosen = program(&clips, &HashMap::new(), date("2026-11-23"), 900_000, &[], &Owed::default());
        assert_eq!(ids(&chosen), [1, 3]);
        assert!(chosen.iter().map(|p| p.clip.audio.duration_ms).sum::<u64>() <= 900_000);
    }

    #[test]
    fn validity_windows_are_inclusive_local_dates() {
        let clips = [clip(1, Priority::Normal, 1000, (Some("2026-03-01"), Some("2026-03-31")))];
        for (day, airs) in [("2026-02-28", false), ("2026-03-01", true), ("2026-03-31", true), ("2026-04-01", false)] {
            assert_eq!(
                !program(&clips, &HashMap::new(), date(day), 900_000, &[], &Owed::default()).is_empty(),
                airs,
                "{day}"
            );
        }
    }

    #[test]
    fn each_unmet_quota_gets_one_clip_first_in_rotation() {
        let clips = [
            topical(1, Priority::Priority, 60_000, (None, None), "thong-bao", "vi"),
            topical(2, Priority::Normal, 60_000, (None, None), "cchc", "vi"),
            topical(3, Priority::Normal, 60_000, (None, None), "cchc", "vi"),
            topical(4, Priority::Normal, 60_000, (None, None), "cchc", "hmn"),
        ];
        let needs = [
            Need { quota: 0, topic: "cchc".into(), language: Some("vi".into()) },
            Need { quota: 1, topic: "cchc".into(), language: Some("hmn".into()) },
        ];
        // Clip 2 aired last week, clip 3 longer ago: 3 serves the vi quota this time.
        let last = HashMap::from([(2, 2_000), (3, 1_000)]);
        let program = program(&clips, &last, date("2026-11-23"), 180_000, &needs, &Owed::default());
        let quotas: Vec<(i64, Option<usize>)> = program.iter().map(|p| (p.clip.id, p.quota)).collect();
        assert_eq!(quotas, [(3, Some(0)), (4, Some(1)), (1, None)], "quota items lead, within the budget");
    }

    #[test]
    fn a_quota_with_no_eligible_clip_is_left_unserved() {
        let clips = [topical(1, Priority::Normal, 60_000, (Some("2026-03-01"), Some("2026-03-31")), "cchc", "vi")];
        let needs = [Need { quota: 0, topic: "cchc".into(), language: None }];
        assert!(program(&clips, &HashMap::new(), date("2026-04-01"), 900_000, &needs, &Owed::default()).is_empty());
    }

    #[test]
    fn retired_clips_never_air() {
        let mut retired = clip(1, Priority::Emergency, 1000, (None, None));
        retired.retired_at = Some("2026-11-01T00:00:00.000Z".into());
        assert!(program(&[retired], &HashMap::new(), date("2026-11-23"), 900_000, &[], &Owed::default()).is_empty());
    }

    #[test]
    fn an_offices_priority_bulletin_leads_peak_slots_until_aired_as_often_as_owed() {
        let clips = [
            clip(1, Priority::Normal, 60_000, (None, None)),
            clip(2, Priority::Priority, 60_000, (None, None)),
            clip(3, Priority::Priority, 60_000, (Some("2026-12-01"), Some("2026-12-07"))),
        ];
        let frame = |peak| SlotFrame { date: date("2026-11-23"), budget_ms: 900_000, peak };
        let ids = |items: Vec<SlotItem>| items.iter().map(|i| i.clip.id).collect::<Vec<_>>();
        let none = HashMap::new();
        // Owed: it leads a peak slot, ahead of the quota's pick; not outside its window (3).
        let owed = Owed::of(&[(2, 2, 1), (3, 1, 0)]);
        let needs = [Need { quota: 0, topic: "cchc".into(), language: None }];
        assert_eq!(ids(slot_program(&clips, &[], &none, frame(true), &needs, &owed))[0], 2);
        // Aired as often as owed: planned as a normal bulletin (the least recently aired first).
        let done = Owed::of(&[(2, 2, 2)]);
        let last = HashMap::from([(1, 10), (2, 5)]);
        assert_eq!(ids(slot_program(&clips, &[], &last, frame(true), &[], &done)), [2, 1]);
        let last = HashMap::from([(1, 5), (2, 10)]);
        assert_eq!(ids(slot_program(&clips, &[], &last, frame(true), &[], &done)), [1, 2]);
        // Not a peak slot: no leading, though still before normal ones while owed.
        assert_eq!(ids(slot_program(&clips, &[], &last, frame(false), &[], &owed)), [2, 1]);
    }

    #[test]
    fn an_emergency_leads_only_until_aired_as_often_as_owed_the_operators_own_once() {
        let clips = [
            clip(1, Priority::Normal, 60_000, (None, None)),
            clip(2, Priority::Emergency, 60_000, (None, None)), // the office's, owed once
            clip(3, Priority::Emergency, 60_000, (None, None)), // the operator's own
        ];
        let frame = SlotFrame { date: date("2026-11-23"), budget_ms: 900_000, peak: true };
        let ids = |items: Vec<SlotItem>| items.iter().map(|i| i.clip.id).collect::<Vec<_>>();
        let last = HashMap::from([(1, 10)]);
        let owed = Owed::of(&[(2, 1, 0)]);
        assert_eq!(ids(slot_program(&clips, &[], &last, frame, &[], &owed)), [2, 3, 1], "both still owed");
        // Each aired once (2 as often as the office asked): the station's choice, by rotation.
        let last = HashMap::from([(1, 10), (2, 50), (3, 40)]);
        let done = Owed::of(&[(2, 1, 1)]);
        assert_eq!(ids(slot_program(&clips, &[], &last, frame, &[], &done)), [1, 3, 2]);
        // An office emergency owed three times keeps leading after one airing.
        let owed = Owed::of(&[(2, 3, 1)]);
        assert_eq!(ids(slot_program(&clips, &[], &last, frame, &[], &owed))[0], 2);
    }
}
