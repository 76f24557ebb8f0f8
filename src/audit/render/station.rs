//! A station's compliance report (`audit::compliance::Report`) for tools and for people.

use maud::html;

use super::{Labels, Printable, ReportFormat, csv, day_vi, head, row};
use crate::audit::compliance::{QuotaReport, Report, Shortfall};
use crate::audit::words::{date_vi, number_vi, period_vi, reason_vi, status_vi, time_vi};

/// The rendered report and its content type.
pub fn render(report: &Report, format: ReportFormat, labels: &Labels) -> (Vec<u8>, &'static str) {
    let body = match format {
        ReportFormat::Json => serde_json::to_vec_pretty(report).expect("reports serialise"),
        ReportFormat::Csv => to_csv(report),
        ReportFormat::CsvVi => to_csv_vi(report, labels),
        ReportFormat::Html => to_html(report, labels).into_bytes(),
    };
    (body, format.content_type())
}

/// For tools: one row per quota period, codes as the JSON has them (a contract).
fn to_csv(report: &Report) -> Vec<u8> {
    let header = [
        "station_id",
        "report_period",
        "topic",
        "language",
        "per",
        "peak_only",
        "period",
        "required",
        "completed",
        "met",
        "reason",
    ];
    let rows = report.quotas.iter().flat_map(|q| {
        q.periods.iter().map(|p| {
            vec![
                report.station_id.clone(),
                report.period.clone(),
                q.topic.clone(),
                q.language.clone().unwrap_or_default(),
                q.per.clone(),
                q.peak_only.to_string(),
                p.period.clone(),
                p.required.to_string(),
                p.completed.to_string(),
                p.met.to_string(),
                p.reason.map(Shortfall::as_str).unwrap_or_default().to_owned(),
            ]
        })
    });
    csv(&header.map(String::from), rows)
}

fn quota_words(q: &QuotaReport, labels: &Labels) -> String {
    labels.quota(&q.topic, q.language.as_deref(), &q.per, Some(q.count), q.peak_only)
}

/// For people: the same rows in Vietnamese words and dates, without codes or hashes.
fn to_csv_vi(report: &Report, labels: &Labels) -> Vec<u8> {
    let header = [
        "Đài",
        "Kỳ báo cáo",
        "Chỉ tiêu",
        "Kỳ",
        "Từ ngày",
        "Đến ngày",
        "Cần (lần)",
        "Đã phát trọn vẹn (lần)",
        "Kết quả",
    ];
    let report_period = period_vi(&report.period);
    let rows = report.quotas.iter().flat_map(|q| {
        let quota = quota_words(q, labels);
        let report_period = report_period.clone();
        q.periods.iter().map(move |p| {
            let (from, to) = crate::time::calendar::local_days(&p.period)
                .map_or((String::new(), String::new()), |(first, last)| (day_vi(first), day_vi(last)));
            vec![
                report.station_name.clone(),
                report_period.clone(),
                quota.clone(),
                period_vi(&p.period),
                from,
                to,
                p.required.to_string(),
                p.completed.to_string(),
                reason_vi(p.reason).to_owned(),
            ]
        })
    });
    csv(&header.map(String::from), rows)
}

/// The printable one-page report in Vietnamese.
fn to_html(report: &Report, labels: &Labels) -> String {
    const COLUMNS: [&str; 4] = ["Kỳ", "Yêu cầu", "Đã phát trọn vẹn", "Kết quả"];
    let body = html! {
        table {
            (head(&COLUMNS))
            @for q in &report.quotas {
                tr.quota { th colspan="4" {
                    (quota_words(q, labels)) " — đạt " (q.met) ", không đạt " (q.missed)
                } }
                @for p in &q.periods {
                    (row(&COLUMNS, &[
                        html! { (period_vi(&p.period)) },
                        html! { (p.required) },
                        html! { (p.completed) },
                        html! { (reason_vi(p.reason)) },
                    ]))
                }
            }
        }
        p { "Tổng số lượt phát theo trạng thái:" }
        ul { @for (status, count) in &report.by_status { li { (status_vi(status)) ": " (count) } } }
        p {
            "Giờ cao điểm: " (report.peak.airings) " lượt, " (number_vi(report.peak.minutes)) " phút. "
            "Giờ khác: " (report.off_peak.airings) " lượt, " (number_vi(report.off_peak.minutes)) " phút."
        }
    };
    let footnote = format!(
        "Số liệu lấy từ nhật ký phát sóng có chữ ký số của đài ({}), đến sự kiện số {}, mã băm {}; kiểm tra bằng \
         loa verify. Lập lúc {}.",
        report.station_id,
        report.last_seq.map_or("-".to_owned(), |s| s.to_string()),
        report.last_hash.as_deref().unwrap_or("-"),
        time_vi(&report.generated_at),
    );
    let period = period_vi(&report.period);
    Printable {
        issuer: &report.station_name,
        title: &format!("Báo cáo phát thanh CCHC {period}"),
        heading: "Báo cáo kết quả phát thanh cải cách hành chính",
        period: &period,
        from: &date_vi(&report.from, false),
        to: &date_vi(&report.to, true),
        body,
        footnote,
    }
    .page()
}
