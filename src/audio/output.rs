//! What the engine asks of the audio output and what it gets back: the [`Output`] trait (the
//! device's own process on a station, a simulation in tests), one clip to play, and the
//! measurement of what reached the device. Nothing here touches a device. The measurement
//! crosses a pipe from the device's process, so it is serializable.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why an airing should stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCause {
    Shutdown,
    Preempted,
}

/// Shared between the caller and the audio callback: set to stop the clip now.
#[derive(Debug, Clone, Default)]
pub struct StopSignal(Arc<AtomicU8>);

impl StopSignal {
    pub fn stop(&self, cause: StopCause) {
        let code = match cause {
            StopCause::Shutdown => 1,
            StopCause::Preempted => 2,
        };
        let _ = self.0.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn cause(&self) -> Option<StopCause> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(StopCause::Shutdown),
            2 => Some(StopCause::Preempted),
            _ => None,
        }
    }
}

/// One clip to play on the open device.
#[derive(Debug, Clone)]
pub struct PlayItem {
    pub path: PathBuf,
    pub gain_db: f64,
    pub planned: Duration,
    /// Hold the clip, ready, this long after the request, then release it to the device: a
    /// slot is cued ahead so its first frame goes out at the scheduled instant.
    pub start_after: Duration,
    /// When it was asked for: every duration measured is since then.
    pub requested: std::time::Instant,
    pub stop: StopSignal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PlaybackEnd {
    /// The clip's audio ran out: all of it was pulled by the device.
    Finished,
    Stopped(StopCause),
    /// The clip itself could not be decoded (the device is not to blame).
    DecodeError(String),
    DeviceError(String),
    /// The device stopped pulling frames.
    Stalled,
    /// Still playing at planned duration + margin.
    Overran,
}

/// What reached the device while one clip played.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// From the play request to the first frame the device pulled (including `start_after`).
    pub first_frame_after: Option<Duration>,
    /// From the play request to when the last frame the device took has played out of its
    /// buffer (the buffer's delay as the device reports it).
    pub played_out_after: Option<Duration>,
    /// From the play request to the end.
    pub elapsed: Duration,
    /// Frames the device took.
    pub frames: u64,
    /// Frames the clip decodes to: what "all of it" means.
    pub expected_frames: u64,
    pub sample_rate: u32,
    /// The device's period, in frames: how much it takes at a time.
    pub period_frames: u64,
    /// Linear, after gain.
    pub peak: f32,
    pub rms: f64,
    pub silent: Duration,
    pub end: PlaybackEnd,
}

impl Measurement {
    pub fn played(&self) -> Duration {
        if self.sample_rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(self.frames as f64 / self.sample_rate as f64)
        }
    }

    pub(super) fn nothing(end: PlaybackEnd, elapsed: Duration) -> Measurement {
        Measurement {
            first_frame_after: None,
            played_out_after: None,
            elapsed,
            frames: 0,
            expected_frames: 0,
            sample_rate: 0,
            period_frames: 0,
            peak: 0.0,
            rms: 0.0,
            silent: Duration::ZERO,
            end,
        }
    }
}

/// What has reached the device so far while a clip plays: the heartbeat reads how much, and
/// should the device's process die before it reports the end, this is the evidence that
/// stands (the snapshot's `end` says nothing: it is decided when the clip ends).
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Mutex<Option<Measurement>>>);

impl Progress {
    pub fn played(&self) -> Duration {
        self.snapshot().map_or(Duration::ZERO, |m| m.played())
    }

    pub fn snapshot(&self) -> Option<Measurement> {
        self.0.lock().expect("progress lock").clone()
    }

    /// What the output measured so far.
    pub(super) fn set(&self, so_far: Measurement) {
        *self.0.lock().expect("progress lock") = Some(so_far);
    }
}

/// Where the engine sends airings: the device's own process
/// ([`DeviceProcess`](super::process::DeviceProcess)) on a station, or a stand-in when a test
/// simulates months of airings on a virtual clock.
pub trait Output: Send + Sync {
    /// Starts a slot on `device`; it opens when the slot's first clip is released.
    fn begin_slot(&self, device: &str);
    /// Plays one clip and reports what reached the device (`None`: the output did not answer).
    fn play(
        &self,
        item: PlayItem,
        progress: Progress,
    ) -> Pin<Box<dyn Future<Output = Option<Measurement>> + Send + '_>>;
    /// Ends the slot: the device is closed.
    fn end_slot(&self);
}
