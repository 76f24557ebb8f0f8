//! Running under systemd: the unit's contract, and the notify protocol spoken by the real daemon.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::helpers::{Device, Station, of_kind};

#[test]
fn the_unit_names_the_installed_paths_and_the_service_contract() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/loa.service")).unwrap();
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/loa --config /etc/loa/station.toml run",
        "Restart=always",
        "User=loa",
        "SupplementaryGroups=audio",
        "StateDirectory=loa",
        "ConfigurationDirectory=loa",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "DeviceAllow=char-alsa rw",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ] {
        assert!(has(line), "loa.service lacks `{line}`");
    }
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")), "loa.service has no watchdog");
    assert!(!has("PrivateDevices=yes"), "PrivateDevices would hide /dev/snd");
}

/// Datagrams the daemon sends to its notify socket, until `done` holds or `limit` passes.
fn collect(socket: &UnixDatagram, limit: Duration, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let start = Instant::now();
    let mut messages = Vec::new();
    let mut buffer = [0u8; 4096];
    while start.elapsed() < limit && !done(&messages) {
        if let Ok(n) = socket.recv(&mut buffer) {
            messages.extend(String::from_utf8_lossy(&buffer[..n]).lines().map(str::to_owned));
        }
    }
    messages
}

#[test]
fn the_daemon_says_ready_after_recovery_and_feeds_the_watchdog() {
    let station = Station::with_config(
        "[station]\nid = \"s\"\nname = \"Đài\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[slot]]\nname = \"nam-moi\"\ncron = \"0 0 0 1 1 *\"\nmax_minutes = 1\n",
    );
    let path = station.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let notify = path.to_str().unwrap();
    let daemon = station.start_with_env(Device::Unpaced, &[("NOTIFY_SOCKET", notify), ("WATCHDOG_USEC", "2000000")]);

    let messages = collect(&socket, Duration::from_secs(30), |m| m.iter().any(|l| l == "READY=1"));
    assert!(messages.iter().any(|l| l == "READY=1"), "no READY: {messages:?}");
    let events = station.events();
    assert!(!of_kind(&events, "station_started", None).is_empty(), "READY before station_started was recorded");

    // Pings at a quarter of the 2 s watchdog period while all is well.
    let pings = collect(&socket, Duration::from_secs(10), |m| m.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3);
    assert!(pings.iter().filter(|l| *l == "WATCHDOG=1").count() >= 3, "too few watchdog pings: {pings:?}");

    daemon.stop();
    let rest = collect(&socket, Duration::from_secs(2), |m| m.iter().any(|l| l == "STOPPING=1"));
    assert!(rest.iter().any(|l| l == "STOPPING=1"), "no STOPPING: {rest:?}");
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let analyze = std::process::Command::new("systemd-analyze").arg("--version").output();
    assert!(analyze.is_ok(), "this check needs systemd-analyze (apt-get install systemd)");
    // The installed path does not exist on a build machine: point ExecStart at the built binary.
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/loa.service")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("loa.service");
    std::fs::write(&copy, unit.replace("/usr/bin/loa", env!("CARGO_BIN_EXE_loa"))).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !complaints.contains("loa.service"), "systemd-analyze verify: {complaints}");
}

/// Under systemd, logs go to journald as structured entries. journald's socket path is fixed,
/// so where no journald runs (CI containers) the test listens there itself.
#[test]
fn under_systemd_logs_go_to_journald_and_elsewhere_to_stderr() {
    let journal = std::path::Path::new("/run/systemd/journal/socket");
    let free = !journal.exists();
    if !crate::helpers::require(free, "journald's socket path free to listen on", "a machine where no journald runs") {
        return;
    }
    std::fs::create_dir_all(journal.parent().unwrap()).unwrap();
    let socket = UnixDatagram::bind(journal).unwrap();
    struct Remove<'a>(&'a std::path::Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _remove = Remove(journal);
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();

    let station = Station::with_config(
        "[station]\nid = \"s\"\nname = \"Đài\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
    );
    let daemon = station.start_with_env(Device::Unpaced, &[("JOURNAL_STREAM", "8:12345")]);
    let mut entries: Vec<Vec<(String, String)>> = Vec::new();
    let mut buffer = vec![0u8; 1 << 16];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30)
        && !entries.iter().any(|e| field(e, "MESSAGE") == Some("station on air"))
    {
        if let Ok(n) = socket.recv(&mut buffer) {
            entries.push(journal_fields(&buffer[..n]));
        }
    }
    daemon.stop();
    let listening = entries.iter().find(|e| field(e, "MESSAGE") == Some("HTTP API listening")).expect("logged");
    assert_eq!(field(listening, "SYSLOG_IDENTIFIER"), Some("loa"));
    assert_eq!(field(listening, "PRIORITY"), Some("5"), "info is logged at notice");
    assert!(field(listening, "F_ADDRESS").is_some_and(|a| a.starts_with("127.0.0.1:")), "fields stay fields");
    let stderr = std::fs::read_to_string(station.dir.path().join("daemon.log")).unwrap();
    assert!(!stderr.contains("HTTP API listening"), "not twice: {stderr}");
}

fn field<'a>(entry: &'a [(String, String)], name: &str) -> Option<&'a str> {
    entry.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// journald's native protocol: `NAME=value\n`, or `NAME\n` + u64 LE length + value + `\n`.
fn journal_fields(mut bytes: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'=') {
        let name = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let value;
        if bytes[end] == b'=' {
            let stop = bytes[end..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |i| end + i);
            value = bytes[end + 1..stop].to_vec();
            bytes = &bytes[(stop + 1).min(bytes.len())..];
        } else {
            let len = u64::from_le_bytes(bytes[end + 1..end + 9].try_into().unwrap()) as usize;
            value = bytes[end + 9..end + 9 + len].to_vec();
            bytes = &bytes[end + 10 + len..];
        }
        fields.push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    fields
}
