//! The config text being validated, so every error can name its file, line and key.

use std::ops::{Range, RangeInclusive};
use std::path::Path;

use toml::Spanned;

use super::ConfigError;

/// The config text being validated, so errors can point at lines.
pub(crate) struct Source<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Source<'_> {
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    pub(crate) fn invalid<T>(&self, value: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        self.invalid_at(value.span(), Some(key.to_owned()), message.into())
    }

    /// An optional number: `default` when absent, itself when within `range`, else an error
    /// naming the key and line with `advice` (given the value: what to write instead).
    pub(crate) fn bounded<T: PartialOrd + Copy>(
        &self,
        value: &Option<Spanned<T>>,
        key: &str,
        range: RangeInclusive<T>,
        default: T,
        advice: impl FnOnce(T) -> String,
    ) -> Result<T, ConfigError> {
        match value {
            Some(v) if !range.contains(v.get_ref()) => Err(self.invalid(v, key, advice(*v.get_ref()))),
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        }
    }

    pub(crate) fn invalid_at(&self, span: Range<usize>, key: Option<String>, message: String) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_owned(), line: self.line_of(span.start), key, message }
    }

    /// The table a line at `offset` belongs to, as the validator names it: `audio`, `slot[2]`.
    pub(crate) fn table_at(&self, offset: usize) -> Option<String> {
        let before = &self.text[..offset];
        let header = before.lines().rev().map(str::trim).find(|l| l.starts_with('['))?;
        if let Some(array) = header.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            let array = array.trim();
            let index = before
                .lines()
                .filter(|l| {
                    l.trim().strip_prefix("[[").is_some_and(|h| h.split("]]").next().map(str::trim) == Some(array))
                })
                .count();
            return Some(format!("{array}[{}]", index.saturating_sub(1)));
        }
        header.strip_prefix('[').and_then(|h| h.split(']').next()).map(|table| table.trim().to_owned())
    }

    /// A TOML syntax or type error. toml's message does not always say which key, so when the
    /// error points into a `key = value` line we name that key ourselves.
    pub(crate) fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let line_start = self.text[..span.start.min(self.text.len())].rfind('\n').map_or(0, |i| i + 1);
        let line_text = self.text[line_start..].lines().next().unwrap_or("");
        let key = line_text
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
            .map(|key| self.table_at(line_start).map_or_else(|| key.to_owned(), |table| format!("{table}.{key}")));
        let mut message = error.message().trim().replace('\n', " ");
        // `max_minutes = ` with nothing after it: TOML's own words ("string values must be
        // quoted") send the admin the wrong way.
        if line_text.split_once('=').is_some_and(|(_, value)| value.split('#').next().unwrap_or("").trim().is_empty()) {
            message = "no value after `=`; write one, e.g. a number (5), a quoted text (\"sang\") or true".to_owned();
        }
        self.invalid_at(span, key, message)
    }
}
