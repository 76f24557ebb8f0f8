//! The architecture's invariants, checked on the source itself (after rust-analyzer's
//! `tidy.rs`): each outside world has one door. A new `use rusqlite` in the engine, a
//! `Utc::now()` outside the clock, an `unsafe` block in a new place or a lower layer importing a
//! higher one fails here, with where.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, with its text up to its `#[cfg(test)]` module (tests may use
/// what they like).
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join("src"), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default().to_owned();
            (path.strip_prefix(root).unwrap().to_owned(), code)
        })
        .collect()
}

/// Fails naming each file outside `allowed` (path prefixes) whose code contains `needle`.
#[track_caller]
fn only_in(needles: &[&str], allowed: &[&str], why: &str) {
    let offenders: Vec<String> = sources()
        .into_iter()
        .filter(|(path, code)| {
            let path = path.to_string_lossy();
            !allowed.iter().any(|a| path.starts_with(a)) && needles.iter().any(|n| code.contains(n))
        })
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "{needles:?} outside {allowed:?} ({why}): {offenders:?}");
}

#[test]
fn only_the_store_touches_sqlite() {
    // The office has its own database, with its own one door.
    only_in(&["rusqlite"], &["src/store/", "src/district/store/"], "the store thread owns the database");
}

#[test]
fn only_the_player_touches_the_sound_device() {
    only_in(
        &["rodio::", "cpal::", "use rodio", "use cpal"],
        &["src/audio/device.rs"],
        "a hung device must hang nothing else",
    );
}

#[test]
fn only_http_touches_axum() {
    only_in(&["axum::", "use axum"], &["src/http/", "src/district/http/"], "the API is one layer");
}

#[test]
fn only_the_clock_reads_the_wall_clock() {
    only_in(&["Utc::now()", "SystemTime::now()", "Local::now()"], &["src/time/clock.rs"], "time is an input");
}

#[test]
fn unsafe_code_stays_where_it_is_and_says_why() {
    // The system calls Rust's std does not wrap (flock, gethostname, statvfs, clock state).
    only_in(&["unsafe {", "unsafe fn"], &["src/ops/sys.rs"], "each unsafe block is a reviewed system call");
    for (path, code) in sources() {
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.contains("unsafe {")) {
            let reason = lines[i.saturating_sub(3)..i].iter().any(|l| l.contains("SAFETY:"));
            assert!(reason, "{}:{}: an unsafe block without a `// SAFETY:` comment: {line}", path.display(), i + 1);
        }
    }
}

/// The folders of `src/`, bottom layer first, as `src/lib.rs` declares them.
fn layers() -> Vec<String> {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    lib.lines().filter_map(|l| l.strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';').to_owned()).collect()
}

#[test]
fn a_layer_imports_only_the_layers_below_it() {
    let layers = layers();
    assert!(layers.len() >= 10 && layers[0] == "ops", "src/lib.rs declares the layers in order: {layers:?}");
    let mut offences = Vec::new();
    for (path, code) in sources() {
        let Some(own) = path
            .strip_prefix("src")
            .unwrap()
            .iter()
            .next()
            .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_owned())
        else {
            continue;
        };
        let Some(rank) = layers.iter().position(|l| *l == own) else { continue };
        for (number, line) in code.lines().enumerate() {
            for (at, _) in line.match_indices("crate::") {
                let target: String = line[at + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if layers.iter().position(|l| *l == target).is_some_and(|t| t > rank) {
                    offences.push(format!("{}:{}: {own} imports {target}", path.display(), number + 1));
                }
            }
        }
    }
    assert!(offences.is_empty(), "a lower layer imports a higher one (order in src/lib.rs): {offences:#?}");
}

#[test]
fn no_source_file_outgrows_a_read() {
    // Lines before the file's unit tests.
    let long: Vec<String> = sources()
        .into_iter()
        .map(|(path, code)| (code.lines().count(), path))
        .filter(|(lines, _)| *lines > 500)
        .map(|(lines, path)| format!("{}: {lines} lines", path.display()))
        .collect();
    assert!(long.is_empty(), "split these by what they do (~500 lines each at most): {long:?}");
}

#[test]
fn every_source_file_is_in_the_code_map() {
    let map = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap();
    let missing: Vec<String> = sources()
        .into_iter()
        .map(|(path, _)| path.strip_prefix("src").unwrap().display().to_string())
        .filter(|file| !map.contains(&format!("`{file}`")))
        .collect();
    assert!(missing.is_empty(), "ARCHITECTURE.md's code map does not name: {missing:?}");
}

#[test]
fn architecture_prints_the_event_schema_the_verifier_checks() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap();
    let table = loa::proof::schema::markdown();
    assert!(doc.contains(&table), "ARCHITECTURE.md (\"Event kinds\") must print the schema exactly:\n{table}");
}

#[test]
fn the_office_imports_from_the_stations_side_only_what_both_share() {
    // Shared: proof (events, schema, encoding, the head statement), model (the protocol, keys,
    // tokens), time, ops, config's checks, the report's counting core and words, the connection
    // layer, the playability gate. Never the station's store, engine, audio, library (but its
    // gate), self-check, receipt or push.
    let station_only = [
        "crate::store",
        "crate::library",
        "crate::audio",
        "crate::air",
        "crate::daemon",
        "crate::cli",
        "crate::audit::chain",
        "crate::audit::receipt",
        "crate::audit::upstream",
    ];
    // The playability gate is shared: the office proves a bulletin's file as a station does.
    let shared = ["crate::library::analysis"];
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|(path, _)| path.starts_with("src/district"))
        .flat_map(|(path, code)| {
            let code = shared.iter().fold(code.clone(), |code, allowed| code.replace(allowed, ""));
            station_only
                .iter()
                .filter(move |needle| code.contains(*needle))
                .map(move |n| format!("{}: {n}", path.display()))
        })
        .collect();
    assert!(offenders.is_empty(), "the office reaches into the station: {offenders:?}");
}

#[test]
fn the_stations_routes_are_the_paths_the_office_calls() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, path) in
        [("src/http/station.rs", loa::model::protocol::AIRTIME), ("src/http/receipt.rs", loa::model::protocol::RECEIPT)]
    {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(text.contains(&format!("path = \"{path}\"")), "{file} does not serve {path}");
    }
}
