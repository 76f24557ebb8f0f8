//! When each slot fires, decided from "now" alone, so a wall-clock step cannot air a slot twice
//! or skip one silently.
//!
//! Each slot remembers the next fire instant it has not yet handled. That instant only moves
//! forward, past instants that were aired or recorded missed; the record of them is the proof
//! log itself (`last_fired_by_slot`), so a restart resumes exactly where the log ends. A clock
//! stepped back leaves the next instant in the future: nothing fires again. A clock stepped
//! forward past an instant airs it if it is at most the slot's grace late, otherwise it is due
//! as missed — with every later instant of the same slot that is missed too, as one run
//! counted by whole days (`CronSchedule::count_between`), so a month's outage of a slot every
//! 4 s is one decision, not 648,000.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::Slot;
use crate::time::slots::InstantRun;

#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    Air { slot: usize, at: DateTime<Utc> },
    Missed { slot: usize, at: DateTime<Utc> },
}

pub struct SlotTimer {
    slots: Vec<Slot>,
    timezone: Tz,
    /// Per slot, the earliest fire instant not yet handled.
    next: Vec<Option<DateTime<Utc>>>,
}

impl SlotTimer {
    /// `last_fired`: per slot name, the last instant already aired or recorded missed (UTC ms).
    /// `resume_from`: instants at or before it are not looked at (the last heartbeat, or now on
    /// a first start).
    pub fn new(
        slots: &[Slot],
        timezone: Tz,
        last_fired: &HashMap<String, i64>,
        resume_from: DateTime<Utc>,
    ) -> SlotTimer {
        let next = slots
            .iter()
            .map(|slot| {
                let fired = last_fired.get(&slot.name).and_then(|ms| DateTime::from_timestamp_millis(*ms));
                let after = fired.map_or(resume_from, |fired| fired.max(resume_from));
                first_fire_after(slot, timezone, after)
            })
            .collect();
        SlotTimer { slots: slots.to_vec(), timezone, next }
    }

    pub fn slot(&self, index: usize) -> &Slot {
        &self.slots[index]
    }

    /// The earliest unhandled fire instant that has come by `now + cue` (the engine prepares a
    /// slot `cue` ahead of its instant), marked handled. Lateness is judged against `now`. Call
    /// repeatedly until `None`: after an outage several may be due.
    pub fn due(&mut self, now: DateTime<Utc>, cue: TimeDelta) -> Option<Due> {
        let (slot, at) = self
            .next
            .iter()
            .enumerate()
            .filter_map(|(i, next)| next.map(|at| (i, at)))
            .filter(|(_, at)| *at <= now + cue)
            .min_by_key(|(i, at)| (*at, *i))?;
        self.next[slot] = first_fire_after(&self.slots[slot], self.timezone, at);
        Some(if now - at <= self.slots[slot].grace { Due::Air { slot, at } } else { Due::Missed { slot, at } })
    }

    /// After `due` handed out `Due::Missed { slot, at }`: the run of that slot's instants from
    /// `at` that are missed at `now` too (beyond the slot's grace) and fall before `until` (where
    /// the reason for missing them changes), marked handled.
    pub fn missed_run(
        &mut self,
        slot: usize,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    ) -> InstantRun {
        let late = now - self.slots[slot].grace;
        let before = until.map_or(late, |until| until.min(late));
        let more = self.slots[slot].cron.count_between(self.timezone, at, before);
        let last = more.last.unwrap_or(at);
        self.next[slot] = first_fire_after(&self.slots[slot], self.timezone, last);
        InstantRun { first: at, last, count: 1 + more.count }
    }

    /// The earliest unhandled fire instant, if any slot will ever fire again.
    pub fn next_fire(&self) -> Option<DateTime<Utc>> {
        self.next_slot().map(|(_, at)| at)
    }

    /// The slot that fires next, and when.
    pub fn next_slot(&self) -> Option<(&Slot, DateTime<Utc>)> {
        self.next
            .iter()
            .enumerate()
            .filter_map(|(i, at)| at.map(|at| (i, at)))
            .min_by_key(|(i, at)| (*at, *i))
            .map(|(i, at)| (&self.slots[i], at))
    }
}

/// Upcoming fire instants of `slots` after `after`, soonest first: (slot index, instant).
pub fn upcoming(slots: &[Slot], timezone: Tz, after: DateTime<Utc>, count: usize) -> Vec<(usize, DateTime<Utc>)> {
    let local = after.with_timezone(&timezone);
    let mut all: Vec<(usize, DateTime<Utc>)> = slots
        .iter()
        .enumerate()
        .flat_map(|(i, slot)| slot.cron.after(&local).take(count).map(move |at| (i, at.with_timezone(&Utc))))
        .collect();
    all.sort_by_key(|(i, at)| (*at, *i));
    all.truncate(count);
    all
}

fn first_fire_after(slot: &Slot, timezone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    slot.cron.after(&timezone.from_utc_datetime(&after.naive_utc())).next().map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::slots::CronSchedule;

    fn slot(name: &str, cron: &str, grace_s: i64) -> Slot {
        Slot {
            name: name.into(),
            label: name.into(),
            cron: CronSchedule::parse(cron).unwrap(),
            max_minutes: 15,
            peak: true,
            grace: TimeDelta::seconds(grace_s),
        }
    }

    fn tz() -> Tz {
        chrono_tz::Asia::Ho_Chi_Minh
    }

    /// Local time in Hà Nội → UTC.
    fn local(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
        tz().with_ymd_and_hms(y, m, d, h, min, s).unwrap().with_timezone(&Utc)
    }

    /// Every decision while the clock walks through `times`.
    fn run(timer: &mut SlotTimer, times: &[DateTime<Utc>]) -> Vec<Due> {
        times
            .iter()
            .flat_map(|now| std::iter::from_fn(|| timer.due(*now, TimeDelta::zero())).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn a_slot_fires_once_at_its_instant() {
        let mut timer = SlotTimer::new(
            &[slot("sang", "0 30 5 * * Mon-Sun", 300)],
            tz(),
            &HashMap::new(),
            local(2026, 11, 23, 5, 0, 0),
        );
        assert_eq!(timer.next_fire(), Some(local(2026, 11, 23, 5, 30, 0)));
        assert_eq!(timer.due(local(2026, 11, 23, 5, 29, 59), TimeDelta::zero()), None);
        assert_eq!(
            timer.due(local(2026, 11, 23, 5, 30, 0), TimeDelta::zero()),
            Some(Due::Air { slot: 0, at: local(2026, 11, 23, 5, 30, 0) })
        );
        assert_eq!(timer.due(local(2026, 11, 23, 5, 30, 1), TimeDelta::zero()), None, "fired once");
        assert_eq!(timer.next_fire(), Some(local(2026, 11, 24, 5, 30, 0)));
    }

    #[test]
    fn a_clock_stepped_back_does_not_air_again() {
        let mut timer = SlotTimer::new(
            &[slot("sang", "0 30 5 * * Mon-Sun", 300)],
            tz(),
            &HashMap::new(),
            local(2026, 11, 23, 5, 0, 0),
        );
        let times = [
            local(2026, 11, 23, 5, 30, 0),
            local(2026, 11, 23, 5, 45, 0),
            local(2026, 11, 23, 4, 45, 0),
            local(2026, 11, 23, 5, 30, 0),
            local(2026, 11, 23, 5, 31, 0),
        ];
        assert_eq!(run(&mut timer, &times), [Due::Air { slot: 0, at: local(2026, 11, 23, 5, 30, 0) }]);
    }

    #[test]
    fn a_restart_after_a_backward_step_resumes_from_the_log() {
        let fired = HashMap::from([("sang".to_owned(), local(2026, 11, 23, 5, 30, 0).timestamp_millis())]);
        // The box restarts with its clock an hour behind (before the slot it already aired).
        let mut timer =
            SlotTimer::new(&[slot("sang", "0 30 5 * * Mon-Sun", 300)], tz(), &fired, local(2026, 11, 23, 4, 40, 0));
        assert_eq!(run(&mut timer, &[local(2026, 11, 23, 5, 30, 0), local(2026, 11, 23, 5, 35, 0)]), []);
        assert_eq!(timer.next_fire(), Some(local(2026, 11, 24, 5, 30, 0)));
    }

    #[test]
    fn a_forward_step_airs_within_grace_and_misses_beyond() {
        let slots = [slot("sang", "0 30 5 * * Mon-Sun", 300), slot("chieu", "0 0 17 * * Mon-Sun", 300)];
        let mut timer = SlotTimer::new(&slots, tz(), &HashMap::new(), local(2026, 11, 23, 5, 0, 0));
        // 05:29 → 05:34:59: four minutes late, inside the five-minute grace.
        assert_eq!(
            run(&mut timer, &[local(2026, 11, 23, 5, 29, 0), local(2026, 11, 23, 5, 34, 59)]),
            [Due::Air { slot: 0, at: local(2026, 11, 23, 5, 30, 0) }]
        );
        // 16:59 → 17:05:01: more than the grace: missed, never aired late.
        assert_eq!(
            run(&mut timer, &[local(2026, 11, 23, 16, 59, 0), local(2026, 11, 23, 17, 5, 1)]),
            [Due::Missed { slot: 1, at: local(2026, 11, 23, 17, 0, 0) }]
        );
    }

    #[test]
    fn an_outage_yields_every_missed_instant_in_order_then_the_due_one() {
        let slots = [slot("sang", "0 30 5 * * Mon-Sun", 60), slot("chieu", "0 0 17 * * Mon-Fri", 60)];
        let last_alive = local(2026, 11, 20, 12, 0, 0); // Friday noon
        let mut timer = SlotTimer::new(&slots, tz(), &HashMap::new(), last_alive);
        let decisions = run(&mut timer, &[local(2026, 11, 23, 5, 30, 30)]); // Monday 05:30:30
        assert_eq!(
            decisions,
            [
                Due::Missed { slot: 1, at: local(2026, 11, 20, 17, 0, 0) },
                Due::Missed { slot: 0, at: local(2026, 11, 21, 5, 30, 0) },
                Due::Missed { slot: 0, at: local(2026, 11, 22, 5, 30, 0) },
                Due::Air { slot: 0, at: local(2026, 11, 23, 5, 30, 0) },
            ]
        );
    }

    #[test]
    fn a_month_down_is_one_run_per_slot_then_the_due_instant_airs() {
        let slots = [slot("nhanh", "*/4 * * * * Mon-Sun", 1), slot("sang", "0 30 5 * * Mon-Sun", 60)];
        let last_alive = local(2026, 11, 1, 12, 0, 1);
        let mut timer = SlotTimer::new(&slots, tz(), &HashMap::new(), last_alive);
        let started = local(2026, 12, 1, 12, 0, 0);
        let now = started + TimeDelta::milliseconds(300);
        let mut runs = Vec::new();
        let due = loop {
            match timer.due(now, TimeDelta::seconds(2)) {
                Some(Due::Missed { slot, at }) => runs.push((slot, timer.missed_run(slot, at, now, Some(started)))),
                other => break other,
            }
        };
        assert_eq!(
            runs,
            [
                (
                    0,
                    InstantRun {
                        first: local(2026, 11, 1, 12, 0, 4),
                        last: local(2026, 12, 1, 11, 59, 56),
                        count: 648_000 - 1
                    }
                ),
                (1, InstantRun { first: local(2026, 11, 2, 5, 30, 0), last: local(2026, 12, 1, 5, 30, 0), count: 30 }),
            ]
        );
        // The instant at the start itself is within its grace: aired, not missed.
        assert_eq!(due, Some(Due::Air { slot: 0, at: started }));
    }

    #[test]
    fn a_run_stops_where_its_reason_changes_and_at_the_grace() {
        let slots = [slot("nhanh", "*/10 * * * * Mon-Sun", 5)];
        let start = local(2026, 11, 23, 8, 0, 0);
        let mut timer = SlotTimer::new(&slots, tz(), &HashMap::new(), start);
        // The clock jumps 95 s: 08:00:10 … 08:01:30 are late; until 08:00:40 (say) for one reason.
        let now = start + TimeDelta::seconds(95);
        let Some(Due::Missed { slot, at }) = timer.due(now, TimeDelta::zero()) else { panic!("missed") };
        let until = Some(start + TimeDelta::seconds(40));
        assert_eq!(timer.missed_run(slot, at, now, until).count, 3, "08:00:10, :20, :30");
        let Some(Due::Missed { slot, at }) = timer.due(now, TimeDelta::zero()) else { panic!("missed") };
        let rest = timer.missed_run(slot, at, now, None);
        assert_eq!(
            (rest.first, rest.last, rest.count),
            (start + TimeDelta::seconds(40), start + TimeDelta::seconds(80), 5)
        );
        // 08:01:30 is 5 s late: within the grace, so it airs.
        assert_eq!(timer.due(now, TimeDelta::zero()), Some(Due::Air { slot: 0, at: start + TimeDelta::seconds(90) }));
    }

    #[test]
    fn a_slot_is_handed_out_cue_ahead_of_its_instant_once() {
        let mut timer = SlotTimer::new(
            &[slot("sang", "0 30 5 * * Mon-Sun", 300)],
            tz(),
            &HashMap::new(),
            local(2026, 11, 23, 5, 0, 0),
        );
        let cue = TimeDelta::seconds(2);
        assert_eq!(timer.due(local(2026, 11, 23, 5, 29, 57), cue), None);
        assert_eq!(
            timer.due(local(2026, 11, 23, 5, 29, 58), cue),
            Some(Due::Air { slot: 0, at: local(2026, 11, 23, 5, 30, 0) })
        );
        assert_eq!(timer.due(local(2026, 11, 23, 5, 30, 0), cue), None);
    }

    #[test]
    fn station_time_not_utc_decides_the_day() {
        // 05:30 on Monday in Hà Nội is 22:30 UTC on Sunday: a Mon-Fri slot fires then.
        let mut timer = SlotTimer::new(
            &[slot("sang", "0 30 5 * * Mon-Fri", 60)],
            tz(),
            &HashMap::new(),
            local(2026, 11, 22, 12, 0, 0),
        );
        let fire = timer.next_fire().unwrap();
        assert_eq!(fire.to_rfc3339(), "2026-11-22T22:30:00+00:00");
        assert!(matches!(timer.due(fire, TimeDelta::zero()), Some(Due::Air { .. })));
    }

    #[test]
    fn upcoming_merges_slots_in_time_order() {
        let slots = [slot("chieu", "0 0 17 * * Mon-Sun", 60), slot("sang", "0 30 5 * * Mon-Sun", 60)];
        let next: Vec<usize> =
            upcoming(&slots, tz(), local(2026, 11, 23, 0, 0, 0), 4).into_iter().map(|(i, _)| i).collect();
        assert_eq!(next, [1, 0, 1, 0]);
    }
}
