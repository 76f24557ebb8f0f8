//! The airing log for people: the page's "Tải CSV" of the log, one row per airing or missed
//! slot, in Vietnamese words and dates, without hashes or signatures (the export for tools,
//! `proof::export`, keeps every member and the proof).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::{Labels, csv, day_vi};
use crate::audit::words::{miss_vi, missed_vi, status_vi};
use crate::proof::SealedEvent;
use crate::proof::events::MissReason;

const HEADER: [&str; 11] = [
    "Ngày",
    "Giờ bắt đầu",
    "Giờ kết thúc",
    "Khung giờ",
    "Giờ cao điểm",
    "Bản tin",
    "Chủ đề",
    "Ngôn ngữ",
    "Thời lượng đã phát (giây)",
    "Kết quả",
    "Chi tiết kỹ thuật",
];

/// The airings and missed slots among `events`, in station time.
pub fn csv_vi(events: &[SealedEvent], labels: &Labels, tz: Tz) -> Vec<u8> {
    let rows = events.iter().filter_map(|event| {
        let body: Value = serde_json::from_str(&event.body).ok()?;
        let text = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
        let local = |name: &str| {
            body[name].as_i64().and_then(DateTime::<Utc>::from_timestamp_millis).map(|at| at.with_timezone(&tz))
        };
        let clock = |name: &str| local(name).map(|at| at.format("%H:%M:%S").to_string()).unwrap_or_default();
        let day = local("at").map(|at| day_vi(at.date_naive())).unwrap_or_default();
        let peak = if body["peak"].as_bool() == Some(true) { "Có" } else { "Không" }.to_owned();
        // An airing queued "now" belongs to no slot.
        let slot = match text("slot") {
            name if name.is_empty() => "Ngoài khung giờ".to_owned(),
            name => labels.slot(&name),
        };
        match body["kind"].as_str()? {
            "airing_ended" => Some(vec![
                day,
                clock("started_at"),
                clock("ended_at"),
                slot,
                peak,
                text("title"),
                labels.topic(&text("topic")),
                labels.language(&text("language")),
                (body["played_ms"].as_u64().unwrap_or(0) as f64 / 1000.0).round().to_string(),
                status_vi(&text("status")).to_owned(),
                text("reason"),
            ]),
            "slot_missed" => {
                let reason = text("reason").parse::<MissReason>().map(miss_vi).unwrap_or_default();
                // A run of missed instants: how many, and the first and last with their days.
                let count = body["count"].as_u64().unwrap_or(1);
                let when =
                    |name: &str| local(name).map(|at| format!("{} {}", at.format("%H:%M:%S"), day_vi(at.date_naive())));
                let outcome = match (count, when("scheduled_at"), when("last_scheduled_at")) {
                    (2.., Some(first), Some(last)) => format!("{}: {reason}, từ {first} đến {last}", missed_vi(count)),
                    _ => format!("{}: {reason}", missed_vi(count)),
                };
                Some(vec![
                    day,
                    clock("scheduled_at"),
                    clock("last_scheduled_at"),
                    slot,
                    peak,
                    String::new(),
                    String::new(),
                    String::new(),
                    "0".to_owned(),
                    outcome,
                    String::new(),
                ])
            }
            _ => None,
        }
    });
    csv(&HEADER.map(String::from), rows)
}
