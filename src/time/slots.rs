//! Peak-slot timing: turning a slot's cron text into instants in the station's timezone.
//!
//! The `cron` crate numbers day-of-week from Sunday = 1, which is exactly the kind of thing an
//! admin gets wrong at 05:30 on a Monday. We therefore accept only day *names* and expand them
//! ourselves in Vietnamese week order (Thứ Hai … Chủ Nhật), so `Mon-Sun` means the whole week,
//! a range the crate itself would reject.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use cron::TimeUnitSpec;

const WEEK: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const DAY_OF_WEEK_FIELD: usize = 5;

/// A validated cron schedule with its original text.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    text: String,
    schedule: cron::Schedule,
}

impl CronSchedule {
    /// Parses `sec min hour day-of-month month day-of-week [year]`; the error is a sentence
    /// saying what is wrong and how to write it instead.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut fields: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        if !(6..=7).contains(&fields.len()) {
            return Err(format!(
                "expected 6 fields `sec min hour day-of-month month day-of-week` (and optionally year), \
                 found {}; for 05:30 every day write \"0 30 5 * * Mon-Sun\"",
                fields.len()
            ));
        }
        fields[DAY_OF_WEEK_FIELD] = normalise_day_of_week(&fields[DAY_OF_WEEK_FIELD])?;
        let schedule = cron::Schedule::from_str(&fields.join(" ")).map_err(|e| {
            // The cron crate's message draws a caret under the expression on its own lines;
            // keep the explanation, one line, with the field's real bounds.
            let why = e.to_string().lines().last().unwrap_or_default().trim().to_owned();
            format!("not a valid cron expression: {}; example: \"0 30 5 * * Mon-Sun\"", with_bounds(&why))
        })?;
        // A date that never comes (31 February, 30 February …) would pass the parser and never
        // air; a fixed reference instant keeps this check free of the wall clock.
        let reference = chrono::Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().expect("a valid date");
        if schedule.after(&reference).next().is_none() {
            return Err(format!(
                "\"{text}\" never fires: no date matches its day-of-month and month (e.g. 31 February); \
                 for 05:30 every day write \"0 30 5 * * Mon-Sun\""
            ));
        }
        Ok(CronSchedule { text: text.to_owned(), schedule })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Fire instants strictly after `after`, in `after`'s timezone.
    pub fn after<'a, Z: TimeZone + 'a>(&'a self, after: &DateTime<Z>) -> impl Iterator<Item = DateTime<Z>> + 'a {
        self.schedule.after(after)
    }

    /// The fire instants in station time strictly after `after` and strictly before `before`:
    /// how many, and the last. A whole day that fires is counted from the schedule's fields
    /// (every hour × minute × second it names, when the day's UTC offset does not change), not
    /// walked instant by instant: a month of a slot every 4 s (648,000 instants) costs about a
    /// hundred steps plus the two partial days at its ends.
    pub fn count_between(&self, timezone: Tz, after: DateTime<Utc>, before: DateTime<Utc>) -> Instants {
        let per_day = [self.schedule.hours().count(), self.schedule.minutes().count(), self.schedule.seconds().count()]
            .iter()
            .map(|n| u64::from(*n))
            .product::<u64>();
        let mut instants = Instants { count: 0, last: None };
        let mut cursor = after;
        // Each pass walks instant by instant (within the partial days at the ends, or a day
        // whose offset changes) until a whole day can be counted at once.
        'passes: loop {
            let mut walking = None;
            for next in self.after(&cursor.with_timezone(&timezone)).map(|t| t.with_timezone(&Utc)) {
                if next >= before {
                    break 'passes;
                }
                let date = next.with_timezone(&timezone).date_naive();
                if walking != Some(date) {
                    let counted_to = instants.last.unwrap_or(after);
                    let whole = whole_day(timezone, date)
                        .filter(|day| counted_to < day.first && day.end <= before)
                        .and_then(|day| self.last_of_day(timezone, &day));
                    if let Some(last) = whole {
                        instants.count += per_day;
                        instants.last = Some(last);
                        cursor = last;
                        continue 'passes;
                    }
                    walking = Some(date);
                }
                instants.count += 1;
                instants.last = Some(next);
            }
            break;
        }
        instants
    }

    /// The last instant the schedule fires on a day it fires on.
    fn last_of_day(&self, timezone: Tz, day: &Day) -> Option<DateTime<Utc>> {
        let [hour, minute, second] =
            [self.schedule.hours().iter(), self.schedule.minutes().iter(), self.schedule.seconds().iter()]
                .map(|mut ordinals| ordinals.next_back());
        let time = NaiveTime::from_hms_opt(hour?, minute?, second?)?;
        let last = timezone.from_local_datetime(&day.date.and_time(time)).single()?.with_timezone(&Utc);
        (day.first..day.end).contains(&last).then_some(last)
    }
}

/// How many fire instants fell in a stretch of time, and the last of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instants {
    pub count: u64,
    pub last: Option<DateTime<Utc>>,
}

/// Consecutive fire instants of one slot (a run of them missed, or one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstantRun {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// How many instants, `first` and `last` included (1 when they are the same).
    pub count: u64,
}

impl InstantRun {
    pub fn one(at: DateTime<Utc>) -> InstantRun {
        InstantRun { first: at, last: at, count: 1 }
    }
}

/// A station-local day whose UTC offset holds from its first instant to its last.
struct Day {
    date: NaiveDate,
    /// Its first instant (local midnight), and the next day's.
    first: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// `date` in `timezone`, unless a change of UTC offset (summer time) falls in it: such a day is
/// walked instant by instant.
fn whole_day(timezone: Tz, date: NaiveDate) -> Option<Day> {
    let midnight = |d: NaiveDate| timezone.from_local_datetime(&d.and_time(NaiveTime::MIN)).single();
    let (first, end) = (midnight(date)?.with_timezone(&Utc), midnight(date.succ_opt()?)?.with_timezone(&Utc));
    let offset = |at: DateTime<Utc>| timezone.offset_from_utc_datetime(&at.naive_utc()).fix();
    (offset(first) == offset(end - TimeDelta::milliseconds(1))).then_some(Day { date, first, end })
}

/// The cron crate says "Minutes must be less than 59" of a field whose largest value *is* 59;
/// say the field's range instead.
fn with_bounds(why: &str) -> String {
    const RANGES: [(&str, &str); 5] = [
        ("Seconds", "0 to 59"),
        ("Minutes", "0 to 59"),
        ("Hours", "0 to 23"),
        ("Days of Month", "1 to 31"),
        ("Months", "1 to 12"),
    ];
    let Some((field, rest)) = why.split_once(" must be less than ") else { return why.to_owned() };
    let Some((_, range)) = RANGES.iter().find(|(name, _)| *name == field) else { return why.to_owned() };
    let given = rest.split('\'').nth(1).unwrap_or("?");
    format!("{field} must be {range}; `{given}` was given")
}

/// Rewrites a day-of-week field made of day names into an explicit list the `cron` crate reads
/// unambiguously, e.g. `Mon-Sun` → `Mon,Tue,Wed,Thu,Fri,Sat,Sun`, `Sat-Mon` → `Sat,Sun,Mon`.
fn normalise_day_of_week(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: usize =
                    step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("day-of-week step `{step}` in `{field}` must be a positive whole number")
                    })?;
                (range, step)
            }
            None => (item, 1),
        };
        let span: Vec<usize> = match range {
            "*" => (0..7).collect(),
            _ => match range.split_once('-') {
                Some((first, last)) => {
                    let (first, last) = (day_index(first, field)?, day_index(last, field)?);
                    let len = (last + 7 - first) % 7 + 1;
                    (0..len).map(|i| (first + i) % 7).collect()
                }
                None => vec![day_index(range, field)?],
            },
        };
        for day in span.into_iter().step_by(step) {
            days[day] = true;
        }
    }
    let names: Vec<&str> = WEEK.iter().zip(days).filter(|(_, on)| *on).map(|(name, _)| *name).collect();
    Ok(names.join(","))
}

fn day_index(name: &str, field: &str) -> Result<usize, String> {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "day-of-week `{field}` uses a number; numbers are ambiguous (the cron crate counts 1 = Sunday), \
             so write day names, e.g. `Mon-Fri` or `Mon-Sun`"
        ));
    }
    const FULL_NAMES: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
    let lower = name.to_ascii_lowercase();
    WEEK.iter()
        .zip(FULL_NAMES)
        .position(|(short, full)| lower == short.to_ascii_lowercase() || lower == full)
        .ok_or_else(|| format!("`{name}` in day-of-week `{field}` is not a day name; use Mon Tue Wed Thu Fri Sat Sun"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names_expand_in_vietnamese_week_order() {
        assert_eq!(normalise_day_of_week("Mon-Sun").unwrap(), "Mon,Tue,Wed,Thu,Fri,Sat,Sun");
        assert_eq!(normalise_day_of_week("Mon-Fri").unwrap(), "Mon,Tue,Wed,Thu,Fri");
        assert_eq!(normalise_day_of_week("Sat-Mon").unwrap(), "Mon,Sat,Sun");
        assert_eq!(normalise_day_of_week("sun,WED").unwrap(), "Wed,Sun");
        assert_eq!(normalise_day_of_week("Mon-Sun/2").unwrap(), "Mon,Wed,Fri,Sun");
        assert_eq!(normalise_day_of_week("Tuesday").unwrap(), "Tue");
        assert_eq!(normalise_day_of_week("*").unwrap(), "*");
    }

    #[test]
    fn numeric_and_unknown_days_are_refused_with_a_fix() {
        let err = normalise_day_of_week("1-5").unwrap_err();
        assert!(err.contains("1 = Sunday") && err.contains("Mon-Fri"), "{err}");
        let err = normalise_day_of_week("Mon-Frx").unwrap_err();
        assert!(err.contains("`Frx`"), "{err}");
        assert!(normalise_day_of_week("Monkey").is_err());
        assert!(normalise_day_of_week("Mon/0").is_err());
    }

    #[test]
    fn mon_sun_fires_every_day_in_station_time() {
        let tz: chrono_tz::Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
        let schedule = CronSchedule::parse("0 30 5 * * Mon-Sun").unwrap();
        // 2026-11-22 is a Sunday; 22:00 UTC on it is 05:00 Monday in Hà Nội.
        let start = tz.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap();
        let fires: Vec<String> = schedule.after(&start).take(8).map(|t| t.format("%a %d %H:%M").to_string()).collect();
        assert_eq!(
            fires,
            [
                "Sun 22 05:30",
                "Mon 23 05:30",
                "Tue 24 05:30",
                "Wed 25 05:30",
                "Thu 26 05:30",
                "Fri 27 05:30",
                "Sat 28 05:30",
                "Sun 29 05:30"
            ]
        );
    }

    #[test]
    fn weekday_slots_skip_the_weekend() {
        let tz: chrono_tz::Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
        let schedule = CronSchedule::parse("0 0 17 * * Mon-Fri").unwrap();
        let start = tz.with_ymd_and_hms(2026, 11, 27, 18, 0, 0).unwrap(); // Friday evening
        let next = schedule.after(&start).next().unwrap();
        assert_eq!(next.format("%a %Y-%m-%d %H:%M").to_string(), "Mon 2026-11-30 17:00");
    }

    /// Counting by whole days agrees with walking every instant, for schedules with day, month
    /// and weekday fields, in a timezone without summer time and in two with it (the days of the
    /// change are walked), over stretches that begin and end mid-day, at midnight and on an
    /// instant.
    #[test]
    fn counting_by_days_agrees_with_walking_every_instant() {
        use chrono::TimeDelta;
        let schedules = [
            "*/4 * * * * Mon-Sun",
            "0 30 5,17 * * Mon-Fri",
            "0 0 * 1,15 * *",
            "15,45 */10 6-20 * 3,10 Sat-Sun",
            "0 0 0 29 2 *",
            "* 59 1-3 * * Sun",
        ];
        let zones = ["Asia/Ho_Chi_Minh", "Europe/Berlin", "America/New_York"];
        let starts = [(2026, 3, 1, 10, 17, 3), (2026, 10, 20, 0, 0, 0), (2027, 2, 27, 23, 59, 59)];
        let lengths = [TimeDelta::seconds(9), TimeDelta::hours(30), TimeDelta::days(12) + TimeDelta::seconds(4)];
        for text in schedules {
            let schedule = CronSchedule::parse(text).unwrap();
            for zone in zones {
                let tz: Tz = zone.parse().unwrap();
                for (y, mo, d, h, mi, se) in starts {
                    let after = tz.with_ymd_and_hms(y, mo, d, h, mi, se).unwrap().with_timezone(&Utc);
                    for length in lengths {
                        let before = after + length;
                        let walked: Vec<DateTime<Utc>> = schedule
                            .after(&after.with_timezone(&tz))
                            .map(|t| t.with_timezone(&Utc))
                            .take_while(|t| *t < before)
                            .collect();
                        let expected = Instants { count: walked.len() as u64, last: walked.last().copied() };
                        let counted = schedule.count_between(tz, after, before);
                        assert_eq!(counted, expected, "{text} in {zone} from {after} for {length}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_month_of_a_slot_every_four_seconds_is_counted_exactly() {
        let tz: Tz = "Asia/Ho_Chi_Minh".parse().unwrap();
        let schedule = CronSchedule::parse("*/4 * * * * Mon-Sun").unwrap();
        let after = tz.with_ymd_and_hms(2026, 11, 3, 8, 0, 1).unwrap().with_timezone(&Utc);
        let before = after + chrono::TimeDelta::days(30);
        let counted = schedule.count_between(tz, after, before);
        assert_eq!(counted.count, 648_000);
        assert_eq!(counted.last, Some(before - chrono::TimeDelta::seconds(1)));
    }

    #[test]
    fn wrong_field_count_explains_the_format() {
        let err = CronSchedule::parse("30 5 * * *").unwrap_err();
        assert!(err.contains("found 5") && err.contains("0 30 5 * * Mon-Sun"), "{err}");
    }
}
