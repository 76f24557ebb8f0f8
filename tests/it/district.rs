//! The auditing office (`loa district`) against real stations (`loa run` on the ALSA file
//! device): clean pulls stay clean; a station restored from an old backup, a replaced box and
//! an event tampered on the way each raise their alarm and store nothing false; a pushing
//! station converges to the same head; a silent one is `unreachable` on a virtual clock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Device, Run, Station, http_get_body, loa, of_kind, station};

const TONE: &str = "cbr128_stereo_44k.mp3";
const WAIT: Duration = Duration::from_secs(60);
/// A key no station has (the office pins what the clerk typed; this one is for config tests).
const SOME_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

/// An office with its config in its own directory.
struct Office {
    dir: tempfile::TempDir,
}

/// The key every test office signs with (its `district.key` is written before it first opens).
const OFFICE_SEED: [u8; 32] = [9; 32];

fn office_key() -> String {
    loa::proof::StationKey::from_seed(OFFICE_SEED).public_key_hex()
}

/// Pins the test office's key in a station's config (`[office] public_key`), before it starts.
fn pin_office(station: &Station) {
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    std::fs::write(station.config_path(), format!("{config}[office]\npublic_key = \"{}\"\n", office_key())).unwrap();
}

impl Office {
    fn new(stations: &str) -> Office {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("office");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("district.key"), format!("{}\n", hex::encode(OFFICE_SEED))).unwrap();
        let listen = free_address();
        std::fs::write(
            dir.path().join("district.toml"),
            format!(
                "[district]\nname = \"UBND xã Phú Thủy\"\ndata_dir = \"office\"\nlisten = \"{listen}\"\n\
                 connect_timeout_seconds = 2\nread_timeout_seconds = 5\n{stations}"
            ),
        )
        .unwrap();
        Office { dir }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("district.toml")
    }

    fn run(&self, args: &[&str]) -> Run {
        let config = self.config();
        let mut all = vec!["district", "--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        loa(&all)
    }

    fn status(&self) -> Value {
        let run = self.run(&["status", "--json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()
    }

    /// The certificate fingerprint a serving office printed, when it serves HTTPS.
    fn fingerprint(&self) -> Option<String> {
        let out = std::fs::read_to_string(self.dir.path().join("serve.out")).unwrap_or_default();
        out.lines().find_map(|l| l.split("tls_fingerprint: ").nth(1)).map(str::to_owned)
    }

    fn listen(&self) -> String {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let line = text.lines().find(|l| l.starts_with("listen")).unwrap();
        line.split('"').nth(1).unwrap().to_owned()
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The `[[station]]` table for a running station.
fn entry(station: &Station, base: &str) -> String {
    format!(
        "[[station]]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\nurl = \"{base}\"\ntoken = \"{}\"\npublic_key = \"{}\"\n",
        station.token("district"),
        station.public_key()
    )
}

fn head_of(station: &Station) -> i64 {
    station.events().last().map_or(0, |e| e["seq"].as_i64().unwrap())
}

fn airings(events: &[Value]) -> usize {
    of_kind(events, "airing_ended", None).len()
}

fn alarm_kinds(status: &Value) -> Vec<String> {
    status["stations"][0]["alarms"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_clean_station_stays_clean_across_pulls_and_holds_the_offices_receipt() {
    let station = station(2, 1, &[TONE]);
    pin_office(&station);
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();
    station.wait_for("an airing", WAIT, |e| airings(e) >= 1);
    // A second station that is down: it fails on its own, the first is pulled all the same.
    let dead = format!(
        "[[station]]\nid = \"ward-dead\"\nname = \"Đài đã tắt\"\nurl = \"http://{}\"\ntoken = \"loa_{}\"\npublic_key = \"{SOME_KEY}\"\n",
        free_address(),
        "0".repeat(64)
    );
    let office = Office::new(&format!("{}{dead}", entry(&station, &base)));

    let first = office.run(&["pull"]);
    assert_eq!(first.code, 1, "a dead station makes the round not clean: {}", first.stdout);
    assert!(first.stdout.contains("phu-thuy ok:"), "{}", first.stdout);
    assert!(first.stdout.contains("ward-dead FAILED: cannot connect"), "{}", first.stdout);
    let only = office.run(&["pull", "--station", "phu-thuy"]);
    assert_eq!(only.code, 0, "{}{}", only.stdout, only.stderr);

    station.wait_for("two more airings", WAIT, |e| airings(e) >= 3);
    let again = office.run(&["pull", "--station", "phu-thuy", "--json"]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    let contact = &again.json()[0];
    assert!(
        contact["accepted"].as_u64().unwrap() >= 1 && contact["alarms"].as_array().unwrap().is_empty(),
        "{contact}"
    );
    let status = office.status();
    let held = &status["stations"][0];
    assert_eq!(held["id"], "phu-thuy");
    assert!(held["alarms"].as_array().unwrap().is_empty(), "{status}");
    assert!(held["last_ok_at"].is_string());
    let head = held["head_seq"].as_i64().unwrap();
    assert!(head >= 3 && head <= head_of(&station), "{status}");

    // The station keeps the office's receipt and shows it.
    let (code, body) = crate::helpers::http_get_authed(&base, "/api/v1/station", &station.token("operator"));
    assert_eq!(code, "200", "{body}");
    let shown: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["receipt"]["head_seq"], head, "{shown}");
    assert_eq!(shown["receipt"]["office"], "UBND xã Phú Thủy");

    // Reports across stations: CSV for Excel, printable Vietnamese HTML.
    let year = chrono::Utc::now().format("%Y").to_string();
    let csv = office.run(&["report", "--period", &year, "--format", "csv"]);
    assert_eq!(csv.code, 0, "{}", csv.stderr);
    assert!(csv.stdout.starts_with('\u{feff}') && csv.stdout.contains("phu-thuy,"), "{}", csv.stdout);
    assert_eq!(csv.stdout.lines().count(), 3, "a header and one row per station: {}", csv.stdout);
    let html = office.run(&["report", "--period", &year, "--format", "html"]);
    assert!(html.stdout.contains("Báo cáo tổng hợp") && html.stdout.contains("Đài truyền thanh phường Phú Thủy"));
    let json = office.run(&["report", "--period", &year]);
    let row = &json.json()["stations"][0];
    assert!(row["by_status"]["completed"].as_u64().unwrap() >= 1, "{row}");
    assert_eq!(office.run(&["report", "--period", "last week"]).code, 2);
    daemon.stop();
}

/// Copies the station's database aside (a backup), as an admin would.
fn backup(station: &Station) -> PathBuf {
    let path = station.dir.path().join("old.sqlite");
    let run = station.loa(&["backup", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    path
}

fn restore(station: &Station, from: &Path) {
    let db = station.data_dir().join("loa.sqlite");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(from, &db).unwrap();
}

#[test]
fn a_station_restored_from_an_old_backup_is_caught_and_says_so_itself() {
    let station = station(2, 1, &[TONE]);
    pin_office(&station);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("an airing", WAIT, |e| airings(e) >= 1);
    // The office's token is made before the backup: a restored box still knows it.
    let office = Office::new(&entry(&station, &daemon.http_base()));
    let old = backup(&station);
    station.wait_for("three airings", WAIT, |e| airings(e) >= 3);
    assert_eq!(office.run(&["pull"]).code, 0);
    let held = office.status()["stations"][0]["head_seq"].as_i64().unwrap();
    daemon.stop();

    // The box's database is put back to the old copy; it starts and airs on.
    restore(&station, &old);
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("the restored station airing again", WAIT, |e| {
        !of_kind(e, "log_behind_receipt", None).is_empty() && airings(e) >= 2
    });
    let behind = of_kind(&events, "log_behind_receipt", None)[0];
    assert_eq!(behind["receipt_seq"], held, "{behind}");
    assert_eq!(behind["office"], "UBND xã Phú Thủy");

    // The restored box listens on a new port: the clerk's config follows it.
    let config = std::fs::read_to_string(office.config()).unwrap();
    let url = config.lines().find(|l| l.starts_with("url")).unwrap().to_owned();
    std::fs::write(office.config(), config.replace(&url, &format!("url = \"{}\"", daemon.http_base()))).unwrap();
    let pull = office.run(&["pull"]);
    assert_eq!(pull.code, 1, "{}", pull.stdout);
    let status = office.status();
    let kinds = alarm_kinds(&status);
    assert!(kinds.iter().any(|k| k == "rollback" || k == "fork"), "{}\n{status}", pull.stdout);
    assert_eq!(status["stations"][0]["head_seq"], held, "nothing the station sends now moves the office's head");
    // Pulled again, the same finding is not raised twice while it is open.
    office.run(&["pull"]);
    assert_eq!(alarm_kinds(&office.status()).len(), kinds.len());

    // A clerk acknowledges it; the alarm and the note both stay.
    let id = status["stations"][0]["alarms"][0]["id"].as_i64().unwrap().to_string();
    let ack = office.run(&["ack", &id, "--note", "Đã gọi đài: máy bị khôi phục từ bản sao cũ"]);
    assert_eq!(ack.code, 0, "{}", ack.stderr);
    assert_eq!(ack.json()["note"], "Đã gọi đài: máy bị khôi phục từ bản sao cũ");
    assert_eq!(office.run(&["ack", &id, "--note", "again"]).code, 1, "an acknowledgement is written once");
    assert_eq!(office.run(&["ack", "99999", "--note", "x"]).code, 1);
    daemon.stop();
}

#[test]
fn a_receipt_from_anyone_but_the_pinned_office_is_refused_and_changes_nothing() {
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();
    station.wait_for("an airing", WAIT, |e| airings(e) >= 1);
    let district = station.token("district");
    let last = station.events().last().cloned().unwrap();
    let (seq, hash) = (last["seq"].as_i64().unwrap(), last["hash"].as_str().unwrap().to_owned());
    let sign = |seed: [u8; 32], station_id: &str, seq: i64, hash: &str| {
        let key = loa::proof::StationKey::from_seed(seed);
        loa::district::receipt::sign(&key, "UBND xã Phú Thủy", station_id, seq, hash, chrono::Utc::now())
    };
    let post = |line: &str| {
        crate::helpers::http_post_body(&base, "/api/v1/receipt", &district, "application/json", line.as_bytes())
    };
    let shown = |base: &str| {
        let (_, body) = crate::helpers::http_get_authed(base, "/api/v1/station", &station.token("operator"));
        serde_json::from_str::<Value>(&body).unwrap()["receipt"].clone()
    };
    // No office pinned: even the right office's receipt is refused, naming the setting.
    let (code, body) = post(&sign(OFFICE_SEED, "phu-thuy", seq, &hash));
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("office_not_pinned") && body.contains("[office] public_key"), "{body}");
    daemon.stop();

    pin_office(&station);
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();
    let post = |line: &str| {
        crate::helpers::http_post_body(&base, "/api/v1/receipt", &district, "application/json", line.as_bytes())
    };
    // Anyone with a district token can sign with a key of their own: refused.
    let (code, body) = post(&sign([8; 32], "phu-thuy", seq, &hash));
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("not_our_office"), "{body}");
    // The pinned office's, for another station or for an event this log does not hold.
    assert_eq!(post(&sign(OFFICE_SEED, "ward-other", seq, &hash)).0, "409");
    assert_eq!(post(&sign(OFFICE_SEED, "phu-thuy", seq + 1000, &hash)).0, "409");
    assert_eq!(post(&sign(OFFICE_SEED, "phu-thuy", seq, &"0".repeat(64))).0, "409");
    assert!(shown(&base).is_null(), "nothing refused is shown: {}", shown(&base));
    // The pinned office's receipt for this log is taken and shown.
    let (code, body) = post(&sign(OFFICE_SEED, "phu-thuy", seq, &hash));
    assert_eq!(code, "204", "{body}");
    assert_eq!(shown(&base)["head_seq"], seq);
    daemon.stop();
}

/// A stand-in on the path between the office and a station, serving until `stop`: `answer` is
/// given each request's path and authorization and says what to send back.
fn interposer(
    answer: impl Fn(&str, &str, &mut std::net::TcpStream) + Send + 'static,
) -> (String, Arc<std::sync::atomic::AtomicBool>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    std::thread::spawn(move || {
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((mut socket, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            socket.set_nonblocking(false).unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let auth = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().starts_with("authorization:").then(|| l[14..].trim().to_owned()))
                .unwrap_or_default();
            answer(&path, &auth, &mut socket);
        }
    });
    (format!("http://{address}"), stop)
}

fn respond(socket: &mut std::net::TcpStream, status: &str, body: &str) {
    use std::io::Write;
    let _ = write!(
        socket,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn a_proxy_replaying_the_stations_answer_is_caught_as_stale() {
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();
    station.wait_for("an airing", WAIT, |e| airings(e) >= 1);
    // The first answer is the station's own; every later one is that same answer again.
    let cached = std::sync::Mutex::new(None::<(String, String)>);
    let (proxy, stop) = interposer(move |path, auth, socket| {
        if !path.starts_with("/api/v1/airtime") {
            return respond(socket, "204", "");
        }
        let mut cached = cached.lock().unwrap();
        let (status, body) = cached
            .get_or_insert_with(|| crate::helpers::http_request(&base, "GET", path, &[("authorization", auth)], b""))
            .clone();
        respond(socket, &status, &body);
    });
    let office = Office::new(&entry(&station, &proxy));
    let first = office.run(&["pull", "--json"]);
    assert_eq!(first.code, 0, "the first answer is fresh: {}", first.stdout);
    station.wait_for("another airing", WAIT, |e| airings(e) >= 2);
    let replayed = office.run(&["pull", "--json"]);
    assert_eq!(replayed.code, 1, "a replayed answer is not a clean contact: {}", replayed.stdout);
    assert_eq!(replayed.json()[0]["alarms"], serde_json::json!(["stale"]), "{}", replayed.stdout);
    let status = office.status();
    assert_eq!(alarm_kinds(&status), ["stale"], "{status}");
    let last_ok = status["stations"][0]["last_ok_at"].clone();
    office.run(&["pull"]);
    assert_eq!(office.status()["stations"][0]["last_ok_at"], last_ok, "a replay never counts as contact");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    daemon.stop();
}

#[test]
fn a_station_dripping_its_answer_is_stale_and_the_round_does_not_wait_for_it() {
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("an airing", WAIT, |e| airings(e) >= 1);
    // Headers at once, then one byte of a promised page every 300 ms: never a read timeout.
    let (dripping, stop) = interposer(|_, _, socket| {
        use std::io::Write;
        let _ = write!(socket, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n");
        for _ in 0..400 {
            if socket.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let slow = format!(
        "[[station]]\nid = \"ward-slow\"\nname = \"Đài chậm\"\nurl = \"{dripping}\"\ntoken = \"loa_{}\"\npublic_key = \"{SOME_KEY}\"\n",
        "0".repeat(64)
    );
    let office = Office::new(&format!("{slow}{}", entry(&station, &daemon.http_base())));
    let text = std::fs::read_to_string(office.config()).unwrap();
    std::fs::write(office.config(), text.replace("[district]\n", "[district]\npull_deadline_seconds = 3\n")).unwrap();
    let round = office.run(&["pull", "--json"]);
    assert_eq!(round.code, 1, "{}", round.stdout);
    let contacts = round.json();
    assert_eq!(contacts[0]["station_id"], "ward-slow");
    assert_eq!(contacts[0]["alarms"], serde_json::json!(["stale"]), "{contacts}");
    assert!(contacts[0]["error"].as_str().unwrap().contains("pull_deadline_seconds"), "{contacts}");
    assert_eq!(contacts[1]["alarms"], serde_json::json!([]), "the healthy station is pulled all the same: {contacts}");
    assert!(contacts[1]["error"].is_null() && contacts[1]["accepted"].as_u64().unwrap() >= 1, "{contacts}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    daemon.stop();
}

#[test]
fn a_tail_cut_on_the_box_before_the_office_pulled_it_is_reported_by_the_station_itself() {
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("an airing", WAIT, |e| airings(e) >= 1);
    let office = Office::new(&entry(&station, &daemon.http_base()));
    let first = office.run(&["pull", "--json"]);
    assert_eq!(first.code, 0, "{}", office.status());
    let held = office.status()["stations"][0]["head_seq"].as_i64().unwrap();
    station.wait_for("two more airings", WAIT, |e| airings(e) >= 3);
    daemon.stop();
    // A start checks the whole log and remembers how far; then the box is stopped.
    let before = airings(&station.events());
    let daemon = station.start(Device::Unpaced);
    station.wait_for("another airing", WAIT, |e| airings(e) > before);
    daemon.stop();
    let db = rusqlite::Connection::open(station.data_dir().join("loa.sqlite")).unwrap();
    let checked: i64 = db.query_row("SELECT seq FROM chain_checked", [], |r| r.get(0)).unwrap();
    assert!(checked > held, "the start's check covered events the office never pulled");
    // Someone cuts those events and puts the guard back exactly as it was: only the station's
    // memory of its last check can tell.
    let guard: Vec<String> = db
        .prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    db.execute_batch("DROP TRIGGER events_are_never_updated; DROP TRIGGER events_are_never_deleted;").unwrap();
    db.execute("DELETE FROM events WHERE seq > ?1", [held]).unwrap();
    for sql in &guard {
        db.execute_batch(sql).unwrap();
    }
    drop(db);

    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("the station's own word", WAIT, |e| !of_kind(e, "log_tampered", None).is_empty());
    let tampered = of_kind(&events, "log_tampered", None)[0];
    assert_eq!(tampered["checked_seq"], checked, "{tampered}");
    assert!(tampered["reason"].as_str().unwrap().contains("cut or rewritten"), "{tampered}");
    let config = std::fs::read_to_string(office.config()).unwrap();
    let url = config.lines().find(|l| l.starts_with("url")).unwrap().to_owned();
    std::fs::write(office.config(), config.replace(&url, &format!("url = \"{}\"", daemon.http_base()))).unwrap();
    let pull = office.run(&["pull", "--json"]);
    assert_eq!(pull.json()[0]["alarms"], serde_json::json!(["log_tampered"]), "{}", office.status());
    assert_eq!(alarm_kinds(&office.status()), ["log_tampered"]);
    daemon.stop();
}

#[test]
fn a_replaced_box_with_a_new_key_is_caught() {
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("two airings", WAIT, |e| airings(e) >= 2);
    let office = Office::new(&entry(&station, &daemon.http_base()));
    assert_eq!(office.run(&["pull"]).code, 0);
    daemon.stop();

    // A fresh box at the same address, with the same station id: a new key, a new log.
    std::fs::rename(station.data_dir(), station.dir.path().join("old-box")).unwrap();
    let daemon = station.start(Device::Unpaced);
    station.wait_for("the new box airing", WAIT, |e| airings(e) >= 1);
    let config = std::fs::read_to_string(office.config()).unwrap();
    let old_base = config.lines().find(|l| l.starts_with("url")).unwrap().split('"').nth(1).unwrap().to_owned();
    std::fs::write(office.config(), config.replace(&old_base, &daemon.http_base())).unwrap();
    // The office's token was the old box's: the clerk enrols a token of the new one.
    let config = std::fs::read_to_string(office.config()).unwrap();
    let old_token = config.lines().find(|l| l.starts_with("token")).unwrap().split('"').nth(1).unwrap().to_owned();
    std::fs::write(office.config(), config.replace(&old_token, &station.token("district"))).unwrap();

    let pull = office.run(&["pull"]);
    assert_eq!(pull.code, 1, "{}", pull.stdout);
    let kinds = alarm_kinds(&office.status());
    assert!(kinds.iter().any(|k| k == "key_changed" || k == "bad_signature"), "{kinds:?}");
    daemon.stop();
}

/// Starts `loa district serve`; killed with the guard.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(office: &Office) -> Serving {
    let out = std::fs::File::create(office.dir.path().join("serve.out")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["district", "--config", office.config().to_str().unwrap(), "serve"])
        .stdout(out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (address, base) = (office.listen(), format!("http://{}", office.listen()));
    let tls = std::fs::read_to_string(office.config()).unwrap().contains("\ntls = ");
    let deadline = std::time::Instant::now() + WAIT;
    let answers = || match tls {
        true => office.fingerprint().is_some() && std::net::TcpStream::connect(&address).is_ok(),
        false => {
            std::net::TcpStream::connect(&address).is_ok() && crate::helpers::http_get(&base, "/api/v1/status") == "200"
        }
    };
    while !answers() {
        assert!(std::time::Instant::now() < deadline, "the dashboard never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    Serving(child)
}

/// The head of the office's answer to `GET path`.
fn office_head(base: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    write!(socket, "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    answer.split_once("\r\n\r\n").map_or(answer.clone(), |(head, _)| head.to_owned())
}

fn push(base: &str, token: &str, body: &str) -> (String, String) {
    crate::helpers::http_post_body(base, "/api/v1/push", token, "application/jsonl", body.as_bytes())
}

#[test]
fn pushed_events_are_judged_like_pulled_ones_and_a_tampered_one_is_not_stored() {
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("two airings", WAIT, |e| airings(e) >= 2);
    daemon.stop();
    let entry = format!(
        "[[station]]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\npublic_key = \"{}\"\n",
        station.public_key()
    );
    let office = Office::new(&entry);
    let token = office.run(&["token", "create", "--station", "phu-thuy"]);
    assert_eq!(token.code, 0, "{}", token.stderr);
    let token = token.stdout.trim().to_owned();
    assert_eq!(office.run(&["token", "create", "--station", "nowhere"]).code, 2);
    let _serving = serve(&office);
    let base = format!("http://{}", office.listen());
    let lines = station.loa(&["airtime", "--format", "jsonl"]).stdout;

    // Refused before anything is read or stored: no token, a wrong one, an empty body.
    assert_eq!(push(&base, "loa_wrong", &lines).0, "401");
    assert_eq!(push(&base, &token, "").0, "400");
    // One event edited on the way (its title): refused by name, nothing stored.
    let tampered = lines.replacen("Bản tin 0", "Bản tin 9", 1);
    assert_ne!(tampered, lines);
    let (code, body) = push(&base, &token, &tampered);
    assert_eq!(code, "422", "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert!(answer["alarms"].as_array().unwrap().iter().any(|k| k == "bad_hash"), "{answer}");
    let before_tamper = answer["head"]["seq"].as_i64().unwrap();
    let held = office.status()["stations"][0]["head_seq"].as_i64().unwrap();
    assert_eq!(held, before_tamper, "only events before the altered one are kept");
    let altered_at = lines.lines().position(|l| l.contains("Bản tin 0")).unwrap() as i64 + 1;
    assert!(held < altered_at, "the altered event is not held (held {held}, altered {altered_at})");

    // The honest log, pushed from the office's head on, answering the office's last challenge
    // with the station's head signed (as `[upstream]` does): accepted whole, with a receipt.
    let rest: String = lines.lines().skip((held - 1).max(0) as usize).map(|l| format!("{l}\n")).collect();
    let station_key = loa::proof::load_or_create(&station.data_dir(), "station.key").unwrap();
    let last: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    let head = (last["seq"].as_i64().unwrap(), last["hash"].as_str().unwrap());
    let challenge = answer["challenge"].as_str().unwrap();
    let statement = loa::proof::head::answer(&station_key, "phu-thuy", head, challenge, chrono::Utc::now());
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str()), ("loa-head-statement", statement.as_str())];
    let (code, body) = crate::helpers::http_request(&base, "POST", "/api/v1/push", &headers, rest.as_bytes());
    assert_eq!(code, "200", "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["head"]["seq"], head_of(&station));
    assert!(answer["receipt"].as_str().unwrap().contains("\"kind\":\"receipt\""));

    // A revoked token stops working at once; the list keeps it, never its secret.
    let listed = office.run(&["token", "list", "--json"]).json();
    assert_eq!((listed[0]["role"].as_str(), listed[0]["owner"].as_str()), (Some("push"), Some("phu-thuy")));
    assert!(!listed.to_string().contains(&token));
    let id = listed[0]["id"].as_i64().unwrap().to_string();
    assert_eq!(office.run(&["token", "revoke", &id]).code, 0);
    assert_eq!(push(&base, &token, &rest).0, "401");
    assert_eq!(office.run(&["token", "revoke", "999"]).code, 1);
}

/// The peak resident memory of a process (KiB, `VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_push_is_bounded_in_memory_and_raises_one_alarm_per_kind_however_many_lines_are_bad() {
    let mut forge = crate::office::Forge::new(5, "ward-a");
    let start = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    forge.started(start);
    for i in 0..2_000 {
        let mut stopped = loa::proof::events::station_stopped("stopped by the admin");
        stopped.insert("reason".into(), Value::from(format!("stop {i}")));
        forge.push(stopped, start + chrono::TimeDelta::milliseconds(i + 1));
    }
    let office = Office::new(&forge.entry());
    let token = office.run(&["token", "create", "--station", "ward-a"]).stdout.trim().to_owned();
    let serving = serve(&office);
    let base = format!("http://{}", office.listen());
    let honest: String = forge.lines.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(push(&base, &token, &honest).0, "200");

    // Every held event again, each with one byte changed: 2,000 bad lines, one alarm.
    let edited = honest.replace("\"stop ", "\"Stop ");
    let (code, body) = push(&base, &token, &edited);
    assert_eq!(code, "422", "{body}");
    let alarms = office.status()["stations"][0]["alarms"].clone();
    assert_eq!(alarms.as_array().unwrap().len(), 1, "{alarms}");
    assert_eq!(alarms[0]["kind"], "bad_hash");
    assert!(alarms[0]["detail"].as_str().unwrap().contains("1999 more like it"), "{alarms}");

    // 32 MiB of tiny lines: refused as soon as the count is past the bound, memory flat.
    let tiny = "{}\n".repeat((32 << 20) / 3 - 1);
    let (code, body) = push(&base, &token, &tiny);
    assert!(code == "413" || code.is_empty(), "{code} {body}");
    let long = format!("{}\n", "x".repeat(100 << 10));
    let (code, body) = push(&base, &token, &long);
    assert!(code == "413" || code.is_empty(), "{code} {body}");
    let peak = peak_rss_kib(serving.0.id());
    assert!(peak < 128 << 10, "the office's peak memory reached {peak} KiB");
    assert_eq!(office.status()["stations"][0]["alarms"].as_array().unwrap().len(), 1, "refused pushes raise nothing");
}

#[test]
fn a_push_counts_as_contact_only_when_it_answers_the_offices_last_challenge() {
    let mut forge = crate::office::Forge::new(6, "ward-a");
    let start = chrono::Utc::now() - chrono::TimeDelta::hours(1);
    forge.started(start);
    for i in 0..4 {
        forge.airing(
            start + chrono::TimeDelta::minutes(5 * i + 1),
            60_000,
            loa::proof::events::AiringStatus::Completed,
        );
    }
    let office = Office::new(&forge.entry());
    let token = office.run(&["token", "create", "--station", "ward-a"]).stdout.trim().to_owned();
    let _serving = serve(&office);
    let base = format!("http://{}", office.listen());
    let lines = |from: usize, to: usize| -> String { forge.lines[from..to].iter().map(|l| format!("{l}\n")).collect() };
    let statement = |challenge: &str, head: usize| {
        let line: Value = serde_json::from_str(&forge.lines[head - 1]).unwrap();
        let hash = line["hash"].as_str().unwrap().to_owned();
        loa::proof::head::answer(&forge.key, "ward-a", (head as i64, &hash), challenge, chrono::Utc::now())
    };
    let push = |body: &str, statement: Option<&str>| {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![("authorization", bearer.as_str()), ("content-type", "application/jsonl")];
        if let Some(statement) = statement {
            headers.push(("loa-head-statement", statement));
        }
        let (code, body) = crate::helpers::http_request(&base, "POST", "/api/v1/push", &headers, body.as_bytes());
        (code, serde_json::from_str::<Value>(&body).unwrap())
    };
    // The first push ever: no challenge was issued yet; its answer gives one.
    let (code, first) = push(&lines(0, 3), None);
    assert_eq!(code, "200", "{first}");
    // Then a push without the statement: its events are kept, but it is no contact.
    let (code, bare) = push(&lines(2, 6), None);
    assert_eq!(code, "422", "{bare}");
    assert!(bare["error"].as_str().unwrap().contains("no head statement") && bare["receipt"].is_null(), "{bare}");
    assert_eq!(bare["head"]["seq"], 6, "{bare}");
    // Answering the last challenge: a contact, with a receipt.
    let answered = statement(bare["challenge"].as_str().unwrap(), 9);
    let (code, fresh) = push(&lines(5, 9), Some(&answered));
    assert_eq!(code, "200", "{fresh}");
    assert!(fresh["receipt"].is_string(), "{fresh}");
    // The same push replayed (by a proxy that recorded it): its challenge is spent.
    let (code, replayed) = push(&lines(5, 9), Some(&answered));
    assert_eq!(code, "422", "{replayed}");
    assert_eq!(replayed["alarms"], serde_json::json!(["stale"]), "{replayed}");
    assert_eq!(alarm_kinds(&office.status()), ["stale"]);
}

#[test]
fn a_pushing_station_converges_to_the_same_head_as_its_own_log() {
    let office = Office::new("");
    let listen = office.listen();
    let station = station(2, 1, &[TONE]);
    // The office learns the station's key from the box itself, then hands it a push token.
    std::fs::write(
        office.config(),
        std::fs::read_to_string(office.config()).unwrap()
            + &format!(
                "[[station]]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\npublic_key = \"{}\"\n",
                station.public_key()
            ),
    )
    .unwrap();
    let token = office.run(&["token", "create", "--station", "phu-thuy"]).stdout.trim().to_owned();
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    std::fs::write(
        station.config_path(),
        format!(
            "{config}[upstream]\nurl = \"http://{listen}\"\ntoken = \"{token}\"\n[office]\npublic_key = \"{}\"\n",
            office_key()
        ),
    )
    .unwrap();
    let _serving = serve(&office);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("three airings", WAIT, |e| airings(e) >= 3);
    let base = format!("http://{listen}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, body) = http_get_body(&base, "/api/v1/status");
        let status: Value = serde_json::from_str(&body).unwrap();
        let held = status["stations"][0]["head_seq"].as_i64().unwrap();
        if held >= 8 && held == head_of(&station) {
            assert!(status["stations"][0]["alarms"].as_array().unwrap().is_empty(), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the office never caught up: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.stop();
    // The dashboard shows the station, in Vietnamese.
    let (code, page) = http_get_body(&base, "/");
    assert_eq!(code, "200");
    assert!(page.contains("Đài truyền thanh phường Phú Thủy") && page.contains("Liên lạc gần nhất"), "{page}");
}

/// The office serves HTTPS with its own certificate; a station pushes only to the certificate
/// it pinned, and the clerk's sign-in cookie is `Secure` there.
#[test]
fn a_station_pushes_over_tls_to_the_office_certificate_it_pinned_and_no_other() {
    let station = station(2, 1, &[TONE]);
    let office = Office::new(&format!(
        "[[station]]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\npublic_key = \"{}\"\n",
        station.public_key()
    ));
    let text = std::fs::read_to_string(office.config()).unwrap();
    std::fs::write(office.config(), text.replacen("[district]\n", "[district]\ntls = \"self-signed\"\n", 1)).unwrap();
    let token = office.run(&["token", "create", "--station", "phu-thuy"]).stdout.trim().to_owned();
    let clerk = office.run(&["token", "create", "--clerk", "Chị Hoa"]).stdout.trim().to_owned();
    let _serving = serve(&office);
    let (listen, fingerprint) = (office.listen(), office.fingerprint().unwrap());
    let cert = office.dir.path().join("office").join(loa::http::tls::SELF_SIGNED_CERT);
    let answer = crate::helpers::https_request(&listen, "GET", "/api/v1/status", "", &cert);
    assert_eq!((answer.status.as_str(), answer.fingerprint.as_str()), ("200", fingerprint.as_str()));
    assert_ne!(crate::helpers::http_get(&format!("http://{listen}"), "/api/v1/status"), "200", "no plain HTTP");
    let signed_in = crate::helpers::https_request(&listen, "POST", "/clerk", &format!("token={clerk}&back=/"), &cert);
    assert_eq!(signed_in.status, "303");
    assert!(
        signed_in
            .cookies
            .iter()
            .any(|c| c.contains("Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict")),
        "{:?}",
        signed_in.cookies
    );

    // An https:// upstream must be pinned; a wrong pin pushes nothing.
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    let upstream = |pin: &str| {
        format!(
            "{config}[upstream]\nurl = \"https://{listen}\"\ntoken = \"{token}\"\n{pin}[office]\npublic_key = \"{}\"\n",
            office_key()
        )
    };
    std::fs::write(station.config_path(), upstream("")).unwrap();
    let unpinned = station.loa(&["check-config"]);
    assert_eq!(unpinned.code, 2);
    assert!(unpinned.stderr.contains("upstream.tls_fingerprint"), "{}", unpinned.stderr);
    let wrong = format!("tls_fingerprint = \"{}\"\n", ["00"; 32].join(":"));
    std::fs::write(station.config_path(), upstream(&wrong)).unwrap();
    let daemon = station.start(Device::Unpaced);
    let log = station.dir.path().join("daemon.log");
    let deadline = std::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("push to the office failed") {
        assert!(std::time::Instant::now() < deadline, "a wrongly pinned push did not fail");
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.stop();
    assert_eq!(office.status()["stations"][0]["head_seq"], 0, "nothing reached the office: {}", office.status());

    std::fs::write(station.config_path(), upstream(&format!("tls_fingerprint = \"{fingerprint}\"\n"))).unwrap();
    let daemon = station.start(Device::Unpaced);
    station.wait_for("two airings", WAIT, |e| airings(e) >= 2);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let held = office.status()["stations"][0]["head_seq"].as_i64().unwrap();
        if held >= 4 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the office never received the pushes: {}", office.status());
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.stop();
}

/// Plain HTTP beyond loopback must be asked for; the acknowledgement's clerk is judged from the
/// cookie before a byte of the form is read.
#[test]
fn the_office_refuses_plain_lan_and_judges_the_clerk_before_the_form() {
    let office = Office::new("");
    let text = std::fs::read_to_string(office.config()).unwrap();
    let lan = with_quoted_value(&text, "listen = \"", "0.0.0.0:8090");
    std::fs::write(office.config(), &lan).unwrap();
    let run = office.run(&["check-config"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("district.listen") && run.stderr.contains("tls = \"self-signed\""), "{}", run.stderr);
    std::fs::write(office.config(), lan.replacen("[district]\n", "[district]\nallow_plain_lan = true\n", 1)).unwrap();
    assert_eq!(office.run(&["check-config"]).code, 0, "allowed knowingly");
    std::fs::write(office.config(), &text).unwrap();

    let _serving = serve(&office);
    for cookie in ["", "cookie: loa_clerk=loa_wrong\r\n"] {
        let headers = format!("{cookie}content-type: application/x-www-form-urlencoded\r\n");
        let status = crate::helpers::status_before_body(&office.listen(), "POST", "/alarms/1/ack", &headers);
        assert_eq!(status, "401", "with `{cookie}`");
    }
}

/// `text` with the quoted value after `key` replaced by `value`.
fn with_quoted_value(text: &str, key: &str, value: &str) -> String {
    let start = text.find(key).expect("key") + key.len();
    let end = start + text[start..].find('"').expect("closing quote");
    format!("{}{value}{}", &text[..start], &text[end..])
}

#[test]
fn a_silent_station_is_unreachable_after_the_configured_hours_on_a_virtual_clock() {
    use loa::time::clock::VirtualClock;
    let office = Office::new(&format!(
        "stale_after_hours = 48\n[[station]]\nid = \"ward-a\"\nname = \"Đài A\"\npublic_key = \"{SOME_KEY}\"\n"
    ));
    // `stale_after_hours` belongs to [district]: the text above put it after the table header.
    let text = std::fs::read_to_string(office.config()).unwrap();
    let text =
        text.replace("stale_after_hours = 48\n", "").replace("[district]\n", "[district]\nstale_after_hours = 48\n");
    std::fs::write(office.config(), text).unwrap();
    let config = loa::district::config::DistrictConfig::load(&office.config()).unwrap();
    let start = chrono::DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
    let clock = Arc::new(VirtualClock::new(start));
    let desk = loa::district::Office::open(config, clock.clone()).unwrap();
    assert!(desk.check_reachability().unwrap().is_empty(), "enrolled just now");
    clock.step(chrono::TimeDelta::hours(47));
    assert!(desk.check_reachability().unwrap().is_empty());
    clock.step(chrono::TimeDelta::hours(2));
    assert_eq!(desk.check_reachability().unwrap(), ["ward-a"]);
    assert!(desk.check_reachability().unwrap().is_empty(), "raised once while open");
    let status = desk.status().unwrap();
    assert_eq!(status[0].alarms[0].kind, "unreachable");
}

#[test]
fn a_bad_office_config_names_the_key_and_line() {
    let office = Office::new("[[station]]\nid = \"ward-a\"\nname = \"Đài A\"\npublic_key = \"not-a-key\"\n");
    let run = office.run(&["check-config"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("station[0].public_key") && run.stderr.contains("district.toml:"), "{}", run.stderr);
    let good = Office::new(&format!("[[station]]\nid = \"ward-a\"\nname = \"Đài A\"\npublic_key = \"{SOME_KEY}\"\n"));
    let run = good.run(&["check-config"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("UBND xã Phú Thủy (1 stations, 0 pulled"), "{}", run.stdout);
    assert_eq!(good.run(&["pull", "--station", "ward-a"]).code, 2, "a push-only station cannot be pulled");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_an_alarm_in_plain_words_and_a_clerk_acknowledges_it_in_a_phone_browser() {
    use crate::web::{Browser, CHROMEDRIVER, CHROMIUM, screenshots_dir};
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !crate::helpers::require(present, "Chromium and ChromeDriver", "apt-get install chromium chromium-driver") {
        return;
    }
    // A station's log, pushed once with an event altered on the way: a `bad_hash` alarm.
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("two airings", WAIT, |e| airings(e) >= 2);
    daemon.stop();
    let office = Office::new(&format!(
        "[[station]]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\npublic_key = \"{}\"\n",
        station.public_key()
    ));
    let push_token = office.run(&["token", "create", "--station", "phu-thuy"]).stdout.trim().to_owned();
    let clerk = office.run(&["token", "create", "--clerk", "Chị Hoa"]);
    assert_eq!(clerk.code, 0, "{}", clerk.stderr);
    let clerk = clerk.stdout.trim().to_owned();
    let _serving = serve(&office);
    let base = format!("http://{}", office.listen());
    let lines = station.loa(&["airtime", "--format", "jsonl"]).stdout;
    assert_eq!(push(&base, &push_token, &lines.replacen("Bản tin 0", "Bản tin 9", 1)).0, "422");

    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::start(downloads.path()).await;
    let shots = screenshots_dir();
    browser.resize(360, 740).await;
    browser.open(&format!("{base}/")).await;
    browser.wait("the stations", "document.querySelectorAll('table tr').length >= 2").await;
    let alarm = browser
        .wait("the alarm", "document.querySelector('.alarm') && document.querySelector('.alarm').innerText")
        .await;
    assert!(alarm.as_str().unwrap().contains("Bản ghi bị sửa"), "{alarm}");
    // The office's content policy admits its own style sheet (by hash) and nothing else.
    let red = browser.wait("the style", "getComputedStyle(document.querySelector('.alarm')).color").await;
    assert_eq!(red, "rgb(187, 0, 0)", "the page's style was blocked");
    let head = office_head(&base, "/");
    for header in [
        "content-security-policy: default-src 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.to_ascii_lowercase().contains(header), "{header} missing from the dashboard's answer:\n{head}");
    }
    const CODES: [&str; 3] = ["cchc", "vi", "phu-thuy"];
    browser.assert_in_words("the dashboard", &CODES).await;
    browser.screenshot(&shots, "van-phong-360").await;

    // The clerk opens the station, writes what was done and confirms with their code.
    browser.click("table a").await;
    browser.wait("the station page", "document.querySelector('form') !== null").await;
    browser.assert_vietnamese("the station page").await;
    // Signed out, the page offers the clerk's sign-in; a wrong code is refused with the form again.
    browser.type_into("input[name=token]", "loa_sai").await;
    browser.click("form button").await;
    browser.wait("the refusal", "document.body.innerText.includes('Mã cán bộ không đúng')").await;
    browser.type_into("input[name=token]", &clerk).await;
    browser.click("form button").await;
    browser.wait("the station page, signed in", "document.querySelector('input[name=note]') !== null").await;
    browser.type_into("input[name=note]", "Đã gọi đài: đường truyền bị can thiệp, đã kiểm tra lại").await;
    browser.click("form[action^='/alarms'] button").await;
    browser.wait("the acknowledgement", "document.body.innerText.includes('đã xử lý: Đã gọi đài')").await;
    browser.assert_in_words("the station page", &CODES).await;
    browser.screenshot(&shots, "van-phong-dai-360").await;
    let status = office.status();
    assert!(status["stations"][0]["alarms"].as_array().unwrap().is_empty(), "acknowledged: {status}");

    // The period reports, printable, at desktop width.
    browser.resize(1280, 900).await;
    browser.open(&format!("{base}/report?period={}&format=html", chrono::Utc::now().format("%Y"))).await;
    browser.wait("the report", "document.querySelector('h1').textContent.includes('Báo cáo tổng hợp')").await;
    browser.assert_in_words("the office's report", &CODES).await;
    browser.screenshot(&shots, "van-phong-bao-cao-desktop").await;
    browser.resize(360, 740).await;
    browser.assert_in_words("the office's report on a phone", &CODES).await;
    browser.screenshot(&shots, "van-phong-bao-cao-360").await;
}

#[test]
fn serving_pulls_the_stations_itself() {
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("an airing", WAIT, |e| airings(e) >= 1);
    let office = Office::new(&entry(&station, &daemon.http_base()));
    let _serving = serve(&office);
    let base = format!("http://{}", office.listen());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, body) = http_get_body(&base, "/api/v1/status");
        let status: Value = serde_json::from_str(&body).unwrap();
        if status["stations"][0]["head_seq"].as_i64().unwrap() > 0 {
            assert!(status["stations"][0]["last_ok_at"].is_string(), "{status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the office never pulled: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.stop();

    // The station's page: each airing by its bulletin's title and topic in words.
    let (code, page) = http_get_body(&base, "/station/phu-thuy");
    assert_eq!(code, "200");
    assert!(page.contains("«Bản tin 0» — Cải cách hành chính, Tiếng Việt") && page.contains("Phát trọn vẹn"), "{page}");
    // The clerk's CSV, as Excel reads it: UTF-8 by its byte-order mark, comma-separated, the
    // headers and values in Vietnamese, dates dd/mm/yyyy, no code or hash column.
    let year = chrono::Utc::now().format("%Y").to_string();
    let (code, csv) = http_get_body(&base, &format!("/report?period={year}&format=csv-vi"));
    assert_eq!(code, "200", "{csv}");
    let csv = csv.strip_prefix('\u{feff}').unwrap_or_else(|| panic!("no byte-order mark: {csv}"));
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[..4], ["Đài", "Kỳ báo cáo", "Từ ngày", "Đến ngày"], "{header:?}");
    assert!(header.contains(&"Cải cách hành chính: mỗi tuần, giờ cao điểm".to_owned()), "{header:?}");
    assert!(header.iter().all(|h| !h.contains('_') && !h.contains("hash") && !h.contains("seq")), "{header:?}");
    let row: Vec<String> = reader.records().next().unwrap().unwrap().iter().map(String::from).collect();
    assert_eq!(
        row[..4],
        [
            "Đài truyền thanh phường Phú Thủy".to_owned(),
            format!("Năm {year}"),
            format!("01/01/{year}"),
            format!("31/12/{year}")
        ]
    );
    assert!(
        row[4].starts_with("Đang diễn ra") || row[4].starts_with("Không đạt") || row[4].starts_with("Đạt"),
        "{row:?}"
    );
}

#[test]
fn a_station_on_https_is_pulled_through_its_pinned_certificate_only() {
    let station = Station::with_config(&format!(
        "[station]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\ndata_dir = \"data\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\ntls = \"self-signed\"\n\
         [[slot]]\nname = \"nhanh\"\ncron = \"*/2 * * * * Mon-Sun\"\nmax_minutes = 1\npeak = true\ngrace_seconds = 1\n\
         [[preload]]\nfile = \"{}/{TONE}\"\ntitle = \"Bản tin 0\"\ntopic = \"cchc\"\n",
        crate::helpers::FIXTURES
    ));
    let shown = station.loa(&["station", "--json"]).json();
    let fingerprint = shown["tls_fingerprint"].as_str().unwrap().to_owned();
    let daemon = station.start(Device::Unpaced);
    station.wait_for("an airing", WAIT, |e| airings(e) >= 1);
    let base = format!("https://{}", daemon.https_address());
    let office = Office::new(&format!("{}tls_fingerprint = \"{fingerprint}\"\n", entry(&station, &base)));
    let pull = office.run(&["pull"]);
    assert_eq!(pull.code, 0, "{}{}", pull.stdout, pull.stderr);
    assert!(pull.stdout.contains("phu-thuy ok:"), "{}", pull.stdout);

    // Another certificate at that address (a replaced box, or someone in between) is refused.
    let other = "AB:".repeat(31) + "AB";
    let config = std::fs::read_to_string(office.config()).unwrap().replace(&fingerprint, &other);
    std::fs::write(office.config(), config).unwrap();
    let pull = office.run(&["pull"]);
    assert_eq!(pull.code, 1, "{}", pull.stdout);
    assert!(pull.stdout.contains("not the one pinned"), "{}", pull.stdout);
    // An https url with no fingerprint is refused by the config itself.
    let config = std::fs::read_to_string(office.config()).unwrap();
    let unpinned = config.lines().filter(|l| !l.starts_with("tls_fingerprint")).collect::<Vec<_>>().join("\n");
    std::fs::write(office.config(), unpinned).unwrap();
    let check = office.run(&["check-config"]);
    assert!(check.code == 2 && check.stderr.contains("station[0].tls_fingerprint"), "{}", check.stderr);
    daemon.stop();
}

#[test]
fn a_lost_key_replaced_on_the_box_stops_the_office_until_the_clerk_accepts_it() {
    let station = station(2, 1, &[TONE]);
    let daemon = station.start(Device::Unpaced);
    station.wait_for("an airing", WAIT, |e| airings(e) >= 1);
    let office = Office::new(&entry(&station, &daemon.http_base()));
    assert_eq!(office.run(&["pull"]).code, 0);
    daemon.stop();
    std::fs::remove_file(station.data_dir().join("station.key")).unwrap();
    let replaced = station.loa(&["key", "replace", "--lost"]);
    assert_eq!(replaced.code, 0, "{}", replaced.stderr);
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("airing under the new key", WAIT, |e| {
        !of_kind(e, "key_replaced", None).is_empty() && airings(e) >= 2
    });
    let seq = of_kind(&events, "key_replaced", None)[0]["seq"].as_i64().unwrap();
    let config = std::fs::read_to_string(office.config()).unwrap();
    let url = config.lines().find(|l| l.starts_with("url")).unwrap().to_owned();
    let config = config.replace(&url, &format!("url = \"{}\"", daemon.http_base()));
    std::fs::write(office.config(), &config).unwrap();

    let refused = office.run(&["pull"]);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(alarm_kinds(&office.status()).contains(&"key_changed".to_owned()));
    let held = office.status()["stations"][0]["head_seq"].as_i64().unwrap();
    assert_eq!(held, seq - 1, "the office holds everything before the replacement, nothing after");

    // The clerk confirmed it with the ward and accepts that seq: the office follows the new key.
    std::fs::write(office.config(), config + &format!("accept_key_replacement = [{seq}]\n")).unwrap();
    let accepted = office.run(&["pull"]);
    assert_eq!(accepted.code, 0, "{}{}", accepted.stdout, accepted.stderr);
    assert!(office.status()["stations"][0]["head_seq"].as_i64().unwrap() > seq);
    daemon.stop();
}

#[test]
fn the_office_sends_a_playable_bulletin_signed_in_its_log_and_withdraws_it_once() {
    let office = Office::new(&format!(
        "[[station]]\nid = \"phu-thuy\"\nname = \"Đài Phú Thủy\"\npublic_key = \"{SOME_KEY}\"\n\
         [[station]]\nid = \"binh-an\"\nname = \"Đài Bình An\"\npublic_key = \"{SOME_KEY}\"\n"
    ));
    let file = format!("{}/{TONE}", crate::helpers::FIXTURES);
    let add = |extra: &[&str]| {
        let mut args = vec!["bulletin", "add", &file, "--title", "Bản tin CCHC tháng 12", "--topic", "cchc"];
        args.extend_from_slice(extra);
        office.run(&args)
    };
    let sent = add(&["--priority", "priority", "--stations", "binh-an", "--airings", "2", "--json"]);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    let manifest = sent.json();
    assert_eq!(manifest["kind"], "bulletin");
    assert_eq!(manifest["office_key"], office_key());
    assert_eq!((manifest["duration_ms"].as_u64(), manifest["airings"].as_u64()), (Some(2000), Some(2)));
    assert_eq!(manifest["stations"], serde_json::json!(["binh-an"]));
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(manifest["sha256"], loa::proof::sha256_hex(&bytes), "the manifest names the file's bytes");
    assert_eq!(manifest["bytes"].as_u64(), Some(bytes.len() as u64));
    let kept = office.dir.path().join(format!("office/bulletins/{}.mp3", manifest["sha256"].as_str().unwrap()));
    assert_eq!(std::fs::read(&kept).unwrap(), bytes, "the office keeps the audio by its SHA-256");

    // Refused before anything is kept or signed: not playable, unknown station, bad topic.
    let text = crate::helpers::Station::new().input("ban-tin.mp3", b"day khong phai am thanh\n");
    let refused = office.run(&["bulletin", "add", text.to_str().unwrap(), "--title", "x", "--topic", "cchc"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(refused.stderr.contains("not sent"), "{}", refused.stderr);
    let unknown = add(&["--stations", "binh-an,xa-khac"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("\"xa-khac\"") && unknown.stderr.contains("phu-thuy, binh-an"),
        "{}",
        unknown.stderr
    );
    assert_eq!(add(&["--topic", "CCHC!"]).code, 2);
    assert_eq!(add(&["--from", "2026-12-10", "--until", "2026-12-01"]).code, 2, "a window that never opens");
    let past = add(&["--until", "2020-01-01"]);
    assert_eq!(past.code, 2, "an --until before today (the default --from) is refused, not moved");
    assert!(past.stderr.contains("before the window opens"), "{}", past.stderr);
    let over = add(&["--from", "2020-01-01", "--until", "2020-01-31"]);
    assert_eq!(over.code, 2, "a window already over is never signed");
    assert!(over.stderr.contains("is over"), "{}", over.stderr);

    let listed = office.run(&["bulletin", "list", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let id = listed[0]["id"].as_i64().unwrap();
    assert_eq!(listed[0]["manifest"], manifest);
    // Nothing heard from the one station it is for: pending there; no other station listed.
    let status = office.run(&["bulletin", "status", &id.to_string(), "--json"]).json();
    assert_eq!(status["stations"].as_array().unwrap().len(), 1, "{status}");
    assert_eq!(
        (status["stations"][0]["station_id"].as_str(), status["stations"][0]["state"].as_str()),
        (Some("binh-an"), Some("pending"))
    );
    let withdrawn = office.run(&["bulletin", "withdraw", &id.to_string()]);
    assert_eq!(withdrawn.code, 0, "{}", withdrawn.stderr);
    assert_eq!(withdrawn.json()["kind"], "bulletin_withdrawn");
    let again = office.run(&["bulletin", "withdraw", &id.to_string()]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already withdrawn"), "{}", again.stderr);
    assert_eq!(office.run(&["bulletin", "withdraw", "999"]).code, 2);
    assert_eq!(office.run(&["bulletin", "list", "--json"]).json()[0]["withdrawn"], true);
    let status = office.run(&["bulletin", "status", &id.to_string(), "--json"]).json();
    assert_eq!(status["stations"][0]["state"], "withdrawn", "{status}");
    assert_eq!(office.run(&["bulletin", "status", "999"]).code, 2);
    // What was sent is in the office's signed log: its memory check still finds it whole.
    let check = office.run(&["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_station_follows_the_feed_of_what_is_addressed_to_it_and_downloads_the_audio_in_ranges() {
    let office = Office::new(&format!(
        "[[station]]\nid = \"phu-thuy\"\nname = \"Đài Phú Thủy\"\npublic_key = \"{SOME_KEY}\"\n\
         [[station]]\nid = \"binh-an\"\nname = \"Đài Bình An\"\npublic_key = \"{SOME_KEY}\"\n"
    ));
    let token = |id: &str| office.run(&["token", "create", "--station", id]).stdout.trim().to_owned();
    let (binh_an, phu_thuy) = (token("binh-an"), token("phu-thuy"));
    let _serving = serve(&office);
    let base = format!("http://{}", office.listen());
    let client = crate::helpers::http_client();
    let get = |path: String, token: &str, range: Option<&str>| {
        let mut request = client.get(format!("{base}{path}")).bearer_auth(token);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        request.send()
    };

    // A long-poll waiting when the bulletin is sent gets it (no answer before it, none empty).
    let waiting = get("/api/v1/bulletins?after=0&wait=30".into(), &binh_an, None);
    let file = format!("{}/{TONE}", crate::helpers::FIXTURES);
    let sender = {
        let config = office.config();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            let config = config.to_str().unwrap().to_owned();
            loa(&[
                "district",
                "--config",
                &config,
                "bulletin",
                "add",
                &file,
                "--title",
                "Khẩn: mưa lũ",
                "--topic",
                "cchc",
                "--priority",
                "emergency",
                "--stations",
                "binh-an",
                "--json",
            ])
        })
    };
    let page: loa::model::protocol::FeedPage = waiting.await.unwrap().json().await.unwrap();
    let sent = sender.join().unwrap();
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    assert_eq!(page.notices.len(), 1, "{page:?}");
    let id = sent.json()["id"].as_i64().unwrap();
    assert_eq!((page.notices[0].seq, page.next_after), (id, id));
    // The line is the signed manifest, read by the station's own reader with the pinned key.
    let key = loa::model::key::parse_public_key(&office_key()).unwrap();
    let today = chrono::Utc::now().date_naive();
    let read = loa::proof::bulletin::read(&page.notices[0].line, &key, "binh-an", today);
    let Ok(loa::proof::bulletin::Notice::Bulletin(manifest)) = read else { panic!("{read:?}") };
    assert_eq!((manifest.id, manifest.title.as_str()), (id, "Khẩn: mưa lũ"));

    // The audio, whole and from a byte on (a resumed download).
    let audio = format!("/api/v1/bulletins/{id}/audio");
    let bytes = std::fs::read(format!("{}/{TONE}", crate::helpers::FIXTURES)).unwrap();
    let whole = get(audio.clone(), &binh_an, None).await.unwrap();
    assert_eq!(whole.headers()["content-type"], "audio/mpeg");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let tail = get(audio.clone(), &binh_an, Some("bytes=1000-")).await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &bytes[1000..]);

    // Another station sees nothing of it; a wrong token nothing at all.
    let other: loa::model::protocol::FeedPage =
        get("/api/v1/bulletins?after=0".into(), &phu_thuy, None).await.unwrap().json().await.unwrap();
    assert!(other.notices.is_empty(), "{other:?}");
    assert_eq!(get(audio.clone(), &phu_thuy, None).await.unwrap().status(), 404);
    assert_eq!(get("/api/v1/bulletins".into(), "loa_sai", None).await.unwrap().status(), 401);
    assert_eq!(get("/api/v1/bulletins?wait=61".into(), &binh_an, None).await.unwrap().status(), 400);
    // Nothing new after the cursor: an empty page with the same cursor.
    let after = get(format!("/api/v1/bulletins?after={id}"), &binh_an, None).await.unwrap();
    let after: loa::model::protocol::FeedPage = after.json().await.unwrap();
    assert_eq!((after.notices.len(), after.next_after), (0, id));

    // A withdrawal follows on the feed, signed, after the manifest.
    assert_eq!(office.run(&["bulletin", "withdraw", &id.to_string()]).code, 0);
    let next: loa::model::protocol::FeedPage =
        get(format!("/api/v1/bulletins?after={id}"), &binh_an, None).await.unwrap().json().await.unwrap();
    assert_eq!(next.notices.len(), 1, "{next:?}");
    let read = loa::proof::bulletin::read(&next.notices[0].line, &key, "binh-an", today);
    assert!(matches!(read, Ok(loa::proof::bulletin::Notice::Withdrawn(ref w)) if w.id == id), "{read:?}");
}

/// A station following the office (`[upstream]` + `[office] public_key`), its slot far off.
fn follower(office: &Office, pinned_key: &str) -> (Station, String) {
    follower_with_slot(office, pinned_key, "0 30 5 * * Mon-Sun")
}

fn follower_with_slot(office: &Office, pinned_key: &str, cron: &str) -> (Station, String) {
    let station = Station::with_config(&format!(
        "[station]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\ndata_dir = \"data\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [[slot]]\nname = \"sang\"\ncron = \"{cron}\"\nmax_minutes = 1\npeak = true\n\
         [[preload]]\nfile = \"{}/vbr_stereo_44k.mp3\"\ntitle = \"Bản tin của đài\"\ntopic = \"thong-bao\"\n",
        crate::helpers::FIXTURES
    ));
    let text = std::fs::read_to_string(office.config()).unwrap();
    let entry =
        format!("[[station]]\nid = \"phu-thuy\"\nname = \"Đài Phú Thủy\"\npublic_key = \"{}\"\n", station.public_key());
    std::fs::write(office.config(), text + &entry).unwrap();
    let token = office.run(&["token", "create", "--station", "phu-thuy"]).stdout.trim().to_owned();
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    let follow = format!(
        "[upstream]\nurl = \"http://{}\"\ntoken = \"{token}\"\n[office]\npublic_key = \"{pinned_key}\"\n",
        office.listen()
    );
    std::fs::write(station.config_path(), config + &follow).unwrap();
    (station, token)
}

fn send(office: &Office, fixture: &str, title: &str, extra: &[&str]) -> i64 {
    let file = format!("{}/{fixture}", crate::helpers::FIXTURES);
    let mut args = vec!["bulletin", "add", &file, "--title", title, "--topic", "cchc", "--json"];
    args.extend_from_slice(extra);
    let sent = office.run(&args);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    sent.json()["id"].as_i64().unwrap()
}

#[test]
fn a_station_takes_the_offices_bulletins_airs_an_emergency_at_once_and_follows_a_withdrawal() {
    let office = Office::new("");
    let (station, _) = follower(&office, &office_key());
    let _serving = serve(&office);
    let daemon = station.start(Device::Unpaced);

    let emergency = send(&office, TONE, "Khẩn: mưa lũ", &["--priority", "emergency"]);
    let events = station.wait_for("the emergency aired", WAIT, |e| {
        of_kind(e, "airing_ended", None).iter().any(|a| a["title"] == "Khẩn: mưa lũ")
    });
    let received = of_kind(&events, "bulletin_received", None);
    assert_eq!(received.len(), 1, "{events:?}");
    assert_eq!(
        (received[0]["bulletin_id"].as_i64(), received[0]["priority"].as_str()),
        (Some(emergency), Some("emergency"))
    );
    assert_eq!(received[0]["office"], "UBND xã Phú Thủy");
    let started = of_kind(&events, "airing_started", None);
    assert!(
        started.iter().any(|a| a["clip_id"] == received[0]["clip_id"] && a["slot"].is_null()),
        "aired at once: {started:?}"
    );
    // The office proves where it aired from the log it holds (once the station has pushed it).
    let aired: Vec<i64> = of_kind(&events, "airing_ended", Some("completed"))
        .iter()
        .filter(|a| a["clip_id"] == received[0]["clip_id"])
        .map(|a| a["seq"].as_i64().unwrap())
        .collect();
    let status = bulletin_status(&office, emergency, "aired");
    assert_eq!(status["aired"].as_u64(), Some(1), "{status}");
    assert_eq!(status["stations"][0]["airings"]["seqs"], serde_json::json!(aired), "{status}");

    // A normal bulletin joins the library with its topic and window, not queued.
    let normal =
        send(&office, "mono_22k.mp3", "Bản tin CCHC tháng 12", &["--from", "2026-12-01", "--until", "2099-12-31"]);
    station.wait_for("the normal bulletin taken", WAIT, |e| {
        of_kind(e, "bulletin_received", None).iter().any(|r| r["bulletin_id"] == normal)
    });
    let clips = station.clip_list();
    let clip = clips.iter().find(|c| c["title"] == "Bản tin CCHC tháng 12").expect("in the library");
    assert_eq!((clip["topic"].as_str(), clip["valid_until"].as_str()), (Some("cchc"), Some("2099-12-31")));
    // Owed: the operator cannot retire it, on the command line or the page's API.
    let clip_id = clip["id"].as_i64().unwrap().to_string();
    let refused = station.loa(&["clip", "retire", &clip_id]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("cannot be retired at the station"), "{}", refused.stderr);
    let operator = station.token("operator");
    let auth = format!("Bearer {operator}");
    let headers = [("authorization", auth.as_str())];
    let base = daemon.http_base();
    let (code, body) =
        crate::helpers::http_request(&base, "DELETE", &format!("/api/v1/clips/{clip_id}"), &headers, b"");
    assert_eq!(code, "422", "{body}");
    let (code, body) = crate::helpers::http_request(&base, "GET", "/api/v1/office-bulletins", &headers, b"");
    assert_eq!(code, "200", "{body}");
    let listed: Value = serde_json::from_str(&body).unwrap();
    let shown = listed["bulletins"].as_array().unwrap().iter().find(|b| b["bulletin_id"] == normal).cloned().unwrap();
    assert_eq!((shown["state"].as_str(), shown["owed"].as_bool()), (Some("received"), Some(true)), "{shown}");
    assert_eq!(
        (shown["title"].as_str(), shown["office"].as_str()),
        (Some("Bản tin CCHC tháng 12"), Some("UBND xã Phú Thủy"))
    );
    // The office's "Bản tin" page: each bulletin's reach, and where the others stand.
    bulletin_status(&office, normal, "received");
    let (code, page) = http_get_body(&format!("http://{}", office.listen()), "/bulletins");
    assert_eq!(code, "200");
    for words in ["Khẩn: mưa lũ", "đã phát 1/1 đài", "Bản tin CCHC tháng 12", "đã nhận, chưa phát đủ", "Khẩn cấp"]
    {
        assert!(page.contains(words), "`{words}` missing from the office's bulletins page:\n{page}");
    }

    // Withdrawn: the clip is retired and the station says so.
    assert_eq!(office.run(&["bulletin", "withdraw", &normal.to_string()]).code, 0);
    let events =
        station.wait_for("the withdrawal followed", WAIT, |e| !of_kind(e, "bulletin_withdrawn", None).is_empty());
    let withdrawn = of_kind(&events, "bulletin_withdrawn", None);
    assert_eq!((withdrawn[0]["bulletin_id"].as_i64(), &withdrawn[0]["clip_id"]), (Some(normal), &clip["id"]));
    assert!(of_kind(&events, "clip_retired", None).iter().any(|r| r["clip_id"] == clip["id"]), "{events:?}");
    daemon.stop();
    // Everything the station recorded verifies, with both verifiers.
    let verified = crate::helpers::verify(&station);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
}

#[test]
fn a_station_refuses_a_bulletin_its_pinned_key_did_not_sign_and_never_airs_it() {
    let office = Office::new("");
    // The station pins another office's key: what this office signs is not for it to air.
    let (station, _) = follower(&office, SOME_KEY);
    let _serving = serve(&office);
    let daemon = station.start(Device::Unpaced);
    let id = send(&office, TONE, "Khẩn: giả mạo", &["--priority", "emergency"]);
    let events = station.wait_for("the refusal", WAIT, |e| !of_kind(e, "bulletin_refused", None).is_empty());
    let refused = of_kind(&events, "bulletin_refused", None);
    assert_eq!((refused[0]["bulletin_id"].as_i64(), refused[0]["reason"].as_str()), (Some(id), Some("bad_signature")));
    assert!(
        of_kind(&events, "bulletin_received", None).is_empty() && of_kind(&events, "airing_started", None).is_empty()
    );
    assert!(station.clip_list().iter().all(|c| c["title"] != "Khẩn: giả mạo"), "never in the library");
    // The office sees the refusal and its reason once the station's log reaches it.
    let status = bulletin_status(&office, id, "refused");
    assert_eq!(status["stations"][0]["refused_reason"], "bad_signature", "{status}");
    assert_eq!(status["aired"].as_u64(), Some(0));
    daemon.stop();
}

/// `bulletin status ID --json` once the (only) station stands `state` there.
fn bulletin_status(office: &Office, id: i64, state: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let run = office.run(&["bulletin", "status", &id.to_string(), "--json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let status = run.json();
        if status["stations"][0]["state"] == state {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "bulletin {id} never stood {state}: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_priority_bulletin_leads_each_peak_slot_until_it_has_aired_as_often_as_owed() {
    let office = Office::new("");
    let (station, _) = follower_with_slot(&office, &office_key(), "*/3 * * * * Mon-Sun");
    let _serving = serve(&office);
    let daemon = station.start(Device::Unpaced);
    let id = send(&office, "mono_22k.mp3", "Bản tin CCHC ưu tiên", &["--priority", "priority", "--airings", "2"]);
    let events = station.wait_for("two more slots after it was aired twice", WAIT, |e| {
        let Some(clip) = of_kind(e, "bulletin_received", None).first().map(|r| r["clip_id"].clone()) else {
            return false;
        };
        let aired = of_kind(e, "airing_ended", Some("completed")).iter().filter(|a| a["clip_id"] == clip).count();
        aired >= 2 && slots_after(e, &clip, 2) >= 3
    });
    daemon.stop();
    let clip = of_kind(&events, "bulletin_received", None)[0]["clip_id"].clone();
    // Each peak slot planned after it arrived (a slot is planned a moment before its time, so
    // those due more than 3 s later) opened with it, until two completed airings.
    let received_at = of_kind(&events, "bulletin_received", None)[0]["at"].as_i64().unwrap();
    let mut openings: Vec<(i64, Value)> = Vec::new();
    for started in of_kind(&events, "airing_started", None) {
        let slot = started["scheduled_at"].as_i64().unwrap_or(0);
        if slot > received_at + 3000 && !openings.iter().any(|(s, _)| *s == slot) {
            openings.push((slot, started["clip_id"].clone()));
        }
    }
    assert!(openings.len() >= 3, "{openings:?}");
    assert!(openings[..2].iter().all(|(_, c)| *c == clip), "the first two slots open with it: {openings:?}");
    let status = bulletin_status(&office, id, "aired");
    assert!(status["stations"][0]["airings"]["completed"].as_u64() >= Some(2), "{status}");
}

/// Slots that began after the `n`-th completed airing of `clip`.
fn slots_after(events: &[Value], clip: &Value, n: usize) -> usize {
    let ended = of_kind(events, "airing_ended", Some("completed"));
    let Some(nth) = ended.iter().filter(|a| a["clip_id"] == *clip).nth(n - 1) else { return 0 };
    let after = nth["seq"].as_i64().unwrap();
    let mut slots: Vec<i64> = of_kind(events, "airing_started", None)
        .iter()
        .filter(|s| s["seq"].as_i64().unwrap() > after)
        .filter_map(|s| s["scheduled_at"].as_i64())
        .collect();
    slots.dedup();
    slots.len()
}

#[test]
fn a_station_off_air_during_the_send_catches_up_resumes_a_cut_download_and_refuses_altered_bytes() {
    let office = Office::new("");
    let (station, _) = follower(&office, &office_key());
    let _serving = serve(&office);
    // Sent while the station is off: one cut mid-download (its first half on disk), one whose
    // partial file holds bytes the office never sent.
    let resumed = send(&office, "mono_22k.mp3", "Bản tin tải dở", &[]);
    let altered = send(&office, "vbr_stereo_44k.mp3", "Bản tin bị sửa", &[]);
    let staging = station.data_dir().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let fixture = |name: &str| std::fs::read(format!("{}/{name}", crate::helpers::FIXTURES)).unwrap();
    let (good, other) = (fixture("mono_22k.mp3"), fixture("vbr_stereo_44k.mp3"));
    std::fs::write(staging.join(format!("bulletin-{resumed}.part")), &good[..good.len() / 2]).unwrap();
    let mut wrong = other[..other.len() / 2].to_vec();
    wrong[100] ^= 0xff;
    std::fs::write(staging.join(format!("bulletin-{altered}.part")), &wrong).unwrap();

    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("both judged", WAIT, |e| {
        of_kind(e, "bulletin_received", None).len() + of_kind(e, "bulletin_refused", None).len() >= 2
    });
    daemon.stop();
    let received = of_kind(&events, "bulletin_received", None);
    assert_eq!(received.len(), 1, "{events:?}");
    assert_eq!(received[0]["bulletin_id"].as_i64(), Some(resumed));
    assert_eq!(received[0]["clip_sha256"], loa::proof::sha256_hex(&good), "the resumed file is the office's file");
    let refused = of_kind(&events, "bulletin_refused", None);
    assert_eq!(
        (refused[0]["bulletin_id"].as_i64(), refused[0]["reason"].as_str()),
        (Some(altered), Some("hash_mismatch"))
    );
    assert!(station.clip_list().iter().all(|c| c["title"] != "Bản tin bị sửa"), "never in the library");
    let left: Vec<_> = std::fs::read_dir(&staging).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(
        left.iter().all(|name| !name.to_string_lossy().starts_with("bulletin-")),
        "no partial file stays: {left:?}"
    );
}

/// The office cannot serve one bulletin's audio (its file gone): the emergency sent after it
/// still airs at once; the first is taken when its audio is back, not refused, and not twice.
#[test]
fn a_bulletin_the_office_cannot_serve_holds_up_no_emergency_sent_after_it() {
    let office = Office::new("");
    let (station, _) = follower(&office, &office_key());
    let _serving = serve(&office);
    let stuck = send(&office, "mono_22k.mp3", "Bản tin chưa tải được", &[]);
    let audio = office.dir.path().join("office/bulletins");
    let kept = office.dir.path().join("kept");
    std::fs::rename(&audio, &kept).unwrap();
    std::fs::create_dir_all(&audio).unwrap();
    let daemon = station.start(Device::Unpaced);
    let emergency = send(&office, TONE, "Khẩn: bão", &["--priority", "emergency"]);
    let events = station.wait_for("the emergency aired", WAIT, |e| {
        of_kind(e, "airing_ended", Some("completed")).iter().any(|a| a["title"] == "Khẩn: bão")
    });
    let taken: Vec<_> = of_kind(&events, "bulletin_received", None).iter().map(|r| r["bulletin_id"].clone()).collect();
    assert_eq!(taken, [emergency], "only the emergency: the other's audio is not there yet");
    assert!(of_kind(&events, "bulletin_refused", None).is_empty(), "an office failing is not a refusal: {events:?}");

    // Its audio back at the office: taken on its own retry, once.
    for file in std::fs::read_dir(&kept).unwrap().flatten() {
        std::fs::rename(file.path(), audio.join(file.file_name())).unwrap();
    }
    station.wait_for("the first bulletin taken", WAIT, |e| {
        of_kind(e, "bulletin_received", None).iter().any(|r| r["bulletin_id"] == stuck)
    });
    daemon.stop();
    let daemon = station.start(Device::Unpaced);
    std::thread::sleep(Duration::from_secs(3));
    daemon.stop();
    let received = of_kind(&station.events(), "bulletin_received", None).len();
    assert_eq!(received, 2, "a restart takes nothing twice");
}

/// An emergency whose window opens tomorrow at the station: fetched now, aired at the first
/// instant of that day, not before (the station's wall clock set to just before midnight).
#[test]
fn an_emergency_dated_for_tomorrow_airs_at_the_stations_midnight_not_before() {
    let Some(library) = crate::faults::faketime_library() else { return };
    let office = Office::new("");
    let (station, _) = follower(&office, &office_key());
    let _serving = serve(&office);
    let vietnam = chrono::FixedOffset::east_opt(7 * 3600).unwrap();
    let now = chrono::Utc::now().with_timezone(&vietnam);
    let today = now.date_naive();
    let since_midnight = (now.naive_local() - today.and_time(chrono::NaiveTime::MIN)).num_seconds();
    // The station lives 25 s before the office's day begins.
    let offset = station.dir.path().join("clock-offset");
    std::fs::write(&offset, format!("-{}\n", since_midnight + 25)).unwrap();
    let env = crate::faults::stepped_clock(&library, &offset);
    let daemon = station.start_with_env(Device::Unpaced, &env);
    let from = today.to_string();
    let id = send(&office, TONE, "Khẩn: cắt điện", &["--priority", "emergency", "--from", &from]);
    let events = station.wait_for("the emergency aired", WAIT, |e| {
        of_kind(e, "airing_started", None).iter().any(|a| a["title"] == "Khẩn: cắt điện")
    });
    daemon.stop();
    let received = of_kind(&events, "bulletin_received", None);
    assert_eq!(received[0]["bulletin_id"].as_i64(), Some(id), "{events:?}");
    let midnight = today.and_time(chrono::NaiveTime::MIN).and_local_timezone(vietnam).unwrap().timestamp_millis();
    let aired = of_kind(&events, "airing_started", None).into_iter().find(|a| a["title"] == "Khẩn: cắt điện").unwrap();
    assert!(received[0]["at"].as_i64().unwrap() >= midnight, "taken at its day, not before: {}", received[0]);
    assert!(aired["at"].as_i64().unwrap() >= midnight, "{aired}");
    assert!(aired["slot"].is_null(), "aired at once, in no slot: {aired}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clerk_sends_a_bulletin_from_the_dashboard_and_sees_where_it_stands_on_a_phone() {
    use crate::web::{Browser, CHROMEDRIVER, CHROMIUM, screenshots_dir};
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !crate::helpers::require(present, "Chromium and ChromeDriver", "apt-get install chromium chromium-driver") {
        return;
    }
    let office = Office::new(&format!(
        "[[station]]\nid = \"phu-thuy\"\nname = \"Đài Phú Thủy\"\npublic_key = \"{SOME_KEY}\"\n\
         [[station]]\nid = \"binh-an\"\nname = \"Đài Bình An\"\npublic_key = \"{SOME_KEY}\"\n"
    ));
    let clerk = office.run(&["token", "create", "--clerk", "Chị Hoa"]).stdout.trim().to_owned();
    let _serving = serve(&office);
    let base = format!("http://{}", office.listen());
    // No clerk, no bulletin: refused from the headers.
    let form = [("content-type", "multipart/form-data; boundary=x")];
    let (code, _) = crate::helpers::http_request(&base, "POST", "/bulletins", &form, b"--x--\r\n");
    assert_eq!(code, "401");
    // A clerk's upload cut mid-file (no closing boundary) is refused, never sent as if whole.
    let cookie = format!("loa_clerk={clerk}");
    let headers = [form[0], ("cookie", cookie.as_str())];
    let mut cut = b"--x\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nCut\r\n--x\r\n\
        Content-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\n"
        .to_vec();
    cut.extend_from_slice(&std::fs::read(format!("{}/{TONE}", crate::helpers::FIXTURES)).unwrap()[..4000]);
    let (code, page) = crate::helpers::http_request(&base, "POST", "/bulletins", &headers, &cut);
    assert_eq!(code, "400", "{page}");
    assert!(page.contains("bị cắt"), "{page}");
    assert!(office.run(&["bulletin", "list", "--json"]).json().as_array().unwrap().is_empty(), "nothing was sent");
    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::start(downloads.path()).await;
    browser.resize(360, 740).await;
    browser.open(&format!("{base}/bulletins")).await;
    // Signed out: the page offers the clerk's sign-in, not the form.
    browser.wait("the sign-in", "document.querySelector('input[name=token]') !== null").await;
    browser.type_into("input[name=token]", &clerk).await;
    browser.click("form[action='/clerk'] button").await;
    browser.wait("the send form", "document.querySelector('input[name=file]') !== null").await;
    let file = format!("{}/{TONE}", crate::helpers::FIXTURES);
    browser.type_into("input[name=file]", &file).await;
    browser.type_into("input[name=title]", "Chuyên mục CCHC tháng 12").await;
    browser.script("document.querySelector('select[name=priority]').value = 'priority'; return true;").await;
    browser.click("form[action='/bulletins'] button").await;
    let page = browser
        .wait(
            "the bulletin listed",
            "document.body.innerText.includes('Chuyên mục CCHC tháng 12') && document.body.innerText",
        )
        .await;
    let page = page.as_str().unwrap();
    assert!(page.contains("đã phát 0/2 đài") && page.contains("Ưu tiên"), "{page}");
    assert!(page.contains("Đài Phú Thủy: chưa nhận được") && page.contains("Đài Bình An: chưa nhận được"), "{page}");
    browser.assert_in_words("the bulletins page", &["cchc", "vi", "phu-thuy", "binh-an"]).await;
    browser.screenshot(&screenshots_dir(), "van-phong-ban-tin-360").await;
    // What the clerk sent is the office's signed bulletin, as `bulletin add` makes it.
    let listed = office.run(&["bulletin", "list", "--json"]).json();
    assert_eq!(listed[0]["manifest"]["priority"], "priority", "{listed}");
    assert_eq!(listed[0]["manifest"]["stations"], "all", "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_page_shows_the_offices_bulletins_and_offers_no_retire_for_one_still_owed() {
    use crate::web::{Browser, CHROMEDRIVER, CHROMIUM, screenshots_dir};
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !crate::helpers::require(present, "Chromium and ChromeDriver", "apt-get install chromium chromium-driver") {
        return;
    }
    let office = Office::new("");
    let (station, _) = follower(&office, &office_key());
    let _serving = serve(&office);
    let daemon = station.start(Device::Unpaced);
    send(&office, "mono_22k.mp3", "Chuyên mục CCHC tháng 12", &["--from", "2026-12-01", "--until", "2099-12-31"]);
    station.wait_for("the bulletin taken", WAIT, |e| !of_kind(e, "bulletin_received", None).is_empty());
    let operator = station.token("operator");
    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::start(downloads.path()).await;
    browser.resize(360, 740).await;
    browser.open(&format!("{}/", daemon.http_base())).await;
    browser.wait("the sign-in form", "!document.getElementById('dang-nhap').hidden").await;
    browser.type_into("#token", &operator).await;
    browser.click("#sign-in-form button[type=submit]").await;
    let section = browser
        .wait(
            "the office's bulletins",
            "!document.getElementById('office-section').hidden && document.getElementById('office-section').innerText",
        )
        .await;
    let section = section.as_str().unwrap();
    assert!(
        section.contains("Bản tin từ UBND xã Phú Thủy") && section.contains("Chuyên mục CCHC tháng 12"),
        "{section}"
    );
    assert!(section.contains("Đã phát 0/1 lần, đến hết 31/12/2099"), "{section}");
    // Its clip in the library offers "Phát ngay" but no "Ngừng phát": only the office withdraws it.
    let clip = browser
        .wait(
            "the clip",
            "[...document.querySelectorAll('#clips .clip')].find(c => c.innerText.includes('Chuyên mục'))?.innerText",
        )
        .await;
    let clip = clip.as_str().unwrap();
    assert!(
        clip.contains("Phát ngay") && !clip.contains("Ngừng phát") && clip.contains("còn phải phát 1 lần"),
        "{clip}"
    );
    browser.assert_in_words("the library with the office's bulletins", &["cchc", "vi", "phu-thuy", "sang"]).await;
    browser.screenshot(&screenshots_dir(), "thu-vien-ban-tin-cap-tren-360").await;
    drop(browser);
    daemon.stop();
}

/// The office's database files, copied (the office stopped): a backup, or its restore.
fn copy_office_db(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let name = format!("district.sqlite{suffix}");
        let _ = std::fs::remove_file(to.join(&name));
        if from.join(&name).exists() {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }
}

/// Waits until `loa district check` says what `done` looks for; returns its run.
fn check_until(office: &Office, what: &str, done: impl Fn(&Run) -> bool) -> Run {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let run = office.run(&["check"]);
        if done(&run) {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "check never showed {what}: {}{}", run.stdout, run.stderr);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Issue 33, finding 5: an office restored from a backup taken before its last bulletin learns
/// from its station that it forgot (`check` exit 1, the status and dashboard say so, no
/// bulletin signed), the station's pushes recover by themselves, and after `recover` the next
/// bulletin's id is beyond every one the station saw: it is received and airs.
#[test]
fn an_office_restored_from_an_older_copy_learns_it_is_behind_and_recovers_without_reusing_an_id() {
    let office = Office::new("");
    let (station, _) = follower(&office, &office_key());
    let data = office.dir.path().join("office");
    let backup = office.dir.path().join("backup");
    let serving = serve(&office);
    let daemon = station.start(Device::Unpaced);
    let first = send(&office, TONE, "Bản tin trước bản sao", &["--until", "2099-12-31"]);
    station.wait_for("the first bulletin", WAIT, |e| of_kind(e, "bulletin_received", None).len() == 1);
    drop(serving);
    copy_office_db(&data, &backup);
    let serving = serve(&office);
    let lost = send(&office, "mono_22k.mp3", "Bản tin sau bản sao", &["--until", "2099-12-31"]);
    station.wait_for("the bulletin the office will forget", WAIT, |e| {
        of_kind(e, "bulletin_received", None).iter().any(|r| r["bulletin_id"] == lost)
    });
    assert!(lost > first);
    let pushed = |office: &Office| office.status()["stations"][0]["head_seq"].as_i64().unwrap_or(0);
    let deadline = std::time::Instant::now() + WAIT;
    while pushed(&office) < head_of(&station) {
        assert!(std::time::Instant::now() < deadline, "the station never pushed its log");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(serving);
    copy_office_db(&backup, &data);
    let held_after_restore = pushed(&office);
    assert!(held_after_restore < head_of(&station), "the backup holds less of the station's log");
    let _serving = serve(&office);

    // The office learns it from the station's next feed request.
    let check = check_until(&office, "the office behind", |run| run.code == 1 && run.stdout.contains("BEHIND"));
    assert!(check.stdout.contains("phu-thuy") && check.stdout.contains("loa district recover"), "{}", check.stdout);
    let status = crate::helpers::http_get_body(&format!("http://{}", office.listen()), "/api/v1/status").1;
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["office_behind"][0]["station_id"], "phu-thuy", "{status}");
    assert!(status["office_behind"][0]["seq"].as_i64().unwrap() >= lost, "{status}");
    let (_, page) = http_get_body(&format!("http://{}", office.listen()), "/");
    assert!(page.contains("loa district recover"), "the dashboard says so:\n{page}");
    let file = format!("{}/{TONE}", crate::helpers::FIXTURES);
    let refused = office.run(&["bulletin", "add", &file, "--title", "Không được ký", "--topic", "cchc"]);
    assert_eq!(refused.code, 1, "no bulletin is signed while behind: {}", refused.stdout);
    assert!(refused.stderr.contains("loa district recover"), "{}", refused.stderr);

    let recovered = office.run(&["recover"]);
    assert_eq!(recovered.code, 0, "{}{}", recovered.stdout, recovered.stderr);
    let check = office.run(&["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let after = send(&office, "mpeg2_16k.mp3", "Khẩn: sau khôi phục", &["--priority", "emergency"]);
    assert!(after > lost, "id {after} is beyond every id the station saw ({lost})");
    station.wait_for("the bulletin after the recovery aired", WAIT, |e| {
        of_kind(e, "airing_ended", None).iter().any(|a| a["title"] == "Khẩn: sau khôi phục")
    });
    // The station's next push (of those events) recovers by itself: the office asks for what it
    // forgot, and holds the whole log again, with no `gap` blamed on the station.
    let deadline = std::time::Instant::now() + WAIT;
    while pushed(&office) < head_of(&station) {
        assert!(std::time::Instant::now() < deadline, "the station's push never recovered: {}", office.status());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(alarm_kinds(&office.status()).is_empty(), "the office's own forgetting is no alarm: {}", office.status());
    assert_eq!(bulletin_status(&office, after, "aired")["aired"].as_u64(), Some(1));
    daemon.stop();
    let verified = crate::helpers::verify(&station);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
}
