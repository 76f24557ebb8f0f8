//! The Debian package, built by `cargo deb` from the test build's binary and inspected: the
//! files land where the unit expects them, the config is a conffile for /var/lib/loa, the
//! maintainer scripts make the user before systemd starts the service, and the packaged
//! binary starts on the packaged config and says READY. (Installing it for real needs a
//! machine with systemd as PID 1; CI containers have none.)

use std::os::unix::net::UnixDatagram;
use std::path::Path;
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

    let field = |name: &str| {
        let out = Command::new("dpkg-deb").args(["--field"]).arg(&deb).arg(name).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
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
