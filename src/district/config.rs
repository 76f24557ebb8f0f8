//! `district.toml`: the office's own config (the station config is not read). Parsed strictly
//! and validated whole, like the station's: every error names the file, the line and the key.
//! A station's public key is pinned here, by the clerk, from the box itself (`loa station`);
//! it is never learned from what the station sends.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use toml::Spanned;

use crate::config::raw::RawQuota;
use crate::config::source::Source;
use crate::config::{ConfigError, DEFAULT_TIMEZONE, Quota, api_url, token_setting};
use crate::model::clip::is_slug;
use crate::time::calendar::QuotaPeriod;

pub const DEFAULT_PATH: &str = "district.toml";

/// The validated office config.
#[derive(Debug, Clone)]
pub struct DistrictConfig {
    pub path: PathBuf,
    pub name: String,
    pub timezone: Tz,
    /// `district.sqlite` and `district.key` live here.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// HTTPS on `listen` (`tls = "self-signed"`, or `tls_cert` and `tls_key`): clerk and push
    /// tokens do not cross the network in clear, and stations pin the certificate.
    pub tls: Option<crate::config::TlsSource>,
    pub pull_every: Duration,
    /// No successful pull or push for this long raises `unreachable`.
    pub stale_after: chrono::TimeDelta,
    /// How long a pull waits to connect, and for each answer.
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// The most one station's whole pull may take: a station that drips its pages slowly is
    /// `stale` for that round, and the round goes on without it.
    pub pull_deadline: Duration,
    /// Stations pulled at once.
    pub max_parallel_pulls: usize,
    /// What every station is held to (default: one CCHC bulletin a week at peak hours).
    pub quotas: Vec<Quota>,
    pub stations: Vec<StationEntry>,
}

/// One station the office audits.
#[derive(Debug, Clone)]
pub struct StationEntry {
    pub id: String,
    pub name: String,
    /// Where to pull from; `None` for a station that only pushes.
    pub url: Option<String>,
    /// The district-role token the station issued (from `token` or `token_file`).
    pub token: Option<String>,
    /// For an `https://` url: the SHA-256 of the station's certificate (`loa station`).
    pub tls_fingerprint: Option<[u8; 32]>,
    pub public_key: VerifyingKey,
    /// `key_replaced` events the clerk accepted (by seq), having confirmed with the station that
    /// its key was lost: as `loa verify --accept-key-replacement`.
    pub accepted_replacements: Vec<i64>,
}

impl DistrictConfig {
    pub fn load(path: &Path) -> Result<DistrictConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Unreadable { path: path.to_owned(), source })?;
        DistrictConfig::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<DistrictConfig, ConfigError> {
        let src = Source { path, text };
        let raw: RawDistrictConfig = toml::from_str(text).map_err(|e| src.syntax_error(&e))?;
        raw.validate(&src)
    }

    pub fn station(&self, id: &str) -> Option<&StationEntry> {
        self.stations.iter().find(|s| s.id == id)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistrictConfig {
    district: RawDistrict,
    #[serde(default)]
    station: Vec<RawStationEntry>,
    #[serde(default)]
    quota: Vec<RawQuota>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistrict {
    name: Spanned<String>,
    timezone: Option<Spanned<String>>,
    data_dir: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    tls: Option<Spanned<String>>,
    tls_cert: Option<Spanned<String>>,
    tls_key: Option<Spanned<String>>,
    #[serde(default)]
    allow_plain_lan: bool,
    pull_every_minutes: Option<Spanned<i64>>,
    stale_after_hours: Option<Spanned<i64>>,
    connect_timeout_seconds: Option<Spanned<i64>>,
    read_timeout_seconds: Option<Spanned<i64>>,
    pull_deadline_seconds: Option<Spanned<i64>>,
    max_parallel_pulls: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStationEntry {
    id: Spanned<String>,
    name: Spanned<String>,
    url: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    tls_fingerprint: Option<Spanned<String>>,
    public_key: Spanned<String>,
    #[serde(default)]
    accept_key_replacement: Vec<i64>,
}

impl RawDistrictConfig {
    fn validate(self, src: &Source) -> Result<DistrictConfig, ConfigError> {
        let d = self.district;
        let base = src.path.parent().unwrap_or(Path::new(""));
        let name = d.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return Err(src.invalid(&d.name, "district.name", "give the office's name, e.g. \"UBND xã Phú Thủy\""));
        }
        let timezone = match &d.timezone {
            None => DEFAULT_TIMEZONE.parse().expect("default timezone is a valid IANA name"),
            Some(tz) => tz.get_ref().parse().map_err(|_| {
                src.invalid(
                    tz,
                    "district.timezone",
                    format!("unknown timezone \"{}\"; use an IANA name such as \"{DEFAULT_TIMEZONE}\"", tz.get_ref()),
                )
            })?,
        };
        let data_dir = match &d.data_dir {
            Some(dir) if dir.get_ref().trim().is_empty() => {
                return Err(src.invalid(dir, "district.data_dir", "give a directory, e.g. \"district-data\""));
            }
            Some(dir) => base.join(dir.get_ref()),
            None => base.join("district-data"),
        };
        let listen = match &d.listen {
            Some(l) => l.get_ref().parse().map_err(|_| {
                src.invalid(
                    l,
                    "district.listen",
                    format!("\"{}\" is not an address:port, e.g. \"127.0.0.1:8090\"", l.get_ref()),
                )
            })?,
            None => SocketAddr::from(([127, 0, 0, 1], 8090)),
        };
        let tls = crate::config::tls_source(src, "district", &d.tls, &d.tls_cert, &d.tls_key)?;
        if tls.is_none() && !listen.ip().is_loopback() && !d.allow_plain_lan {
            return Err(src.invalid(
                d.listen.as_ref().expect("a LAN address was written"),
                "district.listen",
                "clerk and push tokens would cross the network in clear: add tls = \"self-signed\" (stations pin \
                 its fingerprint, printed by `loa district serve`), or tls_cert and tls_key; or, knowingly, \
                 allow_plain_lan = true",
            ));
        }
        let minutes = |v: i64| format!("{v} is not usable; give 1 to 1440 minutes, e.g. 15");
        let pull_every = src.bounded(&d.pull_every_minutes, "district.pull_every_minutes", 1..=1440, 15, minutes)?;
        let hours = |v: i64| format!("{v} is not usable; give 1 to 8760 hours, e.g. 48");
        let stale_after = src.bounded(&d.stale_after_hours, "district.stale_after_hours", 1..=8760, 48, hours)?;
        let seconds = |v: i64| format!("{v} s is not usable; give 1 to 600 seconds");
        let connect =
            src.bounded(&d.connect_timeout_seconds, "district.connect_timeout_seconds", 1..=600, 5, seconds)?;
        let read = src.bounded(&d.read_timeout_seconds, "district.read_timeout_seconds", 1..=600, 30, seconds)?;
        let deadline =
            src.bounded(&d.pull_deadline_seconds, "district.pull_deadline_seconds", 1..=3600, 60, |v: i64| {
                format!("{v} s is not usable; give 1 to 3600 seconds, e.g. 60")
            })?;
        let parallel = |v: i64| format!("{v} is not usable; give 1 to 1024 stations at once, e.g. 64");
        let max_parallel_pulls =
            src.bounded(&d.max_parallel_pulls, "district.max_parallel_pulls", 1..=1024, 64, parallel)?;

        let mut quotas = Vec::with_capacity(self.quota.len());
        for (i, raw) in self.quota.into_iter().enumerate() {
            quotas.push(raw.parse(src, i)?);
        }
        if quotas.is_empty() {
            // The reform plans' floor: at least one CCHC bulletin a week at peak hours.
            quotas.push(Quota {
                topic: "cchc".into(),
                per: QuotaPeriod::Week,
                count: 1,
                peak_only: true,
                language: None,
            });
        }

        let mut stations: Vec<StationEntry> = Vec::with_capacity(self.station.len());
        for (i, raw) in self.station.into_iter().enumerate() {
            let entry = raw.validate(src, i)?;
            if stations.iter().any(|s| s.id == entry.id) {
                return Err(ConfigError::Invalid {
                    path: src.path.to_owned(),
                    line: 1,
                    key: Some(format!("station[{i}].id")),
                    message: format!("two [[station]] tables have id \"{}\"; each station once", entry.id),
                });
            }
            stations.push(entry);
        }
        Ok(DistrictConfig {
            path: src.path.to_owned(),
            name,
            timezone,
            data_dir,
            listen,
            tls,
            pull_every: Duration::from_secs(pull_every as u64 * 60),
            stale_after: chrono::TimeDelta::hours(stale_after),
            connect_timeout: Duration::from_secs(connect as u64),
            read_timeout: Duration::from_secs(read as u64),
            pull_deadline: Duration::from_secs(deadline as u64),
            max_parallel_pulls: max_parallel_pulls as usize,
            quotas,
            stations,
        })
    }
}

impl RawStationEntry {
    fn validate(self, src: &Source, index: usize) -> Result<StationEntry, ConfigError> {
        let key = |field: &str| format!("station[{index}].{field}");
        let id = self.id.get_ref().clone();
        if !is_slug(&id, "-") {
            return Err(src.invalid(
                &self.id,
                &key("id"),
                "the station's own station.id: lowercase letters, digits and `-`",
            ));
        }
        let name = self.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return Err(src.invalid(
                &self.name,
                &key("name"),
                "give the station's name, e.g. \"Đài truyền thanh phường Phú Thủy\"",
            ));
        }
        let url = match &self.url {
            Some(u) => Some(api_url(u.get_ref()).ok_or_else(|| {
                src.invalid(u, &key("url"), "give the station's API address, e.g. \"http://10.0.0.5:8080\" (no path)")
            })?),
            None => None,
        };
        let how = "make one on the station with `loa token create --role district --label \"…\"`";
        let token = token_setting(src, &format!("station[{index}]"), &self.token, &self.token_file, how)?;
        if url.is_some() && token.is_none() {
            return Err(src.invalid(
                self.url.as_ref().expect("url is set"),
                &key("token"),
                format!(
                    "a station pulled from its url needs a district-role token: token = \"loa_…\" or token_file; {how}"
                ),
            ));
        }
        let whose = "`loa station` on the box";
        let tls_fingerprint = crate::config::pinned_fingerprint(
            src,
            &format!("station[{index}]"),
            &self.tls_fingerprint,
            self.url.as_ref(),
            whose,
        )?;
        let public_key = crate::proof::parse_public_key(self.public_key.get_ref()).map_err(|e| {
            src.invalid(
                &self.public_key,
                &key("public_key"),
                format!("{e}; copy it from `loa station` on the box itself, never from the network"),
            )
        })?;
        if self.accept_key_replacement.iter().any(|seq| *seq < 1) {
            return Err(src.invalid(
                &self.public_key,
                &key("accept_key_replacement"),
                "give the seqs of key_replaced events (1 or more)",
            ));
        }
        let accepted_replacements = self.accept_key_replacement;
        Ok(StationEntry { id, name, url, token, tls_fingerprint, public_key, accepted_replacements })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn parse(text: &str) -> Result<DistrictConfig, ConfigError> {
        DistrictConfig::parse(Path::new("/etc/loa/district.toml"), text)
    }

    #[test]
    fn a_minimal_office_gets_its_defaults() {
        let config = parse(&format!(
            "[district]\nname = \"UBND xã\"\n[[station]]\nid = \"ward-a\"\nname = \"Đài A\"\npublic_key = \"{KEY}\"\n"
        ))
        .unwrap();
        assert_eq!(config.data_dir, Path::new("/etc/loa/district-data"));
        assert_eq!((config.pull_every.as_secs(), config.stale_after.num_hours()), (900, 48));
        assert_eq!(config.listen.to_string(), "127.0.0.1:8090");
        assert_eq!((config.quotas.len(), config.quotas[0].topic.as_str()), (1, "cchc"));
        assert!(config.stations[0].url.is_none() && config.stations[0].token.is_none());
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let bad = |station: &str, key: &str| {
            let text = format!("[district]\nname = \"UBND xã\"\n[[station]]\n{station}");
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(&format!("key `{key}`")) && e.contains("/etc/loa/district.toml:"), "{e}");
        };
        bad(&format!("id = \"Ward A\"\nname = \"A\"\npublic_key = \"{KEY}\"\n"), "station[0].id");
        bad("id = \"a\"\nname = \"A\"\npublic_key = \"zz\"\n", "station[0].public_key");
        bad(
            &format!("id = \"a\"\nname = \"A\"\nurl = \"ftp://x\"\ntoken = \"loa_\"\npublic_key = \"{KEY}\"\n"),
            "station[0].url",
        );
        bad(
            &format!("id = \"a\"\nname = \"A\"\nurl = \"http://x:8080\"\npublic_key = \"{KEY}\"\n"),
            "station[0].token",
        );
        bad(&format!("id = \"a\"\nname = \"A\"\ntoken = \"secret\"\npublic_key = \"{KEY}\"\n"), "station[0].token");
        bad(&format!("id = \"a\"\nname = \"A\"\ncolour = \"red\"\npublic_key = \"{KEY}\"\n"), "station[0].colour");
        let e = parse("[district]\nname = \"x\"\npull_every_minutes = 0\n").unwrap_err().to_string();
        assert!(e.contains("district.pull_every_minutes") && e.contains(":3:"), "{e}");
    }
}
