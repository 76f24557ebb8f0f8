//! `loa check-config` and `loa station`: what an admin reads before and after installing.

use super::*;

pub(super) fn check_config(config: &Config, clock: &dyn Clock, out: &mut dyn Write) -> Result<(), Failure> {
    let s = &config.station;
    crate::store::check_station_id(&s.data_dir, &s.id)?;
    let mut text = format!(
        "{}: OK\nstation   {} — {}\ntimezone  {}\ndata_dir  {}\naudio     device \"{}\", target {:.1} LUFS\nhttp      {} (uploads up to {} MiB)\n",
        config.path.display(),
        s.id,
        s.name,
        s.timezone,
        s.data_dir.display(),
        config.audio.device,
        config.audio.target_lufs,
        config.http.listen,
        config.http.max_upload_mib,
    );
    text.push_str(&format!("slots ({}):\n", config.slots.len()));
    for slot in &config.slots {
        let peak = if slot.peak { "peak" } else { "" };
        text.push_str(&format!(
            "  {:<10} \"{}\"  up to {} min  {peak}\n",
            slot.name,
            slot.cron.text(),
            slot.max_minutes
        ));
    }
    text.push_str(&format!("quotas ({}):\n", config.quotas.len()));
    for quota in &config.quotas {
        let per = match quota.per {
            QuotaPeriod::Week => "ISO week",
            QuotaPeriod::Month => "month",
        };
        let language = quota.language.as_deref().map(|l| format!(" in \"{l}\"")).unwrap_or_default();
        let slots = if quota.peak_only { "peak slots only" } else { "any slot" };
        text.push_str(&format!("  {} × \"{}\"{language} per {per}, {slots}\n", quota.count, quota.topic));
    }
    let upcoming = scheduler::upcoming(&config.slots, s.timezone, clock.now(), 10);
    text.push_str(&format!("next {} slot times ({}):\n", upcoming.len(), s.timezone));
    for (slot, at) in upcoming {
        text.push_str(&format!(
            "  {}  {}\n",
            at.with_timezone(&s.timezone).format("%a %Y-%m-%d %H:%M:%S %:z"),
            config.slots[slot].name
        ));
    }
    out.write_all(text.as_bytes()).map_err(write_err)
}

pub(super) fn station(config: &Config, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let (store, _) = open_station(config)?;
    let s = &config.station;
    let public_key = store.public_key_hex();
    // The certificate phones are to pin (made now if the station makes its own).
    let tls = config.http.tls.as_ref().map(|source| http::tls::load(source, &s.data_dir)).transpose()?;
    let fingerprint = tls.as_ref().map(|tls| tls.fingerprint.clone());
    if json {
        let value = serde_json::json!({
            "id": s.id, "name": s.name, "timezone": s.timezone.name(), "public_key": public_key,
            "tls_fingerprint": fingerprint,
        });
        return write_json(out, &value);
    }
    let mut text =
        format!("id          {}\nname        {}\ntimezone    {}\npublic_key  {public_key}\n", s.id, s.name, s.timezone);
    if let Some(fingerprint) = fingerprint {
        text.push_str(&format!("https       {} (certificate SHA-256 {fingerprint})\n", config.http.tls_listen));
    }
    out.write_all(text.as_bytes()).map_err(write_err)
}
