//! The amplifier's hooks: a command before a block of airings (switch the relay on) and one
//! after it (off). A hook is someone else's program — it may fail or hang — so each runs as a
//! child process under a time limit, awaited without blocking the runtime, and its outcome is
//! recorded rather than trusted.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::proof::events::HookOutcome;

/// A hook that takes longer than this is killed and counted as failed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `argv` (program and arguments, no shell) and reports how it went.
pub async fn run(argv: &[String], timeout: Duration) -> HookOutcome {
    let failed = |detail: String| HookOutcome { ok: false, detail: Some(detail) };
    let Some((program, args)) = argv.split_first() else {
        return failed("no command".to_owned());
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return failed(format!("cannot start `{program}`: {e}")),
    };
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let finished = tokio::time::timeout(timeout, async {
        let mut said = String::new();
        let _ = stderr.read_to_string(&mut said).await;
        (child.wait().await, said)
    })
    .await;
    match finished {
        Err(_) => failed(format!("`{program}` did not finish within {} s and was killed", timeout.as_secs_f32())),
        Ok((Err(e), _)) => failed(format!("cannot wait for `{program}`: {e}")),
        Ok((Ok(status), _)) if status.success() => HookOutcome { ok: true, detail: None },
        Ok((Ok(status), said)) => {
            let last_line = said.lines().rev().find(|l| !l.trim().is_empty()).map(str::trim);
            let said = last_line.map(|l| format!(": {l}")).unwrap_or_default();
            failed(format!("`{program}` {status}{said}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[tokio::test]
    async fn success_failure_hang_and_missing_program() {
        assert_eq!(run(&argv(&["true"]), HOOK_TIMEOUT).await, HookOutcome { ok: true, detail: None });

        let failed = run(&argv(&["sh", "-c", "echo relay busy >&2; exit 3"]), HOOK_TIMEOUT).await;
        assert!(!failed.ok);
        let detail = failed.detail.unwrap();
        assert!(detail.contains("exit status: 3") && detail.ends_with(": relay busy"), "{detail}");

        let hung = run(&argv(&["sleep", "30"]), Duration::from_millis(200)).await;
        assert!(hung.detail.unwrap().contains("did not finish within 0.2 s"));

        let missing = run(&argv(&["/nonexistent/gpioset"]), HOOK_TIMEOUT).await;
        assert!(missing.detail.unwrap().starts_with("cannot start `/nonexistent/gpioset`"));
    }
}
