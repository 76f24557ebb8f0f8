//! The district's side: export the proof log, verify it offline, and catch every tampering.

use sha2::{Digest, Sha256};

use crate::helpers::{Station, fixture, loa, loa_with_stdin};

/// A station whose log holds a few clip events (made by the CLI; the daemon tests add airings).
fn station_with_log() -> Station {
    let station = Station::new();
    for (name, title) in [
        ("cbr128_stereo_44k.mp3", "Bản tin CCHC tuần 47"),
        ("vbr_stereo_44k.mp3", "Giờ làm việc"),
        ("mono_22k.mp3", "Thông báo"),
    ] {
        let run = station.add(&station.input(name, &fixture(name)), &["--title", title]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_eq!(station.loa(&["clip", "retire", "2"]).code, 0);
    station
}

fn export(station: &Station, extra: &[&str]) -> String {
    let mut args = vec!["airtime"];
    args.extend_from_slice(extra);
    let run = station.loa(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout
}

fn verify(station: &Station, text: &str, extra: &[&str]) -> crate::helpers::Run {
    let key = station.public_key();
    let mut args = vec!["verify", "-", "--public-key", &key];
    args.extend_from_slice(extra);
    loa_with_stdin(&args, text.as_bytes())
}

#[track_caller]
fn refused(run: &crate::helpers::Run, seq: i64, why: &str) {
    assert_eq!(run.code, 1, "tampering went unnoticed: {}", run.stdout);
    let line = run.error_line();
    assert!(line.contains(&format!("seq {seq} ")) && line.contains(why), "expected seq {seq} and `{why}`: {line}");
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

#[test]
fn an_untouched_export_verifies_from_a_file_stdin_or_a_json_page() {
    let station = station_with_log();
    let jsonl = export(&station, &[]);
    assert_eq!(lines(&jsonl).len(), 4, "three clip_added and one clip_retired");
    let run = verify(&station, &jsonl, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("ok: 4 events, seq 1..4"), "{}", run.stdout);

    let file = station.dir.path().join("log.jsonl");
    std::fs::write(&file, &jsonl).unwrap();
    let run = loa(&["verify", file.to_str().unwrap(), "--public-key", &station.public_key()]);
    assert_eq!(run.code, 0, "verify needs no station config: {}", run.stderr);

    let page = export(&station, &["--format", "json"]);
    let parsed: serde_json::Value = serde_json::from_str(&page).unwrap();
    assert_eq!(parsed["next_after_seq"], 4);
    assert_eq!(parsed["public_key"], station.public_key());
    assert_eq!(verify(&station, &page, &[]).code, 0);
}

#[test]
fn an_edited_field_is_caught() {
    let station = station_with_log();
    let edited = export(&station, &[]).replace("Bản tin CCHC tuần 47", "Bản tin CCHC tuần 48");
    refused(&verify(&station, &edited, &[]), 1, "altered");
}

#[test]
fn a_deleted_event_is_caught() {
    let station = station_with_log();
    let mut log = lines(&export(&station, &[]));
    log.remove(1);
    refused(&verify(&station, &log.join("\n"), &[]), 3, "expected seq 2");
}

#[test]
fn swapped_events_are_caught() {
    let station = station_with_log();
    let mut log = lines(&export(&station, &[]));
    log.swap(1, 2);
    refused(&verify(&station, &log.join("\n"), &[]), 3, "expected seq 2");
}

#[test]
fn a_forged_event_with_a_recomputed_hash_is_caught_by_its_signature() {
    let station = station_with_log();
    let log = lines(&export(&station, &[]));
    // The forger knows the encoding, not the key: a fifth event chained and hashed correctly.
    let mut forged: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&log[3]).unwrap();
    forged.insert("seq".into(), 5.into());
    forged.insert("prev_hash".into(), forged["hash"].clone());
    forged.insert("title".into(), "Bản tin giả".into());
    let body = loa::proof::canonical(&forged).unwrap();
    forged.insert("hash".into(), hex::encode(Sha256::digest(body.as_bytes())).into());
    let text = format!("{}\n{}\n", log.join("\n"), serde_json::to_string(&forged).unwrap());
    refused(&verify(&station, &text, &[]), 5, "signature does not verify");
}

#[test]
fn another_stations_log_does_not_verify_with_this_key() {
    let ours = station_with_log();
    let theirs = station_with_log(); // same station id, its own key
    let run = verify(&ours, &export(&theirs, &[]), &[]);
    refused(&run, 1, "signature does not verify");
}

#[test]
fn expect_prev_proves_nothing_was_cut_between_pulls() {
    let station = station_with_log();
    let first = lines(&export(&station, &["--after-seq", "0"]));
    let last_hash = serde_json::from_str::<serde_json::Value>(&first[1]).unwrap()["hash"].as_str().unwrap().to_owned();
    let second = export(&station, &["--after-seq", "2"]);
    assert_eq!(verify(&station, &second, &["--expect-prev", &last_hash]).code, 0);

    let cut = export(&station, &["--after-seq", "3"]); // seq 3 went missing between the pulls
    refused(&verify(&station, &cut, &["--expect-prev", &last_hash]), 4, "between the pulls");
}

#[test]
fn csv_export_opens_in_excel() {
    let station = station_with_log();
    let run = station.loa(&["airtime", "--format", "csv"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.starts_with('\u{feff}'), "UTF-8 BOM");
    let rows: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(rows.len(), 5);
    assert!(rows[0].contains("seq,kind,at_utc,at_local"));
    assert!(rows[1].contains("Bản tin CCHC tuần 47"));
}

#[test]
fn bad_verify_input_is_explained() {
    let station = station_with_log();
    let run = verify(&station, "not json\n", &[]);
    assert_eq!(run.code, 1);
    assert!(run.error_line().contains("line 1: not a JSON event"), "{}", run.stderr);
    let run = loa_with_stdin(&["verify", "-", "--public-key", "abc"], b"");
    assert_eq!(run.code, 1);
    assert!(run.error_line().contains("--public-key: the public key must be 64 hex digits"), "{}", run.stderr);
}

#[test]
fn station_shows_the_key_that_verifies() {
    let station = station_with_log();
    let run = station.loa(&["station"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains("Đài truyền thanh phường Thử Nghiệm") && run.stdout.contains(&station.public_key()));
    let mode = std::fs::metadata(station.data_dir().join("station.key")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600, "the key is private");
}
