//! The real engine loop on a virtual clock: NTP steps back and forward through the loop itself
//! (store, scheduler, player thread and all), with no waiting for real time. The audio device
//! is one that does not exist, so each fired slot is a quick `failed` airing: what is checked
//! here is which slots fired, and how often.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use loa::air::engine::Engine;
use loa::air::live::Live;
use loa::audio::process::DeviceProcess;
use loa::config::Config;
use loa::library::ingest::Library;
use loa::store::{EventQuery, Store, StoreHandle};
use loa::time::clock::{Clock, VirtualClock};
use serde_json::Value;
use tokio::sync::watch;

use crate::helpers::{Station, fixture};

const CONFIG: &str = r#"
[station]
id = "phu-thuy"
name = "Đài truyền thanh phường Phú Thủy"
data_dir = "data"
[audio]
device = "loa-test-no-such-device"
[[slot]]
name = "sang"
cron = "0 30 5 * * Mon-Sun"
max_minutes = 15
peak = true
grace_seconds = 300
[[slot]]
name = "chieu"
cron = "0 0 17 * * Mon-Sun"
max_minutes = 15
peak = true
grace_seconds = 300
"#;

fn local(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Ho_Chi_Minh.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap().with_timezone(&Utc)
}

/// Lets the engine run until the virtual clock reaches `t`; fails if the engine stops first.
async fn run_until<T>(clock: &VirtualClock, engine: &tokio::task::JoinHandle<T>, t: DateTime<Utc>) {
    while clock.now() < t {
        assert!(!engine.is_finished(), "the engine stopped at {} before {t}", clock.now());
        tokio::task::yield_now().await;
    }
}

fn open_store(config: &Config) -> Store {
    Store::open(&config.station.data_dir, &config.station.id).unwrap()
}

/// The real engine (real store, the real device process on a device that does not exist) on
/// `clock`.
/// `loa audio-worker` of the build under test, as `loa run` starts it.
fn device_process() -> DeviceProcess {
    DeviceProcess::new(vec![env!("CARGO_BIN_EXE_loa").into()])
}

fn engine(config: &Config, clock: &Arc<VirtualClock>, shutdown: watch::Receiver<bool>, live: Live) -> Engine {
    let library = Library::open(&config.station.data_dir, config.clips).unwrap();
    let (store, player) = (StoreHandle::spawn(open_store(config)), Arc::new(device_process()));
    Engine::new(Arc::new(config.clone()), store, player, clock.clone(), library, live, shutdown)
}

fn proof_log(config: &Config) -> Vec<Value> {
    open_store(config).events(EventQuery::default()).unwrap().iter().map(|e| Value::Object(e.fields())).collect()
}

#[tokio::test(flavor = "current_thread")]
async fn a_clock_behind_the_log_waits_for_ntp_and_never_airs_a_wrong_date() {
    let station = Station::with_config(&format!("{CONFIG}[clock]\nsync_wait_seconds = 600\n"));
    let config = Config::load(&station.config_path()).unwrap();
    // Added on the simulated timeline (the CLI would stamp it with today's real date).
    let library = Library::open(&config.station.data_dir, config.clips).unwrap();
    let mut staged = library.stage(0).unwrap();
    std::io::Write::write_all(&mut staged, &fixture("cbr128_stereo_44k.mp3")).unwrap();
    let meta = loa::model::clip::ClipMeta {
        title: "Bản tin".into(),
        topic: "cchc".into(),
        language: "vi".into(),
        priority: loa::model::clip::Priority::Normal,
        valid_from: None,
        valid_until: None,
    };
    library.admit(staged, &meta, &mut open_store(&config), local(22, 9, 0)).unwrap();

    // A normal morning: 05:30 on the 23rd airs.
    let clock = Arc::new(VirtualClock::new(local(23, 5, 29)));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(engine(&config, &clock, shutdown, Live::default()).run());
    run_until(&clock, &running, local(23, 5, 31)).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let before = proof_log(&config).len();

    // Power cut; the box boots with no RTC, three days behind, and NTP is slow to come.
    let clock = Arc::new(VirtualClock::new(local(20, 12, 0)));
    clock.set_synchronized(false);
    let (stop, shutdown) = watch::channel(false);
    let live = Live::default();
    let running = tokio::spawn(engine(&config, &clock, shutdown, live.clone()).run());
    run_until(&clock, &running, local(20, 12, 5)).await;
    assert_eq!(proof_log(&config).len(), before, "nothing is written on a wrong date while waiting");
    assert!(live.snapshot().clock_behind.is_some_and(|b| b.waiting_for_sync));
    // NTP answers: the clock steps to 17:01 on the 23rd.
    clock.step(local(23, 17, 1) - local(20, 12, 5));
    clock.set_synchronized(true);
    run_until(&clock, &running, local(23, 17, 3)).await;
    assert!(live.snapshot().clock_behind.is_none());
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let events = proof_log(&config);
    let started = events.iter().rev().find(|e| e["kind"] == "station_started").unwrap();
    assert_eq!(started["clock_behind_ms"], 0, "{started}");
    assert!(started["clock_waited_ms"].as_u64().unwrap() >= 300_000, "{started}");
    assert!(started["at"].as_i64() >= Some(local(23, 17, 1).timestamp_millis()), "written after the step: {started}");

    // Again, and this time NTP never comes: after the bound it runs, flagged, and still airs
    // nothing from before the last recorded event.
    let clock = Arc::new(VirtualClock::new(local(20, 12, 0)));
    clock.set_synchronized(false);
    let (stop, shutdown) = watch::channel(false);
    let live = Live::default();
    let running = tokio::spawn(engine(&config, &clock, shutdown, live.clone()).run());
    run_until(&clock, &running, local(21, 6, 0)).await; // past the 20th's 17:00 and the 21st's 05:30
    assert!(live.snapshot().clock_behind.is_some_and(|b| !b.waiting_for_sync), "gave up waiting, says so");
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let events = proof_log(&config);
    let started = events.iter().rev().find(|e| e["kind"] == "station_started").unwrap();
    assert_eq!(started["clock_waited_ms"], 600_000, "{started}");
    assert!(started["clock_behind_ms"].as_i64().unwrap() > 0 && started["clock_synced"] == false, "{started}");
    let scheduled: Vec<(String, i64)> = events
        .iter()
        .filter(|e| e["kind"] == "airing_started" || e["kind"] == "slot_missed")
        .map(|e| (e["slot"].as_str().unwrap().to_owned(), e["scheduled_at"].as_i64().unwrap()))
        .collect();
    let ms = |t: DateTime<Utc>| t.timestamp_millis();
    assert_eq!(
        scheduled,
        [("sang".into(), ms(local(23, 5, 30))), ("chieu".into(), ms(local(23, 17, 0)))],
        "each real slot once; nothing from the wrong dates"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn clock_steps_never_double_air_nor_silently_skip() {
    let station = Station::with_config(CONFIG);
    assert_eq!(station.add(&station.input("a.mp3", &fixture("cbr128_stereo_44k.mp3")), &[]).code, 0);
    let config = Config::load(&station.config_path()).unwrap();
    let clock = Arc::new(VirtualClock::new(local(23, 5, 29)));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(engine(&config, &clock, shutdown, Live::default()).run());

    run_until(&clock, &running, local(23, 5, 31)).await; // 05:30 fires
    clock.step(-TimeDelta::hours(1)); // NTP steps back an hour: 04:31
    run_until(&clock, &running, local(23, 4, 33)).await;
    clock.step(TimeDelta::minutes(59)); // and forward again past 05:30: 05:32
    run_until(&clock, &running, local(23, 5, 34)).await;
    clock.step(TimeDelta::hours(11) + TimeDelta::minutes(30)); // 17:04: four minutes late, inside the grace
    run_until(&clock, &running, local(23, 17, 6)).await;
    clock.step(TimeDelta::days(1) + TimeDelta::minutes(5)); // 17:11 next day: both of its slots are past the grace
    run_until(&clock, &running, local(24, 17, 13)).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let events = proof_log(&config);
    let fired = |kind: &str| -> Vec<(String, i64)> {
        events
            .iter()
            .filter(|e| e["kind"] == kind)
            .map(|e| (e["slot"].as_str().unwrap().to_owned(), e["scheduled_at"].as_i64().unwrap()))
            .collect()
    };
    let ms = |t: DateTime<Utc>| t.timestamp_millis();
    assert_eq!(
        fired("airing_started"),
        [("sang".into(), ms(local(23, 5, 30))), ("chieu".into(), ms(local(23, 17, 0)))],
        "each slot once"
    );
    assert_eq!(fired("slot_missed"), [("sang".into(), ms(local(24, 5, 30))), ("chieu".into(), ms(local(24, 17, 0)))]);
    for missed in events.iter().filter(|e| e["kind"] == "slot_missed") {
        assert_eq!(missed["reason"], "clock_jumped");
    }
    let failed: Vec<&Value> = events.iter().filter(|e| e["kind"] == "airing_ended").collect();
    assert!(
        failed
            .iter()
            .all(|e| e["status"] == "failed" && e["reason"].as_str().unwrap().contains("loa-test-no-such-device"))
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_clip_queued_for_the_next_slot_then_retired_never_airs() {
    let station = Station::with_config(CONFIG);
    for (name, title) in [("cbr128_stereo_44k.mp3", "Giữ lại"), ("mono_22k.mp3", "Đã ngừng")] {
        let run = station.add(&station.input(name, &fixture(name)), &["--title", title]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let config = Config::load(&station.config_path()).unwrap();
    let start = local(23, 5, 20);
    {
        let mut store = open_store(&config);
        store.enqueue(2, loa::model::queue::Wanted::NextSlot, start).unwrap();
        store.retire_clip(2, start, None).unwrap();
    }
    let clock = Arc::new(VirtualClock::new(start));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(engine(&config, &clock, shutdown, Live::default()).run());
    run_until(&clock, &running, local(23, 5, 31)).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let events = proof_log(&config);
    let aired: Vec<i64> =
        events.iter().filter(|e| e["kind"] == "airing_started").map(|e| e["clip_id"].as_i64().unwrap()).collect();
    assert_eq!(aired, [1], "the retired clip aired, or the slot aired nothing");
    let store = open_store(&config);
    assert!(store.pending_queue(loa::model::queue::Wanted::NextSlot).unwrap().is_empty(), "the stale item is used up");
}

#[tokio::test(flavor = "current_thread")]
async fn a_clip_queued_now_then_retired_or_withdrawn_never_airs() {
    let station = Station::with_config(CONFIG);
    let run = station.add(&station.input("a.mp3", &fixture("mono_22k.mp3")), &["--title", "Khẩn: đã thu hồi"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let config = Config::load(&station.config_path()).unwrap();
    let start = local(23, 4, 0);
    {
        let mut store = open_store(&config);
        store.enqueue(1, loa::model::queue::Wanted::Now, start).unwrap();
        store.retire_clip(1, start, Some("withdrawn by the office")).unwrap();
    }
    let clock = Arc::new(VirtualClock::new(start));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(engine(&config, &clock, shutdown, Live::default()).run());
    run_until(&clock, &running, local(23, 4, 5)).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let events = proof_log(&config);
    assert!(events.iter().all(|e| e["kind"] != "airing_started"), "a retired clip aired: {events:?}");
    let store = open_store(&config);
    assert!(store.pending_queue(loa::model::queue::Wanted::Now).unwrap().is_empty(), "the stale item is used up");
}

#[test]
fn the_daemon_launched_in_process_serves_on_port_0_and_stops_on_shutdown() {
    use loa::daemon::{self, Listeners};
    let station = Station::with_config(CONFIG);
    let token = station.token("district");
    let config = Config::load(&station.config_path()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = daemon::launch(
        daemon::Station::open(&config).unwrap(),
        Listeners::loopback().unwrap(),
        async move { drop(stopped.await) },
        Arc::new(loa::time::clock::SystemClock),
        Arc::new(device_process()),
    )
    .unwrap();
    let base = format!("http://{}", running.http_address);
    let started = std::time::Instant::now();
    while !proof_log(&config).iter().any(|e| e["kind"] == "station_started") {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the engine never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(crate::helpers::http_get(&base, "/healthz"), "200");
    assert_eq!(crate::helpers::http_get_auth(&base, "/api/v1/airtime", &token), "200");
    assert_eq!(crate::helpers::http_get(&base, "/api/v1/airtime"), "401");
    assert!(running.live.snapshot().next_slot.is_some(), "the engine tells the API its next slot");

    stop.send(()).unwrap();
    running.wait().unwrap();
    let address = base.trim_start_matches("http://");
    assert!(std::net::TcpStream::connect(address).is_err(), "the API stopped with the engine");
    assert!(proof_log(&config).iter().any(|e| e["kind"] == "station_stopped"), "a clean stop is recorded");
}
