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

/// The system calls `loa.service` lets through, each set expanded by systemd-analyze itself.
fn allowed_system_calls(unit: &str) -> std::collections::BTreeSet<String> {
    fn expand(set: &str, into: &mut std::collections::BTreeSet<String>) {
        if !set.starts_with('@') {
            into.insert(set.to_owned());
            return;
        }
        let out = std::process::Command::new("systemd-analyze").args(["syscall-filter", set]).output().unwrap();
        assert!(out.status.success(), "systemd-analyze syscall-filter {set}");
        for name in String::from_utf8_lossy(&out.stdout).lines().skip(1).map(str::trim) {
            match name {
                "" => {}
                _ if name.starts_with('#') => {}
                _ => expand(name, into),
            }
        }
    }
    // In order, as systemd applies them: an allow list, then `~` sets taken out, then calls put back.
    let mut allowed = std::collections::BTreeSet::new();
    // Protect* settings refuse their calls after every SystemCallFilter line.
    let implied = [
        ("ProtectClock=yes", "~@clock"),
        ("ProtectKernelModules=yes", "~@module"),
        ("ProtectKernelLogs=yes", "~syslog"),
    ];
    let filters = unit.lines().filter_map(|l| l.strip_prefix("SystemCallFilter="));
    let protections = implied.iter().filter(|(line, _)| unit.lines().any(|l| l.trim() == *line)).map(|(_, set)| *set);
    for value in filters.chain(protections) {
        let mut calls = std::collections::BTreeSet::new();
        let sets = value.strip_prefix('~');
        sets.unwrap_or(value).split_whitespace().for_each(|set| expand(set, &mut calls));
        match sets {
            Some(_) => allowed.retain(|call| !calls.contains(call)),
            None => allowed.extend(calls),
        }
    }
    allowed
}

/// No systemd runs as PID 1 in CI, so the hardened unit cannot be started there. What its
/// system call filter would break can still be known: the daemon runs under strace while it
/// airs a slot, answers HTTP and takes an upload, and every call it makes must pass the filter.
/// A refused call would fail with EPERM (the unit's SystemCallErrorNumber) on the Pi.
#[test]
fn the_hardened_unit_is_exposed_at_most_2_and_its_filter_admits_every_call_the_daemon_makes() {
    assert!(std::process::Command::new("strace").arg("-V").output().is_ok(), "needs strace (apt-get install strace)");
    let unit_path = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/loa.service");
    let security =
        std::process::Command::new("systemd-analyze").args(["security", "--offline=true", unit_path]).output().unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for loa.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|figure| figure.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in:\n{report}"));
    assert!(exposure <= 2.0, "systemd-analyze security: exposure {exposure} > 2.0\n{report}");

    let unit = std::fs::read_to_string(unit_path).unwrap();
    let allowed = allowed_system_calls(&unit);
    assert!(allowed.contains("write") && !allowed.contains("reboot"), "the filter expands as systemd's");

    let station = crate::helpers::station(2, 1, &["cbr128_stereo_44k.mp3"]);
    let trace = station.dir.path().join("trace");
    let daemon = station.start_wrapped(Device::Unpaced, &["strace", "-f", "-qq", "-o", trace.to_str().unwrap()]);
    let base = daemon.http_base();
    // loa is strace's child: ended here, also when an assertion below fails first.
    let tracer = daemon.pid();
    let children = std::fs::read_to_string(format!("/proc/{tracer}/task/{tracer}/children")).unwrap();
    let loa: i32 = children.split_whitespace().next().expect("loa under strace").parse().unwrap();
    struct EndOnDrop(i32);
    impl Drop for EndOnDrop {
        fn drop(&mut self) {
            // SAFETY: signalling the test's own grandchild, still running (disarmed once stopped).
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let end = EndOnDrop(loa);
    station.wait_for("a completed airing", Duration::from_secs(60), |e| {
        !of_kind(e, "airing_ended", Some("completed")).is_empty()
    });
    let token = station.token("operator");
    let upload = crate::helpers::http_upload(&base, &token, &crate::helpers::fixture("vbr_stereo_44k.mp3"));
    assert_eq!(upload, "201", "the upload is taken");
    // Stop loa itself (strace's child): strace then exits with its status.
    // SAFETY: signalling the test's own grandchild.
    assert_eq!(unsafe { libc::kill(loa, libc::SIGTERM) }, 0);
    daemon.stop();
    std::mem::forget(end); // reaped: its pid may be another process's now

    let calls: std::collections::BTreeSet<String> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let call = line.split_once(' ')?.1.trim_start();
            let name = &call[..call.find('(')?];
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_').then(|| name.to_owned())
        })
        .collect();
    assert!(calls.contains("openat") && calls.len() > 20, "strace saw the daemon: {calls:?}");
    // SQLite gives its journal, WAL and shm files the database's owner (fchown) only when it runs
    // as root, as tests may; the unit runs it as `loa`.
    // SAFETY: geteuid cannot fail.
    let as_root = unsafe { libc::geteuid() } == 0;
    let refused: Vec<&String> = calls.iter().filter(|c| !(allowed.contains(*c) || as_root && *c == "fchown")).collect();
    assert!(refused.is_empty(), "loa.service's SystemCallFilter refuses calls the daemon makes: {refused:?}");
}
