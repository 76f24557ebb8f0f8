//! Attacks from the ward LAN against the real `loa run`: nobody without a token may silence the
//! loudspeakers by holding sockets, and the airing never waits on the API.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::helpers::{Device, http_get_body, of_kind, station, verify};

const TONE: &str = "cbr128_stereo_44k.mp3";
const WAIT: Duration = Duration::from_secs(90);

/// Opens connections to `address` that send half a request head and then nothing, `per_round`
/// at a time, until `stop`; returns how many it opened.
fn slowloris(address: String, per_round: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut opened = 0;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..per_round {
                if let Ok(mut socket) = TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(1)) {
                    let _ = socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: station\r\nX-Slow: ");
                    held.push(socket);
                    opened += 1;
                }
            }
            // Keep the newest few thousand open; the rest the server has closed or may close.
            if held.len() > 3000 {
                held.drain(..1000);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        opened
    })
}

fn district_token(station: &crate::helpers::Station) -> String {
    let run = station.loa(&["token", "create", "--role", "district", "--label", "x"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout.trim().to_owned()
}

#[test]
fn a_flood_of_slow_connections_neither_silences_the_station_nor_blinds_its_health() {
    let station = station(4, 2, &[TONE]);
    let daemon = station.start_with_fd_limit(Device::Unpaced, 1024);
    let base = daemon.http_base();
    station.wait_for("on air", WAIT, |e| !of_kind(e, "station_started", None).is_empty());

    let stop = Arc::new(AtomicBool::new(false));
    let attack = slowloris(base.trim_start_matches("http://").to_owned(), 300, stop.clone());
    let attack_began = chrono::Utc::now().timestamp_millis();
    std::thread::sleep(Duration::from_secs(3)); // over a thousand sockets by now

    // /healthz still answers, from the attacker's own address, again and again.
    for _ in 0..5 {
        let (status, body) = http_get_body(&base, "/healthz");
        assert_eq!(status, "200", "{body}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // Slots that fall during the attack air, on time, whole.
    let events = station.wait_for("two airings during the attack", WAIT, |e| {
        of_kind(e, "airing_ended", None).iter().filter(|a| a["scheduled_at"].as_i64().unwrap() > attack_began).count()
            >= 2
    });
    stop.store(true, Ordering::Relaxed);
    let opened = attack.join().unwrap();
    assert!(opened >= 1100, "the attack opened only {opened} connections");
    let during: Vec<_> = of_kind(&events, "airing_ended", None)
        .into_iter()
        .filter(|a| a["scheduled_at"].as_i64().unwrap() > attack_began)
        .collect();
    for airing in &during {
        assert_eq!(airing["status"], "completed", "{airing}");
        // The normal start delay is milliseconds; the API once made it 39 s.
        let late = airing["started_at"].as_i64().unwrap() - airing["scheduled_at"].as_i64().unwrap();
        assert!(late < 2000, "an airing started {late} ms late during the attack: {airing}");
    }
    let log = std::fs::read_to_string(station.dir.path().join("daemon.log")).unwrap();
    assert!(!log.contains("Too many open files"), "the daemon ran out of descriptors");
    daemon.stop();
    assert_eq!(verify(&station).code, 0);
}

#[test]
fn heavy_schedule_requests_do_not_delay_a_slot() {
    // A slot every 4 s: a week of it is thousands of slot instances to plan per request.
    let station = station(4, 2, &[TONE]);
    let token = district_token(&station);
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();
    station.wait_for("on air", WAIT, |e| !of_kind(e, "station_started", None).is_empty());
    let stop = Arc::new(AtomicBool::new(false));
    let began = chrono::Utc::now().timestamp_millis();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (base, token, stop) = (base.clone(), token.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut answered = 0;
                while !stop.load(Ordering::Relaxed) {
                    let status = crate::helpers::http_get_auth(&base, "/api/v1/schedule?days=7", &token);
                    assert_eq!(status, "200");
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    let events = station.wait_for("three airings under load", WAIT, |e| {
        of_kind(e, "airing_ended", None).iter().filter(|a| a["scheduled_at"].as_i64().unwrap() > began).count() >= 3
    });
    stop.store(true, Ordering::Relaxed);
    let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(answered >= 8, "the schedule load was light: {answered} answers");
    let started = Instant::now();
    let (status, _) = http_get_body(&base, "/healthz");
    assert_eq!(status, "200");
    assert!(started.elapsed() < Duration::from_secs(5), "/healthz waited behind the schedule");
    for airing in of_kind(&events, "airing_ended", None).iter().filter(|a| a["scheduled_at"].as_i64().unwrap() > began)
    {
        let late = airing["started_at"].as_i64().unwrap() - airing["scheduled_at"].as_i64().unwrap();
        assert!(late < 2000, "an airing started {late} ms late under schedule load: {airing}");
    }
    daemon.stop();
}

#[test]
fn wrong_tokens_are_logged_sparingly_and_slowed_but_a_valid_token_never_is() {
    let station = station(30, 5, &[]);
    let token = district_token(&station);
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();
    let mut last_took = Duration::ZERO;
    for _ in 0..12 {
        let started = Instant::now();
        assert_eq!(crate::helpers::http_get_auth(&base, "/api/v1/station", "loa_guessing"), "401");
        last_took = started.elapsed();
    }
    assert!(last_took >= Duration::from_secs(1), "the 12th wrong token was answered in {last_took:?}");
    let started = Instant::now();
    assert_eq!(crate::helpers::http_get_auth(&base, "/api/v1/station", &token), "200");
    assert!(started.elapsed() < Duration::from_secs(1), "a valid token was slowed: {:?}", started.elapsed());
    daemon.stop();
    let log = std::fs::read_to_string(station.dir.path().join("daemon.log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("authentication failed")).collect();
    assert!(!lines.is_empty() && lines.len() <= 2, "one line per peer per 10 s: {lines:#?}");
    assert!(lines[0].contains("127.0.0.1"), "{}", lines[0]);
}
