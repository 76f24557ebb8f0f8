//! Reports across stations for a period (week … year): one row per station, computed from the
//! events the office verified and holds (never from what a station says of itself) with the
//! station's own report code (`audit::compliance`) held to the office's quotas.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use maud::html;
use serde::Serialize;

use super::Office;
use super::config::StationEntry;
use super::store::{DistrictStore, DistrictStoreError};
use crate::audit::compliance::{self, Coverage, Standing, Subject};
use crate::audit::render::{self, Labels, Printable, ReportFormat, day_vi};
use crate::audit::words::{date_vi, period_vi, standing_vi, status_vi, time_vi};
use crate::proof::events::{Counted, Logged};
use crate::time::calendar::Period;

#[derive(Debug, Clone, Serialize)]
pub struct OfficeReport {
    pub office: String,
    pub period: String,
    pub from: String,
    pub to: String,
    pub generated_at: String,
    pub stations: Vec<StationRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StationRow {
    pub station_id: String,
    pub station_name: String,
    pub quotas: Vec<QuotaRow>,
    /// Airing endings and missed slots by status.
    pub by_status: BTreeMap<String, u32>,
    pub missed_slots: u32,
    /// Airings recorded while the station's clock was not synchronised.
    pub untrusted_clock_airings: u32,
    /// Airings the office does not believe (`implausible`): counted here, never as aired.
    pub implausible_airings: u32,
    pub open_alarms: usize,
    /// The last event the office holds (ties the row to the verified log).
    pub head_seq: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuotaRow {
    /// `cchc/week`, `cchc[hmn]/week`, …
    pub quota: String,
    /// `standing` is `met`: every week or month of the period that began is met by completed
    /// airings the office holds. Never true for silence.
    pub met: bool,
    pub standing: Standing,
    pub periods_met: usize,
    pub periods_missed: usize,
    /// Weeks or months that ended after the office's last clean contact with the station.
    pub periods_no_data: usize,
    /// Completed airings counted toward it, and how many its weeks or months need, so far.
    pub completed: u32,
    pub required: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum OfficeReportError {
    #[error(transparent)]
    Store(#[from] DistrictStoreError),
    #[error("station {station}: the held event at seq {seq} does not read as its kind ({error})")]
    Unreadable { station: String, seq: i64, error: serde_json::Error },
}

/// The report for `period` at `now`. Stations are read on every core, each worker with its own
/// read connection (the office's database is in WAL mode: readers do not wait for the writer).
pub fn build(office: &Office, period: &Period, now: DateTime<Utc>) -> Result<OfficeReport, OfficeReportError> {
    let tz = office.config.timezone;
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).to_rfc3339();
    let span = compliance::counted_span(period, &office.config.quotas, office.config.timezone);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(office.config.stations.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let rows: Vec<Result<Vec<(usize, StationRow)>, OfficeReportError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let store = DistrictStore::open(&office.config.data_dir)?;
                    let mut rows = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(station) = office.config.stations.get(i) else { return Ok(rows) };
                        rows.push((i, station_row(office, &store, station, period, span, now)?));
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a report worker does not panic")).collect()
    });
    let mut stations = Vec::with_capacity(office.config.stations.len());
    for part in rows {
        stations.extend(part?);
    }
    stations.sort_by_key(|(i, _)| *i);
    Ok(OfficeReport {
        office: office.config.name.clone(),
        period: period.label.clone(),
        from: local(period.start),
        to: local(period.end),
        generated_at: local(now),
        stations: stations.into_iter().map(|(_, row)| row).collect(),
    })
}

fn station_row(
    office: &Office,
    store: &DistrictStore,
    station: &StationEntry,
    period: &Period,
    (from, to): (i64, i64),
    now: DateTime<Utc>,
) -> Result<StationRow, OfficeReportError> {
    let head = store.latest(&station.id, 1)?;
    let open_alarms = store.alarms(Some(&station.id), true)?.len();
    let since = store.first_event_at(&station.id)?.and_then(DateTime::from_timestamp_millis);
    // What the office holds covers the station's log up to its last clean contact (it then held
    // all the station had), or at least up to the last event it holds.
    let held = office.held(station)?;
    let last_at = head.first().map(|e| e.at);
    let until = held.last_ok_at.max(last_at).and_then(DateTime::from_timestamp_millis);
    let implausible = store.implausible(&station.id)?;
    let (start, end) = (period.start.timestamp_millis(), period.end.timestamp_millis());
    let counted = store.counted_events(&station.id, from, to)?;
    let (disbelieved, counted): (Vec<_>, Vec<_>) = counted.into_iter().partition(|e| implausible.contains_key(&e.seq));
    let implausible_airings = disbelieved.iter().filter(|e| e.at >= start && e.at < end).count() as u32;
    let logged = counted
        .iter()
        .map(|e| {
            Logged::parse(&e.body, &e.hash).map_err(|error| OfficeReportError::Unreadable {
                station: station.id.clone(),
                seq: e.seq,
                error,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let subject = Subject {
        station_id: &station.id,
        station_name: &station.name,
        timezone: office.config.timezone,
        quotas: &office.config.quotas,
    };
    let report = compliance::report(subject, period, &logged, now, Coverage { since, until });
    let untrusted = logged
        .iter()
        .filter(|e| e.at >= start && e.at < end)
        .filter(|e| matches!(e.what, Counted::AiringEnded { clock_synced: false, .. }))
        .count() as u32;
    let quotas = office
        .config
        .quotas
        .iter()
        .zip(&report.quotas)
        .map(|(quota, q)| QuotaRow {
            quota: quota.label(),
            met: q.standing == Standing::Met,
            standing: q.standing,
            periods_met: q.met,
            periods_missed: q.missed,
            periods_no_data: q.no_data,
            completed: q.periods.iter().map(|p| p.completed).sum(),
            required: q.periods.iter().map(|p| p.required).sum(),
        })
        .collect();
    Ok(StationRow {
        station_id: station.id.clone(),
        station_name: station.name.clone(),
        quotas,
        missed_slots: report.by_status.get("missed").copied().unwrap_or(0),
        by_status: report.by_status,
        untrusted_clock_airings: untrusted,
        implausible_airings,
        open_alarms,
        head_seq: head.first().map_or(0, |e| e.seq),
    })
}

/// The rendered report and its content type, through the reports' one renderer.
pub fn render(report: &OfficeReport, format: ReportFormat) -> (Vec<u8>, &'static str) {
    let labels = Labels::default();
    let body = match format {
        ReportFormat::Json => serde_json::to_vec_pretty(report).expect("reports serialise"),
        ReportFormat::Csv => to_csv(report),
        ReportFormat::CsvVi => to_csv_vi(report, &labels),
        ReportFormat::Html => to_html(report, &labels).into_bytes(),
    };
    (body, format.content_type())
}

const STATUSES: [&str; 6] = ["completed", "partial", "interrupted", "preempted", "failed", "missed"];

/// The quotas' recorded labels, the same for every row (the office's quotas).
fn quota_labels(report: &OfficeReport) -> Vec<String> {
    report.stations.first().map(|s| s.quotas.iter().map(|q| q.quota.clone()).collect()).unwrap_or_default()
}

/// For tools: one row per station, one column per quota, codes as the JSON has them.
fn to_csv(report: &OfficeReport) -> Vec<u8> {
    let mut header: Vec<String> = ["station_id", "station_name", "period"].map(String::from).to_vec();
    header.extend(quota_labels(report).iter().map(|q| format!("{q} standing")));
    header.extend(STATUSES.iter().map(|s| (*s).to_owned()));
    header.extend(["untrusted_clock_airings", "implausible_airings", "open_alarms", "head_seq"].map(String::from));
    let rows = report.stations.iter().map(|s| {
        let mut row = vec![s.station_id.clone(), s.station_name.clone(), report.period.clone()];
        row.extend(s.quotas.iter().map(|q| q.standing.to_string()));
        row.extend(STATUSES.iter().map(|st| s.by_status.get(*st).copied().unwrap_or(0).to_string()));
        row.extend([
            s.untrusted_clock_airings.to_string(),
            s.implausible_airings.to_string(),
            s.open_alarms.to_string(),
            s.head_seq.to_string(),
        ]);
        row
    });
    render::csv(&header, rows)
}

/// A quota's standing at a station in words: "Không đạt (3 lần phát trọn vẹn, cần 4)".
fn standing_words(q: &QuotaRow) -> String {
    format!("{} ({} lần phát trọn vẹn, cần {})", standing_vi(q.standing), q.completed, q.required)
}

const UNTRUSTED_CLOCK: &str = "Lượt phát khi đồng hồ chưa đồng bộ";
const IMPLAUSIBLE: &str = "Lượt phát không hợp lý (không tính)";

/// For people: the same rows in Vietnamese words and dates, without codes or hashes.
fn to_csv_vi(report: &OfficeReport, labels: &Labels) -> Vec<u8> {
    let (from, to) = (date_vi(&report.from, false), date_vi(&report.to, true));
    let days = crate::time::calendar::local_days(&report.period);
    let (first, last) = days.map_or((from, to), |(first, last)| (day_vi(first), day_vi(last)));
    let mut header: Vec<String> = ["Đài", "Kỳ báo cáo", "Từ ngày", "Đến ngày"].map(String::from).to_vec();
    header.extend(quota_labels(report).iter().map(|q| labels.quota_label(q)));
    header.extend(STATUSES.iter().map(|s| status_vi(s).to_owned()));
    header.extend([UNTRUSTED_CLOCK, IMPLAUSIBLE, "Cảnh báo chưa xử lý"].map(String::from));
    let period = period_vi(&report.period);
    let rows = report.stations.iter().map(|s| {
        let mut row = vec![s.station_name.clone(), period.clone(), first.clone(), last.clone()];
        row.extend(s.quotas.iter().map(standing_words));
        row.extend(STATUSES.iter().map(|st| s.by_status.get(*st).copied().unwrap_or(0).to_string()));
        row.extend([s.untrusted_clock_airings, s.implausible_airings].map(|n| n.to_string()));
        row.push(s.open_alarms.to_string());
        row
    });
    render::csv(&header, rows)
}

/// The printable report in Vietnamese: one row per station.
fn to_html(report: &OfficeReport, labels: &Labels) -> String {
    const COLUMNS: [&str; 7] =
        ["Đài", "Chỉ tiêu", "Lượt phát theo trạng thái", "Khung giờ bị lỡ", UNTRUSTED_CLOCK, IMPLAUSIBLE, "Cảnh báo"];
    let body = html! {
        table {
            (render::head(&COLUMNS))
            @for s in &report.stations {
                (render::row(&COLUMNS, &[
                    html! { (s.station_name) },
                    html! { @for q in &s.quotas { (labels.quota_label(&q.quota)) ": " (standing_words(q)) br; } },
                    html! { @for (status, n) in &s.by_status { (status_vi(status)) ": " (n) br; } },
                    html! { (s.missed_slots) },
                    html! { (s.untrusted_clock_airings) },
                    html! { (s.implausible_airings) },
                    html! { @if s.open_alarms > 0 { b { (s.open_alarms) " cảnh báo chưa xử lý" } } @else { "Không" } },
                ]))
            }
        }
    };
    let period = period_vi(&report.period);
    Printable {
        issuer: &report.office,
        title: &format!("Báo cáo phát thanh CCHC các đài {period}"),
        heading: "Báo cáo tổng hợp kết quả phát thanh cải cách hành chính của các đài",
        period: &period,
        from: &date_vi(&report.from, false),
        to: &date_vi(&report.to, true),
        body,
        footnote: format!(
            "Số liệu lấy từ nhật ký phát sóng có chữ ký số của từng đài mà phòng đã kiểm tra và lưu giữ. Lập lúc {}.",
            time_vi(&report.generated_at)
        ),
    }
    .page()
}
