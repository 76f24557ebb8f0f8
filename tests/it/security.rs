//! Attacks from the ward LAN against the real `loa run`: nobody without a token may silence the
//! loudspeakers by holding sockets, and the airing never waits on the API.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::helpers::{Device, http_get_body, of_kind, station, verify};

const TONE: &str = "cbr128_stereo_44k.mp3";
const SLOW_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: station\r\nX-Slow: ";
const WAIT: Duration = Duration::from_secs(90);

/// The classic slowloris: opens `target` connections to `address`, `per_round` at a time, each
/// sending `opening` (half a request head, or of a TLS hello); then keeps every one it still
/// holds alive with a byte a second, until dropped. Counts what it opened.
struct Slowloris {
    opened: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Slowloris {
    fn start(address: String, opening: &'static [u8], target: usize) -> Slowloris {
        const PER_ROUND: usize = 200;
        raise_own_fd_limit(target as u64 + 1000);
        let (opened, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (count, stopped) = (opened.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let address = address.parse().unwrap();
            let mut held: Vec<TcpStream> = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                for _ in 0..PER_ROUND.min(target.saturating_sub(count.load(Ordering::Relaxed))) {
                    if let Ok(mut socket) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
                        let _ = socket.write_all(opening);
                        held.push(socket);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
                held.retain_mut(|socket| socket.write_all(b"X").is_ok());
                std::thread::sleep(Duration::from_millis(if count.load(Ordering::Relaxed) < target {
                    100
                } else {
                    1000
                }));
            }
        });
        Slowloris { opened, stop, thread: Some(thread) }
    }

    /// Waits until at least `count` connections were opened (the attack is on in earnest).
    fn wait_for(&self, count: usize) {
        let deadline = Instant::now() + WAIT;
        while self.opened.load(Ordering::Relaxed) < count {
            assert!(
                Instant::now() < deadline,
                "the attack opened only {} connections",
                self.opened.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The attacker (this test process) needs more sockets than a default soft limit may give.
fn raise_own_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on our own process with a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_flood_of_slow_connections_neither_silences_the_station_nor_blinds_its_health() {
    let station = station(4, 2, &[TONE]);
    let daemon = station.start_with_fd_limit(Device::Unpaced, 1024);
    let base = daemon.http_base();
    station.wait_for("on air", WAIT, |e| !of_kind(e, "station_started", None).is_empty());

    let attack = Slowloris::start(base.trim_start_matches("http://").to_owned(), SLOW_HEAD, 1100);
    let attack_began = chrono::Utc::now().timestamp_millis();
    attack.wait_for(1100);
    // The burst's last connections are young, and a young connection is never taken; past that
    // grace, newcomers take the places of the stalled ones.
    std::thread::sleep(loa::http::conn::EVICTION_GRACE + Duration::from_millis(500));

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
    drop(attack);
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
    let token = station.token("district");
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
fn wrong_tokens_are_logged_sparingly_and_refused_at_once_but_a_valid_token_never_is() {
    let station = station(30, 5, &[]);
    let token = station.token("district");
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();
    // Five free failures, then 429 with Retry-After, answered at once: never a socket held open.
    let answers: Vec<String> =
        (0..12).map(|_| crate::helpers::http_get_auth(&base, "/api/v1/station", "loa_guessing")).collect();
    assert_eq!(answers[..5], ["401"; 5], "{answers:?}");
    assert!(answers[5..].iter().all(|a| a == "429"), "{answers:?}");
    let (head, _) = raw_get(&base, "/api/v1/station", "loa_guessing");
    assert!(head.to_ascii_lowercase().contains("retry-after: 5"), "{head}");
    // From the same address, the operator's valid token is served all the same.
    assert_eq!(crate::helpers::http_get_auth(&base, "/api/v1/station", &token), "200");
    // A pairing code guessed from an address that must wait is not even looked at.
    let (code, body) = crate::helpers::http_request(
        &base,
        "POST",
        "/api/v1/pair",
        &[("content-type", "application/json")],
        br#"{"code": "AAAA-BBBB"}"#,
    );
    assert_eq!(code, "429", "{body}");
    daemon.stop();
    let log = std::fs::read_to_string(station.dir.path().join("daemon.log")).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("authentication failed")).collect();
    assert!(!lines.is_empty() && lines.len() <= 2, "one line per peer per 10 s: {lines:#?}");
    assert!(lines[0].contains("127.0.0.1"), "{}", lines[0]);
}

/// A GET with a bearer token over a plain socket: the response's head and body.
fn raw_get(base: &str, path: &str, token: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    write!(socket, "GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_owned(), body.to_owned())
}

/// `GET path` over HTTPS with Python's `ssl` (trusting only `cafile`): status and body, or the
/// error it raised; and the SHA-256 of the certificate the server presented.
fn https_get(address: &str, path: &str, cafile: &std::path::Path) -> (String, String) {
    let answer = crate::helpers::https_request(address, "GET", path, "", cafile);
    (answer.status, answer.fingerprint)
}

const TLS_SLOT: &str =
    "[[slot]]\nname = \"nhanh\"\ncron = \"*/4 * * * * Mon-Sun\"\nmax_minutes = 1\npeak = true\ngrace_seconds = 2\n";

fn tls_station(http: &str) -> crate::helpers::Station {
    crate::helpers::Station::with_config(&format!(
        "[station]\nid = \"phu-thuy\"\nname = \"Đài phường Phú Thủy\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         tls_listen = \"127.0.0.1:0\"\n{http}\n{TLS_SLOT}[[preload]]\nfile = \"{}/{TONE}\"\ntitle = \"Bản tin\"\ntopic = \"cchc\"\n",
        crate::helpers::FIXTURES
    ))
}

#[test]
fn a_self_signed_station_serves_https_whose_fingerprint_loa_station_prints() {
    let station = tls_station("tls = \"self-signed\"");
    let run = station.loa(&["station", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let fingerprint = run.json()["tls_fingerprint"].as_str().unwrap().to_owned();
    let cert = station.data_dir().join("tls-cert.pem");
    let key = std::fs::metadata(station.data_dir().join("tls-key.pem")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600, "the key is private");

    let daemon = station.start(Device::Unpaced);
    let address = daemon.https_address();
    let (answer, presented) = https_get(&address, "/healthz", &cert);
    assert_eq!(answer, "200");
    assert_eq!(presented, fingerprint, "the certificate served is the one `loa station` names");
    // Plain HTTP on the TLS port gets nowhere; the loopback plain port still answers.
    assert_ne!(crate::helpers::http_get(&format!("http://{address}"), "/healthz"), "200");
    assert_eq!(http_get_body(&daemon.http_base(), "/healthz").0, "200");
    // A phone that does not trust this certificate is refused, not silently served.
    let (answer, _) = https_get(&address, "/healthz", &crate::helpers::Station::new().config_path());
    assert!(answer.starts_with("error"), "{answer}");
    daemon.stop();
}

#[test]
fn an_admins_certificate_is_served_and_a_slow_handshake_flood_changes_nothing() {
    let station = tls_station("tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(station.dir.path().join("cert.pem"), cert.pem()).unwrap();
    let key_file = station.dir.path().join("key.pem");
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    // A key others can read is refused, with the chmod that fixes it.
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let refused = station.loa(&["check-config"]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(
        refused.error_line().contains("http.tls_key") && refused.error_line().contains("chmod 600"),
        "{}",
        refused.stderr
    );
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let expected: String = Sha256::digest(cert.der()).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":");
    assert_eq!(station.loa(&["station", "--json"]).json()["tls_fingerprint"], expected.as_str());

    let daemon = station.start_with_fd_limit(Device::Unpaced, 1024);
    let address = daemon.https_address();
    station.wait_for("on air", WAIT, |e| !of_kind(e, "station_started", None).is_empty());
    // Thousands of sockets that never finish (or start) a handshake.
    let attack = Slowloris::start(address.clone(), b"\x16\x03\x01", 1100);
    let began = chrono::Utc::now().timestamp_millis();
    attack.wait_for(1100);
    // The burst's last connections are young, and a young connection is never taken; past that
    // grace, newcomers take the places of the stalled ones.
    std::thread::sleep(loa::http::conn::EVICTION_GRACE + Duration::from_millis(500));
    let (answer, presented) = https_get(&address, "/healthz", &station.dir.path().join("cert.pem"));
    assert_eq!((answer.as_str(), presented.as_str()), ("200", expected.as_str()));
    let events = station.wait_for("an airing during the attack", WAIT, |e| {
        of_kind(e, "airing_ended", None).iter().any(|a| a["scheduled_at"].as_i64().unwrap() > began)
    });
    drop(attack);
    let airing = of_kind(&events, "airing_ended", None)
        .into_iter()
        .find(|a| a["scheduled_at"].as_i64().unwrap() > began)
        .unwrap();
    assert_eq!(airing["status"], "completed", "{airing}");
    daemon.stop();
}

#[test]
fn bodies_trickled_in_neither_hold_the_slots_nor_last() {
    use std::io::{Read, Write};
    let station = crate::helpers::Station::with_config(
        "[station]\nid = \"s\"\nname = \"n\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         max_connections = 8\nmax_connections_per_peer = 8\n",
    );
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();
    let address = base.trim_start_matches("http://").to_owned();
    // Every slot taken by a request whose headers came whole and whose body stopped after a byte
    // (no token needed to get there: pairing reads a body).
    let held: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut socket = std::net::TcpStream::connect(&address).unwrap();
            write!(socket, "POST /api/v1/pair HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{").unwrap();
            socket
        })
        .collect();
    // Past their grace (a young connection is never taken)…
    std::thread::sleep(loa::http::conn::EVICTION_GRACE + Duration::from_millis(500));
    // …a connection waiting on its client is not busy: the newcomer takes its place.
    for _ in 0..3 {
        assert_eq!(crate::helpers::http_get(&base, "/healthz"), "200", "a trickling body held the slot");
    }
    // And none lasts: each is answered or closed once its body stops coming.
    for mut socket in held {
        socket.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut answer = Vec::new();
        let ended = socket.read_to_end(&mut answer);
        assert!(ended.is_ok() || answer.starts_with(b"HTTP/1.1 4"), "a stalled body kept its connection: {ended:?}");
    }
    daemon.stop();
}

/// The role is judged from the headers: a token that may not do this, or a pairing code, is
/// answered while the body it announced has not begun (waiting for it would mean a body error
/// after the stall deadline instead).
#[test]
fn the_role_is_judged_before_a_byte_of_the_body_is_read() {
    let station = crate::helpers::Station::with_config(
        "[station]\nid = \"s\"\nname = \"n\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
    );
    let district = station.token("district");
    let daemon = station.start(Device::Unpaced);
    let address = daemon.http_base().trim_start_matches("http://").to_owned();
    let reader = format!("Bearer {district}");
    for (method, path, authorization, expected) in [
        ("POST", "/api/v1/queue", reader.as_str(), "403"),
        ("POST", "/api/v1/clips", reader.as_str(), "403"),
        ("DELETE", "/api/v1/clips/1", reader.as_str(), "403"),
        ("POST", "/api/v1/queue", "Bearer loa_wrong", "401"),
        ("POST", "/api/v1/pair", "Pairing AAAA-BBBB", "404"),
    ] {
        let headers = format!("authorization: {authorization}\r\ncontent-type: application/json\r\n");
        let status = crate::helpers::status_before_body(&address, method, path, &headers);
        assert_eq!(status, expected, "{method} {path} with `{authorization}`");
    }
    daemon.stop();
}

#[test]
fn plain_http_on_the_lan_must_be_asked_for_and_what_loa_writes_is_private() {
    let station = crate::helpers::Station::with_config(
        "[station]\nid = \"s\"\nname = \"n\"\ndata_dir = \"data\"\n[http]\nlisten = \"0.0.0.0:0\"\nallow_plain_lan = true\n",
    );
    assert_eq!(station.loa(&["check-config"]).code, 0, "allowed knowingly");
    let daemon = station.start(Device::Unpaced);
    station.wait_for("on air", WAIT, |e| !of_kind(e, "station_started", None).is_empty());
    daemon.stop();
    let log = std::fs::read_to_string(station.dir.path().join("daemon.log")).unwrap();
    assert!(log.contains("plain HTTP on a LAN address"), "warned at start: {log}");
    for file in ["loa.sqlite", "station.key"] {
        let meta = std::fs::metadata(station.data_dir().join(file)).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
        assert_eq!(mode & 0o007, 0, "{file} is readable by others: {mode:o}");
    }
    let backup = station.dir.path().join("backup.sqlite");
    assert_eq!(station.loa(&["backup", backup.to_str().unwrap()]).code, 0);
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&backup).unwrap().permissions());
    assert_eq!(mode & 0o007, 0, "the backup is readable by others: {mode:o}");
}

#[test]
fn tls_settings_that_cannot_work_are_refused_with_the_key_named() {
    for (http, key) in [
        ("tls_cert = \"cert.pem\"", "http.tls_cert"),
        ("tls = \"yes\"", "http.tls"),
        ("tls = \"self-signed\"\nlisten = \"0.0.0.0:8080\"", "http.listen"),
        ("listen = \"0.0.0.0:8080\"", "allow_plain_lan"),
    ] {
        let station = crate::helpers::Station::with_config(&format!(
            "[station]\nid = \"s\"\nname = \"n\"\ndata_dir = \"data\"\n[http]\n{http}\n"
        ));
        let run = station.loa(&["check-config"]);
        assert_eq!(run.code, 2, "{http}: {}", run.stdout);
        assert!(run.error_line().contains(key), "{http}: {}", run.stderr);
    }
}

#[test]
fn schemathesis_finds_no_server_error_nor_an_undocumented_answer() {
    let station = station(30, 5, &[TONE]);
    let token = station.token("operator");
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();
    // Examples per operation from LOA_FUZZ_EXAMPLES (default 10), with a fixed seed: the same
    // run every time.
    let examples = std::env::var("LOA_FUZZ_EXAMPLES").unwrap_or_else(|_| "10".to_owned());
    let output = std::process::Command::new(crate::helpers::python())
        .args(["-m", "schemathesis.cli", "run", &format!("{base}/api/v1/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {token}"), "-n", &examples, "--seed", "1"])
        .args([
            "-c",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(station.dir.path()) // its cache, not in the source tree
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named"),
        "schemathesis is missing: run .ci/setup test (it makes the venv): {stderr}"
    );
    daemon.stop();
    assert!(output.status.success(), "schemathesis found failures:\n{stdout}\n{stderr}");
}

/// Sockets opened as fast as the machine allows from ten addresses (127.0.0.2–11), each held
/// `hold`, until dropped: churn, as from a few hosts on the ward LAN.
struct Churn {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<usize>>,
}

impl Churn {
    fn start(address: std::net::SocketAddr, hold: Duration) -> Churn {
        raise_own_fd_limit(8192);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (2..12u8)
            .map(|host| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut held: std::collections::VecDeque<(Instant, socket2::Socket)> = Default::default();
                    let mut opened = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                        let source = std::net::SocketAddr::from(([127, 0, 0, host], 0));
                        if socket.bind(&source.into()).is_ok() && socket.connect(&address.into()).is_ok() {
                            opened += 1;
                            held.push_back((Instant::now(), socket));
                        }
                        while held.front().is_some_and(|(at, _)| at.elapsed() > hold) || held.len() > 300 {
                            held.pop_front();
                        }
                    }
                    opened
                })
            })
            .collect();
        Churn { stop, threads }
    }

    /// Stops; how many connections were opened in all.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.into_iter().map(|t| t.join().unwrap()).sum()
    }
}

/// What an operator and a slow client saw under churn.
struct UnderChurn {
    /// The first line the slow client read back (empty: it was cut).
    slow_answers: Vec<String>,
    health: usize,
    queued: usize,
    began: i64,
    opened: usize,
    refused: usize,
}

const ROUNDS: usize = 10;

/// Runs `station` (limited to `max_connections`) under churn from ten hosts while, ROUNDS times,
/// a slow honest client takes 900 ms before its headers (a phone's TLS handshake), `/healthz`
/// is asked and an operator queues an emergency.
fn under_churn(station: &crate::helpers::Station, token: &str, daemon: &crate::helpers::Daemon) -> UnderChurn {
    use std::io::Read;
    let base = daemon.http_base();
    let address: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    station.wait_for("on air", WAIT, |e| !of_kind(e, "station_started", None).is_empty());
    // The operator's phone has used its token before (the page does, at every visit).
    assert_eq!(crate::helpers::http_get_auth(&base, "/api/v1/station", token), "200");
    let churn = Churn::start(address, Duration::from_secs(2));
    std::thread::sleep(Duration::from_secs(2));
    let began = chrono::Utc::now().timestamp_millis();
    let (mut slow_answers, mut health, mut queued) = (Vec::new(), 0, 0);
    for _ in 0..ROUNDS {
        let mut slow = TcpStream::connect(address).unwrap();
        std::thread::sleep(Duration::from_millis(900));
        let mut answer = String::new();
        let _ = slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        let _ = slow.read_to_string(&mut answer);
        slow_answers.push(answer.lines().next().unwrap_or_default().to_owned());
        health += usize::from(crate::helpers::http_get(&base, "/healthz") == "200");
        let body = "{\"clip_id\": 1, \"when\": \"now\"}"; // the preloaded bulletin
        queued += usize::from(crate::helpers::http_post(&base, "/api/v1/queue", token, body) == "202");
    }
    let opened = churn.stop();
    let log = std::fs::read_to_string(station.dir.path().join("daemon.log")).unwrap();
    let refused = log.matches("connection refused: the server is full").count();
    UnderChurn { slow_answers, health, queued, began, opened, refused }
}

/// Under churn from ten hosts a slow honest client is never cut mid-handshake, an operator with
/// a token always queues an emergency, `/healthz` answers, and the slots air on time. On a
/// server as small as the churn (24 places), every place young, strangers may be turned away,
/// but the operator (whose address showed its token) is served from the reserved places.
#[test]
fn churn_from_many_hosts_neither_cuts_a_slow_client_nor_keeps_the_operator_out() {
    let station = station(2, 1, &[TONE]);
    let token = station.token("operator");
    let daemon = station.start_with_fd_limit(Device::Unpaced, 1024);
    let seen = under_churn(&station, &token, &daemon);
    // The churn filled the server: connections were refused at accept (the test build is
    // unoptimised, so its accept rate, not the attackers', sets the pace).
    assert!(seen.opened > 1_000 && seen.refused > 100, "light churn: {} opened, {} refused", seen.opened, seen.refused);
    assert!(seen.slow_answers.iter().all(|a| a == "HTTP/1.1 200 OK"), "the slow client: {:?}", seen.slow_answers);
    assert_eq!(seen.queued, ROUNDS, "the operator's emergency was refused");
    assert!(seen.health * 100 >= ROUNDS * 95, "/healthz answered {} of {ROUNDS}", seen.health);
    // Slots air on time, or give way to the operator's emergencies, which air.
    let began = seen.began;
    let events = station.wait_for("airings during the churn", WAIT, |e| {
        let ended = of_kind(e, "airing_ended", Some("completed"));
        let slots = ended.iter().filter(|a| a["scheduled_at"].as_i64().is_some_and(|at| at > began)).count();
        let emergencies =
            ended.iter().filter(|a| a["scheduled_at"].is_null() && a["at"].as_i64().unwrap() > began).count();
        slots >= 2 && emergencies >= 1
    });
    let slots = of_kind(&events, "airing_ended", Some("completed"));
    for airing in slots.iter().filter(|a| a["scheduled_at"].as_i64().is_some_and(|at| at > began)) {
        let late = airing["started_at"].as_i64().map(|at| at - airing["scheduled_at"].as_i64().unwrap());
        assert!(late.is_some_and(|late| late < 2000), "an airing started late under churn: {airing}");
    }
    daemon.stop();

    let small = crate::helpers::Station::with_config(&format!(
        "[station]\nid = \"s\"\nname = \"n\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\nmax_connections = 24\n\
         [[preload]]\nfile = \"{}/{TONE}\"\ntitle = \"t\"\ntopic = \"cchc\"\n",
        crate::helpers::FIXTURES
    ));
    let token = small.token("operator");
    let daemon = small.start_with_fd_limit(Device::Unpaced, 1024);
    let seen = under_churn(&small, &token, &daemon);
    assert!(seen.refused > 100, "light churn: {} refused", seen.refused);
    assert_eq!(seen.queued, ROUNDS, "the operator's emergency was refused");
    daemon.stop();
}
