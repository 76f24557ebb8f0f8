//! The TOML shapes as written (`Raw*`, unknown keys refused) and the checks that turn the whole
//! file into a [`Config`]: slots, quotas, topics and languages, the station table.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::*;
use crate::model::clip::{self, is_slug};
use crate::time::slots::CronSchedule;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) station: RawStation,
    #[serde(default)]
    pub(super) audio: RawAudio,
    #[serde(default)]
    pub(super) http: RawHttp,
    #[serde(default)]
    pub(super) clips: RawClips,
    #[serde(default)]
    pub(super) clock: RawClock,
    #[serde(default)]
    pub(super) slot: Vec<RawSlot>,
    #[serde(default)]
    pub(super) quota: Vec<RawQuota>,
    #[serde(default)]
    pub(super) preload: Vec<RawPreload>,
    #[serde(default)]
    pub(super) topic: Vec<RawChoice>,
    #[serde(default)]
    pub(super) language: Vec<RawChoice>,
    pub(super) upstream: Option<RawUpstream>,
    pub(super) office: Option<RawOffice>,
}

/// `[office]`: the auditing office this station answers to, pinned by its key.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOffice {
    pub(super) public_key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) url: Spanned<String>,
    pub(super) token: Option<Spanned<String>>,
    pub(super) token_file: Option<Spanned<String>>,
    pub(super) tls_fingerprint: Option<Spanned<String>>,
}

impl RawUpstream {
    pub(super) fn validate(
        self,
        src: &Source,
        office_key: ed25519_dalek::VerifyingKey,
    ) -> Result<Upstream, ConfigError> {
        let url = api_url(self.url.get_ref()).ok_or_else(|| {
            src.invalid(&self.url, "upstream.url", "give the office's address, e.g. \"http://10.0.0.1:8090\" (no path)")
        })?;
        let how = "ask the office for one: `loa district token create --station ID`";
        let token = token_setting(src, "upstream", &self.token, &self.token_file, how)?.ok_or_else(|| {
            src.invalid(
                &self.url,
                "upstream.token",
                format!("the office needs a push token: token = \"loa_…\" or token_file; {how}"),
            )
        })?;
        let whose = "`loa district serve` (its first line) at the office";
        let tls_fingerprint = pinned_fingerprint(src, "upstream", &self.tls_fingerprint, Some(&self.url), whose)?;
        Ok(Upstream { url, token, office_key, tls_fingerprint })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChoice {
    pub(super) id: Spanned<String>,
    pub(super) label: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPreload {
    pub(super) file: Spanned<String>,
    pub(super) title: Spanned<String>,
    pub(super) topic: Spanned<String>,
    pub(super) language: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStation {
    pub(super) id: Spanned<String>,
    pub(super) name: Spanned<String>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) data_dir: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudio {
    pub(super) device: Option<Spanned<String>>,
    pub(super) target_lufs: Option<Spanned<f64>>,
    pub(super) before_air: Option<Spanned<Vec<String>>>,
    pub(super) after_air: Option<Spanned<Vec<String>>>,
    pub(super) warmup_ms: Option<Spanned<i64>>,
    pub(super) hook_required: Option<Spanned<bool>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) max_upload_mib: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) metrics_public: bool,
    pub(super) max_connections: Option<Spanned<i64>>,
    pub(super) max_connections_per_peer: Option<Spanned<i64>>,
    pub(super) tls: Option<Spanned<String>>,
    pub(super) tls_cert: Option<Spanned<String>>,
    pub(super) tls_key: Option<Spanned<String>>,
    pub(super) tls_listen: Option<Spanned<String>>,
    /// Plain HTTP on a LAN address, knowingly (tokens then cross the LAN in clear).
    #[serde(default)]
    pub(super) allow_plain_lan: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClips {
    pub(super) min_seconds: Option<Spanned<f64>>,
    pub(super) max_seconds: Option<Spanned<f64>>,
    pub(super) keep_free_mib: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClock {
    pub(super) sync_wait_seconds: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlot {
    pub(super) name: Spanned<String>,
    pub(super) cron: Spanned<String>,
    pub(super) max_minutes: Spanned<i64>,
    #[serde(default)]
    pub(super) peak: bool,
    pub(super) grace_seconds: Option<Spanned<i64>>,
    pub(super) label: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuota {
    pub(super) topic: Spanned<String>,
    pub(super) per: Spanned<String>,
    pub(super) count: Option<Spanned<i64>>,
    pub(super) peak_only: Option<bool>,
    pub(super) language: Option<Spanned<String>>,
}

pub(super) const MAX_SLOT_MINUTES: i64 = 24 * 60;
pub(super) const MAX_WARMUP_MS: i64 = 30_000;
pub(super) const DEFAULT_SYNC_WAIT_SECONDS: u64 = 600;
pub(super) const DEFAULT_KEEP_FREE_MIB: i64 = 200;
pub(super) const DEFAULT_GRACE_SECONDS: i64 = 300;

impl RawConfig {
    pub(super) fn validate(self, src: &Source) -> Result<Config, ConfigError> {
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
            let grace =
                src.bounded(&raw.grace_seconds, &key("grace_seconds"), 0..=86_400, DEFAULT_GRACE_SECONDS, |g| {
                    format!("{g} s is not usable; give 0 to 86400 seconds, e.g. 300")
                })?;
            let label = match &raw.label {
                Some(label) => {
                    let text = label.get_ref().trim();
                    if text.is_empty() || text.chars().count() > 60 {
                        return Err(src.invalid(
                            label,
                            &key("label"),
                            "give the name an operator reads, up to 60 characters, e.g. \"Bản tin sáng\"",
                        ));
                    }
                    text.to_owned()
                }
                None => time_of_day(raw.cron.get_ref()).unwrap_or_else(|| name.clone()),
            };
            slots.push(Slot {
                name,
                label,
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
            let file = base.join(raw.file.get_ref());
            if !file.is_file() {
                let why = match std::fs::metadata(&file) {
                    Ok(_) => "is not a file".to_owned(),
                    Err(e) => format!("cannot be read ({e})"),
                };
                return Err(src.invalid(
                    &raw.file,
                    &key("file"),
                    format!("{} {why}; give the path of an MP3 (relative to this config file)", file.display()),
                ));
            }
            preload.push(Preload { file, meta });
        }

        let (topics_listed, languages_listed) = (!self.topic.is_empty(), !self.language.is_empty());
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
        let office = match self.office {
            Some(office) => Some(crate::model::key::parse_public_key(office.public_key.get_ref()).map_err(|e| {
                src.invalid(
                    &office.public_key,
                    "office.public_key",
                    format!("{e}; copy office_key from `loa district status --json` on the office's machine"),
                )
            })?),
            None => None,
        };
        let upstream = match (self.upstream, office) {
            (Some(upstream), Some(key)) => Some(upstream.validate(src, key)?),
            (Some(upstream), None) => {
                return Err(src.invalid(
                    &upstream.url,
                    "office.public_key",
                    "[upstream] pushes to an office whose receipts the station must be able to check: add \
                     [office] public_key = \"…\" (office_key from `loa district status --json`)",
                ));
            }
            (None, _) => None,
        };
        let config = Config {
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
            topics_listed,
            languages_listed,
            upstream,
            office,
        };
        // A preload's topic and language must be ones the station takes, as an upload's.
        for (i, item) in config.preload.iter().enumerate() {
            config.check_choices(&item.meta).map_err(|e| ConfigError::Invalid {
                path: src.path.to_owned(),
                line: 1,
                key: Some(format!("preload[{i}].{}", e.field)),
                message: e.message,
            })?;
        }
        Ok(config)
    }
}

/// `[[topic]]` or `[[language]]` entries, checked; without any, `always` and the codes the
/// quotas use, with known names.
/// "Khung giờ 05:30" for a cron that fires at one time of day (`0 30 5 * * Mon-Fri`).
fn time_of_day(cron: &str) -> Option<String> {
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let (minute, hour) = (fields.get(1)?.parse::<u32>().ok()?, fields.get(2)?.parse::<u32>().ok()?);
    (minute < 60 && hour < 24).then(|| format!("Khung giờ {hour:02}:{minute:02}"))
}

pub(super) fn choices(
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
    pub(super) fn validate(self, src: &Source) -> Result<Station, ConfigError> {
        let id = self.id.get_ref().clone();
        if id.trim().is_empty() {
            return Err(src.invalid(
                &self.id,
                "station.id",
                "not set: write this station's own id (lowercase letters, digits and `-`, e.g. \"phu-thuy\"); \
                 every proof record carries it, and the station stays off air until it is set",
            ));
        }
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
