//! `loa clip …`: what the library accepts, what it refuses and why, and that a refusal
//! leaves nothing behind.

use sha2::{Digest, Sha256};

use crate::helpers::{Station, fixture};

/// A 2.000 s, -6 dBFS, 440 Hz tone encoded by LAME at 128 kbps CBR with an Info tag.
const CBR: &str = "cbr128_stereo_44k.mp3";

/// ID3v2.3 tag holding one APIC (cover art) frame of `picture_len` bytes.
fn id3v2_with_cover(picture_len: usize) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(b"\0image/jpeg\0\x03\0");
    frame.extend_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
    frame.extend(pseudo_random(picture_len - 4, 7));
    let mut body = Vec::new();
    body.extend_from_slice(b"APIC");
    body.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend(frame);
    let size = body.len() as u32;
    let syncsafe = [(size >> 21) & 0x7f, (size >> 14) & 0x7f, (size >> 7) & 0x7f, size & 0x7f].map(|b| b as u8);
    let mut tag = b"ID3\x03\x00\x00".to_vec();
    tag.extend_from_slice(&syncsafe);
    tag.extend(body);
    tag
}

/// Deterministic noise (xorshift), so a failing case can be reproduced.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Offset of the first MPEG-1 Layer III 128 kbps 44.1 kHz frame header at or after `from`
/// that is followed by another one exactly one frame later.
fn frame_boundary(mp3: &[u8], from: usize) -> usize {
    let is_header = |p: usize| mp3.get(p..p + 3).is_some_and(|h| h[0] == 0xff && h[1] == 0xfb && h[2] & 0xfd == 0x90);
    (from..mp3.len()).find(|&p| is_header(p) && (is_header(p + 417) || is_header(p + 418))).expect("a frame boundary")
}

#[track_caller]
fn assert_accepted(
    station: &Station,
    name: &str,
    bytes: &[u8],
    rate: u64,
    channels: u64,
    duration_ms: std::ops::RangeInclusive<u64>,
) {
    let run = station.add(&station.input(name, bytes), &[]);
    assert_eq!(run.code, 0, "{name}: {}", run.stderr);
    let clip = run.json();
    assert_eq!(clip["sample_rate"], rate, "{name}");
    assert_eq!(clip["channels"], channels, "{name}");
    let duration = clip["duration_ms"].as_u64().unwrap();
    assert!(duration_ms.contains(&duration), "{name}: duration {duration} ms not in {duration_ms:?}");
    let loudness = clip["loudness_lufs"].as_f64().unwrap();
    assert!((-11.0..=-6.5).contains(&loudness), "{name}: a -6 dBFS tone measured {loudness} LUFS");
    let peak = clip["peak_dbfs"].as_f64().unwrap();
    assert!((-7.0..=-5.5).contains(&peak), "{name}: peak {peak} dBFS");
    let sha = hex::encode(Sha256::digest(bytes));
    assert_eq!(clip["sha256"], sha, "{name}: identified by the SHA-256 of its bytes");
    assert_eq!(clip["size_bytes"], bytes.len() as u64);
    let stored =
        std::fs::read(station.data_dir().join("clips").join(format!("{sha}.mp3"))).expect("content-addressed copy");
    assert!(stored == bytes, "{name}: stored copy differs from the upload");
}

#[test]
fn accepts_the_encodings_operators_upload() {
    let station = Station::new();
    let cases: [(&str, u64, u64, std::ops::RangeInclusive<u64>); 7] = [
        // Gapless (LAME Info/Xing tag): exactly the 2.000 s that were encoded.
        (CBR, 44100, 2, 2000..=2000),
        ("vbr_stereo_44k.mp3", 44100, 2, 2000..=2000),
        // No usable gapless info: the encoder's delay and padding (< 1 frame + 1105 samples) remain.
        ("mono_22k.mp3", 22050, 1, 2000..=2100),
        ("mpeg2_16k.mp3", 16000, 1, 2000..=2100),
        ("mpeg25_8k.mp3", 8000, 1, 2000..=2200),
        ("crc_protected.mp3", 32000, 2, 2000..=2100),
        ("cbr_no_xing.mp3", 24000, 2, 2000..=2100),
    ];
    for (name, rate, channels, duration) in cases {
        assert_accepted(&station, name, &fixture(name), rate, channels, duration);
    }
    assert_eq!(station.clip_list().len(), 7);
}

#[test]
fn accepts_big_cover_art() {
    let station = Station::new();
    let mut bytes = id3v2_with_cover(600 * 1024);
    bytes.extend(fixture(CBR));
    assert_accepted(&station, "with-cover.mp3", &bytes, 44100, 2, 2000..=2000);
}

#[test]
fn accepts_trailing_id3v1_tag() {
    let station = Station::new();
    let mut bytes = fixture(CBR);
    let mut v1 = b"TAG".to_vec();
    v1.resize(128, b' ');
    bytes.extend(v1);
    assert_accepted(&station, "with-id3v1.mp3", &bytes, 44100, 2, 2000..=2000);
}

#[test]
fn metadata_is_kept_as_given() {
    let station = Station::new();
    let file = station.input("hmn.mp3", &fixture(CBR));
    let args = ["--lang", "hmn", "--priority", "priority", "--valid-from", "2026-03-01", "--valid-until", "2026-03-31"];
    let run = station.add(&file, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let clip = run.json();
    assert_eq!(clip["title"], "Bản tin CCHC");
    assert_eq!(clip["topic"], "cchc");
    assert_eq!(clip["language"], "hmn");
    assert_eq!(clip["priority"], "priority");
    assert_eq!(clip["valid_from"], "2026-03-01");
    assert_eq!(clip["valid_until"], "2026-03-31");
    assert_eq!(clip["retired_at"], serde_json::Value::Null);
    assert!(clip["created_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn a_duplicate_says_which_clip_it_is_and_adds_nothing() {
    let station = Station::new();
    let first = station.add(&station.input("a.mp3", &fixture(CBR)), &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let again = station.add(&station.input("b.mp3", &fixture(CBR)), &["--title", "Tên khác"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("already in the library as clip 1 \"Bản tin CCHC\""), "{}", again.stderr);
    assert_eq!(again.json()["id"], 1);
    assert_eq!(station.clip_list().len(), 1);
    assert_eq!(station.stored_files().len(), 1, "{:?}", station.stored_files());
}

/// Each kind of bad file: exit 1, one `error:` line with the kind's code and reason, and
/// nothing stored (no row, no clip file, no staging leftover).
#[test]
fn refuses_each_bad_kind_with_its_own_message_and_stores_nothing() {
    let cbr = fixture(CBR);
    let middle = frame_boundary(&cbr, cbr.len() / 2);
    let mut corrupt = cbr.clone();
    corrupt[middle..middle + 8].copy_from_slice(b"\x00\x11\x22\x33\x44\x55\x66\x77");
    let mut id3_then_zeros = id3v2_with_cover(2000);
    id3_then_zeros.extend(vec![0; 4096]);
    let damaged_at = format!("byte {middle}");
    let text = "Thông báo: lịch tiếp dân tháng 12.\nXin cảm ơn bà con.\n".as_bytes().to_vec();

    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("empty", vec![], "empty", "0 bytes"),
        ("text", text, "not_mp3", "a text file"),
        ("random bytes", pseudo_random(200_000, 42), "not_mp3", "no MP3 audio frames"),
        ("WAV renamed", fixture("wav_renamed.mp3"), "not_mp3", "a WAV file"),
        ("MP2 renamed", fixture("layer2_renamed.mp3"), "not_mp3", "MPEG Layer II"),
        ("ID3 tag only", id3v2_with_cover(2000), "no_audio", "only tags"),
        ("ID3 tag then zeros", id3_then_zeros, "no_audio", "no audio"),
        ("cut mid-frame", cbr[..cbr.len() * 6 / 10].to_vec(), "truncated", "cut short"),
        ("cut at a frame boundary", cbr[..middle].to_vec(), "truncated", "announces 78 frames"),
        ("cut mid-header", cbr[..middle + 2].to_vec(), "truncated", "cut short"),
        ("damaged frame", corrupt, "decode_error", &damaged_at),
        ("silent", fixture("silent.mp3"), "silent", "silent"),
    ];
    let station = Station::new();
    for (what, bytes, code, reason) in cases {
        let file = station.input("bulletin.mp3", &bytes);
        let run = station.add(&file, &[]);
        assert_eq!(run.code, 1, "{what}: should be refused; stdout: {}", run.stdout);
        let line = run.error_line();
        assert!(line.contains(&format!("was not added: {code}: ")), "{what}: wrong code in: {line}");
        assert!(line.contains(reason), "{what}: reason `{reason}` missing from: {line}");
        assert!(run.stdout.is_empty(), "{what}: printed a clip: {}", run.stdout);
        assert!(station.stored_files().is_empty(), "{what}: left {:?}", station.stored_files());
        assert!(station.clip_list().is_empty(), "{what}: stored a row");
    }
}

#[test]
fn duration_bounds_come_from_config() {
    let short = Station::with_config("[station]\nid = \"s\"\nname = \"Đài\"\n[clips]\nmin_seconds = 3\n");
    let run = short.add(&short.input("a.mp3", &fixture(CBR)), &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.error_line().contains("too_short: the audio lasts 2000 ms, shorter than the 3000 ms minimum"),
        "{}",
        run.stderr
    );

    let long =
        Station::with_config("[station]\nid = \"s\"\nname = \"Đài\"\n[clips]\nmin_seconds = 0.5\nmax_seconds = 1.5\n");
    let run = long.add(&long.input("a.mp3", &fixture(CBR)), &[]);
    assert_eq!(run.code, 1);
    assert!(run.error_line().contains("too_long: the audio is longer than the 1 s maximum"), "{}", run.stderr);
    for station in [short, long] {
        assert!(station.stored_files().is_empty() && station.clip_list().is_empty());
    }
}

#[test]
fn bad_metadata_is_refused_before_reading_the_file() {
    let station = Station::new();
    let file = station.input("a.mp3", &fixture(CBR));
    let cases: [(&[&str], &str); 4] = [
        (&["--topic", "CCHC!"], "--topic: \"CCHC!\" is not a topic"),
        (&["--lang", "vietnamese"], "--lang: \"vietnamese\" is not a language code"),
        (&["--title", " "], "--title: give the bulletin a title"),
        (
            &["--valid-from", "2026-12-01", "--valid-until", "2026-11-30"],
            "--valid-until: 2026-11-30 is before valid_from 2026-12-01",
        ),
    ];
    for (args, message) in cases {
        let run = station.add(&file, args);
        assert_eq!(run.code, 1, "{args:?}");
        assert!(run.error_line().contains(message), "{args:?}: {}", run.stderr);
    }
    let run = station.add(&file, &["--valid-from", "01/12/2026"]);
    assert_eq!(run.code, 2, "clap refuses a malformed date as usage");
    assert!(run.stderr.contains("write YYYY-MM-DD"), "{}", run.stderr);
    let run = station.add(&file, &["--priority", "urgent"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("use normal, priority or emergency"), "{}", run.stderr);
    assert!(station.clip_list().is_empty());
}

#[test]
fn a_missing_file_is_named() {
    let station = Station::new();
    let run = station.add(std::path::Path::new("/nonexistent/ban-tin.mp3"), &[]);
    assert_eq!(run.code, 1);
    assert!(run.error_line().contains("cannot read /nonexistent/ban-tin.mp3"), "{}", run.stderr);
}

#[test]
fn list_show_and_retire() {
    let station = Station::new();
    assert_eq!(station.add(&station.input("a.mp3", &fixture(CBR)), &[]).code, 0);
    assert_eq!(
        station
            .add(&station.input("b.mp3", &fixture("vbr_stereo_44k.mp3")), &["--title", "Giờ làm việc bộ phận một cửa"])
            .code,
        0
    );

    let table = station.loa(&["clip", "list"]);
    assert_eq!(table.code, 0);
    assert!(
        table.stdout.contains("Giờ làm việc bộ phận một cửa") && table.stdout.contains("active"),
        "{}",
        table.stdout
    );

    let show = station.loa(&["clip", "show", "2", "--json"]);
    assert_eq!(show.code, 0);
    assert_eq!(show.json()["title"], "Giờ làm việc bộ phận một cửa");
    let human = station.loa(&["clip", "show", "2"]);
    assert!(human.stdout.contains("duration    2.000 s"), "{}", human.stdout);

    let retire = station.loa(&["clip", "retire", "1"]);
    assert_eq!(retire.code, 0, "{}", retire.stderr);
    assert!(retire.stdout.contains("retired at"), "{}", retire.stdout);
    let again = station.loa(&["clip", "retire", "1"]);
    assert_eq!(again.code, 0);
    assert!(again.stdout.contains("was already retired"), "{}", again.stdout);

    let clips = station.clip_list();
    assert_eq!(clips.len(), 2, "retired clips stay in the library");
    assert!(clips[0]["retired_at"].is_string() && clips[1]["retired_at"].is_null());
    assert_eq!(station.stored_files().len(), 2, "a retired clip's audio is kept");

    for args in [&["clip", "show", "9"][..], &["clip", "retire", "9"]] {
        let run = station.loa(args);
        assert_eq!(run.code, 1);
        assert!(run.error_line().contains("there is no clip 9"), "{}", run.stderr);
    }
}

/// A topic or language the station does not list would make a bulletin no quota counts: refused
/// by the CLI and the API, with the ones it lists.
#[test]
fn a_topic_or_language_the_station_does_not_offer_is_refused_with_the_list() {
    let station = Station::with_config(&format!(
        "{}[[topic]]\nid = \"cchc\"\nlabel = \"Cải cách hành chính\"\n[[topic]]\nid = \"thong-bao\"\nlabel = \"Thông báo\"\n\
         [[language]]\nid = \"vi\"\nlabel = \"Tiếng Việt\"\n[[language]]\nid = \"hmn\"\nlabel = \"Tiếng H'Mông\"\n",
        crate::helpers::MINIMAL_CONFIG
    ));
    let file = station.input("a.mp3", &fixture("cbr128_stereo_44k.mp3"));
    let typo = station.add(&file, &["--topic", "cchcc"]);
    assert_eq!(typo.code, 1, "{}", typo.stderr);
    assert!(
        typo.error_line().contains("--topic") && typo.stderr.contains("cchc (Cải cách hành chính)"),
        "{}",
        typo.stderr
    );
    let language = station.add(&file, &["--lang", "xx"]);
    assert_eq!(language.code, 1, "{}", language.stderr);
    assert!(language.stderr.contains("hmn (Tiếng H'Mông)"), "{}", language.stderr);
    assert!(station.clip_list().is_empty(), "nothing was kept");
    assert_eq!(station.add(&file, &["--topic", "thong-bao"]).code, 0, "an offered topic is taken");

    let daemon = station.start(crate::helpers::Device::Unpaced);
    let token = station.token("operator");
    let base = daemon.http_base();
    let boundary = "B";
    let body = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"title\"\r\n\r\nBản tin\r\n\
         --{boundary}\r\ncontent-disposition: form-data; name=\"topic\"\r\n\r\ncchcx\r\n--{boundary}--\r\n"
    );
    let (status, answer) = crate::helpers::http_post_body(
        &base,
        "/api/v1/clips",
        &token,
        &format!("multipart/form-data; boundary={boundary}"),
        body.as_bytes(),
    );
    assert_eq!(status, "422", "{answer}");
    assert!(answer.contains("topic") && answer.contains("cchc (Cải cách hành chính)"), "{answer}");
    daemon.stop();
}
