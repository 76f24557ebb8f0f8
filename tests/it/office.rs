//! The office's judgement of what stations sign, in process on a virtual clock: logs forged with
//! a station's own key (`Forge`) that are properly signed and still must not be believed or
//! counted as they claim, and standings that never say "met" for silence.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use loa::district::witness::Batch;
use loa::model::clip::Priority;
use loa::proof::events::{self, AiringEvidence, AiringPlan, AiringStatus, ClockAtStart};
use loa::proof::{Fields, GENESIS_HASH, StationKey};
use loa::time::clock::VirtualClock;

/// A station's log written with its own key: whatever it says, properly signed.
pub struct Forge {
    pub key: StationKey,
    pub id: String,
    seq: i64,
    prev: String,
    pub lines: Vec<String>,
}

impl Forge {
    pub fn new(seed: u8, id: &str) -> Forge {
        Forge {
            key: StationKey::from_seed([seed; 32]),
            id: id.into(),
            seq: 0,
            prev: GENESIS_HASH.into(),
            lines: vec![],
        }
    }

    /// Appends an event of `fields` at `at`; returns its seq.
    pub fn push(&mut self, mut fields: Fields, at: DateTime<Utc>) -> i64 {
        fields.insert("station_id".into(), Value::from(self.id.as_str()));
        fields.insert("at".into(), Value::from(at.timestamp_millis()));
        self.seq += 1;
        let sealed = self.key.seal(self.seq, &self.prev, fields);
        self.prev = sealed.hash.clone();
        self.lines.push(sealed.export_line());
        self.seq
    }

    pub fn started(&mut self, at: DateTime<Utc>) -> i64 {
        let key = self.key.public_key_hex();
        self.push(events::station_started("0.1.0", &key, None, ClockAtStart::default(), true), at)
    }

    /// An airing of a CCHC bulletin from `at`, `played_ms` long as measured, ended `status`.
    pub fn airing(&mut self, at: DateTime<Utc>, played_ms: u64, status: AiringStatus) -> i64 {
        let plan = plan(at);
        let started = self.push(events::airing_started(&plan, true), at);
        let evidence = AiringEvidence {
            started_at: Some(at.timestamp_millis()),
            ended_at: Some(at.timestamp_millis() + played_ms as i64),
            played_ms,
            peak_cdbfs: -300,
            rms_cdbfs: -2000,
            silent_ms: 0,
            first_frame_latency_ms: Some(2),
            status,
            reason: None,
        };
        let ended_at = at + TimeDelta::milliseconds(played_ms as i64);
        self.push(events::airing_ended(started, &plan, &evidence, true), ended_at)
    }

    pub fn entry(&self) -> String {
        format!(
            "[[station]]\nid = \"{}\"\nname = \"Đài {}\"\npublic_key = \"{}\"\n",
            self.id,
            self.id,
            self.key.public_key_hex()
        )
    }

    /// The batch a push of everything from `from` (an index into the lines) would carry.
    pub fn batch(&self, from: usize) -> Batch<'_> {
        Batch {
            lines: self.lines[from..].iter().map(String::as_str).collect(),
            after_seq: from as i64,
            ..Batch::default()
        }
    }
}

pub fn plan(at: DateTime<Utc>) -> AiringPlan {
    AiringPlan {
        slot: Some("sang".into()),
        peak: true,
        scheduled_at: Some(at.timestamp_millis()),
        clip_id: 1,
        clip_sha256: "a".repeat(64),
        title: "Bản tin cải cách hành chính".into(),
        topic: "cchc".into(),
        language: "vi".into(),
        priority: Priority::Normal,
        planned_ms: 60_000,
        gain_cdb: 0,
        quota: Some("cchc/week".into()),
        before_air_ok: None,
        before_air_detail: None,
    }
}

/// An office over `stations` (`[[station]]` tables) on a virtual clock at `start`.
pub fn office(stations: &str, start: DateTime<Utc>) -> (tempfile::TempDir, loa::district::Office, Arc<VirtualClock>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("district.toml");
    std::fs::write(&path, format!("[district]\nname = \"UBND xã Phú Thủy\"\ndata_dir = \"office\"\n{stations}"))
        .unwrap();
    let config = loa::district::config::DistrictConfig::load(&path).unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let office = loa::district::Office::open(config, clock.clone()).unwrap();
    (dir, office, clock)
}

/// Wednesday 2 December 2026, 10:00 in Hà Nội.
fn wednesday() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-02T10:00:00+07:00").unwrap().to_utc()
}

fn standing(office: &loa::district::Office, period: &str, station: usize) -> (String, bool, u32) {
    let period = loa::time::calendar::parse_period(period, office.config.timezone).unwrap();
    let report = loa::district::report::build(office, &period, office.clock.now()).unwrap();
    let quota = &report.stations[station].quotas[0];
    (quota.standing.to_string(), quota.met, quota.completed)
}

#[test]
fn silence_is_never_met_a_running_week_is_in_progress_and_an_unreached_station_has_no_data() {
    let (mut aired, mut silent) = (Forge::new(1, "ward-aired"), Forge::new(2, "ward-silent"));
    let never = Forge::new(3, "ward-never");
    let monday = wednesday() - TimeDelta::days(2);
    let (_dir, office, clock) = office(&format!("{}{}{}", aired.entry(), silent.entry(), never.entry()), monday);
    // Week 48 (23–29 November): the aired station started then and aired; the silent one too,
    // but aired nothing.
    let last_week = monday - TimeDelta::days(6);
    aired.started(last_week);
    aired.airing(last_week + TimeDelta::hours(1), 60_000, AiringStatus::Completed);
    silent.started(last_week);
    for forge in [&aired, &silent] {
        let station = office.config.stations.iter().find(|s| s.id == forge.id).unwrap();
        assert!(office.ingest(station, &forge.batch(0)).unwrap().clean());
    }
    clock.step(TimeDelta::days(2));

    // This week: nothing aired yet anywhere, and the week is running.
    assert_eq!(standing(&office, "2026-W49", 0), ("in_progress".into(), false, 0));
    assert_eq!(standing(&office, "2026-W49", 1), ("in_progress".into(), false, 0));
    assert_eq!(standing(&office, "2026-W49", 2), ("no_data".into(), false, 0), "never reached: no data, not met");
    // Last week: met by an airing; not met by silence; unknown for the station never reached.
    assert_eq!(standing(&office, "2026-W48", 0), ("met".into(), true, 1));
    assert_eq!(standing(&office, "2026-W48", 1), ("not_met".into(), false, 0));
    assert_eq!(standing(&office, "2026-W48", 2), ("no_data".into(), false, 0));

    // A week later, with no contact since: the office cannot say what aired in week 49.
    clock.step(TimeDelta::days(7));
    assert_eq!(standing(&office, "2026-W49", 0), ("no_data".into(), false, 0));
    let period = loa::time::calendar::parse_period("2026-W49", office.config.timezone).unwrap();
    let report = loa::district::report::build(&office, &period, office.clock.now()).unwrap();
    let html = loa::district::report::render(&report, loa::audit::render::ReportFormat::Html).0;
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("Chưa có dữ liệu") && !html.contains(": Đạt"), "{html}");
}

#[test]
fn contacts_of_one_station_at_once_judge_against_one_head() {
    let mut forge = Forge::new(4, "ward-a");
    let start = wednesday();
    forge.started(start);
    for i in 0..300 {
        forge.airing(start + TimeDelta::minutes(2 * i + 1), 60_000, AiringStatus::Completed);
    }
    let (_dir, office, _clock) = office(&forge.entry(), start + TimeDelta::days(1));
    let station = &office.config.stations[0];
    let contacts: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6).map(|_| scope.spawn(|| office.ingest(station, &forge.batch(0)))).collect();
        handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect()
    });
    let accepted: Vec<usize> = contacts.iter().map(|c| c.accepted).collect();
    assert_eq!(accepted.iter().sum::<usize>(), forge.lines.len(), "each event stored once: {accepted:?}");
    assert!(contacts.iter().all(|c| c.alarms.is_empty() && c.head_seq == forge.lines.len() as i64), "{contacts:?}");
}

/// The office's check reads one state: run beside ingests that append events and their log
/// entries together, it never sees events "beyond what the log verified" (it did, reading the
/// log before and the events after a commit).
#[test]
fn checking_the_memory_while_stations_are_ingested_finds_nothing_wrong() {
    let mut forge = Forge::new(5, "ward-a");
    let start = wednesday();
    forge.started(start);
    for i in 0..400 {
        forge.airing(start + TimeDelta::minutes(2 * i + 1), 60_000, AiringStatus::Completed);
    }
    let (_dir, office, _clock) = office(&forge.entry(), start + TimeDelta::days(2));
    let station = &office.config.stations[0];
    let key = loa::proof::parse_public_key(&office.public_key_hex()).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Small contacts, one after another: many commits for the check to fall between.
            for from in (0..forge.lines.len()).step_by(10) {
                let mut batch = forge.batch(from);
                batch.lines.truncate(10);
                let contact = office.ingest(station, &batch).unwrap();
                assert!(contact.alarms.is_empty(), "{contact:?}");
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut checks = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) || checks == 0 {
            let found = loa::district::memory::check(&office.config, &key).unwrap();
            assert!(found.problems.is_empty(), "check {checks}: {:?}", found.problems);
            checks += 1;
        }
    });
}

#[test]
fn a_station_lying_with_its_own_key_is_flagged_and_not_counted() {
    use loa::district::witness::AlarmKind;
    let now = wednesday();
    let start = now - TimeDelta::days(1);
    // Each lie on a station of its own, after an honest start and one honest airing.
    type Lie = Box<dyn Fn(&mut Forge)>;
    let lies: Vec<(&str, Lie)> = vec![
        (
            "next-year",
            Box::new(move |f| {
                f.airing(now + TimeDelta::days(365), 60_000, AiringStatus::Completed);
            }),
        ),
        (
            "in-1970",
            Box::new(|f| {
                f.airing(DateTime::from_timestamp_millis(1_000).unwrap(), 60_000, AiringStatus::Completed);
            }),
        ),
        (
            "overlapping",
            Box::new(move |f| {
                f.airing(start + TimeDelta::minutes(10) + TimeDelta::seconds(30), 60_000, AiringStatus::Completed);
            }),
        ),
        (
            "hour-in-a-minute",
            Box::new(move |f| {
                let at = start + TimeDelta::hours(2);
                let plan = plan(at);
                let started = f.push(events::airing_started(&plan, true), at);
                let evidence = AiringEvidence {
                    started_at: Some(at.timestamp_millis()),
                    ended_at: Some(at.timestamp_millis() + 60_000),
                    played_ms: 3_600_000,
                    peak_cdbfs: -300,
                    rms_cdbfs: -2000,
                    silent_ms: 0,
                    first_frame_latency_ms: Some(2),
                    status: AiringStatus::Completed,
                    reason: None,
                };
                f.push(events::airing_ended(started, &plan, &evidence, true), at + TimeDelta::minutes(1));
            }),
        ),
        (
            "while-stopped",
            Box::new(move |f| {
                f.push(events::station_stopped("stopped by the admin"), start + TimeDelta::hours(3));
                f.airing(start + TimeDelta::hours(4), 60_000, AiringStatus::Completed);
            }),
        ),
        (
            "never-recovered",
            Box::new(move |f| {
                f.push(events::airing_started(&plan(start + TimeDelta::hours(3)), true), start + TimeDelta::hours(3));
                f.started(start + TimeDelta::hours(5));
                f.airing(start + TimeDelta::hours(6), 60_000, AiringStatus::Completed);
            }),
        ),
    ];
    let mut forges = Vec::new();
    for (i, (name, lie)) in lies.iter().enumerate() {
        let mut forge = Forge::new(10 + i as u8, &format!("ward-{name}"));
        forge.started(start);
        forge.airing(start + TimeDelta::minutes(10), 60_000, AiringStatus::Completed);
        lie(&mut forge);
        forges.push(forge);
    }
    let entries: String = forges.iter().map(Forge::entry).collect();
    let (_dir, office, _clock) = office(&entries, now);
    let period = loa::time::calendar::parse_period("2026-W49", office.config.timezone).unwrap();
    for (i, forge) in forges.iter().enumerate() {
        let contact = office.ingest(&office.config.stations[i], &forge.batch(0)).unwrap();
        assert_eq!(contact.alarms, [AlarmKind::Implausible], "{}: {contact:?}", forge.id);
        assert_eq!(contact.accepted, forge.lines.len(), "{}: the chain is kept whole", forge.id);
    }
    let report = loa::district::report::build(&office, &period, now).unwrap();
    for (row, forge) in report.stations.iter().zip(&forges) {
        // Where the lie is about another airing (one never closed), the airing after it is honest.
        let honest = if forge.id == "ward-never-recovered" { 2 } else { 1 };
        assert_eq!(row.quotas[0].completed, honest, "{}: only honest airings count: {row:?}", forge.id);
        let in_week = !matches!(forge.id.as_str(), "ward-next-year" | "ward-in-1970" | "ward-never-recovered");
        assert_eq!(row.implausible_airings, u32::from(in_week), "{}: {row:?}", forge.id);
    }
    let status = office.status().unwrap();
    assert!(status.iter().all(|s| s.alarms.len() == 1 && s.alarms[0].kind == "implausible"), "{status:?}");
}

/// Copies an office's directory (config, key, database) so that each test edit starts whole.
fn copy_office(from: &std::path::Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    std::fs::copy(from.join("district.toml"), to.path().join("district.toml")).unwrap();
    std::fs::create_dir(to.path().join("office")).unwrap();
    for entry in std::fs::read_dir(from.join("office")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.path().join("office").join(entry.file_name())).unwrap();
    }
    to
}

fn district(dir: &std::path::Path, args: &[&str]) -> crate::helpers::Run {
    let config = dir.join("district.toml");
    let mut all = vec!["district", "--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    crate::helpers::loa(&all)
}

#[test]
fn every_kind_of_edit_to_the_offices_database_is_caught_and_nothing_is_reported_from_it() {
    let now = wednesday();
    let start = now - TimeDelta::days(1);
    let mut forge = Forge::new(21, "ward-a");
    forge.started(start);
    for i in 0..5 {
        forge.airing(start + TimeDelta::minutes(10 * i + 1), 60_000, AiringStatus::Completed);
    }
    forge.airing(now + TimeDelta::days(30), 60_000, AiringStatus::Completed); // implausible
    let (dir, office, _clock) = office(&forge.entry(), now);
    let contact = office.ingest(&office.config.stations[0], &forge.batch(0)).unwrap();
    assert_eq!(contact.alarms.len(), 1, "{contact:?}");
    office.create_clerk_token("Chị Lan").unwrap();
    let alarm = office.status().unwrap()[0].alarms[0].id;
    office.acknowledge(alarm, "đã gọi đài").unwrap();
    drop(office);

    let whole = district(dir.path(), &["check"]);
    assert_eq!(whole.code, 0, "{}{}", whole.stdout, whole.stderr);
    assert!(whole.stdout.contains("whole"), "{}", whole.stdout);
    let edits: [(&str, &str, &str); 9] = [
        (
            "a held event's body",
            "DROP TRIGGER events_are_never_updated; UPDATE events SET body = replace(body, '\"status\":\"completed\"', '\"status\":\"partial\"') WHERE seq = 5",
            "seq 5 no longer verifies",
        ),
        ("an alarm deleted", "DROP TRIGGER alarms_are_never_deleted; DELETE FROM alarms", "was deleted"),
        (
            "a guard dropped",
            "DROP TRIGGER implausible_is_never_deleted",
            "guard implausible_is_never_deleted was removed",
        ),
        (
            "an unsigned row",
            "INSERT INTO events SELECT station_id, seq + 100, at, kind, body, hash, sig, received_at FROM events WHERE seq = 3",
            "inserted",
        ),
        (
            "the station's key",
            &format!("UPDATE stations SET key = '{}'", StationKey::from_seed([99; 32]).public_key_hex()),
            "key",
        ),
        (
            "a finding deleted",
            "DROP TRIGGER implausible_is_never_deleted; DELETE FROM implausible",
            "findings were edited",
        ),
        ("a revoked token", "UPDATE tokens SET owner = 'Kẻ lạ'", "token 1"),
        (
            "the office's log",
            "DROP TRIGGER ledger_is_never_updated; UPDATE ledger SET body = replace(body, 'đã gọi', 'chưa gọi')",
            "office's log is broken",
        ),
        ("the head", "UPDATE stations SET head_seq = head_seq - 1", "head"),
    ];
    for (what, sql, named) in edits {
        let copy = copy_office(dir.path());
        let db = rusqlite::Connection::open(copy.path().join("office/district.sqlite")).unwrap();
        db.execute_batch(sql).unwrap_or_else(|e| panic!("{what}: {e}"));
        drop(db);
        let check = district(copy.path(), &["check"]);
        assert_eq!(check.code, 1, "{what} went unnoticed: {}", check.stdout);
        assert!(check.stdout.contains(named), "{what}: expected `{named}` in {}", check.stdout);
        let report = district(copy.path(), &["report", "--period", "2026-W49"]);
        assert_eq!(report.code, 1, "{what}: a report from damaged memory: {}", report.stdout);
        assert!(report.stdout.is_empty() && report.stderr.contains("cannot be trusted"), "{what}: {}", report.stderr);
        assert_eq!(district(copy.path(), &["status"]).code, 1, "{what}");
    }
}

#[test]
fn a_pinned_key_corrected_before_any_event_takes_effect_and_one_that_contradicts_held_events_is_named() {
    let mut forge = Forge::new(22, "ward-a");
    let now = wednesday();
    forge.started(now - TimeDelta::hours(2));
    forge.airing(now - TimeDelta::hours(1), 60_000, AiringStatus::Completed);
    let typo = forge.entry().replace(&forge.key.public_key_hex(), &StationKey::from_seed([23; 32]).public_key_hex());
    let (dir, office, _clock) = office(&typo, now);
    let contact = office.ingest(&office.config.stations[0], &forge.batch(0)).unwrap();
    assert!(!contact.clean(), "the mistyped key does not verify the station's events");
    drop(office);
    // The clerk corrects the file: nothing was accepted under the typo, so the right key is the key.
    let config = dir.path().join("district.toml");
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap().replace(&typo, &forge.entry())).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let config_loaded = loa::district::config::DistrictConfig::load(&config).unwrap();
    let office = loa::district::Office::open(config_loaded, Arc::new(VirtualClock::new(now))).unwrap();
    let contact = office.ingest(&office.config.stations[0], &forge.batch(0)).unwrap();
    assert!(contact.alarms.is_empty() && contact.accepted == forge.lines.len(), "{contact:?}");
    drop(office);
    // Changed again after events were held under it: a config error naming the station and seq.
    std::fs::write(
        &config,
        text.replace(&forge.key.public_key_hex(), &StationKey::from_seed([24; 32]).public_key_hex()),
    )
    .unwrap();
    let check = district(dir.path(), &["check"]);
    assert_eq!(check.code, 1, "{}", check.stdout);
    assert!(
        check.stdout.contains("ward-a")
            && check.stdout.contains("seq 1")
            && check.stdout.contains("district.toml pins"),
        "{}",
        check.stdout
    );
}
