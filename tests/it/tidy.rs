//! The architecture's invariants, checked on the source itself (after rust-analyzer's
//! `tidy.rs`): each outside world has one door. A new `use rusqlite` in the engine, a
//! `Utc::now()` outside the clock or an `unsafe` block in a new place fails here, with where.

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
    only_in(&["rusqlite"], &["src/store/"], "the store thread owns the database");
}

#[test]
fn only_the_player_touches_the_sound_device() {
    only_in(
        &["rodio::", "cpal::", "use rodio", "use cpal"],
        &["src/player.rs"],
        "a hung device must hang nothing else",
    );
}

#[test]
fn only_http_touches_axum() {
    only_in(&["axum::", "use axum"], &["src/http/"], "the API is one layer");
}

#[test]
fn only_the_clock_reads_the_wall_clock() {
    only_in(&["Utc::now()", "SystemTime::now()", "Local::now()"], &["src/clock.rs"], "time is an input");
}

#[test]
fn unsafe_code_stays_where_it_is_and_says_why() {
    // The system calls Rust's std does not wrap (flock, gethostname, statvfs, clock state).
    let allowed = ["src/clock.rs", "src/http/tls.rs", "src/ingest.rs", "src/lock.rs"];
    only_in(&["unsafe {", "unsafe fn"], &allowed, "each unsafe block is a reviewed system call");
    for (path, code) in sources() {
        let lines: Vec<&str> = code.lines().collect();
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.contains("unsafe {")) {
            let reason = lines[i.saturating_sub(3)..i].iter().any(|l| l.contains("SAFETY:"));
            assert!(reason, "{}:{}: an unsafe block without a `// SAFETY:` comment: {line}", path.display(), i + 1);
        }
    }
}
