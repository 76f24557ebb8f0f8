//! The station's configuration: parsed strictly, validated completely, up front.
//!
//! A typo in a slot must surface when the admin runs `loa check-config`, not at 05:30 when the
//! slot should have aired. So unknown keys are errors, and every error names the file, the line,
//! the key and how to fix it. The raw TOML shapes (`Raw*`) stay private; the rest of the program
//! only sees the validated [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::model::clip::{self};
use crate::time::calendar::QuotaPeriod;
use crate::time::slots::CronSchedule;

pub(crate) mod raw;
mod sections;
mod secure;
pub(crate) mod source;

use raw::RawConfig;
pub(crate) use secure::{pinned_fingerprint, tls_source};
use source::Source;

pub const DEFAULT_PATH: &str = "config/station.toml";
pub const DEFAULT_TIMEZONE: &str = "Asia/Ho_Chi_Minh";

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub station: Station,
    pub audio: Audio,
    pub http: Http,
    pub clips: ClipLimits,
    pub clock: ClockTrust,
    pub slots: Vec<Slot>,
    pub quotas: Vec<Quota>,
    pub preload: Vec<Preload>,
    /// What the operator page offers for a bulletin, with the names an operator reads:
    /// `[[topic]]`/`[[language]]`, else the quotas' own (and Vietnamese), with known names.
    pub topics: Vec<Choice>,
    pub languages: Vec<Choice>,
    /// Whether `[[topic]]` / `[[language]]` tables list them (then a bulletin takes only those).
    pub topics_listed: bool,
    pub languages_listed: bool,
    /// Where to push the log, for a box the office cannot reach (`[upstream]`).
    pub upstream: Option<Upstream>,
    /// The auditing office's public key (`[office] public_key`): the only key whose receipts
    /// the station takes. Without it, it takes none.
    pub office: Option<ed25519_dalek::VerifyingKey>,
}

/// The auditing office's `loa district serve`, pushed to after each airing.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `http://host:port`, no path.
    pub url: String,
    /// The push token the office made for this station.
    pub token: String,
    /// The office's key (`[office] public_key`), which its receipts must be signed with.
    pub office_key: ed25519_dalek::VerifyingKey,
    /// For an `https://` url: the SHA-256 of the office's certificate, the only one trusted.
    pub tls_fingerprint: Option<[u8; 32]>,
}

/// An API's base address as configured: `http://` or `https://`, a host, no path. The
/// trailing slash is dropped.
pub fn api_url(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('/');
    let host = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://"))?;
    (!host.is_empty() && !host.contains('/') && !host.contains(char::is_whitespace)).then(|| text.to_owned())
}

/// A token given inline (`token`) or in a file (`token_file`, relative to the config), which
/// must look like a token `loa` makes.
pub(crate) fn token_setting(
    src: &Source,
    table: &str,
    inline: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
    how_to_make: &str,
) -> Result<Option<String>, ConfigError> {
    let base = src.path.parent().unwrap_or(Path::new(""));
    let token = match (inline, file) {
        (Some(t), None) => t.get_ref().trim().to_owned(),
        (None, Some(f)) => {
            let path = base.join(f.get_ref());
            let text = std::fs::read_to_string(&path).map_err(|e| {
                src.invalid(f, &format!("{table}.token_file"), format!("cannot read {} ({e})", path.display()))
            })?;
            text.trim().to_owned()
        }
        (Some(t), Some(_)) => {
            return Err(src.invalid(t, &format!("{table}.token"), "give token or token_file, not both"));
        }
        (None, None) => return Ok(None),
    };
    if !token.starts_with("loa_") || token.len() != 68 || !token[4..].bytes().all(|b| b.is_ascii_hexdigit()) {
        let (at, key) = match inline {
            Some(t) => (t.span(), "token"),
            None => (file.as_ref().expect("one of them is set").span(), "token_file"),
        };
        return Err(src.invalid_at(
            at,
            Some(format!("{table}.{key}")),
            format!("not a token (loa_ and 64 hex digits); {how_to_make}"),
        ));
    }
    Ok(Some(token))
}

/// A topic or language code and its Vietnamese name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Choice {
    pub id: String,
    pub label: String,
}

/// Names for the codes the CCHC plans use, when the config gives none.
const KNOWN_NAMES: [(&str, &str); 12] = [
    ("cchc", "Cải cách hành chính"),
    ("khan-cap", "Khẩn cấp"),
    ("chung", "Thông tin chung"),
    ("thong-bao", "Thông báo"),
    ("an-toan", "An toàn"),
    ("vi", "Tiếng Việt"),
    ("hmn", "Tiếng H'Mông"),
    ("tay", "Tiếng Tày"),
    ("km", "Tiếng Khmer"),
    ("nun", "Tiếng Nùng"),
    ("dao", "Tiếng Dao"),
    ("cjm", "Tiếng Chăm"),
];

pub fn known_name(id: &str) -> String {
    KNOWN_NAMES.iter().find(|(code, _)| *code == id).map_or_else(|| id.to_owned(), |(_, name)| (*name).to_owned())
}

/// A bulletin `loa run` adds to the library at start if it is not there yet (the demo's way of
/// airing something on a newcomer's first run).
#[derive(Debug, Clone)]
pub struct Preload {
    /// Resolved against the config file's directory.
    pub file: PathBuf,
    pub meta: clip::ClipMeta,
}

#[derive(Debug, Clone)]
pub struct Station {
    pub id: String,
    pub name: String,
    pub timezone: chrono_tz::Tz,
    /// Absolute, or relative to the current directory; already resolved against the config file.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Audio {
    pub device: String,
    pub target_lufs: f64,
    pub amplifier: AmplifierHooks,
}

/// Commands that switch the amplifier (e.g. a relay via `gpioset`) around each block of airings.
#[derive(Debug, Clone, Default)]
pub struct AmplifierHooks {
    /// argv run before the first clip of a slot or an emergency block.
    pub before_air: Option<Vec<String>>,
    /// argv run after the block's last clip.
    pub after_air: Option<Vec<String>>,
    /// How long the amplifier needs between `before_air` and the first sound.
    pub warmup: std::time::Duration,
    /// A failed `before_air` fails the airings instead of airing into a dead amplifier.
    pub required: bool,
}

/// How far `loa` trusts the wall clock at start.
#[derive(Debug, Clone, Copy)]
pub struct ClockTrust {
    /// When the clock reads earlier than the last recorded event and is not synchronised,
    /// wait at most this long for NTP before running anyway.
    pub sync_wait: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct Http {
    pub listen: SocketAddr,
    pub max_upload_mib: u64,
    /// Serve `/metrics` without a token (for a Prometheus on the LAN).
    pub metrics_public: bool,
    /// Connections the API holds at once, and from one address: far below the process's file
    /// limit, so the airing's files and device are never refused.
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// HTTPS for the ward LAN, on `tls_listen`; `listen` (plain HTTP) is then loopback only.
    pub tls: Option<TlsSource>,
    pub tls_listen: SocketAddr,
    /// `listen` is a LAN address without TLS, and the admin said so (`allow_plain_lan`): warned
    /// at every start.
    pub plain_lan: bool,
}

/// Where the API's TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// `tls_cert` and `tls_key`, PEM files (resolved against the config file).
    Files { cert: PathBuf, key: PathBuf },
    /// `tls = "self-signed"`: made at first start in `data_dir`; `loa station` prints its
    /// SHA-256 fingerprint for pinning on a phone.
    SelfSigned,
}

/// Bounds on a bulletin's decoded duration, enforced at ingest.
#[derive(Debug, Clone, Copy)]
pub struct ClipLimits {
    pub min_duration_ms: u64,
    pub max_duration_ms: u64,
    /// Uploads are refused when accepting one would leave less than this free beside the
    /// store, so the proof log always has room to grow.
    pub keep_free_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    /// What an operator reads for it: `label`, else its time of day ("Khung giờ 05:30") when
    /// the cron names one, else its name.
    pub label: String,
    pub cron: CronSchedule,
    pub max_minutes: u32,
    pub peak: bool,
    /// A slot found late by at most this much still airs; later than that it is recorded missed.
    pub grace: chrono::TimeDelta,
}

#[derive(Debug, Clone)]
pub struct Quota {
    pub topic: String,
    pub per: QuotaPeriod,
    pub count: u32,
    pub peak_only: bool,
    pub language: Option<String>,
}

impl Quota {
    /// A short self-describing name, recorded on the airings that serve it: `cchc/week`,
    /// `cchc[hmn]/week`, `cchc/month/any-slot`.
    pub fn label(&self) -> String {
        let language = self.language.as_deref().map(|l| format!("[{l}]")).unwrap_or_default();
        let slots = if self.peak_only { "" } else { "/any-slot" };
        format!("{}{language}/{}{slots}", self.topic, self.per.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file ({source}); pass the right file with --config PATH", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {}{message}", path.display(), key.as_deref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
    Invalid { path: PathBuf, line: usize, key: Option<String>, message: String },
}

impl Http {
    /// The operator page's address as a phone on the LAN opens it: HTTPS when it is on.
    pub fn page_url(&self) -> String {
        match self.tls {
            Some(_) => page_url("https", self.tls_listen),
            None => page_url("http", self.listen),
        }
    }
}

/// The page at `address`, for a wildcard listener at the box's LAN address (else its host name).
pub fn page_url(scheme: &str, address: SocketAddr) -> String {
    if !address.ip().is_unspecified() {
        return format!("{scheme}://{address}/");
    }
    let host = crate::ops::sys::lan_address()
        .map(|ip| SocketAddr::new(ip, address.port()).to_string())
        .or_else(|| crate::ops::sys::host_name().map(|name| format!("{name}:{}", address.port())))
        .unwrap_or_else(|| format!("<địa chỉ của đài>:{}", address.port()));
    format!("{scheme}://{host}/")
}

impl Config {
    /// A bulletin's topic and language must be ones this station lists (`[[topic]]`,
    /// `[[language]]`): a typo (`cchcc`) would make a bulletin no quota ever counts; the refusal
    /// names the ones listed. A config without a list takes any well-formed code, as before.
    pub fn check_choices(&self, meta: &clip::ClipMeta) -> Result<(), clip::MetaError> {
        for (field, value, offered, listed) in [
            ("topic", &meta.topic, &self.topics, self.topics_listed),
            ("language", &meta.language, &self.languages, self.languages_listed),
        ] {
            if listed && !offered.iter().any(|c| c.id == *value) {
                let taken: Vec<String> = offered.iter().map(|c| format!("{} ({})", c.id, c.label)).collect();
                let message = format!("\"{value}\" is not one of this station's {field}s: {}", taken.join(", "));
                return Err(clip::MetaError { field, message });
            }
        }
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Unreadable { path: path.to_owned(), source })?;
        Config::parse(path, &text)
    }

    /// Parses `text` as the contents of `path` (used for messages and to resolve `data_dir`).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let source = Source { path, text };
        let raw: RawConfig = toml::from_str(text).map_err(|e| source.syntax_error(&e))?;
        raw.validate(&source)
    }
}
