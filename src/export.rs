//! The proof log as the auditing office receives it: JSON Lines (one event per line, exactly the
//! hashed fields plus `hash` and `sig`), a JSON page, or CSV for Excel. The CLI and the HTTP API
//! both export through here, so a log pulled either way verifies the same.

use std::io::{self, Write};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use crate::proof::SealedEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Json,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "jsonl" => Ok(Format::Jsonl),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(format!("\"{other}\" is not a format; use jsonl, json or csv")),
        }
    }
}

/// UTC millisecond bounds [from, to) for inclusive local dates.
pub fn local_date_bounds(from: Option<NaiveDate>, to: Option<NaiveDate>, timezone: Tz) -> (Option<i64>, Option<i64>) {
    let midnight = |date: NaiveDate| {
        let local = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        timezone.from_local_datetime(&local).earliest().map(|t| t.timestamp_millis())
    };
    (from.and_then(midnight), to.and_then(|d| d.succ_opt()).and_then(midnight))
}

/// An event read back from an export, with the line (or page position) it came from.
pub type NumberedEvent = (usize, Map<String, Value>);

/// Reads events from JSON Lines or from a JSON page (`{"events": [...]}`); the message names
/// the first line that is not an event.
pub fn read(text: &str) -> Result<Vec<NumberedEvent>, String> {
    if let Ok(Value::Object(mut page)) = serde_json::from_str(text) {
        if let Some(Value::Array(events)) = page.remove("events") {
            return events
                .into_iter()
                .enumerate()
                .map(|(i, event)| match event {
                    Value::Object(object) => Ok((i + 1, object)),
                    _ => Err(format!("event {} of the page is not a JSON object", i + 1)),
                })
                .collect();
        }
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line.trim_start_matches('\u{feff}')).map(|object| (i + 1, object)).map_err(|e| {
                format!("line {}: not a JSON event ({e}); export with `loa airtime --format jsonl`", i + 1)
            })
        })
        .collect()
}

pub fn write(
    out: &mut dyn Write,
    format: Format,
    events: &[SealedEvent],
    after_seq: i64,
    public_key: &str,
    timezone: Tz,
) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for event in events {
                serde_json::to_writer(&mut *out, &event.to_json())?;
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        Format::Json => {
            let next_after_seq = events.last().map_or(after_seq, |e| e.seq);
            let page = json!({
                "events": events.iter().map(SealedEvent::to_json).collect::<Vec<_>>(),
                "next_after_seq": next_after_seq,
                "public_key": public_key,
            });
            serde_json::to_writer_pretty(&mut *out, &page)?;
            out.write_all(b"\n")
        }
        Format::Csv => write_csv(out, events, timezone),
    }
}

/// Columns of the CSV export; `*_local` columns are station time, beside the UTC ones.
const CSV_COLUMNS: [&str; 29] = [
    "seq",
    "kind",
    "at_utc",
    "at_local",
    "station_id",
    "slot",
    "peak",
    "scheduled_at_utc",
    "scheduled_at_local",
    "started_at_local",
    "ended_at_local",
    "clip_id",
    "clip_sha256",
    "title",
    "topic",
    "language",
    "priority",
    "planned_ms",
    "played_ms",
    "peak_dbfs",
    "rms_dbfs",
    "silent_ms",
    "first_frame_latency_ms",
    "clock_synced",
    "status",
    "reason",
    "prev_hash",
    "hash",
    "sig",
];

fn write_csv(out: &mut dyn Write, events: &[SealedEvent], timezone: Tz) -> io::Result<()> {
    out.write_all("\u{feff}".as_bytes())?; // BOM: Excel then reads Vietnamese titles as UTF-8
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(CSV_COLUMNS)?;
    for event in events {
        let object = event.to_json();
        let row: Vec<String> = CSV_COLUMNS.iter().map(|column| csv_cell(&object, column, timezone)).collect();
        csv.write_record(&row)?;
    }
    csv.flush()
}

fn csv_cell(object: &Map<String, Value>, column: &str, timezone: Tz) -> String {
    let time = |field: &str, zone: Option<Tz>| {
        let Some(ms) = object.get(field).and_then(Value::as_i64) else { return String::new() };
        let Some(at) = DateTime::<Utc>::from_timestamp_millis(ms) else { return String::new() };
        match zone {
            Some(tz) => at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            None => at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        }
    };
    match column {
        "at_utc" => time("at", None),
        "at_local" => time("at", Some(timezone)),
        "scheduled_at_utc" => time("scheduled_at", None),
        "scheduled_at_local" => time("scheduled_at", Some(timezone)),
        "started_at_local" => time("started_at", Some(timezone)),
        "ended_at_local" => time("ended_at", Some(timezone)),
        field => match object.get(field) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        },
    }
}
