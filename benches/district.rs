//! The office at scale (`cargo bench --bench district`), printed in one run:
//! - ingest: real signed station logs (a key per station; 10 slots a day, each an
//!   `airing_started` and an `airing_ended`, realistic fields) verified and stored by
//!   `Office::ingest` in pages of 10,000: events per second (goal ≥ 40,000) and peak RSS (goal
//!   ≤ 64 MiB), and what that means for a national year (3,321 stations × ~20 events a day);
//!   Beside it, the same machine's raw Ed25519 batch-verification rate on all cores over the
//!   same signatures: ingest (schema and plausibility checks on) should keep ≥ 0.5 × it;
//! - the office's check of its own memory at start: the first (every signature), and a later
//!   one (from the checkpoints), goals ≤ 30 s and ≤ 1 s for 1.84 M held events;
//! - a quarter's report across every station (goal ≤ 2 s for 1,000 stations);
//! - `loa verify` of one log of VERIFY_EVENTS (1,000,000) events: its peak RSS (goal ≤ 64 MiB:
//!   it reads as it goes) and time;
//! - the peak RSS of a real `loa district serve` taking the worst pushes (32 MiB of tiny lines,
//!   32 MiB of the longest lines) (goal ≤ 64 MiB for any one push);
//! - one pull round over real HTTP listeners (one per station, in this process) with 5 % of
//!   them dead (port closed) or hanging (accepting, never answering): the round's time against
//!   the timeout budget.
//!
//! Sizes from the environment: DISTRICT_STATIONS (1000), DISTRICT_DAYS (92), PULL_STATIONS
//! (1000). A national year: DISTRICT_STATIONS=3321 DISTRICT_DAYS=365 (about 24 M events).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use loa::district::Office;
use loa::district::config::DistrictConfig;
use loa::district::witness::Batch;
use loa::model::clip::Priority;
use loa::proof::events::{self, AiringEvidence, AiringPlan, AiringStatus};
use loa::proof::{GENESIS_HASH, StationKey};
use loa::time::clock::SystemClock;
use serde_json::Value;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn station_id(i: usize) -> String {
    format!("ward-{i:04}")
}

fn key(i: usize) -> StationKey {
    let mut seed = [7u8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    StationKey::from_seed(seed)
}

/// `days` of a station's log from `start`: its export lines.
fn station_log(i: usize, start: DateTime<Utc>, days: i64) -> Vec<String> {
    let key = key(i);
    let id = station_id(i);
    let (mut seq, mut prev) = (0i64, GENESIS_HASH.to_owned());
    let mut lines = Vec::with_capacity(days as usize * 20 + 1);
    let mut push = |fields: serde_json::Map<String, Value>, at: DateTime<Utc>, lines: &mut Vec<String>| {
        let mut fields = fields;
        fields.insert("station_id".into(), Value::from(id.as_str()));
        fields.insert("at".into(), Value::from(at.timestamp_millis()));
        seq += 1;
        let sealed = key.seal(seq, &prev, fields);
        prev = sealed.hash.clone();
        lines.push(sealed.export_line());
        seq
    };
    let clock = events::ClockAtStart { clock_behind_ms: 0, clock_waited_ms: 0 };
    let started = events::station_started(env!("CARGO_PKG_VERSION"), &key.public_key_hex(), None, clock, true);
    push(started, start, &mut lines);
    for day in 0..days {
        for slot in 0..10i64 {
            let at = start + TimeDelta::days(day) + TimeDelta::hours(5 + slot * 2);
            let plan = AiringPlan {
                slot: Some(format!("s{slot:02}")),
                peak: !(2..=7).contains(&slot),
                scheduled_at: Some(at.timestamp_millis()),
                clip_id: 1 + (day + slot) % 40,
                clip_sha256: format!("{:064x}", (day + slot) % 40),
                title: "Bản tin cải cách hành chính tuần này".into(),
                topic: if slot % 3 == 0 { "thong-bao".into() } else { "cchc".into() },
                language: "vi".into(),
                priority: Priority::Normal,
                planned_ms: 180_000,
                gain_cdb: -250,
                quota: (slot % 3 != 0).then(|| "cchc/week".into()),
                before_air_ok: None,
                before_air_detail: None,
            };
            let airing = push(events::airing_started(&plan, true), at, &mut lines);
            let evidence = AiringEvidence {
                started_at: Some(at.timestamp_millis() + 3),
                ended_at: Some(at.timestamp_millis() + 180_040),
                played_ms: 180_000,
                peak_cdbfs: -112,
                rms_cdbfs: -1_810,
                silent_ms: 420,
                first_frame_latency_ms: Some(3),
                status: if (day + slot) % 23 == 0 { AiringStatus::Partial } else { AiringStatus::Completed },
                reason: None,
            };
            push(events::airing_ended(airing, &plan, &evidence, true), at + TimeDelta::minutes(3), &mut lines);
        }
    }
    lines
}

/// `work(i)` for every station `i` below `count`, on `workers` threads taking the next one free.
fn on_every_core(workers: usize, count: usize, work: impl Fn(usize) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    work(i);
                }
            });
        }
    });
}

/// A station's whole log, in pages of 10,000 as a pull reads them: each page after the first
/// begins with the last event of the one before.
fn ingest(office: &Office, i: usize, lines: &[&str]) {
    let station = office.config.stations[i].clone();
    for (page, chunk) in lines.chunks(10_000).enumerate() {
        let mut batch_lines: Vec<&str> = Vec::with_capacity(chunk.len() + 1);
        if page > 0 {
            batch_lines.push(lines[page * 10_000 - 1]);
        }
        batch_lines.extend_from_slice(chunk);
        let after_seq = ((page * 10_000) as i64 - 1).max(0);
        let batch = Batch { lines: batch_lines, after_seq, ..Batch::default() };
        let contact = office.ingest(&station, &batch).unwrap();
        assert!(contact.clean(), "station {i}: {:?}", contact.alarms);
    }
}

fn office_config(dir: &std::path::Path, stations: usize, url: impl Fn(usize) -> Option<String>) -> DistrictConfig {
    let mut text = String::from(
        "[district]\nname = \"Bench\"\ndata_dir = \"office\"\nconnect_timeout_seconds = 2\nread_timeout_seconds = 3\nmax_parallel_pulls = 256\n",
    );
    for i in 0..stations {
        text.push_str(&format!(
            "[[station]]\nid = \"{}\"\nname = \"Đài {i}\"\npublic_key = \"{}\"\n",
            station_id(i),
            key(i).public_key_hex()
        ));
        if let Some(url) = url(i) {
            text.push_str(&format!("url = \"{url}\"\ntoken = \"loa_{}\"\n", "a".repeat(64)));
        }
    }
    let path = dir.join("district.toml");
    std::fs::write(&path, text).unwrap();
    DistrictConfig::load(&path).unwrap()
}

fn main() {
    let stations = env("DISTRICT_STATIONS", 1000);
    let days = env("DISTRICT_DAYS", 92) as i64;
    let tz = chrono_tz::Asia::Ho_Chi_Minh;
    // The logs end today: the office does not believe events dated ahead of its clock.
    let start = (Utc::now() - TimeDelta::days(days)).with_timezone(&tz).date_naive().and_hms_opt(0, 0, 0).unwrap();
    let start = tz.from_local_datetime(&start).unwrap().with_timezone(&Utc);

    // The signed logs, made first (each station's in its own file, as pulled pages would
    // arrive), then verified and stored by the office on every core, a station per task.
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = Instant::now();
    on_every_core(workers, stations, |i| {
        std::fs::write(logs.join(station_id(i)), station_log(i, start, days).join("\n")).unwrap();
    });
    let generating = t.elapsed();
    let office = Arc::new(Office::open(office_config(dir.path(), stations, |_| None), Arc::new(SystemClock)).unwrap());
    let t = Instant::now();
    let events = std::sync::atomic::AtomicUsize::new(0);
    on_every_core(workers, stations, |i| {
        let text = std::fs::read_to_string(logs.join(station_id(i))).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        ingest(&office, i, &lines);
        events.fetch_add(lines.len(), std::sync::atomic::Ordering::Relaxed);
    });
    let ingesting = t.elapsed();
    let events = events.into_inner();
    let rate = events as f64 / ingesting.as_secs_f64();
    println!(
        "ingest: {events} events of {stations} stations ({days} days each) verified and stored in {:.1} s on {workers} cores: \
         {:.0} events/s (goal >= 40000); peak RSS {:.1} MiB (goal <= 64); generating the signed logs took {:.1} s more",
        ingesting.as_secs_f64(),
        rate,
        peak_rss_mib(),
        generating.as_secs_f64()
    );
    let raw = raw_batch_rate(&logs, stations, workers);
    println!(
        "raw Ed25519 batch verification of the same signatures on {workers} cores: {raw:.0} signatures/s; \
         ingest is {:.2} x it (goal >= 0.5)",
        rate / raw
    );
    let national = 3321.0 * 365.0 * 20.0;
    println!(
        "a national year (3321 stations x 365 days x ~20 events = {:.1} M events) at this rate: {:.1} min (goal <= 10)",
        national / 1e6,
        national / rate / 60.0
    );

    // A quarter's report across every station.
    let quarter = loa::time::calendar::parse_period("2026-Q4", tz).unwrap();
    let now = tz.with_ymd_and_hms(2027, 1, 2, 0, 0, 0).unwrap().with_timezone(&Utc);
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let report = loa::district::report::build(&office, &quarter, now).unwrap();
        assert_eq!(report.stations.len(), stations);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("a quarter's report across {stations} stations: median {:.2} s (goal <= 2 s for 1000 stations)", times[1]);
    drop(office);

    // The office's check of its own memory, as each start runs it.
    for start_kind in ["first start (every signature)", "later start (from the checkpoints)"] {
        let t = Instant::now();
        let office = Office::open(office_config(dir.path(), stations, |_| None), Arc::new(SystemClock)).unwrap();
        assert!(office.damaged().is_none(), "{:?}", office.damaged());
        println!(
            "the office's self-check at {start_kind} over {events} held events: {:.2} s (goal <= {})",
            t.elapsed().as_secs_f64(),
            if start_kind.starts_with("first") { "30 s" } else { "1 s" }
        );
    }

    worst_push();
    verify_flat(env("VERIFY_EVENTS", 1_000_000), start);

    pull_round(env("PULL_STATIONS", 1000), start);
}

/// Ed25519 batch verification alone, over every signature of the logs, on `workers` cores: the
/// physical limit ingest is measured against.
fn raw_batch_rate(logs: &std::path::Path, stations: usize, workers: usize) -> f64 {
    let signed: Vec<Vec<([u8; 32], ed25519_dalek::Signature, ed25519_dalek::VerifyingKey)>> = (0..stations)
        .map(|i| {
            let public = loa::proof::parse_public_key(&key(i).public_key_hex()).unwrap();
            let text = std::fs::read_to_string(logs.join(station_id(i))).unwrap();
            text.lines()
                .map(|line| {
                    let (_, hash, sig) = loa::proof::split_line(line).unwrap();
                    let digest: [u8; 32] = hex::decode(hash).unwrap().try_into().unwrap();
                    let sig: [u8; 64] = hex::decode(sig).unwrap().try_into().unwrap();
                    (digest, ed25519_dalek::Signature::from_bytes(&sig), public)
                })
                .collect()
        })
        .collect();
    let total: usize = signed.iter().map(Vec::len).sum();
    let t = Instant::now();
    on_every_core(workers, stations, |i| {
        for chunk in signed[i].chunks(1024) {
            let messages: Vec<&[u8]> = chunk.iter().map(|(d, _, _)| d.as_slice()).collect();
            let signatures: Vec<_> = chunk.iter().map(|(_, s, _)| *s).collect();
            let keys: Vec<_> = chunk.iter().map(|(_, _, k)| *k).collect();
            ed25519_dalek::verify_batch(&messages, &signatures, &keys).unwrap();
        }
    });
    total as f64 / t.elapsed().as_secs_f64()
}

/// `loa verify` (a real process) over one station's log of `count` events: peak RSS and time.
fn verify_flat(count: usize, start: DateTime<Utc>) {
    let days = (count as i64 + 19) / 20;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("log.jsonl");
    let lines = station_log(0, start - TimeDelta::days(days), days);
    std::fs::write(&file, lines[..count.min(lines.len())].join("\n") + "\n").unwrap();
    drop(lines);
    let t = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["verify", file.to_str().unwrap(), "--public-key", &key(0).public_key_hex()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // VmHWM only grows: its last reading before the exit is the peak (to within 10 ms of work).
    let mut peak_kib = 0.0f64;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
        let hwm =
            status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
        peak_kib = peak_kib.max(hwm.unwrap_or(0.0));
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    println!(
        "loa verify of {count} events: {:.1} s, peak RSS {:.1} MiB (goal <= 64), {status}",
        t.elapsed().as_secs_f64(),
        peak_kib / 1024.0
    );
}

/// The worst pushes a real `loa district serve` can be sent, and its peak RSS after them.
fn worst_push() {
    let dir = tempfile::tempdir().unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = dir.path().join("district.toml");
    std::fs::write(
        &config,
        format!(
            "[district]\nname = \"Bench\"\ndata_dir = \"office\"\nlisten = \"{listen}\"\n[[station]]\nid = \"{}\"\nname = \"A\"\npublic_key = \"{}\"\n",
            station_id(0),
            key(0).public_key_hex()
        ),
    )
    .unwrap();
    let loa = env!("CARGO_BIN_EXE_loa");
    let token = std::process::Command::new(loa)
        .args(["district", "--config", config.to_str().unwrap(), "token", "create", "--station", &station_id(0)])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let mut serve = std::process::Command::new(loa)
        .args(["district", "--config", config.to_str().unwrap(), "serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(listen).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let push = |body: &[u8]| {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(listen).unwrap();
        let head = format!(
            "POST /api/v1/push HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = socket.write_all(head.as_bytes()).and_then(|()| socket.write_all(body));
        let mut answer = Vec::new();
        let _ = socket.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).split_whitespace().nth(1).unwrap_or("(closed)").to_owned()
    };
    let tiny = "{}\n".repeat((32 << 20) / 3 - 1);
    let long_line = format!("{}\n", "x".repeat((64 << 10) - 1));
    let long = long_line.repeat((32 << 20) / long_line.len());
    let answers = [push(tiny.as_bytes()), push(long.as_bytes())];
    let status = std::fs::read_to_string(format!("/proc/{}/status", serve.id())).unwrap();
    let kib: f64 =
        status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    println!(
        "the worst pushes (32 MiB of tiny lines: {}, 32 MiB of 64 KiB lines: {}): the office's peak RSS {:.1} MiB (goal <= 64 for any one push)",
        answers[0],
        answers[1],
        kib / 1024.0
    );
    let _ = serve.kill();
    let _ = serve.wait();
}

/// One pull round over real listeners, 5 % dead or hanging.
fn pull_round(count: usize, start: DateTime<Utc>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (urls, _servers) = runtime.block_on(async {
        let mut urls = Vec::new();
        let mut servers = Vec::new();
        for i in 0..count {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            urls.push(format!("http://{address}"));
            match i % 20 {
                // Dead: the port is closed.
                0 => drop(listener),
                // Hanging: accepts, reads, never answers.
                1 => servers.push(tokio::spawn(async move {
                    let mut held = Vec::new();
                    while let Ok((socket, _)) = listener.accept().await {
                        held.push(socket);
                    }
                })),
                _ => {
                    let page = page(i, start);
                    servers.push(tokio::spawn(serve_page(listener, page, i)));
                }
            }
        }
        (urls, servers)
    });
    let config = office_config(dir.path(), count, |i| Some(urls[i].clone()));
    let budget = config.connect_timeout.max(config.read_timeout * 4);
    let office = Arc::new(Office::open(config, Arc::new(SystemClock)).unwrap());
    let t = Instant::now();
    let contacts = runtime.block_on(loa::district::pull::pull_all(Arc::clone(&office), None));
    let elapsed = t.elapsed();
    let clean = contacts.iter().filter(|c| c.clean()).count();
    println!(
        "a pull round over {count} stations ({} dead, {} hanging): {:.1} s, {clean} clean; the slowest station's budget is {:.0} s",
        count.div_ceil(20),
        count.saturating_sub(1).div_ceil(20),
        elapsed.as_secs_f64(),
        budget.as_secs_f64()
    );
    assert_eq!(clean, count - count.div_ceil(20) - count.saturating_sub(1).div_ceil(20));
}

/// The JSON page a station serves for a pull from the start (a day of its log), without its
/// closing brace, and its head: each answer adds the head signed over that pull's challenge.
fn page(i: usize, start: DateTime<Utc>) -> (String, (i64, String)) {
    let lines = station_log(i, start, 1);
    let head = lines.last().map(|l| {
        let v: Value = serde_json::from_str(l).unwrap();
        (v["seq"].as_i64().unwrap(), v["hash"].as_str().unwrap().to_owned())
    });
    let (seq, hash) = head.unwrap();
    let open = format!(
        "{{\"events\":[{}],\"head\":{{\"seq\":{seq},\"hash\":\"{hash}\"}},\"next_after_seq\":{seq},\"public_key\":\"{}\"",
        lines.join(",\n"),
        key(i).public_key_hex()
    );
    (open, (seq, hash))
}

/// A minimal HTTP/1.1 server: every GET gets the page with the head signed over its challenge,
/// every POST (the receipt) 204.
async fn serve_page(listener: tokio::net::TcpListener, (open, head): (String, (i64, String)), i: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let page = Arc::new((open, head, key(i)));
    while let Ok((mut socket, _)) = listener.accept().await {
        let page = Arc::clone(&page);
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let Ok(n) = socket.read(&mut buffer).await else { return };
                if n == 0 {
                    return;
                }
                request.extend_from_slice(&buffer[..n]);
                let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                if request.len() < end + 4 + length {
                    continue;
                }
                let answer = if head.starts_with("get") {
                    let (open, (seq, hash), key) = &*page;
                    let challenge = head.split("challenge=").nth(1).map(|c| &c[..64]).unwrap_or_default();
                    let statement = loa::proof::head::answer(key, &station_id(i), (*seq, hash), challenge, Utc::now());
                    let body = format!("{open},\"head_statement\":{}}}", Value::from(statement));
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
                };
                let _ = socket.write_all(answer.as_bytes()).await;
                request.drain(..end + 4 + length);
            }
        });
    }
}
