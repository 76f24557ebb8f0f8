//! The proof log as the auditing office receives it: JSON Lines (one event per line, exactly the
//! hashed fields plus `hash` and `sig`), a JSON page, or CSV for Excel. The CLI and the HTTP API
//! both export through here, so a log pulled either way verifies the same.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::json;
use serde_json::value::RawValue;

use ed25519_dalek::VerifyingKey;

use crate::proof::{ChainVerifier, Expect, SealedEvent, Verified};

named_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Format("a format") {
        Jsonl = "jsonl",
        Json = "json",
        Csv = "csv",
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

/// The station's last event when it answered: (0, genesis) for an empty log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl Head {
    /// `SEQ:HASH`, as `verify --expect-head` takes it and the `Loa-Head` HTTP header carries it.
    pub fn to_arg(&self) -> String {
        format!("{}:{}", self.seq, self.hash)
    }
}

/// The longest line an export may hold: an event is a few KiB; this bounds memory per line.
const MAX_LINE: usize = 1 << 20;
/// A JSON page is read whole: at most this (10,000 events of about 1 KiB each, with room).
const MAX_PAGE: u64 = 64 << 20;

/// Verifies an export with `key` as [`ChainVerifier`] does, reading it as it comes: JSON Lines
/// (each line exactly as exported, `\n` after each, the last one too), line by line in flat
/// memory; or a JSON page (`{"events": [...], ...}`, the page's bytes as sent), whole. Nothing is
/// re-encoded: the verifier checks each event's own bytes. Returns the page's head, if any.
pub fn verify_reader(
    mut input: impl io::BufRead,
    key: VerifyingKey,
    expect: Expect,
) -> Result<(Verified, Option<Head>), String> {
    let read_error = |e: io::Error| format!("cannot read the export: {e}");
    let start = input.fill_buf().map_err(read_error)?;
    if start.starts_with(b"\xEF\xBB\xBF") {
        return Err("line 1: the file begins with a byte-order mark (an editor saved it): export it again exactly \
                    as the station sent it"
            .into());
    }
    if start.starts_with(b"{\"events\":") {
        let mut page = Vec::new();
        (&mut input).take(MAX_PAGE + 1).read_to_end(&mut page).map_err(read_error)?;
        if page.len() as u64 > MAX_PAGE {
            return Err(format!("the page is larger than {} MiB, which no page of events is", MAX_PAGE >> 20));
        }
        let page = String::from_utf8(page).map_err(|_| "the page is not UTF-8; save it exactly as sent".to_owned())?;
        return verify_page(&page, key, expect);
    }
    // Signatures in batches (the first bad one still named strictly, before any later fault).
    let mut verifier = ChainVerifier::new(key, expect).deferring_signatures();
    let first_fault = |verifier: &mut ChainVerifier, broken: crate::proof::Broken| {
        verifier.flush().err().unwrap_or(broken).to_string()
    };
    let (mut line, mut number) = (Vec::new(), 0usize);
    loop {
        line.clear();
        if (&mut input).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).map_err(read_error)? == 0 {
            break;
        }
        number += 1;
        if line.pop() != Some(b'\n') {
            return Err(match line.len() >= MAX_LINE {
                true => format!("line {number}: longer than {MAX_LINE} bytes, which no event is"),
                false => format!(
                    "line {number}: the last line has no line end: the file was cut short or edited; export it again"
                ),
            });
        }
        let text = std::str::from_utf8(&line)
            .map_err(|e| format!("line {number}: not UTF-8 (at byte {}); export it again", e.valid_up_to() + 1))?;
        if text.trim().is_empty() {
            return Err(format!("line {number}: empty; an export has one event on every line"));
        }
        if !text.starts_with('{') {
            return Err(format!("line {number}: not a JSON event; export with `loa airtime --format jsonl`"));
        }
        if let Err(broken) = verifier.line(number, text) {
            return Err(first_fault(&mut verifier, broken));
        }
    }
    let verified = verifier.finish().map_err(|broken| broken.to_string())?;
    Ok((verified, None))
}

/// Verifies an export held in memory (see [`verify_reader`]).
pub fn verify(text: &str, key: VerifyingKey, expect: Expect) -> Result<(Verified, Option<Head>), String> {
    verify_reader(text.as_bytes(), key, expect)
}

/// A JSON page's events, each exactly its bytes as sent, and its head.
fn verify_page(text: &str, key: VerifyingKey, expect: Expect) -> Result<(Verified, Option<Head>), String> {
    #[derive(serde::Deserialize)]
    struct Page<'a> {
        #[serde(borrow)]
        events: Vec<&'a RawValue>,
        head: Option<Head>,
    }
    let page: Page = serde_json::from_str(text)
        .map_err(|e| format!("not an airtime page ({e}); save the answer exactly as the station sent it"))?;
    let mut verifier = ChainVerifier::new(key, expect);
    for (i, raw) in page.events.iter().enumerate() {
        verifier.line(i + 1, raw.get()).map_err(|broken| broken.to_string())?;
    }
    let verified = verifier.finish().map_err(|broken| broken.to_string())?;
    Ok((verified, page.head))
}

/// Writes `events` in `format`: JSON Lines, a JSON page (with the head, and the head statement
/// when a challenge was answered), or CSV for a spreadsheet.
pub fn write(
    out: &mut dyn Write,
    format: Format,
    events: &[SealedEvent],
    head: &Head,
    public_key: &str,
    timezone: Tz,
    head_statement: Option<&str>,
) -> io::Result<()> {
    match format {
        Format::Jsonl => {
            for event in events {
                out.write_all(event.export_line().as_bytes())?;
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        Format::Json => {
            // `{"events": [...], "head": {...}, "next_after_seq": N, "public_key": "..."}`, events as
            // exported lines. With no events, the cursor is the head: a caller ahead of it
            // sees that the station went back.
            out.write_all(b"{\"events\":[")?;
            for (i, event) in events.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",\n")?;
                }
                out.write_all(event.export_line().as_bytes())?;
            }
            let next_after_seq = events.last().map_or(head.seq, |e| e.seq);
            let mut tail = json!({ "head": head, "next_after_seq": next_after_seq, "public_key": public_key });
            if let Some(statement) = head_statement {
                tail["head_statement"] = serde_json::Value::from(statement);
            }
            let tail = tail.to_string();
            writeln!(out, "],{}", &tail[1..])
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
    "peak_cdbfs",
    "rms_cdbfs",
    "silent_ms",
    "first_frame_latency_ms",
    "clock_synced",
    "status",
    "reason",
    "prev_hash",
    "hash",
    "sig",
];

/// `2026-11-23 22:30:00.000` (local) or `2026-11-23T15:30:00.000Z` (UTC): a fixed layout,
/// written directly; chrono's general formatter is the slowest part of a CSV page otherwise.
fn format_time(at: NaiveDateTime, utc: bool) -> String {
    let (date, time) = (at.date(), at.time());
    let separator = if utc { 'T' } else { ' ' };
    let mut text = String::with_capacity(24);
    let _ = write!(
        text,
        "{:04}-{:02}-{:02}{separator}{:02}:{:02}:{:02}.{:03}",
        date.year(),
        date.month(),
        date.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.nanosecond() / 1_000_000 % 1000
    );
    if utc {
        text.push('Z');
    }
    text
}

/// A cell as a spreadsheet may safely open it: text that begins with `=`, `+`, `-`, `@`, a
/// tab or a carriage return would be read as a formula (OWASP "CSV injection"), so it gets a
/// leading `'`. True numbers (e.g. `-1840`) stay numbers.
pub fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.parse::<f64>().is_err() { Cow::Owned(format!("'{cell}")) } else { Cow::Borrowed(cell) }
}

fn write_csv(out: &mut dyn Write, events: &[SealedEvent], timezone: Tz) -> io::Result<()> {
    out.write_all("\u{feff}".as_bytes())?; // BOM: Excel then reads Vietnamese titles as UTF-8
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(CSV_COLUMNS)?;
    for event in events {
        // Borrow the body's members as raw JSON text: no map, no copies of plain strings.
        let object: HashMap<&str, &RawValue> = serde_json::from_str(&event.body).map_err(io::Error::other)?;
        let hash_sig = [("hash", event.hash.as_str()), ("sig", event.sig.as_str())];
        for column in CSV_COLUMNS {
            match hash_sig.iter().find(|(name, _)| *name == column) {
                Some((_, value)) => csv.write_field(value)?,
                None => csv.write_field(spreadsheet_safe(&csv_cell(&object, column, timezone)).as_ref())?,
            }
        }
        csv.write_record(None::<&[u8]>)?;
    }
    csv.flush()
}

fn csv_cell<'a>(object: &HashMap<&str, &'a RawValue>, column: &str, timezone: Tz) -> Cow<'a, str> {
    let time = |field: &str, local: bool| {
        let ms = object.get(field).and_then(|raw| raw.get().parse::<i64>().ok());
        let Some(at) = ms.and_then(DateTime::<Utc>::from_timestamp_millis) else { return Cow::Borrowed("") };
        let naive = if local { at.with_timezone(&timezone).naive_local() } else { at.naive_utc() };
        Cow::Owned(format_time(naive, !local))
    };
    match column {
        "at_utc" => time("at", false),
        "at_local" => time("at", true),
        "scheduled_at_utc" => time("scheduled_at", false),
        "scheduled_at_local" => time("scheduled_at", true),
        "started_at_local" => time("started_at", true),
        "ended_at_local" => time("ended_at", true),
        field => match object.get(field).map(|raw| raw.get()) {
            None | Some("null") => Cow::Borrowed(""),
            // A string with no escapes is its own text between the quotes.
            Some(text) if text.starts_with('"') && !text.contains('\\') => Cow::Borrowed(&text[1..text.len() - 1]),
            Some(text) if text.starts_with('"') => {
                serde_json::from_str::<String>(text).map_or(Cow::Borrowed(""), Cow::Owned)
            }
            Some(other) => Cow::Borrowed(other),
        },
    }
}
