//! The calendar quotas and reports count in, in station time: ISO weeks (Monday 00:00 to
//! Monday 00:00), months, quarters, half-years and years, each a half-open span between two
//! local midnights. One home, so the engine, `/schedule`, the reports and the exports agree on
//! where a week ends.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

named_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum QuotaPeriod("a quota period") {
        /// ISO week, Monday 00:00 to Sunday 24:00 station time.
        Week = "week",
        Month = "month",
    }
}

/// A half-open span of time [start, end) with its name (`2026-W48`, `2026-11`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub label: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Local midnight at the start of `date` in `timezone` (the earlier one should a zone ever
/// repeat it; `None` only for a date past chrono's range).
pub fn midnight(date: NaiveDate, timezone: Tz) -> Option<DateTime<Utc>> {
    let local = date.and_hms_opt(0, 0, 0)?;
    timezone.from_local_datetime(&local).earliest().map(|t| t.with_timezone(&Utc))
}

/// `midnight` for the dates `period_of` sees (a real instant's own week or month).
fn known_midnight(date: NaiveDate, timezone: Tz) -> DateTime<Utc> {
    midnight(date, timezone).expect("a real instant's period starts and ends at a local midnight")
}

/// The quota period (ISO week Monday 00:00 → Monday 00:00, or calendar month) holding `at`.
pub fn period_of(per: QuotaPeriod, at: DateTime<Utc>, timezone: Tz) -> Period {
    let date = at.with_timezone(&timezone).date_naive();
    match per {
        QuotaPeriod::Week => {
            let monday = date - Days::new(u64::from(date.weekday().num_days_from_monday()));
            let week = date.iso_week();
            Period {
                label: format!("{}-W{:02}", week.year(), week.week()),
                start: known_midnight(monday, timezone),
                end: known_midnight(monday + Days::new(7), timezone),
            }
        }
        QuotaPeriod::Month => {
            let first = date.with_day(1).expect("day 1 exists");
            Period {
                label: format!("{}-{:02}", first.year(), first.month()),
                start: known_midnight(first, timezone),
                end: known_midnight(first + Months::new(1), timezone),
            }
        }
    }
}

/// The periods an office asks about on `today` (station date), as report codes with their
/// Vietnamese names: last week, last month, this quarter, this half-year, this year. Computed
/// here, once, with the reports' own calendar (ISO weeks), never again in the page.
pub fn recent_periods(today: NaiveDate) -> Vec<(&'static str, String)> {
    let last_week = (today - chrono::TimeDelta::days(7)).iso_week();
    let (year, month) = (today.year(), today.month());
    let last_month = if month == 1 { format!("{}-12", year - 1) } else { format!("{year}-{:02}", month - 1) };
    vec![
        ("Tuần trước", format!("{}-W{:02}", last_week.year(), last_week.week())),
        ("Tháng trước", last_month),
        ("Quý này", format!("{year}-Q{}", (month - 1) / 3 + 1)),
        ("6 tháng", format!("{year}-H{}", if month <= 6 { 1 } else { 2 })),
        ("Cả năm", year.to_string()),
    ]
}

/// Parses `2026-W47`, `2026-11`, `2026-Q4`, `2026-H2` or `2026` into local bounds.
pub fn parse_period(text: &str, timezone: Tz) -> Result<Period, String> {
    let bad = || format!("\"{text}\" is not a period; use 2026-W47, 2026-11, 2026-Q4, 2026-H2 or 2026");
    let midnight = |date: NaiveDate| midnight(date, timezone).ok_or_else(bad);
    let (year, rest) = text.split_once('-').map_or((text, None), |(y, r)| (y, Some(r)));
    let year: i32 = year.parse().ok().filter(|y| (2000..=2100).contains(y)).ok_or_else(bad)?;
    let months = |first: u32, count: u32| -> Result<Period, String> {
        let start = NaiveDate::from_ymd_opt(year, first, 1).ok_or_else(bad)?;
        Ok(Period { label: text.to_owned(), start: midnight(start)?, end: midnight(start + Months::new(count))? })
    };
    match rest {
        None => months(1, 12),
        Some(r) if r.starts_with('W') => {
            let week: u32 = r[1..].parse().map_err(|_| bad())?;
            let monday = NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon).ok_or_else(bad)?;
            let at = midnight(monday)?;
            Ok(Period { label: text.to_owned(), ..period_of(QuotaPeriod::Week, at, timezone) })
        }
        Some(r) if r.starts_with('Q') => match r[1..].parse::<u32>() {
            Ok(q @ 1..=4) => months(3 * q - 2, 3),
            _ => Err(bad()),
        },
        Some(r) if r.starts_with('H') => match r[1..].parse::<u32>() {
            Ok(h @ 1..=2) => months(6 * h - 5, 6),
            _ => Err(bad()),
        },
        Some(r) => match r.parse::<u32>() {
            Ok(m @ 1..=12) if r.len() == 2 => months(m, 1),
            _ => Err(bad()),
        },
    }
}

/// The first and last calendar day of a period code (`2026-W45` → 2 and 8 November 2026),
/// whatever the time zone.
pub fn local_days(label: &str) -> Option<(NaiveDate, NaiveDate)> {
    let period = parse_period(label, chrono_tz::UTC).ok()?;
    Some((period.start.date_naive(), (period.end - chrono::TimeDelta::days(1)).date_naive()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz() -> Tz {
        chrono_tz::Asia::Ho_Chi_Minh
    }

    fn local(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        tz().with_ymd_and_hms(y, m, d, h, 0, 0).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn iso_weeks_run_monday_to_sunday_in_station_time() {
        // Sunday 23:00 in Hà Nội is still week 48; Monday 00:00 local (17:00 UTC Sunday) is week 49.
        let sunday = period_of(QuotaPeriod::Week, local(2026, 11, 29, 23), tz());
        assert_eq!(sunday.label, "2026-W48");
        assert_eq!(sunday.start, local(2026, 11, 23, 0));
        assert_eq!(sunday.end, local(2026, 11, 30, 0));
        assert_eq!(sunday.end.to_rfc3339(), "2026-11-29T17:00:00+00:00");
        assert_eq!(period_of(QuotaPeriod::Week, local(2026, 11, 30, 0), tz()).label, "2026-W49");
    }

    #[test]
    fn week_53_and_year_boundaries_follow_iso() {
        // 2026-12-31 is a Thursday: ISO 2026-W53 runs to Sunday 2027-01-03.
        let week = period_of(QuotaPeriod::Week, local(2027, 1, 2, 12), tz());
        assert_eq!(week.label, "2026-W53");
        assert_eq!((week.start, week.end), (local(2026, 12, 28, 0), local(2027, 1, 4, 0)));
        assert_eq!(period_of(QuotaPeriod::Week, local(2027, 1, 4, 0), tz()).label, "2027-W01");
    }

    #[test]
    fn months_are_calendar_months_in_station_time() {
        let m = period_of(QuotaPeriod::Month, local(2026, 12, 31, 23), tz());
        assert_eq!((m.label.as_str(), m.start, m.end), ("2026-12", local(2026, 12, 1, 0), local(2027, 1, 1, 0)));
        assert_eq!(period_of(QuotaPeriod::Month, local(2027, 1, 1, 0), tz()).label, "2027-01");
    }

    #[test]
    fn every_period_form_parses_in_station_time() {
        let check = |text: &str, start: &str, end: &str| {
            let p = parse_period(text, tz()).unwrap();
            assert_eq!((p.start.to_rfc3339(), p.end.to_rfc3339()), (start.to_owned(), end.to_owned()), "{text}");
        };
        check("2026-W47", "2026-11-15T17:00:00+00:00", "2026-11-22T17:00:00+00:00");
        check("2026-11", "2026-10-31T17:00:00+00:00", "2026-11-30T17:00:00+00:00");
        check("2026-Q4", "2026-09-30T17:00:00+00:00", "2026-12-31T17:00:00+00:00");
        check("2026-H2", "2026-06-30T17:00:00+00:00", "2026-12-31T17:00:00+00:00");
        check("2026", "2025-12-31T17:00:00+00:00", "2026-12-31T17:00:00+00:00");
        check("2026-W53", "2026-12-27T17:00:00+00:00", "2027-01-03T17:00:00+00:00");
        for bad in ["2026-W54", "2026-13", "2026-Q5", "2026-H3", "26", "2026-1", "last week"] {
            assert!(parse_period(bad, tz()).is_err(), "{bad}");
        }
    }
}
