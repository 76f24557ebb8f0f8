//! The reform plan's quotas: which period "now" is in, in station time, and what a slot must
//! carry so each quota is met.
//!
//! Counting is done from the proof log only (completed airings, per topic, language, peak), so
//! a failed, partial or pre-empted quota airing leaves the quota unmet and the next qualifying
//! slot carries it again: that is the make-up.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use serde::Serialize;

use crate::config::{Config, Quota};
use crate::store::{Store, StoreError};
use crate::time::calendar::{Period, period_of};

/// A quota this slot should serve: still short of its count in the slot's period.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    pub quota: usize,
    pub topic: String,
    pub language: Option<String>,
}

/// Quotas a slot (peak or not) can serve that are unmet: `completed(quota index, period)` is
/// the count of completed qualifying airings in the period, from the proof log.
pub fn needs(
    quotas: &[Quota],
    slot_is_peak: bool,
    at: DateTime<Utc>,
    timezone: Tz,
    completed: impl Fn(usize, &Period) -> u32,
) -> Vec<Need> {
    quotas
        .iter()
        .enumerate()
        .filter(|(_, q)| slot_is_peak || !q.peak_only)
        .filter(|(i, q)| completed(*i, &period_of(q.per, at, timezone)) < q.count)
        .map(|(i, q)| Need { quota: i, topic: q.topic.clone(), language: q.language.clone() })
        .collect()
}

/// The quotas a slot at `at` should serve, counted from the store's proof log.
pub fn unmet(
    store: &Store,
    quotas: &[Quota],
    slot_is_peak: bool,
    at: DateTime<Utc>,
    timezone: Tz,
) -> Result<Vec<Need>, StoreError> {
    let counts = quotas
        .iter()
        .map(|q| {
            let period = period_of(q.per, at, timezone);
            store.completed_airings(
                &q.topic,
                q.language.as_deref(),
                q.peak_only,
                period.start.timestamp_millis(),
                period.end.timestamp_millis(),
            )
        })
        .collect::<Result<Vec<u32>, _>>()?;
    Ok(needs(quotas, slot_is_peak, at, timezone, |i, _| counts[i]))
}

/// Where a quota stands in its current period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    pub topic: String,
    pub language: Option<String>,
    pub period: String,
    pub required: u32,
    pub completed: u32,
    pub status: QuotaStatus,
    /// Why it is at risk.
    pub reason: Option<AtRisk>,
}

/// Where a quota stands: `met`, `on_track` or `at_risk` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaStatus {
    Met,
    OnTrack,
    AtRisk,
}

named_enum! {
    /// Why a quota may not be met this period.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum AtRisk("a risk") {
        /// Nothing eligible is left in the library for the rest of the period.
        NoClip = "no_clip",
        /// Fewer qualifying slots are left than airings still needed.
        NotEnoughSlots = "not_enough_slots",
    }
}

/// Each quota's standing at `now`: counted from the log, judged against the library and the
/// qualifying slots left in the period.
pub fn standings(store: &Store, config: &Config, now: DateTime<Utc>) -> Result<Vec<Standing>, StoreError> {
    let tz = config.station.timezone;
    let clips = store.active_clips()?;
    config
        .quotas
        .iter()
        .map(|q| {
            let period = period_of(q.per, now, tz);
            let completed = store.completed_airings(
                &q.topic,
                q.language.as_deref(),
                q.peak_only,
                period.start.timestamp_millis(),
                period.end.timestamp_millis(),
            )?;
            let local_now = now.with_timezone(&tz);
            let slots_left: usize = config
                .slots
                .iter()
                .filter(|slot| !q.peak_only || slot.peak)
                .map(|slot| slot.cron.after(&local_now).take_while(|at| *at < period.end).count())
                .sum();
            let slots_left = slots_left as u32;
            let today = now.with_timezone(&tz).date_naive();
            let last_day = (period.end - chrono::TimeDelta::milliseconds(1)).with_timezone(&tz).date_naive();
            let has_clip = clips.iter().any(|c| {
                c.meta.topic == q.topic
                    && q.language.as_ref().is_none_or(|l| *l == c.meta.language)
                    && c.meta.valid_from.is_none_or(|from| from <= last_day)
                    && c.meta.valid_until.is_none_or(|until| until >= today)
            });
            let (status, reason) = if completed >= q.count {
                (QuotaStatus::Met, None)
            } else if !has_clip {
                (QuotaStatus::AtRisk, Some(AtRisk::NoClip))
            } else if slots_left < q.count - completed {
                (QuotaStatus::AtRisk, Some(AtRisk::NotEnoughSlots))
            } else {
                (QuotaStatus::OnTrack, None)
            };
            Ok(Standing {
                topic: q.topic.clone(),
                language: q.language.clone(),
                period: period.label,
                required: q.count,
                completed,
                status,
                reason,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::calendar::QuotaPeriod;
    use chrono::TimeZone;

    fn tz() -> Tz {
        chrono_tz::Asia::Ho_Chi_Minh
    }

    fn local(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        tz().with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn only_unmet_quotas_this_slot_can_serve_are_needed() {
        let quota = |topic: &str, count, peak_only, language: Option<&str>| Quota {
            topic: topic.into(),
            per: QuotaPeriod::Week,
            count,
            peak_only,
            language: language.map(Into::into),
        };
        let quotas =
            [quota("cchc", 1, true, Some("vi")), quota("cchc", 1, true, Some("hmn")), quota("an-toan", 2, false, None)];
        let done = |i: usize, _: &Period| [1, 0, 1][i];
        let peak: Vec<usize> =
            needs(&quotas, true, local(2026, 11, 25, 5), tz(), done).iter().map(|n| n.quota).collect();
        assert_eq!(peak, [1, 2], "vi met; hmn and the second an-toan airing still needed");
        let off_peak: Vec<usize> =
            needs(&quotas, false, local(2026, 11, 25, 11), tz(), done).iter().map(|n| n.quota).collect();
        assert_eq!(off_peak, [2], "peak-only quotas are not served off peak");
    }
}
