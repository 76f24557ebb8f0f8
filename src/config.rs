//! The station's configuration: parsed strictly, validated completely, up front.
//!
//! A typo in a slot must surface when the admin runs `loa check-config`, not at 05:30 when the
//! slot should have aired. So unknown keys are errors, and every error names the file, the line,
//! the key and how to fix it. The raw TOML shapes (`Raw*`) stay private; the rest of the program
//! only sees the validated [`Config`].

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::model::clip::{self, is_slug};
use crate::time::calendar::QuotaPeriod;
use crate::time::slots::CronSchedule;

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

fn known_name(id: &str) -> String {
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

impl Config {
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

/// The config text being validated, so errors can point at lines.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }

    fn invalid<T>(&self, value: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        self.invalid_at(value.span(), Some(key.to_owned()), message.into())
    }

    fn invalid_at(&self, span: Range<usize>, key: Option<String>, message: String) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_owned(), line: self.line_of(span.start), key, message }
    }

    /// The table a line at `offset` belongs to, as the validator names it: `audio`, `slot[2]`.
    fn table_at(&self, offset: usize) -> Option<String> {
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
    fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span().unwrap_or(0..0);
        let line_start = self.text[..span.start.min(self.text.len())].rfind('\n').map_or(0, |i| i + 1);
        let line_text = self.text[line_start..].lines().next().unwrap_or("");
        let key = line_text
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
            .map(|key| self.table_at(line_start).map_or_else(|| key.to_owned(), |table| format!("{table}.{key}")));
        let message = error.message().trim().replace('\n', " ");
        self.invalid_at(span, key, message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    station: RawStation,
    #[serde(default)]
    audio: RawAudio,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    clips: RawClips,
    #[serde(default)]
    clock: RawClock,
    #[serde(default)]
    slot: Vec<RawSlot>,
    #[serde(default)]
    quota: Vec<RawQuota>,
    #[serde(default)]
    preload: Vec<RawPreload>,
    #[serde(default)]
    topic: Vec<RawChoice>,
    #[serde(default)]
    language: Vec<RawChoice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChoice {
    id: Spanned<String>,
    label: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreload {
    file: Spanned<String>,
    title: Spanned<String>,
    topic: Spanned<String>,
    language: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    id: Spanned<String>,
    name: Spanned<String>,
    timezone: Option<Spanned<String>>,
    data_dir: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudio {
    device: Option<Spanned<String>>,
    target_lufs: Option<Spanned<f64>>,
    before_air: Option<Spanned<Vec<String>>>,
    after_air: Option<Spanned<Vec<String>>>,
    warmup_ms: Option<Spanned<i64>>,
    hook_required: Option<Spanned<bool>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<Spanned<String>>,
    max_upload_mib: Option<Spanned<i64>>,
    #[serde(default)]
    metrics_public: bool,
    max_connections: Option<Spanned<i64>>,
    max_connections_per_peer: Option<Spanned<i64>>,
    tls: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    tls_listen: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClips {
    min_seconds: Option<Spanned<f64>>,
    max_seconds: Option<Spanned<f64>>,
    keep_free_mib: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClock {
    sync_wait_seconds: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlot {
    name: Spanned<String>,
    cron: Spanned<String>,
    max_minutes: Spanned<i64>,
    #[serde(default)]
    peak: bool,
    grace_seconds: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuota {
    topic: Spanned<String>,
    per: Spanned<String>,
    count: Option<Spanned<i64>>,
    peak_only: Option<bool>,
    language: Option<Spanned<String>>,
}

const MAX_SLOT_MINUTES: i64 = 24 * 60;
const MAX_WARMUP_MS: i64 = 30_000;
const DEFAULT_SYNC_WAIT_SECONDS: u64 = 600;
const DEFAULT_KEEP_FREE_MIB: i64 = 200;
const DEFAULT_GRACE_SECONDS: i64 = 300;

impl RawConfig {
    fn validate(self, src: &Source) -> Result<Config, ConfigError> {
        let station = self.station.validate(src)?;
        let audio = self.audio.validate(src)?;
        let http = self.http.validate(src)?;
        let clips = self.clips.validate(src)?;
        let clock = self.clock.validate(src)?;

        let mut slots: Vec<Slot> = Vec::with_capacity(self.slot.len());
        for (i, raw) in self.slot.into_iter().enumerate() {
            let key = |field: &str| format!("slot[{i}].{field}");
            let name = raw.name.get_ref().trim().to_owned();
            if !is_slug(&name, "_-") {
                return Err(src.invalid(
                    &raw.name,
                    &key("name"),
                    "slot names use lowercase letters, digits, `-` and `_`, e.g. \"sang\" or \"chieu\"",
                ));
            }
            if slots.iter().any(|s| s.name == name) {
                return Err(src.invalid(
                    &raw.name,
                    &key("name"),
                    format!("two slots are named \"{name}\"; give each [[slot]] its own name"),
                ));
            }
            let cron = CronSchedule::parse(raw.cron.get_ref()).map_err(|e| src.invalid(&raw.cron, &key("cron"), e))?;
            let minutes = *raw.max_minutes.get_ref();
            if !(1..=MAX_SLOT_MINUTES).contains(&minutes) {
                return Err(src.invalid(
                    &raw.max_minutes,
                    &key("max_minutes"),
                    format!("{minutes} is not a usable slot length; give whole minutes from 1 to {MAX_SLOT_MINUTES}, e.g. 15"),
                ));
            }
            let grace = match &raw.grace_seconds {
                Some(g) if !(0..=86_400).contains(g.get_ref()) => {
                    return Err(src.invalid(
                        g,
                        &key("grace_seconds"),
                        format!("{} s is not usable; give 0 to 86400 seconds, e.g. 300", g.get_ref()),
                    ));
                }
                Some(g) => *g.get_ref(),
                None => DEFAULT_GRACE_SECONDS,
            };
            slots.push(Slot {
                name,
                cron,
                max_minutes: minutes as u32,
                peak: raw.peak,
                grace: chrono::TimeDelta::seconds(grace),
            });
        }

        let mut quotas = Vec::with_capacity(self.quota.len());
        for (i, raw) in self.quota.into_iter().enumerate() {
            quotas.push(raw.validate(src, i, &slots)?);
        }

        let base = src.path.parent().unwrap_or(Path::new(""));
        let mut preload = Vec::with_capacity(self.preload.len());
        for (i, raw) in self.preload.into_iter().enumerate() {
            let key = |field: &str| format!("preload[{i}].{field}");
            let meta = clip::ClipMeta {
                title: raw.title.get_ref().clone(),
                topic: raw.topic.get_ref().clone(),
                language: raw.language.as_ref().map_or_else(|| "vi".to_owned(), |l| l.get_ref().clone()),
                priority: clip::Priority::Normal,
                valid_from: None,
                valid_until: None,
            };
            if let Err(e) = meta.check() {
                let at = match e.field {
                    "title" => &raw.title,
                    "topic" => &raw.topic,
                    _ => raw.language.as_ref().unwrap_or(&raw.topic),
                };
                return Err(src.invalid(at, &key(e.field), e.message));
            }
            preload.push(Preload { file: base.join(raw.file.get_ref()), meta });
        }

        let topics = choices(
            src,
            "topic",
            self.topic,
            &quotas,
            |q| Some(q.topic.clone()),
            &["cchc"],
            crate::model::clip::check_topic,
        )?;
        let languages = choices(
            src,
            "language",
            self.language,
            &quotas,
            |q| q.language.clone(),
            &["vi"],
            crate::model::clip::check_language,
        )?;
        Ok(Config {
            path: src.path.to_owned(),
            station,
            audio,
            http,
            clips,
            clock,
            slots,
            quotas,
            preload,
            topics,
            languages,
        })
    }
}

/// `[[topic]]` or `[[language]]` entries, checked; without any, `always` and the codes the
/// quotas use, with known names.
fn choices(
    src: &Source,
    table: &str,
    raw: Vec<RawChoice>,
    quotas: &[Quota],
    quota_code: impl Fn(&Quota) -> Option<String>,
    always: &[&str],
    check: fn(&str) -> Result<(), String>,
) -> Result<Vec<Choice>, ConfigError> {
    if raw.is_empty() {
        let mut ids: Vec<String> = always.iter().map(|id| (*id).to_owned()).collect();
        for id in quotas.iter().filter_map(quota_code) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        return Ok(ids.into_iter().map(|id| Choice { label: known_name(&id), id }).collect());
    }
    let mut out: Vec<Choice> = Vec::with_capacity(raw.len());
    for (i, choice) in raw.into_iter().enumerate() {
        let id = choice.id.get_ref().clone();
        check(&id).map_err(|message| src.invalid(&choice.id, &format!("{table}[{i}].id"), message))?;
        if out.iter().any(|c| c.id == id) {
            return Err(src.invalid(&choice.id, &format!("{table}[{i}].id"), format!("\"{id}\" is listed twice")));
        }
        let label = choice.label.get_ref().trim().to_owned();
        if label.is_empty() || label.chars().count() > 60 {
            return Err(src.invalid(
                &choice.label,
                &format!("{table}[{i}].label"),
                "give the name an operator reads, up to 60 characters, e.g. \"Cải cách hành chính\"",
            ));
        }
        out.push(Choice { id, label });
    }
    // A quota's topic or language the operator cannot choose could never be met from the page.
    if let Some(missing) = quotas.iter().filter_map(&quota_code).find(|code| !out.iter().any(|c| c.id == *code)) {
        return Err(ConfigError::Invalid {
            path: src.path.to_owned(),
            line: 1,
            key: Some(table.to_owned()),
            message: format!("a quota uses {table} \"{missing}\", which no [[{table}]] lists; add it with its name"),
        });
    }
    Ok(out)
}

impl RawStation {
    fn validate(self, src: &Source) -> Result<Station, ConfigError> {
        let id = self.id.get_ref().clone();
        if !is_slug(&id, "-") {
            return Err(src.invalid(
                &self.id,
                "station.id",
                "use lowercase letters, digits and `-` only, e.g. \"phu-thuy\"",
            ));
        }
        let name = self.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return Err(src.invalid(
                &self.name,
                "station.name",
                "give the station's name, e.g. \"Đài truyền thanh phường Phú Thủy\"",
            ));
        }
        let timezone = match &self.timezone {
            None => DEFAULT_TIMEZONE.parse().expect("default timezone is a valid IANA name"),
            Some(tz) => tz.get_ref().parse().map_err(|_| {
                src.invalid(
                    tz,
                    "station.timezone",
                    format!("unknown timezone \"{}\"; use an IANA name such as \"{DEFAULT_TIMEZONE}\"", tz.get_ref()),
                )
            })?,
        };
        let data_dir = match &self.data_dir {
            Some(dir) if dir.get_ref().trim().is_empty() => {
                return Err(src.invalid(
                    dir,
                    "station.data_dir",
                    "give a directory for the database and clips, e.g. \"data\" or \"/var/lib/loa\"",
                ));
            }
            Some(dir) => PathBuf::from(dir.get_ref()),
            None => PathBuf::from("data"),
        };
        let base = src.path.parent().unwrap_or(Path::new(""));
        Ok(Station { id, name, timezone, data_dir: base.join(data_dir) })
    }
}

impl RawAudio {
    fn validate(self, src: &Source) -> Result<Audio, ConfigError> {
        let device = match &self.device {
            Some(d) if d.get_ref().trim().is_empty() => {
                return Err(src.invalid(d, "audio.device", "give an ALSA PCM name, e.g. \"default\" or \"hw:0,0\""));
            }
            Some(d) => d.get_ref().clone(),
            None => "default".to_owned(),
        };
        let target_lufs = match &self.target_lufs {
            Some(t) if !(-40.0..=0.0).contains(t.get_ref()) => {
                return Err(src.invalid(
                    t,
                    "audio.target_lufs",
                    format!("{} is outside -40..0 LUFS; speech for loudspeakers is usually -16", t.get_ref()),
                ));
            }
            Some(t) => *t.get_ref(),
            None => -16.0,
        };
        let argv = |value: &Option<Spanned<Vec<String>>>, key: &str| {
            match value {
            Some(v) if v.get_ref().first().is_none_or(|program| program.trim().is_empty()) => Err(src.invalid(
                v,
                key,
                "give the command as an argument list whose first item is the program, e.g. [\"gpioset\", \"gpiochip0\", \"17=1\"]",
            )),
            Some(v) => Ok(Some(v.get_ref().clone())),
            None => Ok(None),
        }
        };
        let before_air = argv(&self.before_air, "audio.before_air")?;
        let after_air = argv(&self.after_air, "audio.after_air")?;
        let warmup_ms = match &self.warmup_ms {
            Some(w) if !(0..=MAX_WARMUP_MS).contains(w.get_ref()) => {
                return Err(src.invalid(
                    w,
                    "audio.warmup_ms",
                    format!("{} ms is not usable; give 0 to {MAX_WARMUP_MS} ms, e.g. 1500", w.get_ref()),
                ));
            }
            Some(w) => *w.get_ref() as u64,
            None => 0,
        };
        let required = match &self.hook_required {
            Some(r) if *r.get_ref() && before_air.is_none() => {
                return Err(src.invalid(
                    r,
                    "audio.hook_required",
                    "there is no audio.before_air command to require; set one or remove hook_required",
                ));
            }
            Some(r) => *r.get_ref(),
            None => false,
        };
        let amplifier =
            AmplifierHooks { before_air, after_air, warmup: std::time::Duration::from_millis(warmup_ms), required };
        Ok(Audio { device, target_lufs, amplifier })
    }
}

impl RawClock {
    fn validate(self, src: &Source) -> Result<ClockTrust, ConfigError> {
        let seconds = match &self.sync_wait_seconds {
            Some(s) if !(0..=86_400).contains(s.get_ref()) => {
                return Err(src.invalid(
                    s,
                    "clock.sync_wait_seconds",
                    format!("{} s is not usable; give 0 to 86400 seconds, e.g. 600", s.get_ref()),
                ));
            }
            Some(s) => *s.get_ref() as u64,
            None => DEFAULT_SYNC_WAIT_SECONDS,
        };
        Ok(ClockTrust { sync_wait: std::time::Duration::from_secs(seconds) })
    }
}

impl RawHttp {
    fn validate(self, src: &Source) -> Result<Http, ConfigError> {
        let listen = match &self.listen {
            Some(l) => l.get_ref().parse().map_err(|_| {
                src.invalid(
                    l,
                    "http.listen",
                    format!(
                        "\"{}\" is not an address:port; use e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\" for the LAN",
                        l.get_ref()
                    ),
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let max_upload_mib = match &self.max_upload_mib {
            Some(m) if *m.get_ref() < 1 => {
                return Err(src.invalid(
                    m,
                    "http.max_upload_mib",
                    format!("{} MiB would refuse every upload; give at least 1, e.g. 200", m.get_ref()),
                ));
            }
            Some(m) => *m.get_ref() as u64,
            None => 200,
        };
        let bounded =
            |value: &Option<Spanned<i64>>, key: &str, range: std::ops::RangeInclusive<i64>, default| match value {
                Some(v) if !range.contains(v.get_ref()) => {
                    Err(src.invalid(v, key, format!("{} is outside {} to {}", v.get_ref(), range.start(), range.end())))
                }
                Some(v) => Ok(*v.get_ref() as usize),
                None => Ok(default),
            };
        let max_connections = bounded(&self.max_connections, "http.max_connections", 4..=4096, 256)?;
        let max_connections_per_peer =
            bounded(&self.max_connections_per_peer, "http.max_connections_per_peer", 1..=4096, 32)?;
        let base = src.path.parent().unwrap_or(Path::new(""));
        let tls = match (&self.tls, &self.tls_cert, &self.tls_key) {
            (None, None, None) => None,
            (Some(mode), None, None) if mode.get_ref() == "self-signed" => Some(TlsSource::SelfSigned),
            (Some(mode), _, _) => {
                return Err(src.invalid(
                    mode,
                    "http.tls",
                    format!(
                        "\"{}\" is not a TLS setting; write tls = \"self-signed\" alone, or give tls_cert and tls_key \
                         (PEM files) without tls",
                        mode.get_ref()
                    ),
                ));
            }
            (None, Some(cert), Some(key)) => {
                Some(TlsSource::Files { cert: base.join(cert.get_ref()), key: base.join(key.get_ref()) })
            }
            (None, Some(one), None) | (None, None, Some(one)) => {
                return Err(src.invalid(
                    one,
                    if self.tls_cert.is_some() { "http.tls_cert" } else { "http.tls_key" },
                    "give both tls_cert and tls_key (PEM files), or tls = \"self-signed\"",
                ));
            }
        };
        let tls_listen = match &self.tls_listen {
            Some(l) => l.get_ref().parse().map_err(|_| {
                src.invalid(
                    l,
                    "http.tls_listen",
                    format!("\"{}\" is not an address:port; e.g. \"0.0.0.0:8443\"", l.get_ref()),
                )
            })?,
            None => SocketAddr::from(([0, 0, 0, 0], 8443)),
        };
        if let (Some(_), Some(l)) = (&tls, &self.listen) {
            if !listen.ip().is_loopback() {
                return Err(src.invalid(
                    l,
                    "http.listen",
                    format!(
                        "with TLS on, plain HTTP stays on this box: use \"127.0.0.1:{}\" here; phones and the \
                         LAN use https on http.tls_listen ({tls_listen})",
                        listen.port()
                    ),
                ));
            }
        }
        Ok(Http {
            listen,
            max_upload_mib,
            metrics_public: self.metrics_public,
            max_connections,
            max_connections_per_peer,
            tls,
            tls_listen,
        })
    }
}

impl RawClips {
    fn validate(self, src: &Source) -> Result<ClipLimits, ConfigError> {
        let seconds = |value: &Option<Spanned<f64>>, key: &str, default: f64| match value {
            Some(v) if !(v.get_ref().is_finite() && *v.get_ref() > 0.0) => {
                Err(src.invalid(v, key, format!("{} is not a positive number of seconds", v.get_ref())))
            }
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        };
        let min = seconds(&self.min_seconds, "clips.min_seconds", 1.0)?;
        let max = seconds(&self.max_seconds, "clips.max_seconds", 1800.0)?;
        if max < min {
            let at = self.max_seconds.as_ref().or(self.min_seconds.as_ref()).expect("one bound was given");
            return Err(src.invalid(at, "clips.max_seconds", format!("{max} s is below clips.min_seconds ({min} s)")));
        }
        let keep_free_mib = match &self.keep_free_mib {
            Some(k) if *k.get_ref() < 0 => {
                return Err(src.invalid(
                    k,
                    "clips.keep_free_mib",
                    format!("{} MiB is negative; give 0 or more, e.g. {DEFAULT_KEEP_FREE_MIB}", k.get_ref()),
                ));
            }
            Some(k) => *k.get_ref(),
            None => DEFAULT_KEEP_FREE_MIB,
        };
        Ok(ClipLimits {
            min_duration_ms: (min * 1000.0).round() as u64,
            max_duration_ms: (max * 1000.0).round() as u64,
            keep_free_bytes: keep_free_mib as u64 * 1024 * 1024,
        })
    }
}

impl RawQuota {
    fn validate(self, src: &Source, index: usize, slots: &[Slot]) -> Result<Quota, ConfigError> {
        let key = |field: &str| format!("quota[{index}].{field}");
        let topic = self.topic.get_ref().clone();
        clip::check_topic(&topic).map_err(|e| src.invalid(&self.topic, &key("topic"), e))?;
        let per = match self.per.get_ref().as_str() {
            "week" => QuotaPeriod::Week,
            "month" => QuotaPeriod::Month,
            other => {
                return Err(src.invalid(
                    &self.per,
                    &key("per"),
                    format!("\"{other}\" is not a period; use \"week\" (ISO week, Mon–Sun) or \"month\""),
                ));
            }
        };
        let count = match &self.count {
            Some(c) if !(1..=1000).contains(c.get_ref()) => {
                return Err(src.invalid(
                    c,
                    &key("count"),
                    format!("{} airings per period is not usable; give 1 or more", c.get_ref()),
                ));
            }
            Some(c) => *c.get_ref() as u32,
            None => 1,
        };
        let language = match &self.language {
            Some(l) => {
                clip::check_language(l.get_ref()).map_err(|e| src.invalid(l, &key("language"), e))?;
                Some(l.get_ref().clone())
            }
            None => None,
        };
        let peak_only = self.peak_only.unwrap_or(true);
        let can_be_served = if peak_only { slots.iter().any(|s| s.peak) } else { !slots.is_empty() };
        if !can_be_served {
            let what = if peak_only { "no [[slot]] has `peak = true`" } else { "there is no [[slot]]" };
            return Err(src.invalid(
                &self.topic,
                &key("topic"),
                format!("this quota can never be met: {what}; add one or set `peak_only = false`"),
            ));
        }
        Ok(Quota { topic, per, count, peak_only, language })
    }
}
