//! Fault tests on the real binary: a disk that fills during an upload, the audio device lost
//! mid-airing, and a long series of kill -9 across airings on the paced device. Each ends by
//! checking the proof log still verifies and the station carries on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::{Device, Station, fixture, http_upload, of_kind, station, verify};

const TONE: &str = "cbr128_stereo_44k.mp3"; // 2.000 s

/// A size-limited tmpfs mounted over a directory for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` where this process may not mount (not root, or no CAP_SYS_ADMIN in a container).
    fn mount(dir: &Path, size_mib: u32) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn operator_token(station: &Station) -> String {
    let token = station.loa(&["token", "create", "--role", "operator", "--label", "test"]);
    assert_eq!(token.code, 0, "{}", token.stderr);
    token.stdout.trim().to_owned()
}

#[tokio::test]
async fn a_disk_that_fills_during_an_upload_gives_507_and_loses_nothing() {
    let station = station(30, 5, &[]);
    let config = std::fs::read_to_string(station.config_path()).unwrap();
    std::fs::write(station.config_path(), format!("{config}[clips]\nkeep_free_mib = 0\n")).unwrap();
    let Some(_disk) = Tmpfs::mount(&station.data_dir(), 8) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)");
        return;
    };
    let token = operator_token(&station);
    let daemon = station.start(Device::Unpaced);
    let base = daemon.http_base();

    // 12 MiB sent without a length (chunked), so only the disk itself can stop it.
    let source = station.dir.path().join("big.bin");
    std::fs::write(&source, vec![0x55u8; 12 << 20]).unwrap();
    let part = reqwest::multipart::Part::stream(reqwest::Body::from(tokio::fs::File::open(&source).await.unwrap()))
        .file_name("big.mp3");
    let form = reqwest::multipart::Form::new().text("title", "Quá lớn").text("topic", "cchc").part("file", part);
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/clips"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 507);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "disk_full", "{body}");

    let staging: Vec<_> = std::fs::read_dir(station.data_dir().join("staging")).unwrap().collect();
    assert!(staging.is_empty(), "no partial file may stay: {staging:?}");
    assert!(std::fs::read_dir(station.data_dir().join("clips")).unwrap().next().is_none());

    // The space came back with the refused file, and the station carries on.
    assert_eq!(http_upload(&base, &token, &fixture(TONE)), "201");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    daemon.stop();
    let events = station.events();
    assert_eq!(of_kind(&events, "clip_added", None).len(), 1, "only the good upload is recorded");
    assert_eq!(verify(&station).code, 0, "{}", verify(&station).stderr);
}

#[test]
fn loa_run_refuses_a_damaged_store_and_leaves_it_as_found() {
    let station = station(30, 5, &[]);
    for i in 0..40 {
        let run = station.loa(&["token", "create", "--role", "district", "--label", &format!("{i:0>300}")]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let database = station.data_dir().join("loa.sqlite");
    let mut bytes = std::fs::read(&database).unwrap();
    assert!(bytes.len() >= 8 * 4096, "several pages: {}", bytes.len());
    let end = bytes.len() - 4096;
    bytes[4 * 4096..end].fill(0xA5);
    std::fs::write(&database, &bytes).unwrap();

    let run = station.loa(&["run"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let message = run.error_line();
    assert!(message.contains("loa.sqlite is damaged") && message.contains("loa backup"), "{message}");
    assert_eq!(std::fs::read(&database).unwrap(), bytes, "not repaired, not replaced, not appended to");
}

#[test]
fn a_backup_taken_on_air_restores_to_a_station_whose_log_verifies() {
    let station = station(4, 2, &[TONE]);
    let daemon = station.start(Device::Paced);
    station.wait_for("an airing on the paced device", Duration::from_secs(30), |e| {
        of_kind(e, "airing_started", None).len() > of_kind(e, "airing_ended", None).len()
    });
    let copy = station.dir.path().join("backup.sqlite");
    let run = station.loa(&["backup", copy.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("integrity ok") && run.stdout.contains("station.key"), "{}", run.stdout);
    let again = station.loa(&["backup", copy.to_str().unwrap()]);
    assert_eq!(again.code, 1, "an existing file is never overwritten");
    assert!(again.error_line().contains("does not overwrite"), "{}", again.stderr);
    daemon.stop();

    // Restore: the copy plus the key, as the README says.
    let restored = Station::with_config(&std::fs::read_to_string(station.config_path()).unwrap());
    std::fs::create_dir_all(restored.data_dir()).unwrap();
    std::fs::copy(&copy, restored.data_dir().join("loa.sqlite")).unwrap();
    std::fs::copy(station.data_dir().join("station.key"), restored.data_dir().join("station.key")).unwrap();
    let events = restored.events();
    assert!(!of_kind(&events, "airing_started", None).is_empty(), "the copy holds the airing in progress");
    assert_eq!(verify(&restored).code, 0, "{}", verify(&restored).stderr);
}
