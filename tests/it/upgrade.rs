//! Upgrades keep the proof. Each directory under `tests/fixtures/upgrade/` is what an earlier
//! build wrote (`make.sh`, run once per release, never remade): a station's data directory —
//! database, key, clips, the office's receipt — and its office's. This build must open each
//! one (migrating its schema), verify it with both verifiers, air on it, export it with the
//! old events byte for byte as they were, and the office, on its own old memory, must accept
//! the continuation with no alarm.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::helpers::{Device, Station, loa_with_env, of_kind, verify};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/upgrade");

/// Each fixture judged at a fixed instant: a minute after its last event, whatever today's date.
#[test]
fn every_data_directory_an_earlier_build_made_opens_verifies_airs_on_and_its_office_accepts_the_rest() {
    for fixture in &fixtures() {
        upgrade(fixture, Later::Minute);
    }
}

/// The same a year after each fixture was made (a box left in a storeroom): the year's missed
/// slots are one run per slot, the station is on air at once and the office accepts it all.
#[test]
fn a_data_directory_left_for_a_year_records_the_year_missed_as_one_run_airs_and_its_office_accepts_it() {
    for fixture in &fixtures() {
        let events = upgrade(fixture, Later::Year);
        let runs: Vec<&serde_json::Value> =
            of_kind(&events, "slot_missed", None).into_iter().filter(|e| e["count"].is_u64()).collect();
        // The fixture's slot fires every 4 s: 7,884,000 instants in 365 days.
        let year: u64 = runs.iter().map(|e| e["count"].as_u64().unwrap()).sum();
        assert!(year > 7_800_000, "{}: {runs:?}", fixture.display());
        assert!(runs.iter().all(|e| e["reason"] == "station_down"), "{runs:?}");
        assert!(runs.len() <= 2, "one run per slot (and reason): {runs:?}");
    }
}

fn fixtures() -> Vec<PathBuf> {
    let mut fixtures: Vec<PathBuf> =
        std::fs::read_dir(FIXTURES).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    fixtures.sort();
    assert!(!fixtures.is_empty(), "no upgrade fixture under {FIXTURES}");
    fixtures
}

/// How long after its fixture's last event a run happens.
#[derive(Clone, Copy)]
enum Later {
    Minute,
    Year,
}

impl Later {
    fn millis(self) -> i64 {
        match self {
            Later::Minute => 60_000,
            Later::Year => 365 * 86_400_000,
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Opens, verifies, airs on and has the office accept `fixture`, with the station's and the
/// office's wall clock (libfaketime) at `later` after the fixture's last event. The log after.
fn upgrade(fixture: &Path, later: Later) -> Vec<serde_json::Value> {
    let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
    let library = crate::faults::faketime_library().expect("libfaketime");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture.join("station"), dir.path());
    let office = dir.path().join("office-side");
    copy_dir(&fixture.join("office"), &office);
    // Its own config, on a port of this run's choosing.
    let config = std::fs::read_to_string(dir.path().join("station.toml")).unwrap();
    let listen = config.lines().find(|l| l.starts_with("listen = ")).expect("the fixture's listen").to_owned();
    let station = Station::in_dir(dir, &config.replace(&listen, "listen = \"127.0.0.1:0\""));

    // Opened by this build (its schema migrated), the old log verifies with both verifiers.
    let verified = verify(&station);
    assert_eq!(verified.code, 0, "{name}: {}{}", verified.stdout, verified.stderr);
    let before = station.loa(&["airtime", "--format", "jsonl"]).stdout;
    let old_events = before.lines().count();
    assert!(old_events >= 5, "{name}: the fixture holds a log: {before}");

    // Every process from here on lives `later` after the fixture's last event.
    let last_at =
        serde_json::from_str::<serde_json::Value>(before.lines().last().unwrap()).unwrap()["at"].as_i64().unwrap();
    let offset_s = (last_at + later.millis() - chrono::Utc::now().timestamp_millis()) / 1000;
    let offset = station.dir.path().join("clock-offset");
    std::fs::write(&offset, format!("{offset_s:+}\n")).unwrap();
    let env = crate::faults::stepped_clock(&library, &offset);
    let office_config = office.join("district.toml");
    let district = |args: &[&str]| {
        let mut all = vec!["district", "--config", office_config.to_str().unwrap()];
        all.extend_from_slice(args);
        loa_with_env(&all, &env)
    };
    let checked = district(&["check"]);
    assert_eq!(checked.code, 0, "{name}: the office's own memory: {}{}", checked.stdout, checked.stderr);

    // It airs on, and the office takes the continuation from the head it held.
    let completed_before = of_kind(&station.events(), "airing_ended", Some("completed")).len();
    let daemon = station.start_with_env(Device::Unpaced, &env);
    station.wait_for("an airing on the old log", Duration::from_secs(60), |e| {
        of_kind(e, "airing_ended", Some("completed")).len() > completed_before
    });
    let text = std::fs::read_to_string(&office_config).unwrap();
    let url = text.lines().find(|l| l.starts_with("url = ")).expect("the office's url for the station").to_owned();
    std::fs::write(&office_config, text.replace(&url, &format!("url = \"{}\"", daemon.http_base()))).unwrap();
    let pulled = district(&["pull", "--json"]);
    assert_eq!(pulled.code, 0, "{name}: {}{}", pulled.stdout, pulled.stderr);
    let contact = &pulled.json()[0];
    assert!(
        contact["accepted"].as_u64().unwrap() >= 1 && contact["alarms"].as_array().unwrap().is_empty(),
        "{name}: {contact}"
    );
    daemon.stop();

    // The whole log verifies, and the old events are exported exactly as they were.
    let verified = verify(&station);
    assert_eq!(verified.code, 0, "{name}: {}{}", verified.stdout, verified.stderr);
    let after = station.loa(&["airtime", "--format", "jsonl"]).stdout;
    let kept: Vec<&str> = after.lines().take(old_events).collect();
    assert_eq!(kept, before.lines().collect::<Vec<_>>(), "{name}: an old event changed");
    assert!(after.lines().count() > old_events);
    let events = station.events();
    let started = of_kind(&events, "station_started", None).last().map(|e| e["version"].clone());
    assert_eq!(started, Some(env!("CARGO_PKG_VERSION").into()), "{name}: the new run records its version");
    crate::helpers::assert_each_instant_handled_once(&events);
    events
}
