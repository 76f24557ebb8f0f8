//! The station's side of the device's own process (`audio::worker`, run as `loa
//! audio-worker`): the [`Output`] a station airs through. One process per slot, started when
//! the slot begins and told to end when it ends, so alsa-lib's state never outlives a slot.
//!
//! Whatever happens to that process, the station goes on: if it dies (alsa-lib aborts when the
//! pipe behind `plug` breaks, a USB card is pulled), the airing ends `failed`/`partial` with the
//! exit named, and the evidence is what it had reported the device took — never more; if its
//! player stops showing signs of life (a write that never returns), it is killed after
//! [`HUNG`] and the airing ends the same way. The next slot starts a fresh process.

use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::output::{Measurement, Output, PlayItem, PlaybackEnd, Progress};
use super::worker::{REPORT, Report, ToDevice};

/// A player thread quiet this long is stuck in the device: its process is killed. (Its own
/// stall detector answers within 3 s of the device's last frame; this is for what it cannot.)
pub const HUNG: Duration = Duration::from_secs(5);
/// How long a process told to end (its stdin closed) has before it is killed.
const GRACE: Duration = Duration::from_secs(2);

/// Airs through a child process per slot.
pub struct DeviceProcess {
    /// The command that runs `loa`: this binary, or an emulator in front of it.
    command: Vec<OsString>,
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    /// The slot's ALSA device (a process started mid-slot, after one died, is told it too).
    device: Option<String>,
    worker: Option<Worker>,
}

/// One running `loa audio-worker`.
struct Worker {
    commands: mpsc::UnboundedSender<ToDevice>,
    events: mpsc::UnboundedReceiver<Event>,
    kill: Option<oneshot::Sender<()>>,
    gone: Arc<AtomicBool>,
}

enum Event {
    Report(Box<Report>),
    /// The process ended; how.
    Gone(String),
}

impl DeviceProcess {
    /// Runs `COMMAND… audio-worker`: `command` is this very binary (as `std::env::current_exe`
    /// names it), or an emulator and the binary (an arm64 build under qemu-user, where the
    /// kernel cannot run it by itself).
    pub fn new(command: Vec<OsString>) -> DeviceProcess {
        assert!(!command.is_empty(), "a command to run loa");
        DeviceProcess { command, slot: Mutex::new(Slot::default()) }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().expect("slot lock")
    }

    /// The slot's process: the running one, or a fresh one told the slot's device.
    fn worker(&self) -> Result<Worker, String> {
        let mut slot = self.slot();
        match slot.worker.take() {
            Some(worker) if !worker.gone.load(Ordering::Acquire) => Ok(worker),
            _ => {
                let device = slot.device.clone().ok_or("no slot is in progress")?;
                let worker = Worker::start(&self.command)?;
                worker.send(ToDevice::BeginSlot { device });
                Ok(worker)
            }
        }
    }

    async fn play_in_process(&self, item: PlayItem, progress: Progress) -> Measurement {
        let mut worker = match self.worker() {
            Ok(worker) => worker,
            Err(e) => return Measurement::nothing(PlaybackEnd::DeviceError(e), item.requested.elapsed()),
        };
        let requested_at = crate::ops::sys::monotonic_now().saturating_sub(item.requested.elapsed());
        let (path, gain_db, planned, start_after) = (item.path.clone(), item.gain_db, item.planned, item.start_after);
        worker.send(ToDevice::Play { path, gain_db, planned, start_after, requested_at });
        let (mut heard, mut stop_sent, mut so_far) = (Instant::now(), false, None::<Measurement>);
        let end = loop {
            tokio::select! {
                event = worker.events.recv() => match event {
                    Some(Event::Report(report)) => {
                        if report.quiet_ms < HUNG.as_millis() as u64 {
                            heard = Instant::now();
                        }
                        if let Some(measured) = report.ended {
                            self.slot().worker = Some(worker);
                            return measured;
                        }
                        if let Some(measured) = report.so_far {
                            progress.set(measured.clone());
                            so_far = Some(measured);
                        }
                    }
                    Some(Event::Gone(how)) => {
                        break PlaybackEnd::DeviceError(format!("the audio device's process ended ({how})"));
                    }
                    None => break PlaybackEnd::DeviceError("the audio device's process ended".to_owned()),
                },
                _ = tokio::time::sleep(REPORT) => {}
            }
            if !stop_sent && let Some(cause) = item.stop.cause() {
                worker.send(ToDevice::Stop(cause));
                stop_sent = true;
            }
            if heard.elapsed() > HUNG {
                worker.kill();
                break PlaybackEnd::DeviceError(format!(
                    "the audio device did not answer for {} s (a write that never returns); its process was ended",
                    HUNG.as_secs()
                ));
            }
        };
        // The process is gone: what it reported the device took stands, and nothing more.
        let elapsed = item.requested.elapsed();
        match so_far {
            Some(measured) => Measurement { end, elapsed, ..measured },
            None => Measurement::nothing(end, elapsed),
        }
    }
}

impl Output for DeviceProcess {
    fn begin_slot(&self, device: &str) {
        let mut slot = self.slot();
        slot.device = Some(device.to_owned());
        slot.worker = None; // a process left from before ends
        match Worker::start(&self.command) {
            Ok(worker) => {
                worker.send(ToDevice::BeginSlot { device: device.to_owned() });
                slot.worker = Some(worker);
            }
            // Said again, with the airing, when the first clip finds no process.
            Err(e) => tracing::error!("{e}"),
        }
    }

    fn play(
        &self,
        item: PlayItem,
        progress: Progress,
    ) -> Pin<Box<dyn Future<Output = Option<Measurement>> + Send + '_>> {
        Box::pin(async move { Some(self.play_in_process(item, progress).await) })
    }

    fn end_slot(&self) {
        let mut slot = self.slot();
        if let Some(worker) = &slot.worker {
            worker.send(ToDevice::EndSlot);
        }
        *slot = Slot::default(); // its stdin closes: it ends, or is killed after GRACE
    }
}

impl Worker {
    fn start(command: &[OsString]) -> Result<Worker, String> {
        let mut child = tokio::process::Command::new(&command[0])
            .args(&command[1..])
            .arg("audio-worker")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start the audio device's process ({:?}): {e}", command))?;
        let (mut stdin, stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
        let (commands, mut to_send) = mpsc::unbounded_channel::<ToDevice>();
        let (events_to, events) = mpsc::unbounded_channel();
        let (kill, mut killed) = oneshot::channel::<()>();
        let gone = Arc::new(AtomicBool::new(false));
        // Writes the commands; its end (the worker dropped) closes the process's stdin.
        tokio::spawn(async move {
            while let Some(command) = to_send.recv().await {
                let line = serde_json::to_string(&command).expect("commands serialize") + "\n";
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        // Reads the reports; kills on request, or when the process outstays its end.
        let ended = Arc::clone(&gone);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let (mut decided, mut kill_at) = (false, None::<tokio::time::Instant>);
            loop {
                tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => match serde_json::from_str(&line) {
                            Ok(report) => { let _ = events_to.send(Event::Report(Box::new(report))); }
                            Err(e) => tracing::warn!("the audio device's process said something else: {e}: {line}"),
                        },
                        _ => break,
                    },
                    asked = &mut killed, if !decided => {
                        // Asked to kill: now. The worker dropped: after its grace.
                        decided = true;
                        kill_at = Some(tokio::time::Instant::now() + if asked.is_ok() { Duration::ZERO } else { GRACE });
                    }
                    () = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => {
                        kill_at = None;
                        let _ = child.start_kill();
                    }
                }
            }
            let how = match tokio::time::timeout(GRACE, child.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => {
                    let _ = child.start_kill();
                    child.wait().await.map_or_else(|e| e.to_string(), |status| status.to_string())
                }
            };
            ended.store(true, Ordering::Release);
            if !how.contains("exit status: 0") {
                tracing::warn!("the audio device's process ended: {how}");
            }
            let _ = events_to.send(Event::Gone(how));
        });
        Ok(Worker { commands, events, kill: Some(kill), gone })
    }

    fn send(&self, command: ToDevice) {
        let _ = self.commands.send(command);
    }

    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}
