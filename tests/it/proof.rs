//! The district's side: export the proof log, verify it offline, and catch every tampering.

use sha2::{Digest, Sha256};

use crate::helpers::{Station, fixture, loa, loa_with_stdin, python_verify};

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
    // The forger knows the encoding, not the key: a fifth event chained, canonical and hashed.
    let mut forged: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&log[3]).unwrap();
    forged.insert("seq".into(), 5.into());
    forged.insert("prev_hash".into(), forged["hash"].clone());
    forged.insert("title".into(), "Bản tin giả".into());
    let body = loa::proof::canonical(&forged);
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let line = format!("{},\"hash\":\"{hash}\",\"sig\":\"{}\"}}", &body[..body.len() - 1], "ab".repeat(64));
    let text = format!("{}\n{line}\n", log.join("\n"));
    refused(&verify(&station, &text, &[]), 5, "signature does not verify");
}

#[test]
fn another_stations_log_does_not_verify_with_this_key() {
    let ours = station_with_log();
    let theirs = station_with_log(); // same station id, its own key
    let run = verify(&ours, &export(&theirs, &[]), &[]);
    refused(&run, 1, "signature does not verify");
}

/// `SEQ:HASH` of an export line.
fn head_of(line: &str) -> String {
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    format!("{}:{}", event["seq"], event["hash"].as_str().unwrap())
}

#[test]
fn a_log_must_be_whole_or_begin_at_the_head_the_auditor_holds() {
    let station = station_with_log();
    let log = lines(&export(&station, &[]));

    // A cut head: a file starting at seq 2 is not a whole log.
    refused(&verify(&station, &format!("{}\n", log[1..].join("\n")), &[]), 2, "not 1");
    // The overlap pull: after_seq = SEQ - 1 begins with the event the auditor holds.
    let held = head_of(&log[1]);
    let pull = export(&station, &["--after-seq", "1"]);
    let run = verify(&station, &pull, &["--expect-head", &held]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(&format!("--expect-head {}", head_of(&log[3]))), "{}", run.stdout);
    // Events cut between the pulls, or a pull that does not overlap.
    refused(&verify(&station, &export(&station, &["--after-seq", "2"]), &["--expect-head", &held]), 3, "head you hold");
    // A cut tail: a file that stops before the head the auditor already holds.
    let tail_held = head_of(&log[3]);
    let cut = format!("{}\n", log[..2].join("\n"));
    refused(&verify(&station, &cut, &["--expect-head", &tail_held]), 1, "head you hold");
    // An empty answer (a station rolled back before the held head) proves nothing.
    let run = verify(&station, "", &["--expect-head", &tail_held]);
    assert_eq!(run.code, 1);
    assert!(run.error_line().contains("holds no events") && run.error_line().contains("gone back"), "{}", run.stderr);
    let run = verify(&station, "", &[]);
    assert_eq!(run.code, 1, "an empty file is not a whole log");
    let run = verify(&station, &pull, &["--expect-prev", "00"]);
    assert_eq!(run.code, 2, "--expect-prev is gone: {}", run.stderr);
    assert!(run.error_line().contains("--expect-head"), "{}", run.stderr);
}

#[test]
fn a_station_that_went_back_says_so_in_its_head() {
    let station = station_with_log();
    let run = station.loa(&["airtime", "--format", "json", "--after-seq", "37"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let page = run.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 0);
    assert_eq!(page["head"]["seq"], 4, "the station's own head, not the caller's cursor: {page}");
    assert_eq!(page["next_after_seq"], 4, "{page}");
    let last = lines(&export(&station, &[]))[3].clone();
    assert_eq!(format!("{}:{}", page["head"]["seq"], page["head"]["hash"].as_str().unwrap()), head_of(&last));
    assert!(run.stderr.contains(&format!("head {}", head_of(&last))), "{}", run.stderr);
}

#[test]
fn every_event_must_be_the_named_station() {
    let station = station_with_log();
    let log = export(&station, &[]);
    assert_eq!(verify(&station, &log, &["--station-id", "test-station"]).code, 0);
    refused(&verify(&station, &log, &["--station-id", "phuong-khac"]), 1, "another station's event");
}

#[test]
fn only_the_signed_bytes_verify() {
    let station = station_with_log();
    let log = lines(&export(&station, &[]));
    let with_first = |first: String| format!("{first}\n{}\n", log[1..].join("\n"));
    // A key given twice: a JSON parser keeps one silently; the bytes are not the signed ones.
    let duplicate = log[0].replacen('{', "{\"title\":\"Bản tin khác\",", 1);
    refused(&verify(&station, &with_first(duplicate), &[]), 1, "appears twice");
    let spaced = log[0].replacen("\",\"", "\", \"", 1);
    refused(&verify(&station, &with_first(spaced), &[]), 1, "canonical");
    let escaped = log[0].replacen("Bản", "B\\u1ea3n", 1);
    refused(&verify(&station, &with_first(escaped), &[]), 1, "canonical");
    let reencoded = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&log[0]).unwrap()).unwrap();
    assert_eq!(verify(&station, &with_first(reencoded), &[]).code, 1, "hash and sig sorted in: not the export line");
    let crlf = format!("{}\r\n", log.join("\r\n"));
    let run = verify(&station, &crlf, &[]);
    assert_eq!(run.code, 1);
    assert!(run.error_line().contains("carriage return"), "{}", run.stderr);
}

/// A one-event log signed with `signer` whose `station_started` declares `declared`.
fn crafted_log(signer: &loa::proof::StationKey, declared: &str) -> String {
    let mut fields = loa::proof::events::station_started("0.1.0", declared, None, Default::default(), true);
    fields.insert("station_id".into(), "test-station".into());
    fields.insert("at".into(), 1_790_000_000_000i64.into());
    format!("{}\n", signer.seal(1, loa::proof::GENESIS_HASH, fields).export_line())
}

#[test]
fn the_key_a_log_declares_must_be_the_key_it_is_checked_with() {
    let signer = loa::proof::StationKey::from_seed([3; 32]);
    let other = loa::proof::StationKey::from_seed([4; 32]);
    let key = signer.public_key_hex();
    let honest = crafted_log(&signer, &key);
    assert_eq!(loa_with_stdin(&["verify", "-", "--public-key", &key], honest.as_bytes()).code, 0);
    let text = crafted_log(&signer, &other.public_key_hex());
    refused(&loa_with_stdin(&["verify", "-", "--public-key", &key], text.as_bytes()), 1, "declares its key");
}

#[test]
fn a_missing_key_is_never_made_again_next_to_a_log() {
    let station = station_with_log();
    let key_file = station.data_dir().join("station.key");
    std::fs::remove_file(&key_file).unwrap();
    let commands: [&[&str]; 4] =
        [&["station"], &["clip", "list"], &["airtime"], &["token", "create", "--role", "district", "--label", "x"]];
    for args in commands {
        let run = station.loa(args);
        assert_eq!(run.code, 1, "{args:?} went on without the key: {}", run.stdout);
        assert!(run.error_line().contains("Restore station.key from your backup"), "{}", run.stderr);
        assert!(!key_file.exists(), "{args:?} made a new key next to the log");
    }
    // Another station's key in its place is refused too.
    let other = station_with_log();
    std::fs::copy(other.data_dir().join("station.key"), &key_file).unwrap();
    let run = station.loa(&["station"]);
    assert_eq!(run.code, 1);
    assert!(run.error_line().contains("is not the key this proof log is signed with"), "{}", run.stderr);
}

#[test]
fn a_rotated_key_is_followed_by_verify() {
    let station = station_with_log();
    let old_key = station.public_key();
    let run = station.loa(&["key", "rotate"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let new_key = station.public_key();
    assert_ne!(old_key, new_key);
    assert!(!station.data_dir().join("station.key.new").exists());
    let added = station.add(&station.input("s.mp3", &fixture("mpeg2_16k.mp3")), &["--title", "Sau khi đổi khoá"]);
    assert_eq!(added.code, 0, "the new key signs: {}", added.stderr);
    let log = export(&station, &[]);
    let run = loa_with_stdin(&["verify", "-", "--public-key", &old_key], log.as_bytes());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(&format!("key_rotated at seq 5: {old_key} -> {new_key}")), "{}", run.stdout);
    // From seq 1, only the key the log began with verifies.
    refused(&loa_with_stdin(&["verify", "-", "--public-key", &new_key], log.as_bytes()), 1, "signature");
    // A pull that begins after the rotation is checked with the new key.
    let pull = export(&station, &["--after-seq", "4"]);
    let held = head_of(&lines(&log)[4]);
    let run = loa_with_stdin(&["verify", "-", "--public-key", &new_key, "--expect-head", &held], pull.as_bytes());
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_replaced_key_is_a_break_the_auditor_accepts_by_name() {
    let station = station_with_log();
    let old_key = station.public_key();
    std::fs::remove_file(station.data_dir().join("station.key")).unwrap();
    let run = station.loa(&["key", "replace"]);
    assert_eq!(run.code, 2, "--lost is required: {}", run.stderr);
    let run = station.loa(&["key", "replace", "--lost"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("--accept-key-replacement 5"), "{}", run.stdout);
    let new_key = station.public_key();
    let run = station.loa(&["key", "replace", "--lost"]);
    assert_eq!(run.code, 1, "a key that signs the log is not lost: {}", run.stdout);
    assert_eq!(station.add(&station.input("s.mp3", &fixture("mpeg2_16k.mp3")), &["--title", "Khoá mới"]).code, 0);

    let log = export(&station, &[]);
    let replaced: serde_json::Value = serde_json::from_str(&lines(&log)[4]).unwrap();
    assert_eq!(replaced["kind"], "key_replaced");
    // Only `loa run` declares the key (station_started): this log, made by the CLI alone, never
    // named the key that was lost.
    assert!(replaced["old_public_key"].is_null(), "{replaced}");
    refused(
        &loa_with_stdin(&["verify", "-", "--public-key", &old_key], log.as_bytes()),
        5,
        "--accept-key-replacement 5",
    );
    let accept = ["verify", "-", "--public-key", &old_key, "--accept-key-replacement", "5"];
    let run = loa_with_stdin(&accept, log.as_bytes());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(&format!("key_replaced at seq 5: {old_key} -> {new_key}")), "{}", run.stdout);
}

#[test]
fn an_edited_database_is_never_exported_as_whole() {
    let station = station_with_log();
    let db = rusqlite::Connection::open(station.data_dir().join("loa.sqlite")).unwrap();
    db.execute_batch(
        "DROP TRIGGER events_are_never_updated;
         UPDATE events SET body = replace(body, 'tuần 47', 'tuần 48') WHERE seq = 1;",
    )
    .unwrap();
    drop(db);
    let run = station.loa(&["airtime"]);
    assert_eq!(run.code, 1, "a damaged log was exported: {}", run.stdout);
    assert!(run.error_line().contains("damaged at seq 1"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    let run = station.loa(&["airtime", "--damaged-ok"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("damaged at seq 1"), "marked as damaged: {}", run.stderr);
    refused(&verify(&station, &run.stdout, &[]), 1, "altered");
    // Whoever found it recorded it once, signed, for the daemon's /healthz.
    let damage: Vec<serde_json::Value> = lines(&run.stdout)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "log_damaged")
        .collect();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0]["damaged_seq"], 1);
    // No report is counted from it either.
    let year = chrono::Utc::now().format("%Y").to_string();
    let run = station.loa(&["compliance", "--period", &year]);
    assert_eq!(run.code, 1, "a report was made from a damaged log: {}", run.stdout);
    assert!(run.error_line().contains("damaged at seq 1"), "{}", run.stderr);
    // A page that does not hold the damage is still whole.
    assert_eq!(station.loa(&["airtime", "--after-seq", "1"]).code, 0);
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

#[test]
fn the_python_verifier_written_from_architecture_md_agrees() {
    let station = station_with_log();
    let first_key = station.public_key();
    assert_eq!(station.loa(&["key", "rotate"]).code, 0);
    assert_eq!(
        station.add(&station.input("a.mp3", &fixture("mpeg2_16k.mp3")), &["--title", "Sau khi đổi khoá"]).code,
        0
    );
    std::fs::remove_file(station.data_dir().join("station.key")).unwrap();
    assert_eq!(station.loa(&["key", "replace", "--lost"]).code, 0);
    assert_eq!(station.add(&station.input("b.mp3", &fixture("mpeg25_8k.mp3")), &["--title", "Khoá thay thế"]).code, 0);
    let log = export(&station, &[]);
    let page = export(&station, &["--format", "json"]);
    let rows = lines(&log);
    assert_eq!(rows.len(), 8);
    let accept = ["--accept-key-replacement", "7"];
    let held = head_of(&rows[5]);
    let pull = export(&station, &["--after-seq", "5"]);

    let cases: Vec<(&str, String, Vec<&str>, i32)> = vec![
        ("whole log, replacement accepted", log.clone(), accept.to_vec(), 0),
        ("JSON page", page.clone(), accept.to_vec(), 0),
        ("replacement not accepted", log.clone(), vec![], 1),
        ("pull from the head held", pull.clone(), vec!["--expect-head", &held, accept[0], accept[1]], 0),
        ("edited title", log.replace("Giờ làm việc", "Giờ nghỉ"), accept.to_vec(), 1),
        ("duplicate key", log.replacen('{', "{\"kind\":\"x\",", 1), accept.to_vec(), 1),
        ("white space", log.replacen("\",\"", "\", \"", 1), accept.to_vec(), 1),
        ("escaped", log.replacen("Bản", "B\\u1ea3n", 1), accept.to_vec(), 1),
        ("cut head", format!("{}\n", rows[1..].join("\n")), accept.to_vec(), 1),
        ("cut between pulls", export(&station, &["--after-seq", "6"]), vec!["--expect-head", &held], 1),
        ("empty pull", String::new(), vec!["--expect-head", &held], 1),
        ("wrong station", log.clone(), vec!["--station-id", "khac", "--accept-key-replacement", "7"], 1),
    ];
    let file = station.dir.path().join("case.jsonl");
    for (name, text, extra, expected) in cases {
        std::fs::write(&file, &text).unwrap();
        // A pull is checked with the key in force at the head held (seq 6: the rotated one).
        let key = if extra.first() == Some(&"--expect-head") { rotated_key(&rows[4]) } else { first_key.clone() };
        let mut args = vec!["verify", file.to_str().unwrap(), "--public-key", &key];
        args.extend(&extra);
        let ours = loa(&args);
        let mut python_args = vec!["--public-key", key.as_str()];
        python_args.extend(&extra);
        let theirs = crate::helpers::python_verify(&file, &python_args);
        assert_eq!(ours.code, expected, "{name}: loa says {}{}", ours.stdout, ours.stderr);
        assert_eq!(theirs.code, expected, "{name}: python says {}{}", theirs.stdout, theirs.stderr);
    }
}

/// The `new_public_key` of a `key_rotated` export line.
fn rotated_key(line: &str) -> String {
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["kind"], "key_rotated");
    event["new_public_key"].as_str().unwrap().to_owned()
}

#[test]
fn an_edit_below_the_stations_checkpoint_is_still_caught() {
    for recompute_hash in [false, true] {
        let station = station_with_log();
        {
            // What `loa run` does at start: checks everything and keeps how far it got.
            let mut store = loa::store::Store::open(&station.data_dir(), "test-station").unwrap();
            let damage =
                loa::audit::chain::check_stored_log(&mut store, chrono::Utc::now(), loa::audit::chain::Scope::Whole);
            assert!(damage.unwrap().is_none());
            assert_eq!(store.chain_checked().unwrap().unwrap().0, 4);
        }
        let db = rusqlite::Connection::open(station.data_dir().join("loa.sqlite")).unwrap();
        db.execute_batch("DROP TRIGGER events_are_never_updated;").unwrap();
        let body: String = db.query_row("SELECT body FROM events WHERE seq = 2", [], |r| r.get(0)).unwrap();
        let edited = body.replace("Giờ làm việc", "Giờ nghỉ trưa");
        let hash: String = if recompute_hash {
            hex::encode(Sha256::digest(edited.as_bytes()))
        } else {
            db.query_row("SELECT hash FROM events WHERE seq = 2", [], |r| r.get(0)).unwrap()
        };
        db.execute("UPDATE events SET body = ?1, hash = ?2 WHERE seq = 2", [&edited, &hash]).unwrap();
        drop(db);
        let run = station.loa(&["airtime"]);
        assert_eq!(run.code, 1, "an edit below the checkpoint was exported: {}", run.stdout);
        let (seq, why) = if recompute_hash { (3, "prev_hash does not match") } else { (2, "altered") };
        let line = run.error_line();
        assert!(line.contains(&format!("damaged at seq {seq}: ")) && line.contains(why), "{line}");
    }
}

/// The start check verifies signatures in batches; a forged signature early in the log is
/// still named first, before a later edit, exactly as one by one would.
#[test]
fn the_start_check_in_batches_names_the_first_bad_signature_before_a_later_edit() {
    let station = station_with_log();
    let db = rusqlite::Connection::open(station.data_dir().join("loa.sqlite")).unwrap();
    db.execute_batch("DROP TRIGGER events_are_never_updated;").unwrap();
    let sig: String = db.query_row("SELECT sig FROM events WHERE seq = 2", [], |r| r.get(0)).unwrap();
    let forged = format!("{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
    db.execute("UPDATE events SET sig = ?1 WHERE seq = 2", [&forged]).unwrap();
    db.execute_batch("UPDATE events SET body = replace(body, '\"at\":', '\"at\": ') WHERE seq = 4;").unwrap();
    drop(db);
    let mut store = loa::store::Store::open(&station.data_dir(), "test-station").unwrap();
    let damage = loa::audit::chain::check_stored_log(&mut store, chrono::Utc::now(), loa::audit::chain::Scope::Whole);
    let damage = damage.unwrap().expect("the forged signature is found");
    assert_eq!(damage.seq, 2, "{damage:?}");
    assert!(damage.why.contains("signature does not verify"), "{damage:?}");
}

/// An export line for the raw `body` (any bytes), hashed and signed by `seed`'s key: what a
/// station could write with its own key, however wrong.
fn signed_raw(seed: [u8; 32], body: &str) -> String {
    use ed25519_dalek::Signer;
    let digest = Sha256::digest(body.as_bytes());
    let sig = ed25519_dalek::SigningKey::from_bytes(&seed).sign(&digest);
    let open = body.strip_suffix('}').unwrap();
    format!("{open},\"hash\":\"{}\",\"sig\":\"{}\"}}", hex::encode(digest), hex::encode(sig.to_bytes()))
}

#[test]
fn a_signed_event_that_its_kind_does_not_allow_is_refused_by_both_verifiers() {
    let seed = [3; 32];
    let signer = loa::proof::StationKey::from_seed(seed);
    let key = signer.public_key_hex();
    let first = crafted_log(&signer, &key);
    let prev = serde_json::from_str::<serde_json::Value>(first.trim()).unwrap()["hash"].as_str().unwrap().to_owned();
    let at = 1_790_000_000_100i64;
    let missed = loa::proof::events::slot_missed(
        "sang",
        true,
        loa::time::slots::InstantRun::one(chrono::DateTime::from_timestamp_millis(at - 60_000).unwrap()),
        loa::proof::events::MissReason::StationDown,
        true,
    );
    // The second event of the log: a slot_missed with `edit` applied to its members, then
    // canonically encoded (or, for number forms no encoder writes, edited as text) and signed.
    let second = |edit: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>), text: &dyn Fn(String) -> String| {
        let mut fields = missed.clone();
        fields.insert("station_id".into(), "test-station".into());
        fields.insert("at".into(), at.into());
        fields.insert("seq".into(), 2.into());
        fields.insert("prev_hash".into(), prev.clone().into());
        edit(&mut fields);
        format!("{first}{}\n", signed_raw(seed, &text(loa::proof::canonical(&fields))))
    };
    let same = |body: String| body;
    let dir = tempfile::tempdir().unwrap();
    let judge = |name: &str, log: &str| {
        let file = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&file, log).unwrap();
        let ours = loa(&["verify", file.to_str().unwrap(), "--public-key", &key]);
        let theirs = python_verify(&file, &["--public-key", &key]);
        (ours, theirs)
    };
    let (honest, python) = judge("honest", &second(&|_| {}, &same));
    assert_eq!((honest.code, python.code), (0, 0), "{} {}", honest.stderr, python.stdout);
    // A run of missed instants: 16 in the minute before, one every 4 s.
    let run = |last: i64, count: i64| {
        move |f: &mut serde_json::Map<String, serde_json::Value>| {
            f.insert("last_scheduled_at".into(), last.into());
            f.insert("count".into(), count.into());
        }
    };
    let (honest, python) = judge("honest-run", &second(&run(at, 16), &same));
    assert_eq!((honest.code, python.code), (0, 0), "{} {}", honest.stderr, python.stdout);

    type Edit = Box<dyn Fn(&mut serde_json::Map<String, serde_json::Value>)>;
    let set = |name: &'static str, value: serde_json::Value| -> Edit {
        Box::new(move |f| {
            f.insert(name.into(), value.clone());
        })
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("unknown-member", set("extra", 1.into()), "extra"),
        ("quoted-member", set("x\"seq", 5.into()), "seq"),
        ("missing-member", Box::new(|f| drop(f.remove("slot"))), "slot"),
        ("wrong-type", set("peak", "yes".into()), "peak"),
        ("unknown-enum", set("reason", "bored".into()), "reason"),
        ("other-status", set("status", "completed".into()), "status"),
        ("unknown-kind", set("kind", "note".into()), "kind"),
        ("at-text", set("at", "1790000000100".into()), "at"),
        ("at-fraction", set("at", serde_json::json!(1790000000100.5)), "at"),
        ("at-missing", Box::new(|f| drop(f.remove("at"))), "at"),
        ("at-null", set("at", serde_json::Value::Null), "at"),
        ("at-beyond-2^53", set("at", serde_json::json!(9_007_199_254_740_993i64)), "at"),
        ("nested", set("slot", serde_json::json!({"a": 1})), "slot"),
        ("run-without-its-end", set("count", 16.into()), "last_scheduled_at"),
        ("run-without-its-count", set("last_scheduled_at", at.into()), "count"),
        ("run-of-one", Box::new(run(at, 1)), "count"),
        ("run-ending-before-it-began", Box::new(run(at - 120_000, 16)), "last_scheduled_at"),
        ("run-denser-than-a-second", Box::new(run(at, 62)), "count"),
    ];
    for (name, edit, member) in cases {
        let (ours, theirs) = judge(name, &second(&*edit, &same));
        assert_eq!(ours.code, 1, "{name}: loa verify accepted it: {}", ours.stdout);
        assert!(ours.error_line().contains("seq 2 ") && ours.error_line().contains(member), "{name}: {}", ours.stderr);
        assert_eq!(theirs.code, 1, "{name}: the Python verifier accepted it: {}", theirs.stdout);
    }
    // Number forms the RFC 8785 encoder itself writes for huge values (1e+21): canonical, signed,
    // and still not an integer.
    let exponent = second(&|_| {}, &|body: String| body.replace(&format!("\"at\":{at}"), "\"at\":1e+21"));
    let (ours, theirs) = judge("exponent", &exponent);
    assert_eq!((ours.code, theirs.code), (1, 1), "1e+21 is no time: {} / {}", ours.stdout, theirs.stdout);
    assert!(ours.error_line().contains("`at`"), "{}", ours.stderr);
}

#[test]
fn a_cut_last_line_a_bom_and_bytes_that_are_not_utf8_are_refused_with_their_line() {
    let station = station_with_log();
    let log = export(&station, &[]);
    let key = station.public_key();
    let dir = tempfile::tempdir().unwrap();
    let judge = |name: &str, bytes: &[u8], why: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, bytes).unwrap();
        let ours = loa(&["verify", file.to_str().unwrap(), "--public-key", &key]);
        assert_eq!(ours.code, 1, "{name} was accepted: {}", ours.stdout);
        assert!(ours.error_line().contains(why), "{name}: expected `{why}` in {}", ours.stderr);
        let theirs = python_verify(&file, &["--public-key", &key]);
        assert_eq!(theirs.code, 1, "{name}: the Python verifier accepted it: {}", theirs.stdout);
    };
    let last = log.lines().count();
    judge("cut.jsonl", log.trim_end_matches('\n').as_bytes(), &format!("line {last}: the last line has no line end"));
    judge("bom.jsonl", format!("\u{feff}{log}").as_bytes(), "line 1: the file begins with a byte-order mark");
    let mut bytes = log.clone().into_bytes();
    let second = log.find('\n').unwrap() + 1;
    bytes[second + 5] = 0xff;
    judge("latin.jsonl", &bytes, "line 2: not UTF-8");
    let run = loa_with_stdin(&["verify", "-", "--public-key", &key], log.as_bytes());
    assert_eq!(run.code, 0, "the whole export still verifies from standard input: {}", run.stderr);
}
