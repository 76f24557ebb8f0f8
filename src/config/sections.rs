//! The checks of the one-of tables: `[audio]`, `[clock]`, `[http]`, `[clips]`, and each
//! `[[quota]]`; every bound names its key, its line and a usable value.

use std::net::SocketAddr;

use toml::Spanned;

use super::*;
use crate::model::clip::{self};
use crate::time::calendar::QuotaPeriod;

use super::raw::*;

impl RawAudio {
    pub(super) fn validate(self, src: &Source) -> Result<Audio, ConfigError> {
        let device = match &self.device {
            Some(d) if d.get_ref().trim().is_empty() => {
                return Err(src.invalid(d, "audio.device", "give an ALSA PCM name, e.g. \"default\" or \"hw:0,0\""));
            }
            Some(d) => d.get_ref().clone(),
            None => "default".to_owned(),
        };
        let target_lufs = src.bounded(&self.target_lufs, "audio.target_lufs", -40.0..=0.0, -16.0, |t| {
            format!("{t} is outside -40..0 LUFS; speech for loudspeakers is usually -16")
        })?;
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
        let warmup_ms = src.bounded(&self.warmup_ms, "audio.warmup_ms", 0..=MAX_WARMUP_MS, 0, |w| {
            format!("{w} ms is not usable; give 0 to {MAX_WARMUP_MS} ms, e.g. 1500")
        })? as u64;
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
    pub(super) fn validate(self, src: &Source) -> Result<ClockTrust, ConfigError> {
        let seconds = src.bounded(
            &self.sync_wait_seconds,
            "clock.sync_wait_seconds",
            0..=86_400,
            DEFAULT_SYNC_WAIT_SECONDS as i64,
            |s| format!("{s} s is not usable; give 0 to 86400 seconds, e.g. 600"),
        )? as u64;
        Ok(ClockTrust { sync_wait: std::time::Duration::from_secs(seconds) })
    }
}

impl RawHttp {
    pub(super) fn validate(self, src: &Source) -> Result<Http, ConfigError> {
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
        let outside = |low, high| move |v| format!("{v} is outside {low} to {high}");
        let max_connections =
            src.bounded(&self.max_connections, "http.max_connections", 4..=4096, 256, outside(4, 4096))? as usize;
        let max_connections_per_peer = src.bounded(
            &self.max_connections_per_peer,
            "http.max_connections_per_peer",
            1..=4096,
            32,
            outside(1, 4096),
        )? as usize;
        let tls = super::secure::tls_source(src, "http", &self.tls, &self.tls_cert, &self.tls_key)?;
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
        let plain_lan = tls.is_none() && !listen.ip().is_loopback();
        if plain_lan && !self.allow_plain_lan {
            let at = self.listen.as_ref().expect("a LAN address was written");
            return Err(src.invalid(
                at,
                "http.listen",
                format!(
                    "plain HTTP on {listen} sends the operator's token in clear over the LAN: turn TLS on \
                     (tls = \"self-signed\"; phones use https on http.tls_listen) and keep listen = \"127.0.0.1:{}\"; \
                     or, only on a LAN you trust, add allow_plain_lan = true",
                    listen.port()
                ),
            ));
        }
        Ok(Http {
            plain_lan,
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

/// The limits when a config names none (the office's gate has no `[clips]`).
impl Default for ClipLimits {
    fn default() -> Self {
        ClipLimits {
            min_duration_ms: (DEFAULT_MIN_SECONDS * 1000.0) as u64,
            max_duration_ms: (DEFAULT_MAX_SECONDS * 1000.0) as u64,
            keep_free_bytes: DEFAULT_KEEP_FREE_MIB as u64 * 1024 * 1024,
        }
    }
}

const DEFAULT_MIN_SECONDS: f64 = 1.0;
const DEFAULT_MAX_SECONDS: f64 = 1800.0;

impl RawClips {
    pub(super) fn validate(self, src: &Source) -> Result<ClipLimits, ConfigError> {
        let seconds = |value: &Option<Spanned<f64>>, key: &str, default: f64| match value {
            Some(v) if !(v.get_ref().is_finite() && *v.get_ref() > 0.0) => {
                Err(src.invalid(v, key, format!("{} is not a positive number of seconds", v.get_ref())))
            }
            Some(v) => Ok(*v.get_ref()),
            None => Ok(default),
        };
        let min = seconds(&self.min_seconds, "clips.min_seconds", DEFAULT_MIN_SECONDS)?;
        let max = seconds(&self.max_seconds, "clips.max_seconds", DEFAULT_MAX_SECONDS)?;
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
    pub(super) fn validate(self, src: &Source, index: usize, slots: &[Slot]) -> Result<Quota, ConfigError> {
        let topic = self.topic.clone();
        let quota = self.parse(src, index)?;
        let can_be_served = if quota.peak_only { slots.iter().any(|s| s.peak) } else { !slots.is_empty() };
        if !can_be_served {
            let what = if quota.peak_only { "no [[slot]] has `peak = true`" } else { "there is no [[slot]]" };
            return Err(src.invalid(
                &topic,
                &format!("quota[{index}].topic"),
                format!("this quota can never be met: {what}; add one or set `peak_only = false`"),
            ));
        }
        Ok(quota)
    }

    /// The quota as written, checked on its own (the office's quotas have no slots to check).
    pub(crate) fn parse(self, src: &Source, index: usize) -> Result<Quota, ConfigError> {
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
        let count = src.bounded(&self.count, &key("count"), 1..=1000, 1, |c| {
            format!("{c} airings per period is not usable; give 1 or more")
        })? as u32;
        let language = match &self.language {
            Some(l) => {
                clip::check_language(l.get_ref()).map_err(|e| src.invalid(l, &key("language"), e))?;
                Some(l.get_ref().clone())
            }
            None => None,
        };
        let peak_only = self.peak_only.unwrap_or(true);
        Ok(Quota { topic, per, count, peak_only, language })
    }
}
