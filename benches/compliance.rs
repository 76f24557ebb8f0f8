//! Compliance benchmark (`cargo bench --bench compliance`), printed in one run:
//! - a year's report (10 slots a day, every airing recorded) from the store, as JSON, CSV, HTML
//!   (goal ≤ 100 ms);
//! - the planner's decision for one slot (quota standing from the log + program) with 50 clips;
//! - the station's check of that year's log at start, first and with its checkpoint.

use std::time::Instant;

use chrono::{TimeDelta, TimeZone, Utc};
use loa::audit::compliance;
use loa::audit::render::{self, Labels, ReportFormat};
use loa::config::Config;
use loa::model::clip::{AudioFacts, ClipMeta, Priority};
use loa::store::Store;
use serde_json::json;

const SLOTS: &str = "[[slot]]\nname = \"s05\"\ncron = \"0 30 5 * * Mon-Sun\"\nmax_minutes = 15\npeak = true\n\
    [[slot]]\nname = \"s06\"\ncron = \"0 30 6 * * Mon-Sun\"\nmax_minutes = 15\npeak = true\n\
    [[slot]]\nname = \"s07\"\ncron = \"0 30 7 * * Mon-Sun\"\nmax_minutes = 15\n\
    [[slot]]\nname = \"s09\"\ncron = \"0 0 9 * * Mon-Sun\"\nmax_minutes = 15\n\
    [[slot]]\nname = \"s11\"\ncron = \"0 0 11 * * Mon-Sun\"\nmax_minutes = 15\n\
    [[slot]]\nname = \"s13\"\ncron = \"0 0 13 * * Mon-Sun\"\nmax_minutes = 15\n\
    [[slot]]\nname = \"s15\"\ncron = \"0 0 15 * * Mon-Sun\"\nmax_minutes = 15\n\
    [[slot]]\nname = \"s17\"\ncron = \"0 0 17 * * Mon-Sun\"\nmax_minutes = 15\npeak = true\n\
    [[slot]]\nname = \"s19\"\ncron = \"0 0 19 * * Mon-Sun\"\nmax_minutes = 15\npeak = true\n\
    [[slot]]\nname = \"s21\"\ncron = \"0 0 21 * * Mon-Sun\"\nmax_minutes = 15\n\
    [[quota]]\ntopic = \"cchc\"\nper = \"week\"\n[[quota]]\ntopic = \"cchc\"\nper = \"week\"\nlanguage = \"hmn\"\n\
    [[quota]]\ntopic = \"an-toan\"\nper = \"month\"\ncount = 4\npeak_only = false\n";

/// Prints the median and maximum of `times` (ms) after `what`.
fn print_times(what: &str, mut times: Vec<f64>, goal: &str) {
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    println!("{what}: median {median:.2} ms, max {max:.2} ms{goal}");
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    std::fs::write(&path, format!("[station]\nid = \"bench\"\nname = \"Đài\"\ndata_dir = \"data\"\n{SLOTS}")).unwrap();
    let config = Config::load(&path).unwrap();
    std::fs::create_dir_all(&config.station.data_dir).unwrap();
    let mut store = Store::open(&config.station.data_dir, "bench").unwrap();

    // 50 clips across topics and languages.
    let audio = AudioFacts {
        duration_ms: 120_000,
        sample_rate: 44100,
        channels: 1,
        loudness_lufs: -16.0,
        peak_dbfs: -1.0,
        true_peak_dbfs: -1.0,
    };
    for i in 0..50 {
        let (topic, language) = [("cchc", "vi"), ("cchc", "hmn"), ("an-toan", "vi"), ("thong-bao", "vi")][i % 4];
        let meta = ClipMeta {
            title: format!("Bản tin {i}"),
            topic: topic.into(),
            language: language.into(),
            priority: Priority::Normal,
            valid_from: None,
            valid_until: None,
        };
        store.insert_clip(&format!("{i:064x}"), 1, &meta, &audio, Utc::now()).unwrap();
    }

    // A year of airings at 10 slots a day, three clips a slot.
    let tz = config.station.timezone;
    let year_start = tz.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap().with_timezone(&Utc);
    let mut events = Vec::new();
    let mut seq = 0;
    for day in 0..365 {
        for (s, slot) in config.slots.iter().enumerate() {
            for c in 0..3u32 {
                let at = year_start
                    + TimeDelta::days(day)
                    + TimeDelta::hours(5 + s as i64 * 2)
                    + TimeDelta::minutes(i64::from(c) * 3);
                let (topic, language) = [("cchc", "vi"), ("cchc", "hmn"), ("an-toan", "vi")][c as usize];
                let status = if seq % 17 == 0 { "failed" } else { "completed" };
                seq += 1;
                let mut fields = serde_json::Map::new();
                for (k, v) in [
                    ("kind", json!("airing_ended")),
                    ("slot", json!(slot.name)),
                    ("peak", json!(slot.peak)),
                    ("scheduled_at", json!(at.timestamp_millis())),
                    ("topic", json!(topic)),
                    ("language", json!(language)),
                    ("status", json!(status)),
                    ("played_ms", json!(120_000)),
                    // The rest of what an `airing_ended` holds (its schema is checked).
                    ("airing_seq", json!(1)),
                    ("clip_id", json!(1 + c)),
                    ("clip_sha256", json!(format!("{:064x}", c))),
                    ("title", json!("Bản tin")),
                    ("priority", json!("normal")),
                    ("planned_ms", json!(120_000)),
                    ("gain_cdb", json!(0)),
                    ("started_at", json!(at.timestamp_millis())),
                    ("ended_at", json!(at.timestamp_millis() + 120_000)),
                    ("peak_cdbfs", json!(-100)),
                    ("rms_cdbfs", json!(-1_800)),
                    ("silent_ms", json!(0)),
                    ("first_frame_latency_ms", json!(2)),
                    ("reason", json!(null)),
                    ("clock_synced", json!(true)),
                ] {
                    fields.insert(k.into(), v);
                }
                events.push((at, fields));
            }
        }
    }
    let written = store.append_batch(events).unwrap();
    println!("store: {written} airing events over 2026 (10 slots a day, 3 airings a slot)");

    let now = year_start + TimeDelta::days(366);
    let clips = store.active_clips().unwrap();
    let last = store.last_completed_by_clip().unwrap();
    let at = tz.with_ymd_and_hms(2026, 11, 25, 17, 0, 0).unwrap().with_timezone(&Utc);
    let times: Vec<f64> = (0..201)
        .map(|_| {
            let t = Instant::now();
            let needs = loa::air::quota::unmet(&store, &config.quotas, true, at, tz).unwrap();
            let owed = loa::air::planner::Owed::of(&store.priority_bulletins().unwrap());
            let date = at.with_timezone(&tz).date_naive();
            let program = loa::air::planner::program(&clips, &last, date, 15 * 60_000, &needs, &owed);
            assert!(!program.is_empty());
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    print_times("planner decision per slot (quota standing + program, 50 clips)", times, "");

    // The station's check of its own log at start (`chain`): every event's bytes (RFC 8785),
    // hash and link; the signatures only after the kept checkpoint, so only the first start
    // checks them all. Goal: a year well under a second.
    let mut store = store;
    let key = store.public_key_hex();
    for (label, first_start) in [("first start, every signature", true), ("next start, checkpoint kept", false)] {
        let times: Vec<f64> = (0..5)
            .map(|_| {
                if first_start {
                    store.set_chain_checked(0, "", &key).unwrap();
                }
                let t = Instant::now();
                let damage =
                    loa::audit::chain::check_stored_log(&mut store, now, loa::audit::chain::Scope::Whole).unwrap();
                assert!(damage.is_none(), "{damage:?}");
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        print_times(
            &format!("the station's check of a year's log ({written} events), {label}"),
            times,
            " (goal < 1000)",
        );
    }
    // What batching buys a first start on a slow CPU: the same year's events through the
    // verifier, every signature checked one by one (`verify_strict`) and in batches.
    let events = store.events(loa::store::EventQuery::default()).unwrap();
    let public_key = loa::proof::parse_public_key(&key).unwrap();
    let mut one_by_one = 0.0;
    for (label, batched) in [("one by one", false), ("in batches of 1,024", true)] {
        let times: Vec<f64> = (0..3)
            .map(|_| {
                let t = Instant::now();
                let verifier = loa::proof::ChainVerifier::new(public_key, loa::proof::Expect::default());
                let mut verifier = if batched { verifier.deferring_signatures() } else { verifier };
                for event in &events {
                    verifier.stored(event.seq as usize, event).unwrap();
                }
                verifier.finish().unwrap();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        let median = {
            let mut sorted = times.clone();
            sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
            sorted[sorted.len() / 2]
        };
        if !batched {
            one_by_one = median;
        }
        let ratio = if batched { format!(" ({:.2}x the one-by-one time)", median / one_by_one) } else { String::new() };
        print_times(&format!("every signature of a year's log ({} events), {label}", events.len()), times, &ratio);
    }
    let period = loa::time::calendar::parse_period("2026", tz).unwrap();
    // Reports on a running station: the start check has kept its checkpoint, so a report
    // checks its span's bytes, hashes and links, and no signature twice.
    let labels = Labels::of(&config);
    for format in [ReportFormat::Json, ReportFormat::Csv, ReportFormat::CsvVi, ReportFormat::Html] {
        let times: Vec<f64> = (0..11)
            .map(|_| {
                let t = Instant::now();
                let report = compliance::from_store(&store, &config, &period, now).unwrap();
                let _ = render::station::render(&report, format, &labels);
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        print_times(&format!("a year's report as {format:?}"), times, " (goal <= 100)");
    }
}
