//! README's two commands, as a newcomer runs them: on a throwaway copy of the checkout, the
//! set-up finds everything the enclosing test run installed (so it does nothing, quickly), and
//! the demo command builds, chooses the paced file device on a machine without a sound card,
//! says so, and airs a bulletin in its first minute slot; stopping it leaves no process behind.
//! (The test command itself is the run this test is part of: `.ci/run`, checked to be README's.)

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The commands in README's "The two commands" section, in order.
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let section = readme.split("\n## The two commands").nth(1).expect("README has \"## The two commands\"");
    let section = section.split("\n## ").next().unwrap();
    section.split("```sh\n").skip(1).map(|block| block.split("```").next().unwrap().trim().to_owned()).collect()
}

#[test]
fn readme_names_the_demo_and_the_ci_entry_point_as_its_two_commands() {
    assert_eq!(
        readme_commands(),
        [".ci/demo", ".ci/run"],
        "README's two commands are the scripts CI and this test run"
    );
}

/// The working tree's files (tracked and new, not ignored), copied with their times kept so the
/// copy builds from the enclosing run's artefacts.
fn throwaway_copy() -> tempfile::TempDir {
    let files = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(ROOT)
        .output()
        .expect("git (apt-get install git)");
    assert!(files.status.success(), "git ls-files: {}", String::from_utf8_lossy(&files.stderr));
    let copy = tempfile::tempdir().unwrap();
    for file in files.stdout.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let file = Path::new(std::str::from_utf8(file).unwrap());
        if !Path::new(ROOT).join(file).exists() {
            continue; // deleted in the working tree, not yet in the index
        }
        let copied = Command::new("cp").args(["-a", "--parents"]).arg(file).arg(copy.path()).current_dir(ROOT).status();
        assert!(copied.unwrap().success(), "copy {}", file.display());
    }
    copy
}

/// The target directory this test binary was built in (its `loa` is `TARGET/debug/loa`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_loa")).parent().unwrap().parent().unwrap().to_owned()
}

fn has_sound_card() -> bool {
    std::fs::read_to_string("/proc/asound/cards")
        .is_ok_and(|cards| cards.lines().any(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())))
}

/// Signals the whole process group and waits for it to be gone.
fn end_group(group: u32, child: &mut std::process::Child) {
    let _ = Command::new("kill").args(["-TERM", "--", &format!("-{group}")]).status();
    let start = Instant::now();
    while Command::new("kill")
        .args(["-0", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status();
            panic!("the demo did not stop within 20 s of SIGTERM");
        }
        let _ = child.try_wait();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
}

#[test]
fn on_a_fresh_copy_setup_is_already_done_and_the_demo_airs_on_the_device_it_chose() {
    let copy = throwaway_copy();
    let setup = Command::new(copy.path().join(".ci/setup")).arg("test").current_dir(copy.path()).output().unwrap();
    let said = String::from_utf8_lossy(&setup.stdout).into_owned() + &String::from_utf8_lossy(&setup.stderr);
    assert!(setup.status.success(), ".ci/setup test failed on the copy: {said}");
    assert!(!said.contains("setup:"), "set-up already done by this run should do nothing, it did: {said}");

    let log_path = copy.path().join("demo.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut demo = Command::new(copy.path().join(".ci/demo"));
    demo.current_dir(copy.path())
        .env("CARGO_TARGET_DIR", target_dir())
        .env("RUST_LOG", "info")
        .env_remove("ALSA_CONFIG_PATH")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0);
    if has_sound_card() {
        // Not aloud on a developer's machine: the same device the demo chooses without one.
        demo.env("ALSA_CONFIG_PATH", "config/alsa-file-paced.conf");
    }
    let mut demo = demo.spawn().unwrap();
    let group = demo.id();

    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("airing ended") || demo.try_wait().unwrap().is_some() {
            break text;
        }
        if start.elapsed() > Duration::from_secs(600) {
            end_group(group, &mut demo);
            panic!("the demo aired nothing in 10 minutes:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    end_group(group, &mut demo);

    if !has_sound_card() {
        assert!(text.contains("demo: no sound card here"), "the demo did not say which device it chose:\n{text}");
    }
    assert!(text.contains("ALSA_CONFIG_PATH=config/alsa-file-paced.conf"), "the log does not name the device:\n{text}");
    assert!(text.contains("page=http://"), "the log does not give the page's address:\n{text}");
    let ended = text.lines().find(|l| l.contains("airing ended")).unwrap_or_else(|| panic!("no airing:\n{text}"));
    assert!(ended.contains("status=\"completed\"") || ended.contains("status=completed"), "{ended}\n{text}");
    let aired = std::fs::metadata(copy.path().join("data/air.raw")).map(|m| m.len()).unwrap_or(0);
    assert!(aired > 48_000 * 4, "data/air.raw holds {aired} bytes after a completed airing");
}
