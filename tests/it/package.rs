//! The Debian package, built by `cargo deb` from the test build's binary and inspected: the
//! files land where the unit expects them, the config is a conffile for /var/lib/loa, the
//! maintainer scripts make the user before systemd starts the service, and the packaged
//! binary starts on the packaged config and says READY. (Installing it for real needs a
//! machine with systemd as PID 1; CI containers have none.)

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn cargo_deb_available() -> bool {
    let found = Command::new("cargo").args(["deb", "--version"]).output().is_ok_and(|o| o.status.success());
    crate::helpers::require(found, "cargo-deb", "cargo install cargo-deb --locked")
}

#[test]
fn the_deb_installs_the_binary_unit_and_conffile_and_makes_the_user_before_starting() {
    if !cargo_deb_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("loa.deb");
    // The test build's binary (`--profile dev --no-build`): the same package layout and scripts
    // as the release, without a second full build inside the test run.
    let built = Command::new("cargo")
        .args(["deb", "--no-build", "--profile", "dev", "--output"])
        .arg(&deb)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(built.status.success(), "cargo deb: {}", String::from_utf8_lossy(&built.stderr));

    let field = |name: &str| dpkg_field(&deb, name);
    assert_eq!(field("Package"), "loa");
    let depends = field("Depends");
    assert!(depends.contains("libasound2") && depends.contains("adduser"), "{depends}");

    let root = dir.path().join("root");
    assert!(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root).status().unwrap().success());
    let control = dir.path().join("control");
    assert!(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control).status().unwrap().success());
    for file in
        ["usr/bin/loa", "usr/lib/systemd/system/loa.service", "etc/loa/station.toml", "usr/share/doc/loa/README.md"]
    {
        assert!(root.join(file).is_file(), "the package lacks /{file}");
    }
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/loa.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/loa --config /etc/loa/station.toml run"));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/loa/station.toml", "the config survives upgrades as a conffile");

    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(Command::new("sh").arg("-n").arg(control.join("postinst")).status().unwrap().success(), "postinst parses");
    let at = |needle: &str| postinst.find(needle).unwrap_or_else(|| panic!("postinst lacks `{needle}`:\n{postinst}"));
    assert!(at("adduser --system --group") < at("deb-systemd-helper enable loa.service"), "user before enable");
    // Enabled, never started by the package: the config has no station.id yet.
    assert!(
        !postinst.contains("deb-systemd-invoke start") && !postinst.contains("deb-systemd-invoke $_dh_action"),
        "{postinst}"
    );
    assert!(at("adduser --system --group") < at("chown root:loa /etc/loa/station.toml"), "the group exists first");
    let listing = Command::new("dpkg-deb").arg("-c").arg(&deb).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let config_line = listing.lines().find(|l| l.ends_with("./etc/loa/station.toml")).unwrap_or_default();
    assert!(config_line.starts_with("-rw-r-----"), "the config may hold a token: not world-readable: {config_line}");
    let postrm = std::fs::read_to_string(control.join("postrm")).unwrap();
    assert!(!postrm.contains("rm -rf /var/lib/loa"), "the proof log is never purged");

    // The packaged binary on the packaged config, as the unit runs it: refused (exit 2, which the
    // unit does not restart on) until the admin writes the station's id, then on air.
    let binary = root.join("usr/bin/loa");
    let config = root.join("etc/loa/station.toml");
    assert!(unit.contains("RestartPreventExitStatus=2"), "a config error must not restart in a loop");
    for verb in ["check-config", "run"] {
        let refused = Command::new(&binary).arg("--config").arg(&config).arg(verb).output().unwrap();
        let said = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{verb}: {said}");
        assert!(said.contains("station.id") && said.contains("off air"), "{verb}: {said}");
    }
    let text = std::fs::read_to_string(&config).unwrap().replacen("id = \"\"", "id = \"binh-an\"", 1);
    let config = dir.path().join("station-with-id.toml");
    std::fs::write(&config, text).unwrap();
    let check = Command::new(&binary).arg("--config").arg(&config).arg("check-config").output().unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(report.contains("data_dir  /var/lib/loa"), "{report}");
    assert_ready(&binary, &config, dir.path());
}

/// Starts `binary` on a copy of `config` whose data_dir and port are the test's, and waits
/// for READY=1 on a notify socket, as systemd would.
fn assert_ready(binary: &Path, config: &Path, dir: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let data = dir.join("var-lib-loa");
    let text = text
        .replace("data_dir = \"/var/lib/loa\"", &format!("data_dir = \"{}\"", data.display()))
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"");
    assert!(text.contains(&data.display().to_string()), "the packaged config sets data_dir = \"/var/lib/loa\"");
    let trial = dir.join("station.toml");
    std::fs::write(&trial, text).unwrap();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let alsa = dir.join("alsa.conf");
    std::fs::write(&alsa, "pcm.!default { type null }\n").unwrap();
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&trial)
        .arg("run")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("ALSA_CONFIG_PATH", &alsa)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut ready = false;
    let mut buffer = [0u8; 4096];
    while !ready && start.elapsed() < Duration::from_secs(30) {
        if let Ok(n) = socket.recv(&mut buffer) {
            ready = String::from_utf8_lossy(&buffer[..n]).lines().any(|l| l == "READY=1");
        }
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(ready, "the packaged daemon never said READY");
    assert!(status.success(), "it stops cleanly on SIGTERM: {status}");
}

/// The packages `.ci/cross` builds for the boxes wards buy (`.ci/run` builds them before the
/// tests), each unpacked and its binary run under qemu-user: it checks the demo config, adds a
/// corpus clip and airs it in one slot to ALSA's file device, exports its log, and the host's
/// `loa verify` and the Python verifier accept it; what reached the device is, byte for byte,
/// what the host build sends for the same clip. (Emulation says nothing about speed: nothing
/// here is timed but the slot's own instant.)
#[test]
fn the_arm_packages_air_a_clip_under_emulation_exactly_as_the_host_build_does() {
    let version = env!("CARGO_PKG_VERSION");
    let builds: Vec<(&str, PathBuf, &str)> = [("arm64", "qemu-aarch64-static"), ("armhf", "qemu-arm-static")]
        .into_iter()
        .map(|(arch, qemu)| {
            let deb = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/cross/loa_{version}_{arch}.deb"));
            (arch, deb, qemu)
        })
        .collect();
    for (arch, deb, qemu) in &builds {
        let present = deb.exists() && Command::new(qemu).arg("--version").output().is_ok();
        let how = format!(".ci/cross {arch} (`.ci/run` runs it) and apt-get install qemu-user-static");
        if !crate::helpers::require(present, &format!("the {arch} package and {qemu}"), &how) {
            return;
        }
    }
    let unpacked = tempfile::tempdir().unwrap();
    let mut programs = vec![("amd64 (this build)".to_owned(), vec![env!("CARGO_BIN_EXE_loa").to_owned()])];
    for (arch, deb, qemu) in &builds {
        assert_eq!(dpkg_field(deb, "Architecture"), *arch);
        let root = unpacked.path().join(arch);
        assert!(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root).status().unwrap().success());
        let binary = root.join("usr/bin/loa").to_string_lossy().into_owned();
        programs.push((arch.to_string(), vec![qemu.to_string(), binary]));
    }
    // All three at once: one slot instant, 40 s ahead (an emulated start is slow).
    let slot = chrono::Utc::now() + chrono::Duration::seconds(40);
    let aired: Vec<(String, Vec<u8>)> = std::thread::scope(|scope| {
        let running: Vec<_> = programs
            .iter()
            .map(|(name, program)| (name.clone(), scope.spawn(move || air_one_slot(program, slot))))
            .collect();
        running.into_iter().map(|(name, thread)| (name, thread.join().unwrap())).collect()
    });
    // The unpaced device goes on taking silence while the stream stays open after the clip:
    // that tail's length is timing, not audio.
    let aired: Vec<(String, &[u8])> =
        aired.iter().map(|(name, capture)| (name.clone(), without_silent_tail(capture))).collect();
    let (host, expected) = &aired[0];
    assert!(expected.len() > 100_000, "{host} aired {} bytes", expected.len());
    for (name, capture) in &aired[1..] {
        let first_difference = capture.iter().zip(expected.iter()).position(|(a, b)| a != b);
        assert!(
            capture == expected,
            "{name} aired {} bytes, {host} {}; first difference at byte {first_difference:?}",
            capture.len(),
            expected.len()
        );
    }
}

/// The capture up to its last 16-bit sample that is not zero.
fn without_silent_tail(capture: &[u8]) -> &[u8] {
    let samples = capture.len() / 2;
    let end = (0..samples).rev().find(|i| capture[2 * i] != 0 || capture[2 * i + 1] != 0).map_or(0, |i| 2 * (i + 1));
    &capture[..end]
}

fn dpkg_field(deb: &Path, name: &str) -> String {
    let out = Command::new("dpkg-deb").args(["--field"]).arg(deb).arg(name).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Under `program`: `check-config` of the demo config, `clip add` of a corpus clip, `loa run`
/// until the slot at `slot` has aired it, and the export verified. Returns what the device took.
fn air_one_slot(program: &[String], slot: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    use crate::helpers::{Device, Station, of_kind, verify};
    let cron = slot.format("%S %M %H * * *").to_string();
    let config = format!(
        "[station]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\ntimezone = \"UTC\"\n\
         data_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[slot]]\nname = \"mot-lan\"\ncron = \"{cron}\"\nmax_minutes = 1\npeak = true\ngrace_seconds = 30\n"
    );
    let program: Vec<&str> = program.iter().map(String::as_str).collect();
    let station = Station::with_config(&config).run_by(&program);
    // (check-config reads the demo's clips beside it and writes nothing.)
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");
    let mut check = Command::new(program[0]);
    let checked = check.args(&program[1..]).arg("--config").arg(demo).arg("check-config").output().unwrap();
    assert!(checked.status.success(), "{program:?} check-config: {}", String::from_utf8_lossy(&checked.stderr));
    let added = station.add(&Path::new(crate::helpers::FIXTURES).join("cbr128_stereo_44k.mp3"), &[]);
    assert_eq!(added.code, 0, "{program:?} clip add: {}", added.stderr);
    // Under an emulator the kernel cannot run the binary itself: its device process goes
    // through the same emulator.
    let worker = program.join(" ");
    let daemon = station.start_with_env(Device::Unpaced, &[("LOA_AUDIO_WORKER", &worker)]);
    station.wait_for("the slot aired", Duration::from_secs(120), |e| {
        !of_kind(e, "airing_ended", Some("completed")).is_empty()
    });
    daemon.stop();
    let verified = verify(&station);
    assert_eq!(verified.code, 0, "{program:?}: {}{}", verified.stdout, verified.stderr);
    std::fs::read(station.air_path()).unwrap()
}
