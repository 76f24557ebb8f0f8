//! Reports for the auditing office: for a week, month, quarter, half-year or year, what the
//! station aired against each quota — computed from the proof log only.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::audit::chain;
use crate::config::{Config, Quota};
use crate::model::level::hundredths;
use crate::proof::events::{AiringStatus, Counted, Damage, Logged, MissReason};
use crate::store::{EventQuery, Store, StoreError};
use crate::time::calendar::{Period, period_of};

named_enum! {
    /// Why a quota's week or month is not met.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Shortfall("a shortfall") {
        /// The station was down at some slot of it.
        StationDown = "station_down",
        /// Airings were attempted; none completed.
        AllAttemptsFailed = "all_attempts_failed",
        /// Nothing that serves the quota was aired or attempted.
        NoClip = "no_clip",
        /// The period is still running.
        InProgress = "in_progress",
        /// It ended before the station's first event: not a failure.
        NotYetOperating = "not_yet_operating",
        /// It ended after the last moment the log held is known to cover (an office that has
        /// not heard from the station since): nothing proves what aired, nor that nothing did.
        NoData = "no_data",
    }
}

named_enum! {
    /// A quota over a report's period, in one word: never `met` without counted airings.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Standing("a quota standing") {
        /// Every week or month of it that began is met by completed airings.
        Met = "met",
        /// A week or month of it ended without enough completed airings.
        NotMet = "not_met",
        /// Nothing missed so far, and a week or month of it is still running.
        InProgress = "in_progress",
        /// The log held does not cover it: a station never reached, or silent since.
        NoData = "no_data",
        /// It all ended before the station's first event.
        NotYetOperating = "not_yet_operating",
    }
}

/// What stretch of time a log is known to cover: from the station's first event (`since`) to
/// `until` — now for a station's own live log; for an office, its last clean contact with the
/// station (it then held everything the station had). `None`: nothing is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coverage {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One quota period inside the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaPeriodResult {
    pub period: String,
    pub required: u32,
    pub completed: u32,
    pub met: bool,
    /// Why the period is not met; periods not begun yet are not listed.
    pub reason: Option<Shortfall>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuotaReport {
    pub topic: String,
    pub language: Option<String>,
    pub per: String,
    pub count: u32,
    pub peak_only: bool,
    pub periods: Vec<QuotaPeriodResult>,
    pub met: usize,
    pub missed: usize,
    /// Periods the log held does not cover (`no_data`).
    pub no_data: usize,
    pub standing: Standing,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    pub airings: u32,
    pub minutes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub station_id: String,
    pub station_name: String,
    pub period: String,
    pub from: String,
    pub to: String,
    pub generated_at: String,
    pub quotas: Vec<QuotaReport>,
    /// Airing endings and missed slots by status.
    pub by_status: BTreeMap<String, u32>,
    /// Completed airings by topic and language ("cchc/vi").
    pub by_topic_language: BTreeMap<String, Tally>,
    pub peak: Tally,
    pub off_peak: Tally,
    /// The last event the report counted (ties the report to the verifiable log).
    pub last_seq: Option<i64>,
    pub last_hash: Option<String>,
}

/// Whether a completed airing counts toward `quota`.
fn serves(topic: &str, language: &str, peak: bool, quota: &Quota) -> bool {
    topic == quota.topic && quota.language.as_deref().is_none_or(|l| language == l) && (!quota.peak_only || peak)
}

/// Whose log a report is about, and the quotas it is held to: a station's own config, or the
/// office's quotas for each station it audits.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub station_id: &'a str,
    pub station_name: &'a str,
    pub timezone: Tz,
    pub quotas: &'a [Quota],
}

impl<'a> Subject<'a> {
    pub fn of(config: &'a Config) -> Subject<'a> {
        Subject {
            station_id: &config.station.id,
            station_name: &config.station.name,
            timezone: config.station.timezone,
            quotas: &config.quotas,
        }
    }
}

/// The report for `period` from `events` (exported event objects, ascending seq), at `now`, over
/// a log that `covers` a stretch of time: weeks and months that ended before the station's first
/// event are "not yet operating", not failures; those that ended after what the log covers are
/// "no data"; those not begun by `now` are left out.
pub fn report(subject: Subject, period: &Period, events: &[Logged], now: DateTime<Utc>, covers: Coverage) -> Report {
    let tz = subject.timezone;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).to_rfc3339();
    let (from, to) = (period.start.timestamp_millis(), period.end.timestamp_millis());
    let mut by_status = BTreeMap::new();
    let mut by_topic_language: BTreeMap<String, Tally> = BTreeMap::new();
    let (mut peak_tally, mut off_peak) = (Tally::default(), Tally::default());
    for e in events.iter().filter(|e| e.at >= from && e.at < to) {
        let (status, count) = match &e.what {
            Counted::AiringEnded { status, .. } => (status.as_str(), 1),
            // A run of missed instants counts each of them.
            Counted::SlotMissed { count, .. } => ("missed", u32::try_from(*count).unwrap_or(u32::MAX)),
            Counted::Other => continue,
        };
        let tally: &mut u32 = by_status.entry(status.to_owned()).or_insert(0);
        *tally = tally.saturating_add(count);
        if let Counted::AiringEnded { status: AiringStatus::Completed, played_ms, topic, language, peak, .. } = &e.what
        {
            let minutes = *played_ms as f64 / 60_000.0;
            for tally in [
                by_topic_language.entry(format!("{topic}/{language}")).or_default(),
                if *peak { &mut peak_tally } else { &mut off_peak },
            ] {
                tally.airings += 1;
                tally.minutes = hundredths(tally.minutes + minutes);
            }
        }
    }

    let quotas = subject.quotas.iter().map(|quota| quota_report(quota, period, events, covers, now, tz)).collect();
    let last = events.iter().rev().find(|e| e.at < to);
    Report {
        station_id: subject.station_id.to_owned(),
        station_name: subject.station_name.to_owned(),
        period: period.label.clone(),
        from: local(period.start),
        to: local(period.end),
        generated_at: local(now),
        quotas,
        by_status,
        by_topic_language,
        peak: peak_tally,
        off_peak,
        last_seq: last.map(|e| e.seq),
        last_hash: last.map(|e| e.hash.clone()),
    }
}

/// Whether a quota's week or month is judged in a report `period`. A week straddling two months
/// belongs to the one holding its middle (its Thursday, as ISO weeks belong to years): so the
/// week of 30/11–6/12 is December's, and a station that began on 2 December has nothing in
/// November's report. A month in a week's report is the one holding the week's middle.
fn belongs(sub: &Period, period: &Period) -> bool {
    let middle = |p: &Period| p.start + (p.end - p.start) / 2;
    if sub.end - sub.start <= period.end - period.start {
        (period.start..period.end).contains(&middle(sub))
    } else {
        (sub.start..sub.end).contains(&middle(period))
    }
}

fn quota_report(
    quota: &Quota,
    period: &Period,
    events: &[Logged],
    Coverage { since, until }: Coverage,
    now: DateTime<Utc>,
    tz: Tz,
) -> QuotaReport {
    // The quota's weeks or months that belong to the report period, then one pass over the
    // events into them (binary search on the starts), so a year costs one scan, not one per week.
    let mut subs = Vec::new();
    let mut at = period.start;
    while at < period.end && at <= now {
        let sub = period_of(quota.per, at, tz);
        at = sub.end;
        if belongs(&sub, period) {
            subs.push(sub);
        }
    }
    let starts: Vec<i64> = subs.iter().map(|p| p.start.timestamp_millis()).collect();
    #[derive(Default, Clone, Copy)]
    struct Tally {
        completed: u32,
        attempts: u32,
        station_down: bool,
    }
    let mut tallies = vec![Tally::default(); subs.len()];
    for e in events {
        let Some(i) = starts.partition_point(|start| *start <= e.at).checked_sub(1) else { continue };
        if e.at >= subs[i].end.timestamp_millis() {
            continue;
        }
        match &e.what {
            Counted::AiringEnded { status, topic, language, peak, .. } if serves(topic, language, *peak, quota) => {
                tallies[i].attempts += 1;
                tallies[i].completed += u32::from(*status == AiringStatus::Completed);
            }
            Counted::SlotMissed { reason: MissReason::StationDown, .. } => tallies[i].station_down = true,
            _ => {}
        }
    }
    let periods: Vec<QuotaPeriodResult> = subs
        .iter()
        .zip(tallies)
        .map(|(sub, tally)| {
            let met = tally.completed >= quota.count;
            let reason = if met {
                None
            } else if until.is_none() {
                Some(Shortfall::NoData)
            } else if since.is_none_or(|since| sub.end <= since) {
                Some(Shortfall::NotYetOperating)
            } else if sub.end <= now && until.is_some_and(|until| sub.end > until) {
                Some(Shortfall::NoData)
            } else if sub.end > now {
                Some(Shortfall::InProgress)
            } else if tally.station_down {
                Some(Shortfall::StationDown)
            } else if tally.attempts > 0 {
                Some(Shortfall::AllAttemptsFailed)
            } else {
                Some(Shortfall::NoClip)
            };
            QuotaPeriodResult {
                period: sub.label.clone(),
                required: quota.count,
                completed: tally.completed,
                met,
                reason,
            }
        })
        .collect();
    let met = periods.iter().filter(|p| p.met).count();
    let count = |reason| periods.iter().filter(|p| p.reason == Some(reason)).count();
    let (no_data, in_progress, not_yet) =
        (count(Shortfall::NoData), count(Shortfall::InProgress), count(Shortfall::NotYetOperating));
    let missed = periods.iter().filter(|p| !p.met).count() - no_data - in_progress - not_yet;
    let standing = if missed > 0 {
        Standing::NotMet
    } else if no_data > 0 {
        Standing::NoData
    } else if in_progress > 0 {
        Standing::InProgress
    } else if met > 0 {
        Standing::Met
    } else {
        Standing::NotYetOperating
    };
    QuotaReport {
        topic: quota.topic.clone(),
        language: quota.language.clone(),
        per: quota.per.as_str().to_owned(),
        count: quota.count,
        peak_only: quota.peak_only,
        periods,
        met,
        missed,
        no_data,
        standing,
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The events the report would count are not whole: no report is made from them.
    #[error("{0}; no report is made from a damaged log")]
    Damaged(Damage),
    /// An event that verifies but does not read as its kind's fields: a defect, never counted.
    #[error("the event at seq {seq} does not read as its kind ({error}); no report is made")]
    Unreadable { seq: i64, error: serde_json::Error },
}

/// The span of events a report counts: the period, widened to the whole quota weeks and months
/// that straddle its edges (UTC ms, half-open). The station's report and the office's read the
/// same span.
pub fn counted_span(period: &Period, quotas: &[Quota], tz: Tz) -> (i64, i64) {
    let last = period.end - chrono::TimeDelta::milliseconds(1);
    quotas.iter().fold((period.start.timestamp_millis(), period.end.timestamp_millis()), |(from, to), quota| {
        let first = period_of(quota.per, period.start, tz).start.timestamp_millis();
        let end = period_of(quota.per, last, tz).end.timestamp_millis();
        (from.min(first), to.max(end))
    })
}

/// The report for `period`, read from `store` (the [`counted_span`]), after checking every stored
/// event in that span as an export is checked: a damaged log is reported as damaged, never
/// counted.
pub fn from_store(store: &Store, config: &Config, period: &Period, now: DateTime<Utc>) -> Result<Report, ReportError> {
    let (from, to) = counted_span(period, &config.quotas, config.station.timezone);
    let query = EventQuery { after_seq: 0, from: Some(from), to: Some(to), limit: None, through_seq: None };
    let sealed = store.events(query)?;
    chain::PageCheck::of(store, &sealed)?.check(&sealed).map_err(ReportError::Damaged)?;
    let events = sealed
        .iter()
        .map(|e| Logged::of(e).map_err(|error| ReportError::Unreadable { seq: e.seq, error }))
        .collect::<Result<Vec<_>, _>>()?;
    let since = store.first_event_at()?.and_then(DateTime::from_timestamp_millis);
    Ok(report(Subject::of(config), period, &events, now, Coverage { since, until: Some(now) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::render::{Labels, ReportFormat, station::render};
    use crate::audit::words::period_vi;
    use crate::time::calendar::{parse_period, recent_periods};
    use chrono::{NaiveDate, TimeZone};
    use serde_json::{Map, Value};

    fn rendered(report: &Report, config: &Config, format: ReportFormat) -> String {
        String::from_utf8(render(report, format, &Labels::of(config)).0).unwrap()
    }

    fn tz() -> Tz {
        chrono_tz::Asia::Ho_Chi_Minh
    }

    fn local(m: u32, d: u32, h: u32) -> DateTime<Utc> {
        tz().with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap().with_timezone(&Utc)
    }

    fn event(seq: i64, kind: &str, at: DateTime<Utc>, fields: &[(&str, Value)]) -> Logged {
        let mut e = Map::new();
        e.insert("seq".into(), seq.into());
        e.insert("kind".into(), kind.into());
        e.insert("at".into(), at.timestamp_millis().into());
        for (k, v) in fields {
            e.insert((*k).into(), v.clone());
        }
        Logged::parse(&Value::Object(e).to_string(), "").expect("the fields of its kind")
    }

    fn ended(seq: i64, at: DateTime<Utc>, topic: &str, peak: bool, status: &str) -> Logged {
        let fields = [
            ("topic", topic.into()),
            ("language", "vi".into()),
            ("peak", peak.into()),
            ("status", status.into()),
            ("played_ms", 120_000.into()),
            ("clock_synced", true.into()),
        ];
        event(seq, "airing_ended", at, &fields)
    }

    #[test]
    fn each_week_is_met_or_missed_with_its_true_reason() {
        let text = "[station]\nid = \"s\"\nname = \"Đài\"\n[[slot]]\nname = \"sang\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = 15\npeak = true\n[[quota]]\ntopic = \"cchc\"\nper = \"week\"\n";
        let config = Config::parse(std::path::Path::new("/etc/loa/station.toml"), text).unwrap();
        let events = vec![
            // W45 (2–8 Nov): an off-peak completion does not count, a peak one does.
            ended(1, local(11, 3, 11), "cchc", false, "completed"),
            ended(2, local(11, 4, 5), "cchc", true, "completed"),
            // W46: tried, but partial and failed.
            ended(3, local(11, 10, 5), "cchc", true, "partial"),
            ended(4, local(11, 11, 5), "cchc", true, "failed"),
            // W47: the station was down; a completion of another topic does not help.
            event(
                5,
                "slot_missed",
                local(11, 17, 5),
                &[("status", "missed".into()), ("reason", "station_down".into()), ("peak", true.into())],
            ),
            ended(6, local(11, 18, 5), "thong-bao", true, "completed"),
            // W48: nothing aired at all; W49 is still running at `now`.
        ];
        let period = parse_period("2026-11", tz()).unwrap();
        let (now, since) = (local(12, 2, 12), Some(local(10, 1, 0)));
        let report = report(Subject::of(&config), &period, &events, now, Coverage { since, until: Some(now) });
        let weeks: Vec<(&str, u32, bool, Option<&str>)> = report.quotas[0]
            .periods
            .iter()
            .map(|p| (p.period.as_str(), p.completed, p.met, p.reason.map(Shortfall::as_str)))
            .collect();
        assert_eq!(
            weeks,
            [
                // W44 (26/10–1/11) is October's and W49 (30/11–6/12) December's: their Thursdays.
                ("2026-W45", 1, true, None),
                ("2026-W46", 0, false, Some("all_attempts_failed")),
                ("2026-W47", 0, false, Some("station_down")),
                ("2026-W48", 0, false, Some("no_clip")),
            ]
        );
        assert_eq!((report.quotas[0].met, report.quotas[0].missed), (1, 3));
        assert_eq!(report.by_status.get("completed"), Some(&3));
        assert_eq!(report.by_status.get("missed"), Some(&1));
        assert_eq!((report.peak.airings, report.off_peak.airings), (2, 1));
        assert_eq!(report.by_topic_language["cchc/vi"].airings, 2);
        assert_eq!(report.last_seq, Some(6));
        let html = rendered(&report, &config, ReportFormat::Html);
        assert!(
            html.contains("Báo cáo kết quả phát thanh cải cách hành chính")
                && html.contains("Không đạt: đài ngừng hoạt động")
        );
        assert!(rendered(&report, &config, ReportFormat::Csv).starts_with("\u{feff}station_id,report_period"));
        let people = rendered(&report, &config, ReportFormat::CsvVi);
        let first = people.lines().nth(1).unwrap();
        assert!(people.starts_with("\u{feff}Đài,Kỳ báo cáo,Chỉ tiêu,Kỳ,Từ ngày,Đến ngày"), "{people}");
        assert!(
            first.starts_with("Đài,Tháng 11/2026,\"Cải cách hành chính: ít nhất 1 lần mỗi tuần, giờ cao điểm\",")
                && first.contains(",02/11/2026,08/11/2026,1,1,Đạt"),
            "{first}"
        );
    }

    #[test]
    fn a_station_created_mid_quarter_is_not_failed_before_it_existed_nor_judged_ahead() {
        let text = "[station]\nid = \"s\"\nname = \"Đài\"\n[[slot]]\nname = \"sang\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = 15\npeak = true\n[[quota]]\ntopic = \"cchc\"\nper = \"week\"\n";
        let config = Config::parse(std::path::Path::new("/etc/loa/station.toml"), text).unwrap();
        let since = local(11, 4, 9); // first event: Wednesday of W45
        let events = vec![ended(1, local(11, 5, 5), "cchc", true, "completed")];
        let period = parse_period("2026-Q4", tz()).unwrap();
        let now = local(11, 20, 12);
        let report =
            report(Subject::of(&config), &period, &events, now, Coverage { since: Some(since), until: Some(now) });
        let weeks: Vec<(&str, Option<&str>)> =
            report.quotas[0].periods.iter().map(|p| (p.period.as_str(), p.reason.map(Shortfall::as_str))).collect();
        assert_eq!(weeks.first(), Some(&("2026-W40", Some("not_yet_operating"))));
        assert!(weeks.contains(&("2026-W44", Some("not_yet_operating"))));
        assert!(weeks.contains(&("2026-W45", None)), "the week it began in counts: {weeks:?}");
        assert!(weeks.contains(&("2026-W46", Some("no_clip"))));
        assert_eq!(weeks.last(), Some(&("2026-W47", Some("in_progress"))), "no week after now: {weeks:?}");
        assert_eq!((report.quotas[0].met, report.quotas[0].missed), (1, 1));
        let html = rendered(&report, &config, ReportFormat::Html);
        for vietnamese in
            ["Tuần 45 (2/11–8/11/2026)", "Chưa hoạt động", "Phát trọn vẹn: 1", "đến 31/12/2026", "từ 1/10/2026"]
        {
            assert!(html.contains(vietnamese), "`{vietnamese}` missing from the printed report");
        }
        assert!(html.contains("Lập lúc 12:00 ngày 20/11/2026"), "{html}");
        for english in ["completed", "2026-W4", "T00:00", "+07:00"] {
            assert!(!html.contains(english), "`{english}` in the printed report");
        }
    }

    #[test]
    fn a_week_straddling_two_months_is_judged_in_the_month_of_its_thursday_only() {
        let text = "[station]\nid = \"s\"\nname = \"Đài\"\n[[slot]]\nname = \"sang\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = 15\npeak = true\n[[quota]]\ntopic = \"cchc\"\nper = \"week\"\n[[quota]]\ntopic = \"cchc\"\nper = \"month\"\n";
        let config = Config::parse(std::path::Path::new("/etc/loa/station.toml"), text).unwrap();
        // A station that began on Wednesday 2 December, and aired that day.
        let (since, now) = (local(12, 2, 9), local(12, 10, 12));
        let events = vec![ended(1, local(12, 2, 10), "cchc", true, "completed")];
        let covers = Coverage { since: Some(since), until: Some(now) };
        let of = |code: &str| report(Subject::of(&config), &parse_period(code, tz()).unwrap(), &events, now, covers);
        let november = of("2026-11");
        let weeks: Vec<&str> = november.quotas[0].periods.iter().map(|p| p.period.as_str()).collect();
        assert_eq!(weeks, ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]);
        assert_eq!((november.quotas[0].met, november.quotas[0].missed), (0, 0), "nothing met before it began");
        assert_eq!(november.quotas[0].standing, Standing::NotYetOperating);
        let december = of("2026-12");
        assert_eq!(december.quotas[0].periods[0].period, "2026-W49");
        assert!(december.quotas[0].periods[0].met, "the week of 30/11–6/12 is December's");
        // A week's report judges the month holding its Thursday: W49's is December.
        let week = of("2026-W49");
        let months: Vec<&str> = week.quotas[1].periods.iter().map(|p| p.period.as_str()).collect();
        assert_eq!(months, ["2026-12"]);
    }

    #[test]
    fn the_recent_periods_use_iso_weeks_across_the_new_year() {
        let codes = |y, m, d| {
            recent_periods(NaiveDate::from_ymd_opt(y, m, d).unwrap()).into_iter().map(|(_, c)| c).collect::<Vec<_>>()
        };
        assert_eq!(codes(2026, 11, 25), ["2026-W47", "2026-10", "2026-Q4", "2026-H2", "2026"]);
        // 1 January 2026 is in 2026-W01; a week before it is 2025-W52.
        assert_eq!(codes(2026, 1, 8)[0], "2026-W01");
        assert_eq!(codes(2026, 1, 1)[..2], ["2025-W52".to_owned(), "2025-12".to_owned()]);
        assert_eq!(codes(2027, 1, 4)[0], "2026-W53");
        assert_eq!(period_vi("2026-W01"), "Tuần 1 (29/12–4/1/2026)");
        assert_eq!(period_vi("2026-Q4"), "Quý 4/2026");
    }
}
