//! The reports' words: what a clerk or an operator reads instead of a code — statuses, reasons
//! and standings in Vietnamese, periods as "Tuần 49 (30/11–6/12/2026)", dates as d/m/yyyy — and
//! HTML escaping. One home, so the station's report, the office's report and dashboard say the
//! same thing the same way.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};

use crate::audit::compliance::{Shortfall, Standing};
use crate::proof::events::MissReason;

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn reason_vi(reason: Option<Shortfall>) -> &'static str {
    match reason {
        None => "Đạt",
        Some(Shortfall::InProgress) => "Đang thực hiện",
        Some(Shortfall::NotYetOperating) => "Chưa hoạt động",
        Some(Shortfall::StationDown) => "Không đạt: đài ngừng hoạt động",
        Some(Shortfall::AllAttemptsFailed) => "Không đạt: phát lỗi",
        Some(Shortfall::NoClip) => "Không đạt: không có bản tin",
        Some(Shortfall::NoData) => "Chưa có dữ liệu",
    }
}

/// A quota's standing in the clerk's words.
pub fn standing_vi(standing: Standing) -> &'static str {
    match standing {
        Standing::Met => "Đạt",
        Standing::NotMet => "Không đạt",
        Standing::InProgress => "Đang diễn ra",
        Standing::NoData => "Chưa có dữ liệu",
        Standing::NotYetOperating => "Chưa hoạt động",
    }
}

/// Why a slot was missed, in words.
pub fn miss_vi(reason: MissReason) -> &'static str {
    match reason {
        MissReason::StationDown => "đài ngừng hoạt động",
        MissReason::PreviousAiringOverran => "bản tin trước phát quá giờ",
        MissReason::ClockJumped => "đồng hồ của đài bị chỉnh",
        MissReason::NoEligibleClip => "không có bản tin phù hợp",
    }
}

/// A missed slot, or a run of them (`Lỡ 648.000 lần khung giờ`).
pub fn missed_vi(count: u64) -> String {
    match count {
        0 | 1 => status_vi("missed").to_owned(),
        n => format!("Lỡ {} lần khung giờ", whole_vi(n)),
    }
}

/// A whole number as Vietnamese writes it: a dot between thousands (`648.000`).
pub fn whole_vi(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(digit);
    }
    out
}

pub fn status_vi(status: &str) -> &'static str {
    match status {
        "completed" => "Phát trọn vẹn",
        "partial" => "Phát không trọn",
        "interrupted" => "Bị gián đoạn",
        "preempted" => "Nhường bản tin khẩn cấp",
        "failed" => "Phát lỗi",
        "missed" => "Lỡ khung giờ",
        _ => "Khác",
    }
}

/// `2026-W40` → "Tuần 40 (28/9–4/10/2026)", `2026-11` → "Tháng 11/2026", `2026-Q4` → "Quý
/// 4/2026", `2026-H2`, `2026` likewise; anything else as is.
pub fn period_vi(label: &str) -> String {
    let short = |d: NaiveDate| format!("{}/{}", d.day(), d.month());
    if let Some((year, week)) = label.split_once("-W") {
        if let (Ok(year), Ok(week)) = (year.parse(), week.parse()) {
            if let (Some(monday), Some(sunday)) = (
                NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon),
                NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Sun),
            ) {
                return format!("Tuần {week} ({}–{}/{})", short(monday), short(sunday), sunday.year());
            }
        }
    }
    match label.split_once('-') {
        Some((year, month)) if month.len() == 2 && month.parse::<u32>().is_ok() => {
            format!("Tháng {}/{year}", month.trim_start_matches('0'))
        }
        Some((year, "Q1" | "Q2" | "Q3" | "Q4")) => format!("Quý {}/{year}", &label[label.len() - 1..]),
        Some((year, "H1")) => format!("6 tháng đầu năm {year}"),
        Some((year, "H2")) => format!("6 tháng cuối năm {year}"),
        None if label.len() == 4 && label.parse::<u32>().is_ok() => format!("Năm {label}"),
        _ => label.to_owned(),
    }
}

/// A local date of an RFC 3339 instant, `d/m/yyyy`; `inclusive_end` gives the last day before it.
pub fn date_vi(instant: &str, inclusive_end: bool) -> String {
    match DateTime::parse_from_rfc3339(instant) {
        Ok(at) => {
            let at = if inclusive_end { at - chrono::TimeDelta::seconds(1) } else { at };
            format!("{}/{}/{}", at.day(), at.month(), at.year())
        }
        Err(_) => instant.to_owned(),
    }
}

/// A number as Vietnamese writes it: a comma before the decimals (`1,6`), one decimal at most.
pub fn number_vi(value: f64) -> String {
    let text = format!("{:.1}", (value * 10.0).round() / 10.0);
    text.strip_suffix(".0").unwrap_or(&text).replace('.', ",")
}

/// `08:05 ngày 20/11/2026` of an RFC 3339 instant (station time).
pub fn time_vi(instant: &str) -> String {
    match DateTime::parse_from_rfc3339(instant) {
        Ok(at) => format!("{:02}:{:02} ngày {}", at.hour(), at.minute(), date_vi(instant, false)),
        Err(_) => instant.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_written_with_a_decimal_comma() {
        assert_eq!(super::number_vi(1.64), "1,6");
        assert_eq!(super::number_vi(12.0), "12");
        assert_eq!(super::number_vi(0.04), "0");
    }

    #[test]
    fn a_run_of_missed_slots_says_how_many_with_thousands_dotted() {
        assert_eq!(super::whole_vi(648_000), "648.000");
        assert_eq!(super::whole_vi(999), "999");
        assert_eq!(super::whole_vi(1_000), "1.000");
        assert_eq!(super::missed_vi(1), "Lỡ khung giờ");
        assert_eq!(super::missed_vi(7_884_000), "Lỡ 7.884.000 lần khung giờ");
    }
}
