//! A throw-away station on disk and the real `loa` binary to drive it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A station in a temporary directory: `station.toml` and its `data/`.
pub struct Station {
    pub dir: tempfile::TempDir,
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
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("station.toml"), config).expect("write config");
        Station { dir }
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
        let mut full = vec!["--config", config.to_str().expect("utf-8 path")];
        full.extend_from_slice(args);
        loa(&full)
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
