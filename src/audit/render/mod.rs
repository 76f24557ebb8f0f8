//! One renderer for every report a person reads, the station's and the office's alike: the
//! formats (JSON and CSV for tools, a Vietnamese CSV and a printable page for people), the
//! codes in words (`Labels`), the page's frame with its phone and A4 layout, and the style's
//! hash for the content policies that admit it — each written once. HTML is written with maud,
//! which escapes every value it is given. The counting is `audit::compliance`'s (and the
//! office's `district::report`); nothing here counts.

pub mod airtime;
pub mod station;

use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use maud::{DOCTYPE, Markup, html};

use crate::config::{Choice, Config, known_name};

named_enum! {
    /// How a report is rendered: `json` and `csv` are for tools (codes, hashes; a contract),
    /// `csv-vi` and `html` for people (Vietnamese words and dates, no hashes).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ReportFormat("a report format") {
        Json = "json",
        Csv = "csv",
        CsvVi = "csv-vi",
        Html = "html",
    }
}

impl ReportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Json => "application/json",
            ReportFormat::Csv | ReportFormat::CsvVi => "text/csv; charset=utf-8",
            ReportFormat::Html => "text/html; charset=utf-8",
        }
    }
}

/// The printable reports' whole style sheet, one `<style>` block and no `style` attributes: the
/// pages that show a report allow exactly this block by its hash ([`style_hash`]). On a phone a
/// table's rows become cards, each cell led by its column's name; on paper, A4.
pub const REPORT_STYLE: &str = r#"
body { font-family: "Times New Roman", serif; margin: 2cm; font-size: 13pt; }
h1 { font-size: 15pt; text-align: center; text-transform: uppercase; }
.center { text-align: center; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
th, td { border: 1px solid #000; padding: 3px 6px; text-align: left; overflow-wrap: anywhere; }
tr.quota th { background: #eee; }
.sign { display: flex; justify-content: space-between; margin-top: 3em; text-align: center; }
.small { font-size: 9pt; color: #444; overflow-wrap: anywhere; }
@page { size: A4; margin: 1.5cm; }
@media print { body { margin: 0; } }
@media screen and (max-width: 600px) {
  body { margin: 0.8em; font-size: 15px; }
  h1 { font-size: 17px; }
  table, tbody, tr, th, td { display: block; }
  tr.head { display: none; }
  tr { border-bottom: 1px solid #999; padding: 0.4em 0; }
  th, td { border: none; }
  td[data-label]::before { content: attr(data-label) ": "; color: #555; }
  .sign { flex-direction: column; gap: 2em; }
}
"#;

/// `sha256-…` of [`REPORT_STYLE`], for a `style-src` directive; computed once.
pub fn style_hash() -> &'static str {
    static HASH: LazyLock<String> = LazyLock::new(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(REPORT_STYLE);
        format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
    });
    &HASH
}

/// A printable report: who issues it, its title, the period line, the body, and the footnote
/// tying it to the signed logs (`.proof`: the one line where codes and hashes belong).
pub struct Printable<'a> {
    pub issuer: &'a str,
    pub title: &'a str,
    pub heading: &'a str,
    pub period: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub body: Markup,
    pub footnote: String,
}

impl Printable<'_> {
    /// The whole page: phone-sized on a phone (viewport), A4 on paper, signature blocks.
    pub fn page(self) -> String {
        html! {
            (DOCTYPE)
            html lang="vi" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) }
                    style { (maud::PreEscaped(REPORT_STYLE)) }
                }
                body {
                    p { (self.issuer) }
                    h1 { (self.heading) }
                    p.center { "Kỳ báo cáo: " b { (self.period) } " (từ " (self.from) " đến " (self.to) ")" }
                    (self.body)
                    div.sign {
                        div { "Người lập báo cáo" br; br; br; "(Ký, ghi rõ họ tên)" }
                        div { "Thủ trưởng đơn vị" br; br; br; "(Ký, đóng dấu)" }
                    }
                    p.small.proof { (self.footnote) }
                }
            }
        }
        .into_string()
    }
}

/// A table row of cells, each carrying its column's name for the phone layout.
pub fn row(columns: &[&str], cells: &[Markup]) -> Markup {
    html! { tr { @for (column, cell) in columns.iter().zip(cells) { td data-label=(column) { (cell) } } } }
}

/// The table's header row (hidden on a phone, where each cell names its column).
pub fn head(columns: &[&str]) -> Markup {
    html! { tr.head { @for column in columns { th { (column) } } } }
}

/// CSV for Excel: UTF-8 with a byte-order mark (so Excel reads it as UTF-8), comma-separated,
/// every cell made inert for a spreadsheet (no formula).
pub fn csv(header: &[String], rows: impl IntoIterator<Item = Vec<String>>) -> Vec<u8> {
    let mut out = "\u{feff}".as_bytes().to_vec();
    {
        let mut csv = csv::Writer::from_writer(&mut out);
        csv.write_record(header).expect("in-memory CSV");
        for row in rows {
            let row = row.iter().map(|cell| crate::proof::export::spreadsheet_safe(cell).into_owned());
            csv.write_record(row.collect::<Vec<_>>()).expect("in-memory CSV");
        }
        csv.flush().expect("in-memory CSV");
    }
    out
}

/// A date as a Vietnamese spreadsheet takes it: `02/11/2026`.
pub fn day_vi(date: NaiveDate) -> String {
    format!("{:02}/{:02}/{}", date.day(), date.month(), date.year())
}

/// The names people read for topic, language and slot codes: the station's own, or for the
/// office (which lists none) the names of the codes the CCHC plans use.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    topics: Vec<Choice>,
    languages: Vec<Choice>,
    slots: Vec<Choice>,
}

impl Labels {
    pub fn of(config: &Config) -> Labels {
        let slots = config.slots.iter().map(|s| Choice { id: s.name.clone(), label: s.label.clone() }).collect();
        Labels { topics: config.topics.clone(), languages: config.languages.clone(), slots }
    }

    pub fn slot(&self, name: &str) -> String {
        self.slots.iter().find(|c| c.id == name).map_or_else(|| name.to_owned(), |c| c.label.clone())
    }

    pub fn topic(&self, code: &str) -> String {
        self.topics.iter().find(|c| c.id == code).map_or_else(|| known_name(code), |c| c.label.clone())
    }

    pub fn language(&self, code: &str) -> String {
        self.languages.iter().find(|c| c.id == code).map_or_else(|| known_name(code), |c| c.label.clone())
    }

    /// A quota in words: "Cải cách hành chính (Tiếng H'Mông): ít nhất 1 lần mỗi tuần, giờ cao
    /// điểm".
    pub fn quota(&self, topic: &str, language: Option<&str>, per: &str, count: Option<u32>, peak_only: bool) -> String {
        let language = language.map(|l| format!(" ({})", self.language(l))).unwrap_or_default();
        let per = if per == "week" { "mỗi tuần" } else { "mỗi tháng" };
        let count = count.map(|n| format!("ít nhất {n} lần ")).unwrap_or_default();
        let hours = if peak_only { "giờ cao điểm" } else { "mọi khung giờ" };
        format!("{}{language}: {count}{per}, {hours}", self.topic(topic))
    }

    /// A quota from its recorded label (`cchc/week`, `cchc[hmn]/month/any-slot`, see
    /// `config::Quota::label`) in words.
    pub fn quota_label(&self, label: &str) -> String {
        let mut parts = label.split('/');
        let head = parts.next().unwrap_or_default();
        let (topic, language) = match head.split_once('[') {
            Some((topic, language)) => (topic, Some(language.trim_end_matches(']'))),
            None => (head, None),
        };
        let per = parts.next().unwrap_or_default();
        let peak_only = parts.next() != Some("any-slot");
        self.quota(topic, language, per, None, peak_only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_read_in_words_from_a_config_or_a_recorded_label() {
        let labels = Labels::default();
        assert_eq!(labels.quota_label("cchc/week"), "Cải cách hành chính: mỗi tuần, giờ cao điểm");
        assert_eq!(
            labels.quota_label("cchc[hmn]/month/any-slot"),
            "Cải cách hành chính (Tiếng H'Mông): mỗi tháng, mọi khung giờ"
        );
        assert_eq!(
            labels.quota("cchc", Some("km"), "week", Some(2), true),
            "Cải cách hành chính (Tiếng Khmer): ít nhất 2 lần mỗi tuần, giờ cao điểm"
        );
        assert_eq!(day_vi(NaiveDate::from_ymd_opt(2026, 11, 2).unwrap()), "02/11/2026");
    }

    #[test]
    fn every_value_in_a_page_is_escaped() {
        let page = Printable {
            issuer: "<script>",
            title: "t",
            heading: "h",
            period: "p",
            from: "a",
            to: "b",
            body: row(&["x\"y"], &[html! { ("<b>") }]),
            footnote: "&".into(),
        }
        .page();
        assert!(page.contains("&lt;script&gt;") && page.contains("&lt;b&gt;") && page.contains("&amp;"), "{page}");
        assert!(page.contains("data-label=\"x&quot;y\""), "{page}");
        assert!(page.contains("width=device-width"));
    }
}
