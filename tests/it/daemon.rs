//! `loa run` for real: slots air through rodio → cpal → ALSA (a `file` device), every airing
//! lands in the proof log with what the device took, and crashes, shutdowns, outages and a
//! missing device are recorded as what they were.

use std::time::Duration;

use chrono::Datelike;

use crate::helpers::{
    AIR_CHANNELS, AIR_RATE, Device, Station, air_samples, http_post, http_upload, of_kind, sleep_into_first_airing,
    station, verify,
};

const TONE: &str = "cbr128_stereo_44k.mp3"; // 2.000 s, 440 Hz, -6 dBFS
const LONG_SPEECH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/audio/cchc-ban-tin-tuan.mp3"); // 16.6 s
/// Generous: CI machines may be busy; a wait ends as soon as its condition holds.
const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_slot_airs_through_alsa_and_its_proof_verifies() {
    let station = station(3, 2, &[TONE]);
    let daemon = station.start(Device::Paced);
    let events =
        station.wait_for("a completed airing", WAIT, |e| !of_kind(e, "airing_ended", Some("completed")).is_empty());
    daemon.stop();

    let ended = of_kind(&events, "airing_ended", Some("completed"))[0];
    assert_eq!(ended["planned_ms"], 2000);
    let played = ended["played_ms"].as_i64().unwrap();
    assert!((1950..=2050).contains(&played), "played {played} ms of 2000");
    assert_eq!(ended["slot"], "nhanh");
    assert_eq!(ended["peak"], true);
    assert!(ended["started_at"].as_i64().unwrap() >= ended["scheduled_at"].as_i64().unwrap());
    assert!(ended["clock_synced"].is_boolean());

    // The air signal the device took: as long as the clip, at the level the record claims.
    let samples = air_samples(&station.air_path());
    let loud: Vec<usize> = samples.iter().enumerate().filter(|(_, s)| s.abs() > 0.01).map(|(i, _)| i).collect();
    let first = loud.first().copied().expect("non-silent air");
    // The first airing ends where the signal falls silent for a while (the next slot may follow).
    let gap = AIR_RATE as usize * AIR_CHANNELS / 5;
    let last = loud.windows(2).find(|w| w[1] - w[0] > gap).map_or(*loud.last().unwrap(), |w| w[0]);
    let heard_ms = ((last - first) / AIR_CHANNELS) as f64 * 1000.0 / AIR_RATE as f64;
    assert!((heard_ms - 2000.0).abs() <= 50.0, "heard {heard_ms:.1} ms of a 2000 ms tone");
    let captured_peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    let captured_dbfs = 20.0 * f64::from(captured_peak).log10();
    assert!(ended["peak_cdbfs"].is_i64(), "levels are signed as whole hundredths of a dB: {ended}");
    let recorded_dbfs = ended["peak_cdbfs"].as_f64().unwrap() / 100.0;
    assert!((captured_dbfs - recorded_dbfs).abs() < 0.5, "captured {captured_dbfs:.2} dBFS, recorded {recorded_dbfs}");
    // Gain toward -16 LUFS: the -7 LUFS tone is turned down about 9 dB.
    assert!((-16.5..=-14.0).contains(&recorded_dbfs), "peak after gain {recorded_dbfs}");

    let events = station.events();
    assert_eq!(events.last().unwrap()["kind"], "station_stopped");
    let run = verify(&station);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with(&format!("ok: {} events", events.len())), "{}", run.stdout);
}

#[test]
fn every_airing_start_has_exactly_one_end_and_seq_is_gapless() {
    let station = station(2, 1, &[TONE, "vbr_stereo_44k.mp3"]);
    let daemon = station.start(Device::Unpaced);
    // A clip added from the CLI while the daemon writes: one linear chain all the same.
    let added = station.add(&station.input("mono.mp3", &crate::helpers::fixture("mono_22k.mp3")), &[]);
    assert_eq!(added.code, 0, "{}", added.stderr);
    station.wait_for("three slots", WAIT, |e| of_kind(e, "airing_ended", None).len() >= 6);
    daemon.stop();

    let events = station.events();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], i as i64 + 1, "seq is gapless");
    }
    for start in of_kind(&events, "airing_started", None) {
        let ends = events.iter().filter(|e| e["kind"] == "airing_ended" && e["airing_seq"] == start["seq"]).count();
        assert_eq!(ends, 1, "airing {} has {ends} endings", start["seq"]);
    }
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn kill_9_mid_airing_is_recorded_interrupted_after_restart() {
    let station = station(2, 1, &[LONG_SPEECH]);
    let daemon = station.start(Device::Paced);
    let events = station.wait_for("an airing under way", WAIT, |e| !of_kind(e, "airing_started", None).is_empty());
    sleep_into_first_airing(&events, 3500); // let heartbeats (every second while airing) record progress
    daemon.kill();

    let daemon = station.start(Device::Unpaced);
    let events = station
        .wait_for("the cut airing closed", WAIT, |e| !of_kind(e, "airing_ended", Some("interrupted")).is_empty());
    daemon.stop();

    let ended = of_kind(&events, "airing_ended", Some("interrupted"))[0];
    assert_eq!(ended["airing_seq"], of_kind(&events, "airing_started", None)[0]["seq"]);
    assert!(ended["reason"].as_str().unwrap().contains("power loss or crash"), "{ended}");
    let played = ended["played_ms"].as_i64().unwrap();
    assert!(played > 0 && played < 16_000, "the last heartbeat measured {played} ms played: {ended}");
    let started = of_kind(&events, "station_started", None);
    assert_eq!(started.len(), 2);
    assert!(started[1]["last_alive_at"].is_i64(), "the restart names when the station was last alive");
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn shutdown_mid_airing_is_recorded_interrupted() {
    let station = station(2, 1, &[LONG_SPEECH]);
    let daemon = station.start(Device::Paced);
    let events = station.wait_for("an airing under way", WAIT, |e| !of_kind(e, "airing_started", None).is_empty());
    sleep_into_first_airing(&events, 1000);
    daemon.stop();

    let events = station.events();
    let ended = of_kind(&events, "airing_ended", None);
    assert_eq!(ended.len(), 1);
    assert_eq!((ended[0]["status"].as_str(), ended[0]["reason"].as_str()), (Some("interrupted"), Some("shutdown")));
    let played = ended[0]["played_ms"].as_i64().unwrap();
    assert!(played > 300 && played < 16_000, "played {played}");
    assert_eq!(events.last().unwrap()["kind"], "station_stopped");
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn slots_that_fall_while_the_station_is_down_are_recorded_missed() {
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("one airing", WAIT, |e| !of_kind(e, "airing_ended", None).is_empty());
    daemon.stop();
    std::thread::sleep(Duration::from_secs(9)); // at least three slots fall while down
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("the outage recorded", WAIT, |e| !of_kind(e, "slot_missed", None).is_empty());
    daemon.stop();

    let missed = of_kind(&events, "slot_missed", None);
    assert!(
        missed.iter().all(|m| m["reason"] == "station_down" && m["slot"] == "nhanh" && m["status"] == "missed"),
        "{missed:#?}"
    );
    assert!(crate::helpers::missed_instants(&events) >= 3, "{missed:#?}");
    assert_eq!(missed.len(), 1, "one run for the outage, not one event per instant: {missed:#?}");
    crate::helpers::assert_each_instant_handled_once(&events);
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn a_missing_device_fails_the_airing_and_the_daemon_keeps_going() {
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Missing);
    let events = station.wait_for("two failed slots", WAIT, |e| of_kind(e, "airing_ended", Some("failed")).len() >= 2);
    daemon.stop();
    let failed = of_kind(&events, "airing_ended", Some("failed"));
    assert!(failed[0]["reason"].as_str().unwrap().contains("ALSA"), "{}", failed[0]);
    assert_eq!(failed[0]["played_ms"], 0);
    assert!(failed[0]["started_at"].is_null(), "nothing reached the device, so no start time");
    // One line says what to do about it, once, not at every slot.
    let log = std::fs::read_to_string(station.dir.path().join("daemon.log")).unwrap();
    assert_eq!(log.matches("ALSA_CONFIG_PATH=config/alsa-file-paced.conf").count(), 1, "{log}");
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn a_dead_device_ends_the_slot_and_every_planned_item_is_still_recorded() {
    let station = station(3, 1, &[TONE, "vbr_stereo_44k.mp3"]);
    let daemon = station.start(Device::Missing);
    let events = station.wait_for("a slot's two items recorded", WAIT, |e| of_kind(e, "airing_ended", None).len() >= 2);
    daemon.stop();
    let ended = of_kind(&events, "airing_ended", None);
    assert_eq!(ended[0]["scheduled_at"], ended[1]["scheduled_at"], "one slot's program");
    assert!(ended.iter().all(|e| e["status"] == "failed" && e["played_ms"] == 0), "{ended:#?}");
    assert!(ended[0]["reason"].as_str().unwrap().contains("ALSA"), "{}", ended[0]);
    assert!(ended[1]["reason"].as_str().unwrap().starts_with("not played: audio device error"), "{}", ended[1]);
    assert_eq!(of_kind(&events, "airing_started", None).len(), ended.len(), "every start has its end");
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn a_clip_that_no_longer_decodes_is_set_aside_and_the_rest_of_its_slot_airs() {
    let station = station(6, 2, &[TONE, "vbr_stereo_44k.mp3"]);
    // Both pass ingest; then the disk damages one (a bad SD card sector).
    let daemon = station.start(Device::Paced);
    let events = station.wait_for("the library loaded", WAIT, |e| of_kind(e, "clip_added", None).len() == 2);
    let damaged = of_kind(&events, "clip_added", None)[1];
    let path = station.data_dir().join("clips").join(format!("{}.mp3", damaged["clip_sha256"].as_str().unwrap()));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 400].fill(0x55);
    std::fs::write(&path, bytes).unwrap();

    let events = station.wait_for("two slots", WAIT, |e| {
        of_kind(e, "airing_ended", Some("completed")).len() >= 2 && !of_kind(e, "clip_retired", None).is_empty()
    });
    daemon.stop();
    let bad = of_kind(&events, "airing_ended", Some("failed"));
    assert_eq!(bad.len(), 1, "tried once, then set aside: {bad:#?}");
    assert_eq!(bad[0]["clip_id"], damaged["clip_id"]);
    assert!(bad[0]["reason"].as_str().unwrap().starts_with("the clip cannot be decoded"), "{}", bad[0]);
    let retired = of_kind(&events, "clip_retired", None)[0];
    assert_eq!(retired["clip_id"], damaged["clip_id"]);
    assert!(retired["reason"].as_str().unwrap().contains("cannot be decoded"), "the operator is told why: {retired}");
    // The rest of that slot aired, and so did the next slot.
    let good = of_kind(&events, "airing_ended", Some("completed"));
    assert!(good.iter().any(|e| e["scheduled_at"] == bad[0]["scheduled_at"]), "the slot went on: {good:#?}");
    assert!(good.iter().all(|e| e["clip_id"] != damaged["clip_id"]));
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn a_device_that_takes_a_long_bulletin_at_once_is_not_recorded_as_heard_whole() {
    let station = station(30, 5, &[LONG_SPEECH]);
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("an airing", WAIT, |e| !of_kind(e, "airing_ended", None).is_empty());
    daemon.stop();
    let ended = of_kind(&events, "airing_ended", None)[0];
    assert_eq!(ended["status"], "partial", "{ended}");
    assert!(ended["reason"].as_str().unwrap().contains("not playing in real time"), "{ended}");
    // What the device took is in the reason; what counts as played is what real time allowed.
    assert!(ended["reason"].as_str().unwrap().contains("took 16640 ms of audio in"), "{ended}");
    let span = ended["ended_at"].as_i64().unwrap() - ended["started_at"].as_i64().unwrap();
    assert!(span < 16_640, "the evidence shows why: {span} ms from first frame to last played out");
    let played = ended["played_ms"].as_i64().unwrap();
    assert!(played < 16_640 && played <= span + 1_000, "no more than real time allowed: {ended}");
}

#[test]
fn a_slot_with_nothing_to_air_is_recorded() {
    let station = station(2, 1, &[]);
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("an empty slot", WAIT, |e| !of_kind(e, "slot_missed", None).is_empty());
    daemon.stop();
    assert_eq!(of_kind(&events, "slot_missed", None)[0]["reason"], "no_eligible_clip");
}

#[test]
fn an_emergency_queued_now_preempts_a_quota_airing_which_is_then_made_up() {
    let station = station(30, 30, &[LONG_SPEECH]);
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    std::fs::write(station.config_path(), format!("{config}[[quota]]\ntopic = \"cchc\"\nper = \"week\"\n")).unwrap();
    let run = station.add(
        &station.input("khan-cap.mp3", &crate::helpers::fixture(TONE)),
        &["--title", "Khẩn cấp: bão", "--priority", "emergency", "--valid-until", "2020-01-01"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let emergency = run.json()["id"].as_i64().unwrap();
    let token = station.loa(&["token", "create", "--role", "operator", "--label", "test"]);
    assert_eq!(token.code, 0, "{}", token.stderr);
    let token = token.stdout.trim().to_owned();

    let daemon = station.start(Device::Paced);
    let base = daemon.http_base();
    let events = station
        .wait_for("the speech on air", Duration::from_secs(45), |e| !of_kind(e, "airing_started", None).is_empty());
    sleep_into_first_airing(&events, 1500);
    let body = format!("{{\"clip_id\": {emergency}, \"when\": \"now\"}}");
    let queued = http_post(&base, "/api/v1/queue", &token, &body);
    assert_eq!(queued, "202");
    let events = station.wait_for("the emergency aired and the quota item came back", Duration::from_secs(90), |e| {
        let aired =
            e.iter().any(|x| x["kind"] == "airing_ended" && x["clip_id"] == emergency && x["status"] == "completed");
        aired && of_kind(e, "airing_started", None).iter().filter(|x| x["quota"] == "cchc/week").count() >= 2
    });
    daemon.stop();

    let preempted = of_kind(&events, "airing_ended", Some("preempted"));
    assert_eq!(preempted.len(), 1, "{events:#?}");
    assert_eq!(preempted[0]["quota"], "cchc/week", "the pre-empted airing was the quota item");
    let make_up =
        of_kind(&events, "airing_started", None).into_iter().filter(|x| x["quota"] == "cchc/week").nth(1).unwrap();
    assert!(make_up["scheduled_at"].as_i64() > preempted[0]["scheduled_at"].as_i64(), "made up in the next slot");
    assert!(preempted[0]["played_ms"].as_i64().unwrap() < 16_000);
    let aired = events.iter().find(|x| x["kind"] == "airing_ended" && x["clip_id"] == emergency).unwrap();
    assert!(aired["slot"].is_null(), "an emergency airs outside any slot: {aired}");
    assert!(aired["seq"].as_i64() > preempted[0]["seq"].as_i64());
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn an_upload_during_an_airing_does_not_disturb_it() {
    let station = station(30, 30, &[LONG_SPEECH]);
    let token = station.loa(&["token", "create", "--role", "operator", "--label", "test"]);
    let token = token.stdout.trim().to_owned();
    let daemon = station.start(Device::Paced);
    let base = daemon.http_base();
    let events = station
        .wait_for("the speech on air", Duration::from_secs(45), |e| !of_kind(e, "airing_started", None).is_empty());
    sleep_into_first_airing(&events, 1000);

    // A 3 MiB upload (valid MP3: the tone repeated), decoded by the station while it airs.
    let tone = crate::helpers::fixture(TONE);
    let mut big = Vec::new();
    while big.len() < 3 << 20 {
        big.extend_from_slice(&tone);
    }
    let status = http_upload(&base, &token, &big);
    assert_eq!(status, "201");
    let events = station.wait_for("the airing ended", WAIT, |e| !of_kind(e, "airing_ended", None).is_empty());
    daemon.stop();

    let ended = of_kind(&events, "airing_ended", None)[0];
    assert_eq!(ended["status"], "completed", "{ended}");
    let (played, planned) = (ended["played_ms"].as_i64().unwrap(), ended["planned_ms"].as_i64().unwrap());
    assert!((played - planned).abs() <= 50, "played {played} of {planned} ms");
    assert!(ended["silent_ms"].as_i64().unwrap() < planned / 2, "no gap of silence: {ended}");
}

#[test]
fn an_unmet_quota_leads_the_slot_until_a_completed_airing_meets_it() {
    let station = Station::with_config(
        "[station]\nid = \"phu-thuy\"\nname = \"Đài\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[slot]]\nname = \"nhanh\"\ncron = \"*/3 * * * * Mon-Sun\"\nmax_minutes = 1\npeak = true\ngrace_seconds = 1\n\
         [[quota]]\ntopic = \"cchc\"\nper = \"week\"\ncount = 1\npeak_only = true\n",
    );
    let add = |file: &str, extra: &[&str]| {
        let run = station.add(&station.input(file, &crate::helpers::fixture(file)), extra);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()["id"].as_i64().unwrap()
    };
    let notice = add(TONE, &["--topic", "thong-bao", "--priority", "priority"]);
    let bulletin = add("vbr_stereo_44k.mp3", &["--topic", "cchc"]);
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("two slots", WAIT, |e| of_kind(e, "airing_ended", Some("completed")).len() >= 4);
    daemon.stop();

    let order: Vec<i64> =
        of_kind(&events, "airing_started", None).iter().map(|e| e["clip_id"].as_i64().unwrap()).collect();
    assert_eq!(&order[..4], [bulletin, notice, notice, bulletin], "quota first while unmet, then priority first");

    // This week's report counts the completed CCHC airings from the log.
    let week = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Ho_Chi_Minh).date_naive().iso_week();
    let period = format!("{}-W{:02}", week.year(), week.week());
    let report = station.loa(&["compliance", "--period", &period]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let report = report.json();
    let completed_cchc =
        of_kind(&station.events(), "airing_ended", Some("completed")).iter().filter(|e| e["topic"] == "cchc").count();
    assert_eq!(report["quotas"][0]["periods"][0]["completed"], completed_cchc as u64);
    assert_eq!(report["quotas"][0]["periods"][0]["met"], true);
    let bad = station.loa(&["compliance", "--period", "last-week"]);
    assert_eq!(bad.code, 1);
    assert!(bad.error_line().contains("--period: \"last-week\" is not a period"), "{}", bad.stderr);
}

#[test]
fn amplifier_hooks_frame_each_block_and_their_failures_are_recorded() {
    let station = station(4, 2, &[TONE]);
    let dir = station.dir.path().display().to_string();
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    std::fs::write(
        station.config_path(),
        format!(
            "{config}[audio]\nwarmup_ms = 300\n\
             before_air = [\"sh\", \"-c\", \"date +%s%3N >> {dir}/on\"]\n\
             after_air = [\"sh\", \"-c\", \"date +%s%3N >> {dir}/off; echo relay stuck >&2; exit 4\"]\n"
        ),
    )
    .unwrap();
    let daemon = station.start(Device::Paced);
    let events = station.wait_for("an airing and its after_air failure", WAIT, |e| {
        !of_kind(e, "airing_ended", None).is_empty() && !of_kind(e, "amplifier_hook_failed", None).is_empty()
    });
    daemon.stop();
    let times = |name: &str| -> Vec<i64> {
        let text = std::fs::read_to_string(station.dir.path().join(name)).unwrap();
        text.lines().map(|l| l.trim().parse().unwrap()).collect()
    };
    let ended = of_kind(&events, "airing_ended", None)[0];
    assert_eq!(ended["status"], "completed", "a failing after_air does not touch the airing: {ended}");
    assert_eq!(
        (&ended["before_air_ok"], &ended["before_air_detail"]),
        (&serde_json::json!(true), &serde_json::Value::Null)
    );
    let (on, off) = (times("on")[0], times("off")[0]);
    let first_frame = ended["started_at"].as_i64().unwrap();
    assert!(on + 300 <= first_frame, "switched on {} ms before the first frame (warm-up 300)", first_frame - on);
    assert!(off >= ended["ended_at"].as_i64().unwrap(), "switched off after the airing ended");
    let failed = of_kind(&events, "amplifier_hook_failed", None)[0];
    assert_eq!((failed["hook"].as_str(), failed["slot"].as_str()), (Some("after_air"), Some("nhanh")));
    let detail = failed["detail"].as_str().unwrap();
    assert!(detail.contains("exit status: 4") && detail.ends_with("relay stuck"), "{detail}");
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn a_required_amplifier_hook_that_fails_fails_the_airing_without_sound() {
    let station = station(3, 2, &[TONE]);
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    std::fs::write(
        station.config_path(),
        format!(
            "{config}[audio]\nhook_required = true\nbefore_air = [\"sh\", \"-c\", \"echo no relay >&2; exit 1\"]\n"
        ),
    )
    .unwrap();
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("two slots tried", WAIT, |e| of_kind(e, "airing_ended", Some("failed")).len() >= 2);
    daemon.stop();
    for ended in of_kind(&events, "airing_ended", None) {
        assert_eq!(ended["status"], "failed", "{ended}");
        assert_eq!(ended["played_ms"], 0);
        assert_eq!(ended["before_air_ok"], false);
        let reason = ended["reason"].as_str().unwrap();
        assert!(reason.contains("audio.hook_required") && reason.ends_with("no relay"), "{reason}");
    }
    let air = std::fs::metadata(station.air_path()).map_or(0, |m| m.len());
    assert_eq!(air, 0, "nothing may reach the device");
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn a_second_daemon_on_the_same_log_exits_at_once_naming_the_first() {
    let station = station(30, 5, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("on air", WAIT, |e| !of_kind(e, "station_started", None).is_empty());
    // Its own port (127.0.0.1:0), as a busy port's message advises: still one log, one daemon.
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["--config", station.config_path().to_str().unwrap(), "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            panic!("a second loa run kept running beside the first");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(second.stderr.take().unwrap()).unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", daemon.pid())) && stderr.contains("one daemon"), "{stderr}");
    // CLI writers go on beside the daemon.
    let added =
        station.add(&station.input("b.mp3", &crate::helpers::fixture("mono_22k.mp3")), &["--title", "Bên cạnh"]);
    assert_eq!(added.code, 0, "{}", added.stderr);
    daemon.stop();
    let events = station.events();
    assert_eq!(of_kind(&events, "station_started", None).len(), 1, "the second daemon wrote nothing");
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn a_damaged_log_is_recorded_and_shown_while_the_station_keeps_airing() {
    let station = station(3, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("an airing", WAIT, |e| !of_kind(e, "airing_ended", None).is_empty());
    daemon.stop();
    let events = station.events();
    let victim = of_kind(&events, "airing_ended", None)[0];
    let seq = victim["seq"].as_i64().unwrap();
    // Someone with the database drops the guard and makes an airing look completed.
    let db = rusqlite::Connection::open(station.data_dir().join("loa.sqlite")).unwrap();
    db.execute_batch("DROP TRIGGER events_are_never_updated;").unwrap();
    let edited =
        db.execute("UPDATE events SET body = json_set(body, '$.played_ms', 999999) WHERE seq = ?1", [seq]).unwrap();
    assert_eq!(edited, 1);
    drop(db);

    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();
    // The check runs as the engine starts, beside the API: wait for its verdict.
    let deadline = std::time::Instant::now() + WAIT;
    let health = loop {
        let (status, health) = crate::helpers::http_get_body(&base, "/healthz");
        assert_eq!(status, "200");
        let health: serde_json::Value = serde_json::from_str(&health).unwrap();
        if health["checks"]["proof_log"]["state"] == "damaged" || std::time::Instant::now() > deadline {
            break health;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["proof_log"]["seq"], seq, "{health}");
    assert!(health["checks"]["store"].as_str().unwrap().contains(&format!("damaged at seq {seq}")), "{health}");
    // The station keeps airing; the damage is in the log, signed.
    let damaged_ok = || {
        let run = station.loa(&["airtime", "--damaged-ok"]);
        run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<serde_json::Value>>()
    };
    let deadline = std::time::Instant::now() + WAIT;
    let events = loop {
        let events = damaged_ok();
        if of_kind(&events, "airing_ended", None).len() >= 2 || std::time::Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    daemon.stop();
    assert!(of_kind(&events, "airing_ended", None).len() >= 2, "the station stopped airing");
    let recorded = of_kind(&events, "log_damaged", None);
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    assert_eq!(recorded[0]["damaged_seq"], seq);
    assert_eq!(recorded[0]["stored_hash"], victim["hash"]);
    assert_ne!(recorded[0]["computed_hash"], victim["hash"]);
    // Never exported as whole; the guard is back.
    let run = station.loa(&["airtime"]);
    assert_eq!(run.code, 1);
    assert!(run.error_line().contains(&format!("damaged at seq {seq}")), "{}", run.stderr);
    let db = rusqlite::Connection::open(station.data_dir().join("loa.sqlite")).unwrap();
    let guard: i64 = db
        .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'events_are_never_updated'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(guard, 1, "the append-only trigger is put back");
}

/// A new emergency pre-empts an older one still airing (TT 39/2020: the newest warning first);
/// the older is recorded `preempted`, not completed, so it is still owed.
#[test]
fn a_new_emergency_preempts_an_older_emergency_on_air() {
    let station = crate::helpers::Station::with_config(
        "[station]\nid = \"phu-thuy\"\nname = \"Đài phường Phú Thủy\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[slot]]\nname = \"dem\"\ncron = \"0 0 3 1 1 *\"\nmax_minutes = 1\n",
    );
    let add = |file: &str, bytes: &[u8], title: &str| {
        let added = station.add(&station.input(file, bytes), &["--title", title, "--priority", "emergency"]);
        assert_eq!(added.code, 0, "{}", added.stderr);
        added.json()["id"].as_i64().unwrap()
    };
    let older = add("bao.mp3", &std::fs::read(LONG_SPEECH).unwrap(), "Khẩn cấp: bão");
    let newer = add("lu.mp3", &crate::helpers::fixture(TONE), "Khẩn cấp: lũ quét");
    let token = station.token("operator");
    let daemon = station.start(Device::Paced);
    let base = daemon.http_base();
    let queue =
        |id: i64| http_post(&base, "/api/v1/queue", &token, &format!("{{\"clip_id\": {id}, \"when\": \"now\"}}"));
    assert_eq!(queue(older), "202");
    station.wait_for("the first emergency on air", WAIT, |e| !of_kind(e, "airing_started", None).is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(queue(newer), "202");
    let events = station.wait_for("the second emergency aired", WAIT, |e| {
        of_kind(e, "airing_ended", None).iter().any(|a| a["clip_id"] == newer)
    });
    daemon.stop();
    let ended = of_kind(&events, "airing_ended", None);
    let first = ended.iter().find(|a| a["clip_id"] == older).expect("the older emergency's record");
    assert_eq!(first["status"], "preempted", "{first}");
    let second = ended.iter().find(|a| a["clip_id"] == newer).unwrap();
    assert_eq!(second["status"], "completed", "{second}");
    assert!(ended.iter().position(|a| a["clip_id"] == older) < ended.iter().position(|a| a["clip_id"] == newer));
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn an_emergency_queued_now_interrupts_a_normal_bulletin_queued_now() {
    // No slot fires during the test: only what is queued airs.
    let station = crate::helpers::Station::with_config(&format!(
        "[station]\nid = \"phu-thuy\"\nname = \"Đài phường Phú Thủy\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[slot]]\nname = \"dem\"\ncron = \"0 0 3 1 1 *\"\nmax_minutes = 1\n\
         [[preload]]\nfile = \"{LONG_SPEECH}\"\ntitle = \"Bản tin dài\"\ntopic = \"cchc\"\n"
    ));
    let emergency = station.input("khan.mp3", &crate::helpers::fixture(TONE));
    let added = station.add(&emergency, &["--title", "Khẩn cấp: bão", "--priority", "emergency"]);
    assert_eq!(added.code, 0, "{}", added.stderr);
    let emergency_id = added.json()["id"].as_i64().unwrap();
    let token = station.token("operator");
    let daemon = station.start(Device::Paced);
    let base = daemon.http_base();
    let events = station.wait_for("the library", WAIT, |e| of_kind(e, "clip_added", None).len() == 2);
    let long_id = of_kind(&events, "clip_added", None).iter().find(|e| e["title"] == "Bản tin dài").unwrap()["clip_id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        http_post(&base, "/api/v1/queue", &token, &format!("{{\"clip_id\": {long_id}, \"when\": \"now\"}}")),
        "202"
    );
    station.wait_for("the long bulletin on air", WAIT, |e| !of_kind(e, "airing_started", None).is_empty());
    std::thread::sleep(Duration::from_secs(2));
    let queued_at = chrono::Utc::now().timestamp_millis();
    let body = format!("{{\"clip_id\": {emergency_id}, \"when\": \"now\"}}");
    assert_eq!(http_post(&base, "/api/v1/queue", &token, &body), "202");
    let events = station.wait_for("the emergency aired", WAIT, |e| {
        of_kind(e, "airing_ended", None).iter().any(|a| a["clip_id"] == emergency_id)
    });
    daemon.stop();
    let ended = of_kind(&events, "airing_ended", None);
    let long = ended.iter().find(|a| a["clip_id"] == long_id).expect("the long bulletin's record");
    assert_eq!(long["status"], "preempted", "{long}");
    let urgent = ended.iter().find(|a| a["clip_id"] == emergency_id).unwrap();
    assert_eq!(urgent["status"], "completed", "{urgent}");
    // Within a second or so of being queued, not after the 16.6 s bulletin.
    let waited = urgent["started_at"].as_i64().unwrap() - queued_at;
    assert!(waited < 2000, "the emergency waited {waited} ms behind a normal bulletin");
    assert_eq!(verify(&station).code, 0);
}
