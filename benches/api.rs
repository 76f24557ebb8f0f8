//! HTTP API benchmark (`cargo bench --bench api`), figures printed in one run:
//! - peak RSS growth of the real `loa run` while it receives (and checks) a 100 MiB upload,
//!   over its idle RSS (goal ≤ 4 MiB: uploads stream to disk);
//! - time to serve one page of 10 000 events, as JSON and as CSV, from a store holding
//!   1 000 000 events (goal ≤ 50 ms), over HTTP on loopback.
//!
//! EVENTS overrides the store size, UPLOAD_MIB the upload size.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::json;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cbr128_stereo_44k.mp3");

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    upload_memory();
    airtime_pages();
}

fn upload_memory() {
    let upload_mib = env_number("UPLOAD_MIB", 100);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("station.toml");
    std::fs::write(
        &config,
        "[station]\nid = \"bench\"\nname = \"bench\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\nmax_upload_mib = 200\n\
         [clips]\nmax_seconds = 36000\n[[slot]]\nname = \"nam-moi\"\ncron = \"0 0 0 1 1 *\"\nmax_minutes = 1\n",
    )
    .unwrap();
    let alsa = dir.path().join("alsa.conf");
    std::fs::write(
        &alsa,
        format!(
            "pcm.!default {{ type file; slave {{ pcm {{ type null }} }}; file \"{}/air.raw\"; format \"raw\" }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let loa = env!("CARGO_BIN_EXE_loa");
    let token = Command::new(loa)
        .arg("--config")
        .arg(&config)
        .args(["token", "create", "--role", "operator", "--label", "bench"])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let log = dir.path().join("log");
    let mut daemon = Command::new(loa)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("ALSA_CONFIG_PATH", &alsa)
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let address = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("HTTP API listening")) {
            break line.split("address=").nth(1).unwrap().trim().to_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(daemon.id());

    // A long, valid MP3: the 2 s fixture repeated (a stream of frames, as `cat` would make).
    let one = std::fs::read(FIXTURE).unwrap();
    let mut body = Vec::with_capacity((upload_mib as usize) << 20);
    while body.len() + one.len() <= (upload_mib as usize) << 20 {
        body.extend_from_slice(&one);
    }
    let size = body.len();
    let peak = Arc::new(AtomicU64::new(idle));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (Arc::clone(&peak), Arc::clone(&done), daemon.id());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(rss_kib(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let status = runtime.block_on(async {
        let part = reqwest::multipart::Part::bytes(body).file_name("long.mp3");
        let form = reqwest::multipart::Form::new().text("title", "bench").text("topic", "cchc").part("file", part);
        let response = {
            loa::ops::tls::install_provider();
            reqwest::Client::new()
        }
        .post(format!("http://{address}/api/v1/clips"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
        response.status()
    });
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let _ = Command::new("kill").arg("-TERM").arg(daemon.id().to_string()).status();
    let _ = daemon.wait();
    let peak = peak.load(Ordering::SeqCst);
    println!(
        "upload of {:.1} MiB: {status} in {:.2} s; daemon RSS idle {:.1} MiB, peak {:.1} MiB, growth {:.1} MiB (goal <= 4)",
        size as f64 / 1048576.0,
        took.as_secs_f64(),
        idle as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak - idle) as f64 / 1024.0
    );
}

fn airtime_pages() {
    let events = env_number("EVENTS", 1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("station.toml");
    std::fs::write(&config_path, "[station]\nid = \"bench\"\nname = \"bench\"\ndata_dir = \"data\"\n").unwrap();
    let config = loa::config::Config::load(&config_path).unwrap();
    std::fs::create_dir_all(&config.station.data_dir).unwrap();
    let mut store = loa::store::Store::open(&config.station.data_dir, "bench").unwrap();
    let started = Instant::now();
    let start = Utc::now() - TimeDelta::days(365);
    let airing = |i: u64| {
        let mut fields = serde_json::Map::new();
        for (k, v) in [
            ("kind", json!("airing_ended")),
            ("airing_seq", json!(i)),
            ("slot", json!("sang")),
            ("peak", json!(true)),
            ("scheduled_at", json!(start.timestamp_millis() + i as i64 * 30_000)),
            ("clip_id", json!(i % 50)),
            ("clip_sha256", json!("1de9ced57fa03c11eabc381cff3a310dcb0aed94e1032fffea1722367b8e6198")),
            ("title", json!("Bản tin cải cách hành chính tuần này")),
            ("topic", json!("cchc")),
            ("language", json!("vi")),
            ("priority", json!("normal")),
            ("planned_ms", json!(180_000)),
            ("gain_cdb", json!(-250)),
            ("started_at", json!(start.timestamp_millis() + i as i64 * 30_000 + 2)),
            ("ended_at", json!(start.timestamp_millis() + i as i64 * 30_000 + 180_002)),
            ("played_ms", json!(180_000)),
            ("peak_cdbfs", json!(-102)),
            ("rms_cdbfs", json!(-1840)),
            ("silent_ms", json!(1200)),
            ("first_frame_latency_ms", json!(1)),
            ("status", json!("completed")),
            ("reason", serde_json::Value::Null),
            ("clock_synced", json!(true)),
        ] {
            fields.insert(k.into(), v);
        }
        (start + TimeDelta::milliseconds(i as i64 * 30_000), fields)
    };
    const BATCH: u64 = 50_000;
    for first in (0..events).step_by(BATCH as usize) {
        store.append_batch((first..(first + BATCH).min(events)).map(airing)).unwrap();
    }
    println!("store: {events} events written in {:.1} s", started.elapsed().as_secs_f64());
    // What `loa run` does first: check the stored log (every signature, the first time) and keep
    // how far it got; pages are then checked (bytes, hashes, links) before they are served.
    let started = Instant::now();
    assert!(
        loa::audit::chain::check_stored_log(&mut store, Utc::now(), loa::audit::chain::Scope::Whole).unwrap().is_none()
    );
    println!("the station's first check of {events} events: {:.1} s", started.elapsed().as_secs_f64());

    let library = loa::library::ingest::Library::open(&config.station.data_dir, config.clips).unwrap();
    let clock = Arc::new(loa::time::clock::SystemClock);
    let state = loa::http::AppState::new(Arc::new(config), store, library, clock, Default::default());
    let secret = "loa_bench";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        state.store.call(move |s| s.create_token(loa::model::token::Role::District, "bench", &loa::model::token::digest(secret), Utc::now())).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(loa::http::serve(listener, None, state, std::future::pending()));
        let client = { loa::ops::tls::install_provider(); reqwest::Client::new() };
        for format in ["json", "jsonl", "csv"] {
            let mut times = Vec::new();
            let mut bytes = 0;
            for round in 0..21 {
                let after = (round * 40_000) % events.saturating_sub(10_000).max(1);
                let url = format!("http://{address}/api/v1/airtime?after_seq={after}&limit=10000&format={format}");
                let t = Instant::now();
                let response = client.get(&url).bearer_auth(secret).send().await.unwrap();
                assert!(response.status().is_success());
                bytes = response.bytes().await.unwrap().len();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            times.remove(0); // first touch of the file
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "airtime page of 10000 events as {format:<5} ({:.1} MiB) from {events} events: median {:.1} ms, max {:.1} ms (goal <= 50)",
                bytes as f64 / 1048576.0,
                times[times.len() / 2],
                times[times.len() - 1]
            );
        }
    });
}
