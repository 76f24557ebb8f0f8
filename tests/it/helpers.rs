//! A throw-away station on disk and the real `loa` binary to drive it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Whether what a test needs from outside (a tool, a capability) is here. Without it the test
/// says so and passes on a developer's machine; under CI (`CI` set, as `.ci/run` does) its
/// absence fails the test, so CI never passes by skipping.
#[track_caller]
pub fn require(present: bool, what: &str, how: &str) -> bool {
    if !present {
        assert!(std::env::var_os("CI").is_none(), "CI must run this test: it needs {what} ({how})");
        eprintln!("skipped: needs {what} ({how})");
    }
    present
}

/// An HTTP client for tests (the process's TLS provider installed first, as `loa` does).
pub fn http_client() -> reqwest::Client {
    loa::ops::tls::install_provider();
    reqwest::Client::new()
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A station in a temporary directory: `station.toml` and its `data/`.
pub struct Station {
    pub dir: tempfile::TempDir,
    /// The command that is `loa` for this station: the test build, or another build under an
    /// emulator (`qemu-aarch64-static …/usr/bin/loa`).
    program: Vec<String>,
}

pub const MINIMAL_CONFIG: &str = r#"
[station]
id = "test-station"
name = "Đài truyền thanh phường Thử Nghiệm"
data_dir = "data"

[[slot]]
name = "sang"
cron = "0 30 5 * * Mon-Sun"
max_minutes = 15
peak = true
"#;

impl Station {
    pub fn new() -> Station {
        Station::with_config(MINIMAL_CONFIG)
    }

    pub fn with_config(config: &str) -> Station {
        Station::in_dir(tempfile::tempdir().expect("temp dir"), config)
    }

    pub fn in_dir(dir: tempfile::TempDir, config: &str) -> Station {
        std::fs::write(dir.path().join("station.toml"), config).expect("write config");
        Station { dir, program: vec![env!("CARGO_BIN_EXE_loa").to_owned()] }
    }

    /// This station, run by another build of `loa` (its command and arguments).
    pub fn run_by(mut self, program: &[&str]) -> Station {
        self.program = program.iter().map(|s| s.to_string()).collect();
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.program[0]);
        command.args(&self.program[1..]);
        command
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("station.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes `bytes` to a file outside the data dir (where an operator's upload comes from).
    pub fn input(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let inbox = self.dir.path().join("inbox");
        std::fs::create_dir_all(&inbox).expect("inbox");
        let path = inbox.join(name);
        std::fs::write(&path, bytes).expect("write input");
        path
    }

    pub fn loa(&self, args: &[&str]) -> Run {
        let config = self.config_path();
        Run::from(self.command().arg("--config").arg(config).args(args).output().expect("run loa"))
    }

    /// `loa clip add FILE` with `extra` flags; `--title "Bản tin CCHC"` and `--topic cchc`
    /// unless `extra` gives them.
    pub fn add(&self, file: &Path, extra: &[&str]) -> Run {
        let mut args = vec!["clip", "add", file.to_str().expect("utf-8 path")];
        for (flag, default) in [("--title", "Bản tin CCHC"), ("--topic", "cchc")] {
            if !extra.contains(&flag) {
                args.extend([flag, default]);
            }
        }
        args.extend_from_slice(extra);
        self.loa(&args)
    }

    pub fn clip_list(&self) -> Vec<serde_json::Value> {
        let run = self.loa(&["clip", "list", "--json"]);
        assert_eq!(run.code, 0, "clip list: {}", run.stderr);
        run.json()["clips"].as_array().expect("clips array").clone()
    }

    /// Audio the station holds or is staging: every file under `clips/` and `staging/`.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        ["clips", "staging"]
            .iter()
            .filter_map(|dir| std::fs::read_dir(self.data_dir().join(dir)).ok())
            .flat_map(|entries| entries.flatten().map(|entry| entry.path()))
            .collect()
    }
}

/// Runs the real `loa` binary with exactly these arguments.
pub fn loa(args: &[&str]) -> Run {
    Run::from(Command::new(env!("CARGO_BIN_EXE_loa")).args(args).output().expect("run loa"))
}

/// `loa` with these arguments and extra environment variables (a stepped clock).
pub fn loa_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loa"));
    command.args(args).envs(env.iter().copied());
    Run::from(command.output().expect("run loa"))
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().expect("exited, not killed"),
            stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
        }
    }
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// The single `error:` line a failing command must print.
    pub fn error_line(&self) -> &str {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected exactly one stderr line, got: {}", self.stderr);
        assert!(lines[0].starts_with("error: "), "stderr line must start with `error: `: {}", lines[0]);
        lines[0]
    }
}

/// How the test's ALSA `default` device behaves.
#[derive(Debug, Clone, Copy)]
pub enum Device {
    /// The `file` plugin on a `null` slave: as fast as the CPU allows, at whatever format the
    /// player opens it (the clip's own rate and channels, 16-bit). A player that believed it
    /// would record such airings as heard in real time.
    Unpaced,
    /// ALSA's `plug` converting to 48 kHz stereo 16-bit, then the same file written through
    /// `pv -L` at that byte rate: real time, whatever the clip's format.
    Paced,
    /// The unpaced device written through `pv -L` at this many bytes per second: real time
    /// for clips whose 16-bit signal has that byte rate, with no `plug` in between (alsa-lib's
    /// `plug` aborts the process on an assertion when the file behind it fails mid-write).
    PacedNative { bytes_per_second: u32 },
    /// An ALSA config with no usable `default` PCM.
    Missing,
}

/// The paced device's air signal: 48 kHz stereo, 16-bit little-endian.
pub const AIR_RATE: u32 = 48_000;
pub const AIR_CHANNELS: usize = 2;

impl Station {
    pub fn air_path(&self) -> PathBuf {
        self.dir.path().join("air.raw")
    }

    /// Puts another device behind the station's ALSA config (each slot's device process reads
    /// it afresh): a sound card plugged in, say.
    pub fn set_device(&self, device: Device) {
        self.alsa_config(device);
    }

    fn alsa_config(&self, device: Device) -> PathBuf {
        let air = self.air_path();
        let pcm = match device {
            Device::Unpaced => format!(
                "pcm.!default {{ type file; slave {{ pcm {{ type null }} }}; file \"{}\"; format \"raw\" }}\n",
                air.display()
            ),
            Device::Paced => {
                assert!(
                    Command::new("pv").arg("--version").output().is_ok(),
                    "the paced ALSA test device needs `pv` (apt-get install pv)"
                );
                let bytes_per_second = AIR_RATE as usize * AIR_CHANNELS * 2;
                format!(
                    "pcm.!default {{ type plug; slave {{ pcm \"air\"; format S16_LE; rate {AIR_RATE}; channels {AIR_CHANNELS} }} }}\n\
                     pcm.air {{ type file; slave {{ pcm {{ type null }} }}; file \"|pv -q -L {bytes_per_second} > {}\"; format \"raw\" }}\n",
                    air.display()
                )
            }
            Device::PacedNative { bytes_per_second } => format!(
                "pcm.!default {{ type file; slave {{ pcm {{ type null }} }}; file \"|pv -q -L {bytes_per_second} > {}\"; format \"raw\" }}\n",
                air.display()
            ),
            Device::Missing => "pcm.!default { type hw; card 99 }\n".to_owned(),
        };
        let path = self.dir.path().join("alsa.conf");
        std::fs::write(&path, pcm).expect("write ALSA config");
        path
    }

    /// Starts `loa run` on this station with the given audio device.
    pub fn start(&self, device: Device) -> Daemon {
        self.start_with_env(device, &[])
    }

    /// `start`, with extra environment variables.
    pub fn start_with_env(&self, device: Device, env: &[(&str, &str)]) -> Daemon {
        self.spawn(self.run_command(device, env))
    }

    /// `loa run` as `ulimit -n LIMIT` would start it (systemd's default is 1024).
    pub fn start_with_fd_limit(&self, device: Device, limit: u64) -> Daemon {
        use std::os::unix::process::CommandExt;
        let mut command = self.run_command(device, &[]);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        self.spawn(command)
    }

    fn run_command(&self, device: Device, env: &[(&str, &str)]) -> Command {
        let mut command = self.command();
        command
            .arg("--config")
            .arg(self.config_path())
            .arg("run")
            .env("ALSA_CONFIG_PATH", self.alsa_config(device))
            .env("LOA_LOG", "debug,symphonia_core=error,symphonia_bundle_mp3=error")
            .envs(env.iter().copied());
        command
    }

    /// `loa run` started by `wrapper` (e.g. `strace -f -o FILE`), which runs it as its child.
    pub fn start_wrapped(&self, device: Device, wrapper: &[&str]) -> Daemon {
        let direct = self.run_command(device, &[]);
        let mut command = Command::new(wrapper[0]);
        command.args(&wrapper[1..]).arg(direct.get_program()).args(direct.get_args());
        command.envs(direct.get_envs().filter_map(|(k, v)| Some((k, v?))));
        self.spawn(command)
    }

    fn spawn(&self, mut command: Command) -> Daemon {
        let log = std::fs::File::create(self.dir.path().join("daemon.log")).expect("daemon log");
        let child = command.stdout(log.try_clone().expect("log handle")).stderr(log).spawn().expect("start loa run");
        Daemon { child: Some(child), log: self.dir.path().join("daemon.log") }
    }

    /// The proof log as `loa airtime --format jsonl` exports it.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let run = self.loa(&["airtime", "--format", "jsonl"]);
        assert_eq!(run.code, 0, "airtime: {}", run.stderr);
        run.stdout.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect()
    }

    /// A new API token of `role` (`operator` or `district`).
    pub fn token(&self, role: &str) -> String {
        let run = self.loa(&["token", "create", "--role", role, "--label", "test"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout.trim().to_owned()
    }

    pub fn public_key(&self) -> String {
        let run = self.loa(&["station", "--json"]);
        assert_eq!(run.code, 0, "station: {}", run.stderr);
        run.json()["public_key"].as_str().expect("public_key").to_owned()
    }

    /// Polls the proof log until `done` holds; panics after `limit` with the log and daemon output.
    pub fn wait_for(
        &self,
        what: &str,
        limit: std::time::Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let start = std::time::Instant::now();
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            if start.elapsed() > limit {
                let log = std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default();
                panic!("timed out waiting for {what}\nevents: {events:#?}\ndaemon log:\n{log}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Events of `kind` (and `status`, when given).
pub fn of_kind<'a>(events: &'a [serde_json::Value], kind: &str, status: Option<&str>) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["kind"] == kind && status.is_none_or(|s| e["status"] == s)).collect()
}

/// How many slot instants the log records missed (a `slot_missed` run counts each of its).
pub fn missed_instants(events: &[serde_json::Value]) -> u64 {
    of_kind(events, "slot_missed", None).iter().map(|e| e["count"].as_u64().unwrap_or(1)).sum()
}

/// Fails if a slot instant was handled twice: per slot, every airing's instant and every
/// missed run (`scheduled_at` … `last_scheduled_at`) must lie apart from all the others.
pub fn assert_each_instant_handled_once(events: &[serde_json::Value]) {
    let mut spans: Vec<(String, i64, i64)> = events
        .iter()
        .filter(|e| (e["kind"] == "airing_started" && e["slot"].is_string()) || e["kind"] == "slot_missed")
        .map(|e| {
            let first = e["scheduled_at"].as_i64().unwrap();
            (e["slot"].as_str().unwrap().to_owned(), first, e["last_scheduled_at"].as_i64().unwrap_or(first))
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        let [(slot, _, end), (next_slot, start, _)] = pair else { unreachable!() };
        assert!(slot != next_slot || start > end, "a slot instant was handled twice: {pair:?}");
    }
}

/// A running `loa run`; killed if the test forgets to stop it.
pub struct Daemon {
    child: Option<std::process::Child>,
    log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The API's base URL, from the daemon's "HTTP API listening" log line.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.listening("HTTP API listening"))
    }

    /// The HTTPS API's `host:port`.
    pub fn https_address(&self) -> String {
        self.listening("HTTPS API listening")
    }

    /// The address in the daemon's log line saying `what`.
    fn listening(&self, what: &str) -> String {
        for _ in 0..300 {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains(what)) {
                return line
                    .split("address=")
                    .nth(1)
                    .expect("address field")
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the daemon never said `{what}`:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    }

    /// SIGTERM, then wait: the daemon must exit 0 on its own.
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let status = self.child.take().expect("running").wait().expect("wait for loa");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "loa run exited with {status} after SIGTERM\n{log}");
    }

    /// kill -9: no chance to record anything.
    pub fn kill(mut self) {
        self.signal(libc::SIGKILL);
        self.child.take().expect("running").wait().expect("wait for loa");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The 16-bit samples an ALSA file device wrote, scaled to [-1, 1), once the device's writer
/// is done (`pv` goes on writing what it holds after the player closed the device).
pub fn air_samples(path: &Path) -> Vec<f32> {
    let size = || std::fs::metadata(path).map_or(0, |m| m.len());
    let mut last = size();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = size();
        if now == last {
            break;
        }
        last = now;
    }
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("air signal {}: {e}", path.display()));
    bytes.chunks_exact(2).map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0).collect()
}

/// Runs the real `loa` binary with `stdin` piped in.
pub fn loa_with_stdin(args: &[&str], stdin: &[u8]) -> Run {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run loa");
    // A run that refuses its arguments exits before it reads: a closed pipe is its answer.
    match child.stdin.take().expect("stdin").write_all(stdin) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => panic!("write stdin: {e}"),
        _ => {}
    }
    Run::from(child.wait_with_output().expect("wait for loa"))
}

// Daemon tests: a station whose one slot fires every few seconds, and plain-socket HTTP.

/// A station with one slot every `every` seconds and the given preloaded files.
pub fn station(every: u32, grace: u32, files: &[&str]) -> Station {
    let mut config = format!(
        "[station]\nid = \"phu-thuy\"\nname = \"Đài truyền thanh phường Phú Thủy\"\ndata_dir = \"data\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[slot]]\nname = \"nhanh\"\ncron = \"*/{every} * * * * Mon-Sun\"\nmax_minutes = 1\npeak = true\ngrace_seconds = {grace}\n"
    );
    for (i, file) in files.iter().enumerate() {
        let path = if file.starts_with('/') { file.to_string() } else { format!("{FIXTURES}/{file}") };
        config.push_str(&format!("[[preload]]\nfile = \"{path}\"\ntitle = \"Bản tin {i}\"\ntopic = \"cchc\"\n"));
    }
    Station::with_config(&config)
}

/// Sleeps until `ms` after the first airing's scheduled instant (its audio starts then).
pub fn sleep_into_first_airing(events: &[serde_json::Value], ms: i64) {
    let scheduled = of_kind(events, "airing_started", None)[0]["scheduled_at"].as_i64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    std::thread::sleep(Duration::from_millis((scheduled + ms - now).max(0) as u64));
}

/// Exports the proof log (by the station's own build) and runs this build's `loa verify` on it,
/// and the independent Python verifier (`tests/verify_proof.py`), which must agree.
pub fn verify(station: &Station) -> Run {
    let export = station.dir.path().join("export.jsonl");
    let run = station.loa(&["airtime", "--format", "jsonl"]);
    std::fs::write(&export, &run.stdout).unwrap();
    let key = station.public_key();
    let ours = loa(&["verify", export.to_str().unwrap(), "--public-key", &key]);
    let theirs = python_verify(&export, &["--public-key", &key]);
    assert_eq!(
        ours.code, theirs.code,
        "the verifiers disagree:\nloa: {}{}\npython: {}",
        ours.stdout, ours.stderr, theirs.stdout
    );
    ours
}

/// The Python with the test packages: `$LOA_PYTHON`, else the venv `.ci/setup` makes (where
/// `.ci/venv-path` says), else `python3`.
pub fn python() -> String {
    if let Ok(python) = std::env::var("LOA_PYTHON") {
        return python;
    }
    let venv = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/venv-path")).output().expect("run .ci/venv-path");
    let python = Path::new(String::from_utf8_lossy(&venv.stdout).trim()).join("bin/python");
    if python.exists() { python.to_string_lossy().into_owned() } else { "python3".to_owned() }
}

/// `tests/verify_proof.py FILE ARGS` under [`python`]; it needs the `rfc8785` and
/// `cryptography` packages.
pub fn python_verify(file: &Path, args: &[&str]) -> Run {
    let python = python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/verify_proof.py");
    let run = Run::from(Command::new(&python).arg(script).arg(file).args(args).output().expect("run python"));
    assert!(
        !run.stderr.contains("ModuleNotFoundError"),
        "the Python verifier needs rfc8785 and cryptography: run .ci/setup test (it makes the venv), or \
         set LOA_PYTHON to a python with them: {}",
        run.stderr
    );
    run
}

/// One HTTP/1.1 request over a plain socket (`connection: close`); returns the status code and
/// the body. A server that closes or resets the connection (e.g. TLS spoken to in plain HTTP,
/// which may happen before the request is even written) answered nothing: `("", "")`.
pub fn http_request(base: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (String, String) {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let _ = socket.write_all(head.as_bytes()).and_then(|()| socket.write_all(body));
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.split_whitespace().nth(1).unwrap_or_default().to_owned(), body.to_owned())
}

/// A GET; returns the status code and the body.
pub fn http_get_body(base: &str, path: &str) -> (String, String) {
    http_request(base, "GET", path, &[], b"")
}

/// A GET with a bearer token; returns the status code and the body.
pub fn http_get_authed(base: &str, path: &str, token: &str) -> (String, String) {
    http_request(base, "GET", path, &[("authorization", &format!("Bearer {token}"))], b"")
}

/// A GET with a bearer token; returns the status code.
pub fn http_get_auth(base: &str, path: &str, token: &str) -> String {
    http_get_authed(base, path, token).0
}

/// A GET; returns the status code.
pub fn http_get(base: &str, path: &str) -> String {
    http_get_body(base, path).0
}

/// A POST with a bearer token; returns the status code and the body.
pub fn http_post_body(base: &str, path: &str, token: &str, content_type: &str, body: &[u8]) -> (String, String) {
    let bearer = format!("Bearer {token}");
    http_request(base, "POST", path, &[("authorization", &bearer), ("content-type", content_type)], body)
}

/// A POST with a bearer token; returns the status code.
pub fn http_post_raw(base: &str, path: &str, token: &str, content_type: &str, body: &[u8]) -> String {
    http_post_body(base, path, token, content_type, body).0
}

pub fn http_post(base: &str, path: &str, token: &str, body: &str) -> String {
    http_post_raw(base, path, token, "application/json", body.as_bytes())
}

/// A multipart upload over a plain socket; returns the status code.
pub fn http_upload(base: &str, token: &str, mp3: &[u8]) -> String {
    use std::io::Write;
    let mut body = Vec::new();
    for (name, value) in [("title", "Bản tin dài"), ("topic", "cchc")] {
        write!(body, "--B\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").unwrap();
    }
    write!(
        body,
        "--B\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\ncontent-type: audio/mpeg\r\n\r\n"
    )
    .unwrap();
    body.extend_from_slice(mp3);
    write!(body, "\r\n--B--\r\n").unwrap();
    http_post_raw(base, "/api/v1/clips", token, "multipart/form-data; boundary=B", &body)
}

/// What an HTTPS server answered, seen by a client that trusts only `cafile`.
pub struct HttpsAnswer {
    /// The status code, or `error <kind> <message>` when the connection or the check failed.
    pub status: String,
    /// The SHA-256 fingerprint of the certificate the server presented (`AB:CD:…`).
    pub fingerprint: String,
    /// The answer's `Set-Cookie` headers.
    pub cookies: Vec<String>,
}

/// `METHOD path` over HTTPS (Python's ssl, another TLS stack than ours), a form `body` if any.
pub fn https_request(address: &str, method: &str, path: &str, body: &str, cafile: &Path) -> HttpsAnswer {
    const CLIENT: &str = r#"
import hashlib, http.client, ssl, sys
host, port = sys.argv[1].rsplit(":", 1)
der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port))))
print(":".join("%02X" % b for b in hashlib.sha256(der).digest()))
try:
    context = ssl.create_default_context(cafile=sys.argv[5])
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=20)
    headers = {"content-type": "application/x-www-form-urlencoded"} if sys.argv[4] else {}
    connection.request(sys.argv[2], sys.argv[3], body=sys.argv[4] or None, headers=headers)
    response = connection.getresponse()
    print(response.status)
    for cookie in response.headers.get_all("set-cookie") or []:
        print(cookie)
except Exception as e:
    print("error", type(e).__name__, e)
"#;
    let output = Command::new("python3")
        .args(["-c", CLIENT, address, method, path, body, cafile.to_str().unwrap()])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut lines = text.lines().map(str::to_owned);
    let fingerprint = lines.next().unwrap_or_default();
    let status = lines.next().unwrap_or_default();
    assert!(!fingerprint.is_empty(), "no certificate: {}", String::from_utf8_lossy(&output.stderr));
    HttpsAnswer { status, fingerprint, cookies: lines.collect() }
}

/// The status of the answer to a request whose head announces a 1000-byte body that is never
/// sent: what a server says before it reads a body byte.
pub fn status_before_body(address: &str, method: &str, path: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    write!(socket, "{method} {path} HTTP/1.1\r\nhost: x\r\n{headers}content-length: 1000\r\n\r\n").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).into_owned()
}
