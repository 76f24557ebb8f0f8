//! The office's feed as an attacker on the wire (or an office with a bad day) serves it: a fake
//! office, a plain HTTP server on port 0 in the test, answers a real `loa run` station's feed
//! requests with the lines and bodies each test chooses. Whatever it serves, the station writes
//! only events its own verifiers accept, records one outcome per line, and spends bounded memory.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loa::model::clip::Priority;
use loa::proof::StationKey;
use loa::proof::bulletin::{AllStations, Manifest, ManifestKind, Stations, Withdrawal, WithdrawalKind};

use crate::helpers::{Device, Station, of_kind, verify};

const WAIT: Duration = Duration::from_secs(30);

/// What the fake office answers a feed request with.
#[derive(Clone)]
enum Feed {
    /// These (seq, line) pairs after the station's cursor, then nothing new.
    Lines(Vec<(i64, String)>),
    /// A body that never ends (a proxy's answer): megabytes a second, until the station hangs up.
    Endless,
}

/// A fake office on 127.0.0.1, port 0: serves `GET /api/v1/bulletins`, 404 to the rest, until
/// dropped. Counts the feed requests it answered.
struct FakeOffice {
    address: String,
    feed: Arc<Mutex<Feed>>,
    audio: Arc<Mutex<Audio>>,
    stop: Arc<AtomicBool>,
}

/// The one bulletin audio the fake office serves (any id), and the `Range` of each request.
#[derive(Default)]
struct Audio {
    bytes: Vec<u8>,
    /// The first answer ends cleanly after this many bytes (a connection cut at a boundary).
    first_cut_at: Option<usize>,
    ranges: Vec<Option<String>>,
}

impl FakeOffice {
    fn new(feed: Feed) -> FakeOffice {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let (feed, stop) = (Arc::new(Mutex::new(feed)), Arc::new(AtomicBool::new(false)));
        let audio = Arc::new(Mutex::new(Audio::default()));
        let (serving, stopped, audio_served) = (Arc::clone(&feed), Arc::clone(&stop), Arc::clone(&audio));
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (feed, stopped, audio) =
                            (Arc::clone(&serving), Arc::clone(&stopped), Arc::clone(&audio_served));
                        std::thread::spawn(move || answer(stream, (&feed, &audio), &stopped));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FakeOffice { address, feed, audio, stop }
    }

    fn set(&self, feed: Feed) {
        *self.feed.lock().unwrap() = feed;
    }
}

impl Drop for FakeOffice {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(mut stream: TcpStream, (feed, audio): (&Mutex<Feed>, &Mutex<Audio>), stopped: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let (mut header, mut range) = (String::new(), None);
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        if let Some(value) = header.to_ascii_lowercase().strip_prefix("range:") {
            range = Some(value.trim().to_owned());
        }
        header.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    if path.starts_with("/api/v1/bulletins/") && path.ends_with("/audio") {
        serve_audio(&mut stream, &mut audio.lock().unwrap(), range);
        return;
    }
    let Some(query) = path.strip_prefix("/api/v1/bulletins?") else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return;
    };
    let after: i64 = query.split('&').find_map(|p| p.strip_prefix("after=")?.parse().ok()).unwrap_or(0);
    let feed = feed.lock().unwrap().clone();
    match feed {
        Feed::Lines(lines) => {
            let notices: Vec<serde_json::Value> = lines
                .iter()
                .filter(|(seq, _)| *seq > after)
                .map(|(seq, line)| serde_json::json!({"seq": seq, "line": line}))
                .collect();
            if notices.is_empty() {
                std::thread::sleep(Duration::from_millis(500)); // a long-poll that found nothing
            }
            let next_after = lines.iter().map(|(seq, _)| *seq).filter(|seq| *seq > after).max().unwrap_or(after);
            let body = serde_json::json!({"notices": notices, "next_after": next_after}).to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
        }
        Feed::Endless => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(b"{\"notices\":[{\"seq\":1,\"line\":\""));
            let chunk = vec![b'a'; 64 * 1024];
            while !stopped.load(Ordering::Relaxed) && stream.write_all(&chunk).is_ok() {}
        }
    }
    let _ = stream.flush();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
}

/// The audio, from the `Range` asked for; the first answer cut cleanly where `first_cut_at` says.
fn serve_audio(stream: &mut TcpStream, audio: &mut Audio, range: Option<String>) {
    let from: usize =
        range.as_deref().and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()).unwrap_or(0);
    audio.ranges.push(range);
    let end = audio.first_cut_at.take().unwrap_or(audio.bytes.len());
    let body = &audio.bytes[from.min(end)..end];
    let status = if from > 0 { "206 Partial Content" } else { "200 OK" };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: audio/mpeg\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
}

/// The office key the station pins (the fake office signs with it).
fn office() -> StationKey {
    StationKey::from_seed([42; 32])
}

fn manifest(id: i64) -> Manifest {
    Manifest {
        kind: ManifestKind::Bulletin,
        office: "UBND xã Phú Thủy".into(),
        office_key: office().public_key_hex(),
        id,
        sha256: "a".repeat(64),
        bytes: 1000,
        duration_ms: 2000,
        title: "Khẩn: bão số 9".into(),
        topic: "cchc".into(),
        language: "vi".into(),
        priority: Priority::Emergency,
        stations: Stations::All(AllStations::All),
        valid_from: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        valid_until: chrono::NaiveDate::from_ymd_opt(2099, 12, 31).unwrap(),
        airings: 1,
        created_at: 1_790_000_000_000,
    }
}

fn withdrawal(id: i64) -> String {
    let office = office();
    Withdrawal {
        kind: WithdrawalKind::BulletinWithdrawn,
        office: "UBND xã Phú Thủy".into(),
        office_key: office.public_key_hex(),
        id,
        at: 1_790_000_000_000,
    }
    .sign(&office)
}

/// A station following `fake` (its slot far off), started on the file device.
fn follower(fake: &FakeOffice) -> Station {
    Station::with_config(&format!(
        "[station]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\ndata_dir = \"data\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [[slot]]\nname = \"sang\"\ncron = \"0 30 5 1 1 *\"\nmax_minutes = 1\npeak = true\n\
         [upstream]\nurl = \"http://{}\"\ntoken = \"loa_{}\"\n[office]\npublic_key = \"{}\"\n",
        fake.address,
        "a".repeat(64),
        office().public_key_hex()
    ))
}

/// Lines no loa office signs, or signs with values the log cannot hold, and a withdrawal served
/// again and again: each is one refusal (or one withdrawal) with the right reason, never a
/// bogus id, and the station's log still verifies with both verifiers.
#[test]
fn a_line_the_log_cannot_hold_is_refused_in_bounds_and_a_replayed_withdrawal_is_recorded_once() {
    let huge = 9_007_199_254_740_993i64; // 2^53 + 1
    let signed = manifest(1).sign(&office());
    let forged = signed.replacen("\"id\":1,", &format!("\"id\":{huge},"), 1);
    assert_ne!(forged, signed);
    let beyond = manifest(1 << 60).sign(&office());
    let long_title = Manifest { title: "Bão ".repeat(15_000), ..manifest(3) }.sign(&office());
    let withdrawn = withdrawal(7);
    let lines =
        vec![(1, forged), (2, beyond), (3, long_title), (4, withdrawn.clone()), (5, withdrawn.clone()), (6, withdrawn)];
    let fake = FakeOffice::new(Feed::Lines(lines));
    let station = follower(&fake);
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("every line's outcome", WAIT, |e| {
        of_kind(e, "bulletin_refused", None).len() >= 3 && !of_kind(e, "bulletin_withdrawn", None).is_empty()
    });
    std::thread::sleep(Duration::from_secs(2)); // the replays have been read by now
    let events_after = station.events();
    daemon.stop();
    let refused: Vec<(Option<i64>, &str)> = of_kind(&events, "bulletin_refused", None)
        .iter()
        .map(|r| (r["bulletin_id"].as_i64(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(refused, [(None, "bad_signature"), (None, "malformed"), (Some(3), "malformed")], "{events:?}");
    let detail = of_kind(&events, "bulletin_refused", None)[1]["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("2^53"), "{detail}");
    assert_eq!(of_kind(&events_after, "bulletin_withdrawn", None).len(), 1, "a replayed withdrawal is recorded once");
    let verified = verify(&station);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
}

/// A feed answer that never ends costs the station a bounded page, not its memory, and the
/// station reads the feed again once the office answers properly.
#[test]
fn an_endless_feed_body_costs_bounded_memory_and_the_feed_recovers() {
    let fake = FakeOffice::new(Feed::Lines(Vec::new()));
    let station = follower(&fake);
    let daemon = station.start(Device::Unpaced);
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(daemon.pid());
    fake.set(Feed::Endless);
    let mut peak = idle;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        peak = peak.max(rss_kib(daemon.pid()));
    }
    assert!(peak < idle + 8 * 1024, "an endless feed body took the station from {idle} KiB to {peak} KiB");
    fake.set(Feed::Lines(vec![(1, withdrawal(9))]));
    station.wait_for("the feed read again", WAIT, |e| !of_kind(e, "bulletin_withdrawn", None).is_empty());
    daemon.stop();
    let log = std::fs::read_to_string(station.dir.path().join("daemon.log")).unwrap_or_default();
    assert!(log.contains("longer than"), "the station said why it did not read the page:\n{log}");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A fixture's bytes, and a manifest `id` naming them truly (size, SHA-256, decoded length).
fn audio_manifest(id: i64) -> (Vec<u8>, Manifest) {
    let file = format!("{}/mono_22k.mp3", crate::helpers::FIXTURES);
    let bytes = std::fs::read(&file).unwrap();
    let facts = loa::library::analysis::analyse(std::path::Path::new(&file), Default::default()).unwrap();
    let manifest = Manifest {
        sha256: loa::proof::sha256_hex(&bytes),
        bytes: bytes.len() as u64,
        duration_ms: facts.duration_ms,
        ..manifest(id)
    };
    (bytes, manifest)
}

/// The same audio sent as two bulletins is one clip: withdrawing one leaves the clip on air for
/// the other, still owed.
#[test]
fn withdrawing_one_of_two_bulletins_of_the_same_audio_leaves_the_other_on_air() {
    let (bytes, audio) = audio_manifest(1);
    let owed = |id: i64, title: &str| {
        Manifest { id, title: title.into(), priority: Priority::Priority, airings: 5, ..audio.clone() }.sign(&office())
    };
    let lines = vec![(1, owed(1, "Bản tin CCHC tuần 49")), (2, owed(2, "Bản tin CCHC tuần 50")), (3, withdrawal(1))];
    let fake = FakeOffice::new(Feed::Lines(lines));
    *fake.audio.lock().unwrap() = Audio { bytes, ..Audio::default() };
    let station = follower(&fake);
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("the withdrawal", WAIT, |e| !of_kind(e, "bulletin_withdrawn", None).is_empty());
    daemon.stop();
    assert_eq!(of_kind(&events, "bulletin_received", None).len(), 2, "{events:?}");
    assert!(of_kind(&events, "clip_retired", None).is_empty(), "the clip bulletin 2 airs was retired: {events:?}");
    let clips = station.clip_list();
    assert!(clips.iter().all(|c| c["retired_at"].is_null()), "{clips:?}");
}

/// The audio of a withdrawn bulletin sent again as an emergency: its clip, retired by the
/// withdrawal, is back in the library (`clip_added` again) and the emergency airs.
#[test]
fn an_emergency_sent_with_the_audio_of_a_withdrawn_bulletin_airs() {
    let (bytes, audio) = audio_manifest(1);
    let first = Manifest { priority: Priority::Normal, title: "Bản tin CCHC tuần 49".into(), ..audio.clone() };
    let again = Manifest { id: 3, title: "Khẩn: nhắc lại".into(), ..audio };
    let lines = vec![(1, first.sign(&office())), (2, withdrawal(1)), (3, again.sign(&office()))];
    let fake = FakeOffice::new(Feed::Lines(lines));
    *fake.audio.lock().unwrap() = Audio { bytes, ..Audio::default() };
    let station = follower(&fake);
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("the emergency aired", WAIT, |e| {
        of_kind(e, "airing_ended", Some("completed")).iter().any(|a| a["title"] == "Khẩn: nhắc lại")
    });
    daemon.stop();
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("clip_") || k.starts_with("bulletin_")))
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["clip_added", "bulletin_received", "clip_retired", "bulletin_withdrawn", "clip_added", "bulletin_received"],
        "{events:?}"
    );
    let verified = verify(&station);
    assert_eq!(verified.code, 0, "{}{}", verified.stdout, verified.stderr);
}

/// What a proxy can do to the unsigned parts of a page: a bulletin's seq raised far ahead is
/// not believed (the page is not read, the cursor stays, and the true page is taken after), and
/// a withdrawal served before its bulletin makes the bulletin refused `withdrawn`, never aired.
#[test]
fn a_raised_seq_does_not_move_the_cursor_and_a_withdrawal_served_first_keeps_its_bulletin_off_air() {
    let (bytes, audio) = audio_manifest(1);
    let first = Manifest { title: "Khẩn: tin 1".into(), ..audio.clone() }.sign(&office());
    let fake = FakeOffice::new(Feed::Lines(vec![(1_000_000_000_001, first.clone())]));
    *fake.audio.lock().unwrap() = Audio { bytes, ..Audio::default() };
    let station = follower(&fake);
    let daemon = station.start(Device::Unpaced);
    std::thread::sleep(Duration::from_secs(2));
    let second = Manifest { id: 3, title: "Khẩn: tin 3".into(), ..audio }.sign(&office());
    fake.set(Feed::Lines(vec![(1, first), (2, withdrawal(3)), (3, second)]));
    let events = station.wait_for("both bulletins' outcomes", Duration::from_secs(60), |e| {
        !of_kind(e, "bulletin_received", None).is_empty() && !of_kind(e, "bulletin_refused", None).is_empty()
    });
    daemon.stop();
    let received = of_kind(&events, "bulletin_received", None);
    assert_eq!(received[0]["bulletin_id"], 1, "the true page was read from the cursor it had: {events:?}");
    let refused = of_kind(&events, "bulletin_refused", None);
    assert_eq!((refused[0]["bulletin_id"].as_i64(), refused[0]["reason"].as_str()), (Some(3), Some("withdrawn")));
    assert!(
        of_kind(&events, "airing_started", None).iter().all(|a| a["title"] != "Khẩn: tin 3"),
        "the withdrawn emergency aired: {events:?}"
    );
    let log = std::fs::read_to_string(station.dir.path().join("daemon.log")).unwrap_or_default();
    assert!(log.contains("altered on the way"), "{log}");
}

/// A manifest whose length is not what its audio decodes to is refused `not_playable`, and the
/// clip it brought into the library is retired with it: it never airs.
#[test]
fn a_bulletin_refused_for_its_length_leaves_no_clip_on_air() {
    let (bytes, audio) = audio_manifest(1);
    let line = Manifest { duration_ms: audio.duration_ms + 5_000, priority: Priority::Normal, ..audio }.sign(&office());
    let fake = FakeOffice::new(Feed::Lines(vec![(1, line)]));
    *fake.audio.lock().unwrap() = Audio { bytes, ..Audio::default() };
    let station = follower(&fake);
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("the refusal", WAIT, |e| !of_kind(e, "bulletin_refused", None).is_empty());
    daemon.stop();
    assert_eq!(of_kind(&events, "bulletin_refused", None)[0]["reason"], "not_playable");
    let clips = station.clip_list();
    assert!(clips.iter().all(|c| c["retired_at"].is_string()), "the refused bulletin's clip stays on air: {clips:?}");
}

/// An audio body that ends cleanly before the manifest's length is a download cut short: the
/// station keeps what came, asks for the rest with `Range`, and takes the bulletin (no refusal).
#[test]
fn an_audio_download_cut_short_at_a_clean_end_is_resumed_not_refused() {
    let (bytes, audio) = audio_manifest(1);
    let line = Manifest { title: "Khẩn: cắt nước".into(), ..audio }.sign(&office());
    let fake = FakeOffice::new(Feed::Lines(vec![(1, line)]));
    let half = bytes.len() / 2;
    *fake.audio.lock().unwrap() = Audio { first_cut_at: Some(half), bytes, ranges: Vec::new() };
    let station = follower(&fake);
    let daemon = station.start(Device::Unpaced);
    let events = station.wait_for("the bulletin taken after a resumed download", WAIT, |e| {
        !of_kind(e, "bulletin_received", None).is_empty() || !of_kind(e, "bulletin_refused", None).is_empty()
    });
    daemon.stop();
    assert!(of_kind(&events, "bulletin_refused", None).is_empty(), "{events:?}");
    let ranges = fake.audio.lock().unwrap().ranges.clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[1], Some(format!("bytes={half}-")), "resumed where it was cut");
}
