//! The device's own process, `loa audio-worker`: what `audio::process` starts for each slot so
//! that nothing the sound device or alsa-lib does — an abort on a broken pipe, a write that
//! never returns, a USB card pulled — can stop the station for more than the airing it hit.
//!
//! It speaks JSON lines: the station writes [`ToDevice`] commands on its stdin; it writes a
//! [`Report`] on its stdout every [`REPORT`] and at once when a clip ends: how long its player
//! thread has been quiet, what the device has taken of the clip so far (the evidence that
//! stands if this process dies), and the final measurement. It exits when its stdin closes.
//! Both sides import these types from here: the protocol is written once.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::device::PlayerHandle;
use super::output::{Measurement, PlayItem, Progress, StopCause, StopSignal};

/// How often the process reports while it runs.
pub const REPORT: Duration = Duration::from_millis(100);

/// What the station tells the device's process.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToDevice {
    BeginSlot {
        device: String,
    },
    Play {
        path: PathBuf,
        gain_db: f64,
        planned: Duration,
        start_after: Duration,
        /// The station's request, on `CLOCK_MONOTONIC` (`ops::sys::monotonic_now`): every
        /// duration reported is since then, however long the message took to arrive.
        requested_at: Duration,
    },
    Stop(StopCause),
    EndSlot,
}

/// What the device's process tells the station.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// How long its player thread has shown no sign of life (long: stuck in the device).
    pub quiet_ms: u64,
    /// What the device has taken of the clip that plays, so far.
    pub so_far: Option<Measurement>,
    /// The clip's end and what reached the device, once.
    pub ended: Option<Measurement>,
}

/// A clip in progress: its stop signal, what it has played so far, and its answer to come.
struct Playing {
    stop: StopSignal,
    progress: Progress,
    answer: oneshot::Receiver<Measurement>,
}

/// `loa audio-worker`: serves the protocol on stdin/stdout until stdin closes.
pub fn serve() -> Result<(), String> {
    let player = PlayerHandle::spawn();
    let (lines, commands) = mpsc::channel();
    std::thread::Builder::new()
        .name("commands".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("cannot start the command reader: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    let mut playing: Option<Playing> = None;
    loop {
        match commands.recv_timeout(REPORT) {
            Ok(line) => {
                let command: ToDevice =
                    serde_json::from_str(&line).map_err(|e| format!("not a command from the station: {e}"))?;
                obey(command, &player, &mut playing)?;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()), // the station closed the pipe
        }
        let ended = match playing.as_mut().map(|p| p.answer.try_recv()) {
            Some(Ok(measured)) => Some(measured),
            Some(Err(oneshot::error::TryRecvError::Empty)) | None => None,
            Some(Err(oneshot::error::TryRecvError::Closed)) => return Err("the player thread died".into()),
        };
        let so_far = match ended {
            Some(_) => playing.take().and(None),
            None => playing.as_ref().and_then(|p| p.progress.snapshot()),
        };
        let report = Report { quiet_ms: player.quiet_for().as_millis() as u64, so_far, ended };
        let line = serde_json::to_string(&report).map_err(|e| e.to_string())?;
        if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
            return Ok(()); // the station is gone
        }
    }
}

fn obey(command: ToDevice, player: &PlayerHandle, playing: &mut Option<Playing>) -> Result<(), String> {
    match command {
        ToDevice::BeginSlot { device } => player.begin_slot(&device),
        ToDevice::Play { path, gain_db, planned, start_after, requested_at } => {
            let since = crate::ops::sys::monotonic_now().saturating_sub(requested_at);
            let requested = Instant::now().checked_sub(since).unwrap_or_else(Instant::now);
            let (stop, progress) = (StopSignal::default(), Progress::default());
            let item = PlayItem { path, gain_db, planned, start_after, requested, stop: stop.clone() };
            let answer = player.play(item, progress.clone()).ok_or("the player thread died")?;
            *playing = Some(Playing { stop, progress, answer });
        }
        ToDevice::Stop(cause) => {
            if let Some(playing) = playing {
                playing.stop.stop(cause);
            }
        }
        ToDevice::EndSlot => player.end_slot(),
    }
    Ok(())
}
