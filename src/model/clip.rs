//! What a bulletin is: its editorial metadata and the facts measured from its audio.
//!
//! The same checks guard the CLI, the HTTP API and the config's quotas, so a topic or language
//! that one door accepts is accepted by all of them.

use chrono::NaiveDate;
use serde::Serialize;

named_enum! {
    /// Thông tư 39/2020 levels: thông thường / ưu tiên / khẩn cấp.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum Priority("a priority") {
        Normal = "normal",
        Priority = "priority",
        Emergency = "emergency",
    }
}

/// What the operator says about a bulletin.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ClipMeta {
    pub title: String,
    pub topic: String,
    pub language: String,
    pub priority: Priority,
    /// First local date the clip may air (inclusive).
    pub valid_from: Option<NaiveDate>,
    /// Last local date the clip may air (inclusive).
    pub valid_until: Option<NaiveDate>,
}

/// A metadata field the operator must correct.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct MetaError {
    pub field: &'static str,
    pub message: String,
}

impl ClipMeta {
    pub fn check(&self) -> Result<(), MetaError> {
        let fail = |field, message: String| Err(MetaError { field, message });
        let title = self.title.trim();
        if title.is_empty() {
            return fail("title", "give the bulletin a title, e.g. \"Bản tin CCHC tuần 47\"".into());
        }
        if title.chars().count() > 200 || title.chars().any(char::is_control) {
            return fail("title", "keep the title on one line and under 200 characters".into());
        }
        // Bidi overrides and isolates make a title read differently from what it holds (a
        // report or a spreadsheet would show a reordered text).
        if let Some(c) = title.chars().find(|c| BIDI_CONTROLS.contains(c)) {
            return fail(
                "title",
                format!(
                    "the title holds an invisible text-direction control (U+{:04X}); type it again without it",
                    u32::from(c)
                ),
            );
        }
        check_topic(&self.topic).map_err(|message| MetaError { field: "topic", message })?;
        check_language(&self.language).map_err(|message| MetaError { field: "language", message })?;
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until) {
            if until < from {
                return fail(
                    "valid_until",
                    format!("{until} is before valid_from {from}; the window would never open"),
                );
            }
        }
        Ok(())
    }
}

/// U+202A–U+202E (embeddings, overrides) and U+2066–U+2069 (isolates).
const BIDI_CONTROLS: [char; 9] =
    ['\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'];

pub fn check_topic(topic: &str) -> Result<(), String> {
    if is_slug(topic, "-") && topic.len() <= 32 {
        Ok(())
    } else {
        Err(format!("\"{topic}\" is not a topic; use a short lowercase word such as \"cchc\" (letters, digits, `-`)"))
    }
}

/// BCP-47-ish: a 2–3 letter primary code, optional subtags (`vi`, `hmn`, `tay`, `km-VN`).
pub fn check_language(language: &str) -> Result<(), String> {
    let mut parts = language.split('-');
    let primary = parts.next().unwrap_or("");
    let primary_ok = (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_lowercase());
    let subtags_ok = parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if primary_ok && subtags_ok {
        Ok(())
    } else {
        Err(format!(
            "\"{language}\" is not a language code; use e.g. \"vi\", \"hmn\" (Mông), \"tay\" (Tày), \"km\" (Khmer)"
        ))
    }
}

pub fn parse_date(field: &'static str, text: &str) -> Result<NaiveDate, MetaError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| MetaError {
        field,
        message: format!("\"{text}\" is not a date; write YYYY-MM-DD, e.g. 2026-12-01"),
    })
}

/// Facts measured by decoding the whole file at ingest.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AudioFacts {
    /// From the samples actually decoded (encoder delay and padding removed), not the header.
    pub duration_ms: u64,
    pub sample_rate: u32,
    pub channels: u16,
    /// EBU R128 integrated loudness.
    pub loudness_lufs: f64,
    /// Highest absolute sample value, in dBFS.
    pub peak_dbfs: f64,
    /// Inter-sample (4× oversampled) peak, in dBTP.
    pub true_peak_dbfs: f64,
}

/// A bulletin in the library.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Clip {
    pub id: i64,
    pub sha256: String,
    #[serde(flatten)]
    pub meta: ClipMeta,
    #[serde(flatten)]
    pub audio: AudioFacts,
    pub size_bytes: u64,
    /// RFC 3339, UTC, milliseconds.
    pub created_at: String,
    pub retired_at: Option<String>,
}

/// Non-empty, lowercase ASCII letters and digits plus the given punctuation.
pub fn is_slug(s: &str, punctuation: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || punctuation.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ClipMeta {
        ClipMeta {
            title: "Bản tin CCHC".into(),
            topic: "cchc".into(),
            language: "vi".into(),
            priority: Priority::Normal,
            valid_from: None,
            valid_until: None,
        }
    }

    #[test]
    fn good_metadata_passes() {
        assert_eq!(meta().check(), Ok(()));
        for language in ["vi", "hmn", "tay", "km-VN"] {
            assert_eq!(check_language(language), Ok(()), "{language}");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        type Spoil = fn(&mut ClipMeta);
        let cases: [(&str, Spoil); 5] = [
            ("title", |m| m.title = "  ".into()),
            ("title", |m| m.title = "a\nb".into()),
            ("topic", |m| m.topic = "CCHC!".into()),
            ("language", |m| m.language = "vietnamese".into()),
            ("valid_until", |m| {
                m.valid_from = NaiveDate::from_ymd_opt(2026, 12, 1);
                m.valid_until = NaiveDate::from_ymd_opt(2026, 11, 30);
            }),
        ];
        for (field, spoil) in cases {
            let mut m = meta();
            spoil(&mut m);
            assert_eq!(m.check().unwrap_err().field, field);
        }
    }

    #[test]
    fn dates_must_be_iso() {
        assert!(parse_date("valid_from", "2026-02-30").is_err());
        assert!(parse_date("valid_from", "01/12/2026").is_err());
        assert_eq!(parse_date("valid_from", "2026-12-01").unwrap(), NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
    }
}
