//! Quota standing in the current period: met, on track or at risk (and why), from the proof
//! log, the library and the slots left.

use chrono::{DateTime, TimeZone, Utc};
use loa::air::quota::{AtRisk, QuotaStatus, standings};
use loa::config::Config;
use loa::model::clip::{AudioFacts, ClipMeta, Priority};
use loa::proof::events::{self, AiringEvidence, AiringPlan, AiringStatus};
use loa::store::Store;

use crate::helpers::Station;

const CONFIG: &str = "[station]\nid = \"s\"\nname = \"Đài\"\ndata_dir = \"data\"\n\
    [[slot]]\nname = \"sang\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = 15\npeak = true\n\
    [[quota]]\ntopic = \"cchc\"\nper = \"week\"\ncount = 1\npeak_only = true\n";

fn local(d: u32, h: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Ho_Chi_Minh.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap().with_timezone(&Utc)
}

#[test]
fn a_quota_is_at_risk_without_a_clip_or_slots_and_met_by_a_completed_airing() {
    let station = Station::with_config(CONFIG);
    let config = Config::load(&station.config_path()).unwrap();
    std::fs::create_dir_all(&config.station.data_dir).unwrap();
    let mut store = Store::open(&config.station.data_dir, "s").unwrap();
    let status = |store: &Store, at| {
        let s = &standings(store, &config, at).unwrap()[0];
        (s.period.clone(), s.status, s.reason)
    };

    // Monday of week 48, empty library.
    assert_eq!(status(&store, local(23, 8)), ("2026-W48".into(), QuotaStatus::AtRisk, Some(AtRisk::NoClip)));

    let meta = ClipMeta {
        title: "Bản tin".into(),
        topic: "cchc".into(),
        language: "vi".into(),
        priority: Priority::Normal,
        valid_from: None,
        valid_until: None,
    };
    let audio = AudioFacts {
        duration_ms: 2000,
        sample_rate: 44100,
        channels: 2,
        loudness_lufs: -16.0,
        peak_dbfs: -1.0,
        true_peak_dbfs: -1.0,
    };
    let clip = match store.insert_clip(&"ab".repeat(32), 1, &meta, &audio, Utc::now()).unwrap() {
        loa::store::Inserted::New(clip) | loa::store::Inserted::Existing(clip) => clip,
    };
    assert_eq!(status(&store, local(23, 8)).1, QuotaStatus::OnTrack, "six peak slots left this week");
    // Sunday after the week's last peak slot, nothing aired: it cannot be met any more.
    assert_eq!(status(&store, local(29, 8)), ("2026-W48".into(), QuotaStatus::AtRisk, Some(AtRisk::NotEnoughSlots)));

    // A completed airing on Tuesday's peak slot, recorded as the engine records one.
    let plan = AiringPlan::new(&clip, Some(("sang", true, local(24, 5))), 0.0);
    let started = store.append(local(24, 5), events::airing_started(&plan, true)).unwrap();
    let evidence = AiringEvidence {
        started_at: Some(local(24, 5).timestamp_millis()),
        ..AiringEvidence::unmeasured(
            AiringStatus::Completed,
            Some(local(24, 5).timestamp_millis() + 2000),
            2000,
            "".into(),
        )
    };
    let fields = events::airing_ended(started.seq, &plan, &AiringEvidence { reason: None, ..evidence }, true);
    store.append(local(24, 5), fields).unwrap();
    assert_eq!(status(&store, local(29, 8)).1, QuotaStatus::Met);
    assert_eq!(status(&store, local(30, 8)), ("2026-W49".into(), QuotaStatus::OnTrack, None), "a new week starts over");
}
