//! Fault tests on the real binary: a disk that fills during an upload, the audio device lost
//! mid-airing, and a long series of kill -9 across airings on the paced device. Each ends by
//! checking the proof log still verifies and the station carries on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::{Device, Station, fixture, http_get, http_upload, of_kind, station, verify};

const TONE: &str = "cbr128_stereo_44k.mp3"; // 2.000 s

/// A size-limited tmpfs mounted over a directory for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where this process may not mount (not root, or no CAP_SYS_ADMIN in a container).
    fn mount(dir: &Path, size_mib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_disk_that_fills_during_an_upload_gives_507_and_loses_nothing() {
    let station = station(30, 5, &[]);
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    std::fs::write(station.config_path(), format!("{config}[clips]\nkeep_free_mib = 0\n")).unwrap();
    let disk = Tmpfs::mount(&station.data_dir(), 8);
    if !crate::helpers::require(disk.is_some(), "a small tmpfs to fill", "run as root with CAP_SYS_ADMIN") {
        return;
    }
    let token = station.token("operator");
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();

    // 12 MiB sent without a length (chunked), so only the disk itself can stop it.
    let source = station.dir.path().join("big.bin");
    std::fs::write(&source, vec![0x55u8; 12 << 20]).unwrap();
    let part = reqwest::multipart::Part::stream(reqwest::Body::from(tokio::fs::File::open(&source).await.unwrap()))
        .file_name("big.mp3");
    let form = reqwest::multipart::Form::new().text("title", "Quá lớn").text("topic", "cchc").part("file", part);
    let response = crate::helpers::http_client()
        .post(format!("{base}/api/v1/clips"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 507);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "disk_full", "{body}");

    let staging: Vec<_> = std::fs::read_dir(station.data_dir().join("staging")).unwrap().collect();
    assert!(staging.is_empty(), "no partial file may stay: {staging:?}");
    assert!(std::fs::read_dir(station.data_dir().join("clips")).unwrap().next().is_none());

    // The space came back with the refused file, and the station carries on.
    assert_eq!(http_upload(&base, &token, &fixture(TONE)), "201");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    daemon.stop();
    let events = station.events();
    assert_eq!(of_kind(&events, "clip_added", None).len(), 1, "only the good upload is recorded");
    assert_eq!(verify(&station).code, 0, "{}", verify(&station).stderr);
}

#[test]
fn loa_run_refuses_a_damaged_store_and_leaves_it_as_found() {
    let station = station(30, 5, &[]);
    for i in 0..40 {
        let run = station.loa(&["token", "create", "--role", "district", "--label", &format!("{i:0>300}")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let database = station.data_dir().join("loa.sqlite");
    let mut bytes = std::fs::read(&database).unwrap();
    assert!(bytes.len() >= 8 * 4096, "several pages: {}", bytes.len());
    let end = bytes.len() - 4096;
    bytes[4 * 4096..end].fill(0xA5);
    std::fs::write(&database, &bytes).unwrap();

    let run = station.loa(&["run"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let message = run.error_line();
    assert!(message.contains("loa.sqlite is damaged") && message.contains("loa backup"), "{message}");
    assert_eq!(std::fs::read(&database).unwrap(), bytes, "not repaired, not replaced, not appended to");
}

#[test]
fn a_backup_taken_on_air_restores_to_a_station_whose_log_verifies() {
    let station = station(4, 2, &[TONE]);
    let daemon = station.start(Device::Paced);
    station.wait_for("an airing on the paced device", Duration::from_secs(30), |e| {
        of_kind(e, "airing_started", None).len() > of_kind(e, "airing_ended", None).len()
    });
    let copy = station.dir.path().join("backup.sqlite");
    let run = station.loa(&["backup", copy.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("integrity ok") && run.stdout.contains("station.key"), "{}", run.stdout);
    let again = station.loa(&["backup", copy.to_str().unwrap()]);
    assert_eq!(again.code, 1, "an existing file is never overwritten");
    assert!(again.error_line().contains("does not overwrite"), "{}", again.stderr);
    daemon.stop();

    // Restore: the copy plus the key, as the README says.
    let restored = Station::with_config(&std::fs::read_to_string(station.config_path()).unwrap());
    std::fs::create_dir_all(restored.data_dir()).unwrap();
    std::fs::copy(&copy, restored.data_dir().join("loa.sqlite")).unwrap();
    std::fs::copy(station.data_dir().join("station.key"), restored.data_dir().join("station.key")).unwrap();
    let events = restored.events();
    assert!(!of_kind(&events, "airing_started", None).is_empty(), "the copy holds the airing in progress");
    assert_eq!(verify(&restored).code, 0, "{}", verify(&restored).stderr);
}

/// kill -9 at random moments (start-up, recovery, mid-airing, idle), `LOA_FAULT_KILLS` times
/// (CI: 200), then one clean run. Whatever the moment, the proof log must stay one verifiable,
/// gapless chain in which every airing has exactly one ending and no slot airs twice.
#[test]
fn kill_9_at_random_moments_never_breaks_the_proof_nor_airs_a_slot_twice() {
    let kills: u32 = std::env::var("LOA_FAULT_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(15);
    let seed = std::env::var("LOA_FAULT_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("kill loop: {kills} kills, LOA_FAULT_SEED={seed}");
    let mut state = seed;
    let mut next_ms = |range: u64| {
        // xorshift64: reproducible from the printed seed
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % range
    };
    let station = station(3, 2, &[TONE]);
    for _ in 0..kills {
        let daemon = station.start(Device::Paced);
        std::thread::sleep(Duration::from_millis(100 + next_ms(3400)));
        daemon.kill();
    }
    let daemon = station.start(Device::Paced);
    let clean_start = station.events().len() as i64;
    station.wait_for("a completed airing after the last restart", Duration::from_secs(30), |e| {
        e.iter()
            .any(|x| x["kind"] == "airing_ended" && x["status"] == "completed" && x["seq"].as_i64() > Some(clean_start))
    });
    daemon.stop();

    let events = station.events();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"].as_i64(), Some(i as i64 + 1), "seq has a gap or a repeat at {event}");
    }
    let verified = verify(&station);
    assert_eq!(verified.code, 0, "{}", verified.stderr);
    let starts = of_kind(&events, "airing_started", None);
    let ends = of_kind(&events, "airing_ended", None);
    for start in &starts {
        let n = ends.iter().filter(|e| e["airing_seq"] == start["seq"]).count();
        assert_eq!(n, 1, "airing {} has {n} endings", start["seq"]);
    }
    assert_eq!(starts.len(), ends.len(), "an ending without its start");
    crate::helpers::assert_each_instant_handled_once(&events);
    let backup = station.dir.path().join("after-kills.sqlite");
    let run = station.loa(&["backup", backup.to_str().unwrap()]);
    assert!(run.code == 0 && run.stdout.contains("integrity ok"), "{}{}", run.stdout, run.stderr);

    let crashed = ends.iter().filter(|e| e["reason"].as_str().is_some_and(|r| r.starts_with("power loss"))).count();
    let completed = ends.iter().filter(|e| e["status"] == "completed").count();
    eprintln!(
        "kill loop: {kills} kills survived; {} events checked; {} airings ({completed} completed, {crashed} cut by a kill), {} slots missed",
        events.len(),
        starts.len(),
        crate::helpers::missed_instants(&events)
    );
}

/// The pipe behind the paced device loses its reader mid-airing (as a USB sound card pulled
/// out): the airing is recorded partial with the device's error, promptly; the API answers
/// throughout; the next slot opens the device afresh and airs.
#[test]
fn a_device_lost_mid_airing_is_recorded_partial_and_the_next_slot_airs() {
    let station = station(20, 5, &[SPEECH]);
    let daemon = station.start(Device::PacedNative { bytes_per_second: 22_050 * 2 }); // the speech: 22.05 kHz mono
    let base = daemon.http_base();
    let events = station
        .wait_for("the speech on air", Duration::from_secs(40), |e| !of_kind(e, "airing_started", None).is_empty());
    crate::helpers::sleep_into_first_airing(&events, 3000);
    signal_device_writer(&station, "-KILL");

    let events = station.wait_for("the airing recorded partial", Duration::from_secs(30), |e| {
        !of_kind(e, "airing_ended", None).is_empty()
    });
    let ended = of_kind(&events, "airing_ended", None)[0];
    assert_eq!(ended["status"], "partial", "{ended}");
    assert!(ended["reason"].as_str().unwrap().contains("audio device error"), "{ended}");
    let (scheduled, planned) = (ended["scheduled_at"].as_i64().unwrap(), ended["planned_ms"].as_i64().unwrap());
    assert!(
        ended["ended_at"].as_i64().unwrap() <= scheduled + planned + 5000,
        "recorded within duration + 5 s: {ended}"
    );
    // Up to the loss, and not what the device swallowed after it (the file plugin goes on
    // taking samples into the broken pipe, unpaced, until it reports the error).
    let played = ended["played_ms"].as_i64().unwrap();
    assert!((2500..=5000).contains(&played), "played up to the loss, {played} ms of {planned}");
    assert_eq!(http_get(&base, "/healthz"), "200", "the API answers after the loss");

    let events = station.wait_for("the next slot aired on a fresh device", Duration::from_secs(40), |e| {
        of_kind(e, "airing_ended", Some("completed")).len() == 1
    });
    daemon.stop();
    let next = of_kind(&events, "airing_ended", Some("completed"))[0];
    assert!(next["scheduled_at"].as_i64() > Some(scheduled), "{next}");
    assert_eq!(verify(&station).code, 0);
}

const SPEECH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/audio/cchc-ban-tin-tuan.mp3"); // 16.6 s, 22.05 kHz mono

/// Signals the `pv` that paces the station's file device (the ALSA file plugin runs
/// `sh -c "pv … > air.raw"`).
fn signal_device_writer(station: &Station, signal: &str) {
    let air = station.air_path().display().to_string();
    let shell = Command::new("pgrep").args(["-f", &format!("> {air}")]).output().unwrap();
    let shell = String::from_utf8(shell.stdout).unwrap();
    let shell = shell.split_whitespace().next().expect("the device's pv pipeline is running");
    assert!(Command::new("pkill").args([signal, "-P", shell]).status().unwrap().success());
}

/// The paced device through ALSA's `plug` loses its writer 3 s into a 16.6 s bulletin:
/// alsa-lib aborts (an assertion in the plug plugin) — in the device's own process. The station
/// records the airing with the process's end named and only what real time allowed as played,
/// answers throughout, and airs the next slot on a fresh process.
#[test]
fn alsa_lib_aborting_on_a_broken_pipe_behind_plug_ends_only_the_airing_it_hit() {
    let station = station(20, 5, &[SPEECH]);
    let daemon = station.start(Device::Paced);
    let base = daemon.http_base();
    let events = station
        .wait_for("the speech on air", Duration::from_secs(40), |e| !of_kind(e, "airing_started", None).is_empty());
    crate::helpers::sleep_into_first_airing(&events, 3000);
    signal_device_writer(&station, "-KILL");
    let events = station
        .wait_for("the airing recorded", Duration::from_secs(30), |e| !of_kind(e, "airing_ended", None).is_empty());
    let ended = of_kind(&events, "airing_ended", None)[0];
    assert_ne!(ended["status"], "completed", "{ended}");
    let reason = ended["reason"].as_str().unwrap();
    assert!(reason.contains("audio device"), "{ended}");
    let played = ended["played_ms"].as_i64().unwrap();
    assert!(played <= 5_000, "only what reached the device before the loss counts: {ended}");
    assert_eq!(http_get(&base, "/healthz"), "200", "the station answers after the device's fault");
    let events = station.wait_for("the next slot aired", Duration::from_secs(45), |e| {
        of_kind(e, "airing_ended", Some("completed")).len() == 1
    });
    daemon.stop();
    let next = of_kind(&events, "airing_ended", Some("completed"))[0];
    assert!(next["scheduled_at"].as_i64() > ended["scheduled_at"].as_i64(), "{next}");
    assert_eq!(verify(&station).code, 0);
}

/// The device's writer stops (SIGSTOP: a card that hangs, its writes never return) 3 s into a
/// bulletin: the airing ends within its deadline with the reason, once; the station answers;
/// once the writer goes on (SIGCONT), the next slot airs.
#[test]
fn a_device_whose_writes_hang_ends_the_airing_in_time_and_the_next_slot_airs() {
    let station = station(30, 5, &[SPEECH]);
    let daemon = station.start(Device::PacedNative { bytes_per_second: 22_050 * 2 });
    let base = daemon.http_base();
    let events = station
        .wait_for("the speech on air", Duration::from_secs(50), |e| !of_kind(e, "airing_started", None).is_empty());
    crate::helpers::sleep_into_first_airing(&events, 3000);
    signal_device_writer(&station, "-STOP");
    let events = station
        .wait_for("the airing recorded", Duration::from_secs(30), |e| !of_kind(e, "airing_ended", None).is_empty());
    let ended = of_kind(&events, "airing_ended", None)[0].clone();
    assert_eq!(ended["status"], "partial", "{ended}");
    assert!(ended["reason"].as_str().unwrap().contains("audio device"), "{ended}");
    let (scheduled, planned) = (ended["scheduled_at"].as_i64().unwrap(), ended["planned_ms"].as_i64().unwrap());
    assert!(ended["ended_at"].as_i64().unwrap() <= scheduled + planned + 10_000, "within its deadline: {ended}");
    assert!(ended["played_ms"].as_i64().unwrap() < planned, "{ended}");
    assert_eq!(http_get(&base, "/healthz"), "200", "the station answers while its device hangs");
    signal_device_writer(&station, "-CONT");
    let events = station.wait_for("the next slot aired", Duration::from_secs(70), |e| {
        of_kind(e, "airing_ended", Some("completed")).len() == 1
    });
    daemon.stop();
    let endings = of_kind(&events, "airing_ended", None);
    let of_first = endings.iter().filter(|e| e["scheduled_at"] == ended["scheduled_at"]).count();
    assert_eq!(of_first, 1, "the hung airing is recorded once: {endings:?}");
    assert_eq!(verify(&station).code, 0);
}

/// No device at start (a USB card not yet plugged in): the slots fail with the reason and
/// `/healthz` says so; once the device appears, the next slot airs on it.
#[test]
fn a_device_missing_at_start_airs_the_next_slot_once_it_appears() {
    let station = station(5, 2, &[TONE]);
    let daemon = station.start(Device::Missing);
    let base = daemon.http_base();
    let events = station.wait_for("a slot failed on the missing device", Duration::from_secs(30), |e| {
        !of_kind(e, "airing_ended", Some("failed")).is_empty()
    });
    let failed = of_kind(&events, "airing_ended", Some("failed"))[0].clone();
    assert!(failed["reason"].as_str().unwrap().contains("audio device"), "{failed}");
    let (code, health) = crate::helpers::http_get_body(&base, "/healthz");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!((code.as_str(), health["checks"]["audio_device"]["ok"].as_bool()), ("200", Some(false)), "{health}");
    station.set_device(Device::Unpaced);
    station.wait_for("a slot aired on the device once it appeared", Duration::from_secs(30), |e| {
        !of_kind(e, "airing_ended", Some("completed")).is_empty()
    });
    let (_, health) = crate::helpers::http_get_body(&base, "/healthz");
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["checks"]["audio_device"]["ok"].as_bool(), Some(true), "{health}");
    daemon.stop();
}

/// libfaketime, where installed: the real binary's wall clock, stepped while it runs.
pub(crate) fn faketime_library() -> Option<PathBuf> {
    let found = std::fs::read_dir("/usr/lib")
        .ok()?
        .flatten()
        .map(|arch| arch.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    crate::helpers::require(found.is_some(), "libfaketime", "apt-get install faketime");
    found
}

/// The environment putting `loa run`'s wall clock (not its monotonic one) at the offset that
/// `offset_file` holds (`+600`, `-3600`), read again at each call so a test steps it.
pub(crate) fn stepped_clock<'a>(library: &'a Path, offset_file: &'a Path) -> [(&'static str, &'a str); 4] {
    [
        ("LD_PRELOAD", library.to_str().unwrap()),
        ("FAKETIME_TIMESTAMP_FILE", offset_file.to_str().unwrap()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]
}

/// The real binary, its wall clock stepped under it (NTP-like): back an hour, back again, then
/// ten minutes forward. No slot instant airs twice, every step back airs nothing old, and the
/// instants jumped over are recorded missed with the reason.
#[test]
fn the_real_clock_stepped_back_and_forward_never_double_airs_and_records_what_it_skipped() {
    let Some(library) = faketime_library() else { return };
    let station = station(3, 1, &[TONE]);
    let offset = station.dir.path().join("clock-offset");
    std::fs::write(&offset, "+0\n").unwrap();
    let env = stepped_clock(&library, &offset);
    let daemon = station.start_with_env(Device::Unpaced, &env);
    let completed = |e: &[serde_json::Value]| of_kind(e, "airing_ended", Some("completed")).len();
    let events = station.wait_for("two airings", Duration::from_secs(30), |e| completed(e) >= 2);
    let started_before = of_kind(&events, "airing_started", None).len();

    std::fs::write(&offset, "-3600\n").unwrap(); // an hour back
    std::thread::sleep(Duration::from_secs(6));
    let events = station.events();
    assert_eq!(of_kind(&events, "airing_started", None).len(), started_before, "nothing airs again after a step back");

    std::fs::write(&offset, "+0\n").unwrap(); // and forward again
    let events = station.wait_for("airing again", Duration::from_secs(30), |e| completed(e) >= 4);
    let done = completed(&events);
    std::fs::write(&offset, "+600\n").unwrap(); // ten minutes ahead
    let events = station.wait_for("the jumped-over slots recorded, then an airing", Duration::from_secs(60), |e| {
        crate::helpers::missed_instants(e) >= 190 && completed(e) > done
    });
    daemon.stop();

    crate::helpers::assert_each_instant_handled_once(&events);
    let aired: Vec<i64> =
        of_kind(&events, "airing_started", None).iter().map(|e| e["scheduled_at"].as_i64().unwrap()).collect();
    assert!(aired.windows(2).all(|w| w[0] < w[1]), "airings only move forward: {aired:?}");
    for missed in of_kind(&events, "slot_missed", None) {
        assert_eq!(missed["reason"], "clock_jumped", "{missed}");
    }
    let starts = of_kind(&events, "airing_started", None);
    for start in &starts {
        assert_eq!(
            of_kind(&events, "airing_ended", None).iter().filter(|e| e["airing_seq"] == start["seq"]).count(),
            1
        );
    }
    assert_eq!(verify(&station).code, 0);
}

/// A box back after a month in a storeroom (its wall clock 30 days on, libfaketime): the
/// month's missed slots are one `slot_missed` run, and an emergency the operator queues as it
/// comes back airs at once, outside any slot, ahead of every slot that begins after it was
/// queued.
#[test]
fn a_station_back_after_a_month_records_one_run_and_airs_an_emergency_queued_at_start_at_once() {
    let Some(library) = faketime_library() else { return };
    let station = station(4, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("a first airing", Duration::from_secs(30), |e| {
        !of_kind(e, "airing_ended", Some("completed")).is_empty()
    });
    daemon.stop();
    let emergency = station.input("khan.mp3", &fixture("mono_22k.mp3"));
    let added = station.add(&emergency, &["--title", "Khẩn cấp: lũ", "--priority", "emergency"]);
    assert_eq!(added.code, 0, "{}", added.stderr);
    let emergency_id = added.json()["id"].as_i64().unwrap();
    let token = station.token("operator");
    let before = station.events().len();

    let month = 30 * 86_400;
    let offset = station.dir.path().join("clock-offset");
    std::fs::write(&offset, format!("+{month}\n")).unwrap();
    // (Unpaced: a `pv` pacing the device would run on the faked clock too, and stall for a month
    // once the offset file is gone with the test's directory.)
    let daemon = station.start_with_env(Device::Unpaced, &stepped_clock(&library, &offset));
    let body = format!("{{\"clip_id\": {emergency_id}, \"when\": \"now\"}}");
    assert_eq!(crate::helpers::http_post(&daemon.http_base(), "/api/v1/queue", &token, &body), "202");
    // The station's clock when the queue had answered.
    let queued_at = chrono::Utc::now().timestamp_millis() + month * 1000;
    // (Slots may air the emergency clip too: it leads their programs. Queued, it airs in none.)
    let queued_airing = |a: &&serde_json::Value| a["clip_id"] == emergency_id && a["slot"].is_null();
    let events = station.wait_for("the emergency aired", Duration::from_secs(60), |e| {
        of_kind(e, "airing_ended", None).iter().any(queued_airing)
    });
    daemon.stop();

    let new = &events[before..];
    // The month is one run (the instant that fell just before the start may follow on its own,
    // missed while the emergency aired first).
    let runs = of_kind(new, "slot_missed", None);
    assert!(runs.len() <= 2 && runs.iter().all(|r| r["reason"] == "station_down"), "{runs:?}");
    assert!(runs[0]["count"].as_u64().unwrap() >= 647_999, "{}", runs[0]);
    let urgent = of_kind(new, "airing_started", None).into_iter().find(queued_airing).unwrap();
    let ended = of_kind(new, "airing_ended", None).into_iter().find(|a| a["airing_seq"] == urgent["seq"]).unwrap();
    assert_eq!(ended["status"], "completed", "{ended}");
    let late_slots: Vec<_> = of_kind(new, "airing_started", None)
        .into_iter()
        .filter(|a| a["slot"].is_string() && a["at"].as_i64() > Some(queued_at))
        .filter(|a| a["seq"].as_i64() < urgent["seq"].as_i64())
        .collect();
    assert!(late_slots.is_empty(), "slots began after the emergency was queued and before it: {late_slots:?}");
    crate::helpers::assert_each_instant_handled_once(&events);
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn two_backups_into_one_directory_in_the_same_second_both_succeed() {
    let station = station(30, 5, &[]);
    station.token("district"); // something in the log
    let dir = station.dir.path().join("usb");
    std::fs::create_dir(&dir).unwrap();
    for _ in 0..2 {
        let run = station.loa(&["backup", dir.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "two files, none overwritten");
}
