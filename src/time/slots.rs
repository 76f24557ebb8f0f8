//! Peak-slot timing: turning a slot's cron text into instants in the station's timezone.
//!
//! The `cron` crate numbers day-of-week from Sunday = 1, which is exactly the kind of thing an
//! admin gets wrong at 05:30 on a Monday. We therefore accept only day *names* and expand them
//! ourselves in Vietnamese week order (Thứ Hai … Chủ Nhật), so `Mon-Sun` means the whole week,
//! a range the crate itself would reject.

use std::str::FromStr;

use chrono::{DateTime, TimeZone};

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

    #[test]
    fn wrong_field_count_explains_the_format() {
        let err = CronSchedule::parse("30 5 * * *").unwrap_err();
        assert!(err.contains("found 5") && err.contains("0 30 5 * * Mon-Sun"), "{err}");
    }
}
