//! The audio output: the only module that touches rodio (and through it cpal and ALSA).
//!
//! One dedicated thread owns the device. The device is opened for a slot — at the instant its
//! first clip is released, so the stream's first callback takes the first frame at once — and
//! closed after the slot, so the amplifier input is idle between slots and a device that failed
//! is retried fresh next time.
//! Every clip is played through [`MeteredSource`], which counts the frames the device actually
//! pulls and measures their level *after* gain: that, not the plan, is the evidence an airing
//! record carries. The thread never waits on rodio's `sleep_until_end` (it waits forever when a
//! stream dies); it polls the meter with a deadline and a stall detector instead.
//!
//! The player reads no wall clock: it reports monotonic durations since each play request,
//! and the caller turns them into wall times through `clock`.

use std::fs::File;
use std::future::Future;
use std::io::BufReader;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rodio::cpal::traits::HostTrait;
use rodio::{DeviceSinkBuilder, MixerDeviceSink, Source};
use tokio::sync::oneshot;

/// How often the player thread looks at the meter.
const POLL: Duration = Duration::from_millis(10);
/// A device that pulls no frame for this long has stopped.
const STALL: Duration = Duration::from_secs(3);
/// Level windows: a window whose RMS is below [`SILENCE_RMS`] counts as silent.
const WINDOW: Duration = Duration::from_millis(10);
const SILENCE_RMS: f64 = 0.001; // -60 dBFS

/// Why an airing should stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub stop: StopSignal,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlaybackEnd {
    /// The clip's audio ran out: all of it was pulled by the device.
    Finished,
    Stopped(StopCause),
    DeviceError(String),
    /// The device stopped pulling frames.
    Stalled,
    /// Still playing at planned duration + margin.
    Overran,
}

/// What reached the device while one clip played.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// From the play request to the first frame the device pulled (including `start_after`).
    pub first_frame_after: Option<Duration>,
    /// From the play request to the end.
    pub elapsed: Duration,
    pub frames: u64,
    pub sample_rate: u32,
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

    fn nothing(end: PlaybackEnd, elapsed: Duration) -> Measurement {
        Measurement {
            first_frame_after: None,
            elapsed,
            frames: 0,
            sample_rate: 0,
            peak: 0.0,
            rms: 0.0,
            silent: Duration::ZERO,
            end,
        }
    }
}

/// Progress the caller can read while a clip plays (for the heartbeat).
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Mutex<Duration>>);

impl Progress {
    pub fn played(&self) -> Duration {
        *self.0.lock().expect("progress lock")
    }
}

enum Command {
    BeginSlot { device: String },
    Play { item: PlayItem, progress: Progress, reply: oneshot::Sender<Measurement> },
    EndSlot,
}

/// Where the engine sends airings: the device thread ([`PlayerHandle`]) on a station, or a
/// stand-in when a test simulates months of airings on a virtual clock.
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
    /// Whether the output's thread still answers (for the service watchdog).
    fn responsive(&self) -> bool {
        true
    }
}

impl Output for PlayerHandle {
    fn begin_slot(&self, device: &str) {
        PlayerHandle::begin_slot(self, device);
    }

    fn play(
        &self,
        item: PlayItem,
        progress: Progress,
    ) -> Pin<Box<dyn Future<Output = Option<Measurement>> + Send + '_>> {
        Box::pin(PlayerHandle::play(self, item, progress))
    }

    fn end_slot(&self) {
        PlayerHandle::end_slot(self);
    }

    fn responsive(&self) -> bool {
        self.alive.lock().expect("liveness lock").elapsed() < UNRESPONSIVE
    }
}

/// The player thread notes it is alive at least this often (idle or playing).
const LIVENESS_TICK: Duration = Duration::from_secs(1);
/// Silence from the player thread for longer than this means it is stuck.
const UNRESPONSIVE: Duration = Duration::from_secs(10);

/// The async side's handle to the player thread.
#[derive(Clone)]
pub struct PlayerHandle {
    commands: mpsc::Sender<Command>,
    /// When the player thread last showed it was alive.
    alive: Arc<Mutex<Instant>>,
}

impl PlayerHandle {
    pub fn spawn() -> PlayerHandle {
        let (commands, queue) = mpsc::channel();
        let alive = Arc::new(Mutex::new(Instant::now()));
        let beat = Arc::clone(&alive);
        thread::Builder::new()
            .name("player".into())
            .spawn(move || player_thread(queue, beat))
            .expect("spawn the player thread");
        PlayerHandle { commands, alive }
    }

    /// Starts a slot on the ALSA PCM `device` ("default", "hw:0,0", …); the device opens when
    /// the slot's first clip is released (an open failure is that clip's `DeviceError`).
    pub fn begin_slot(&self, device: &str) {
        let _ = self.send(Command::BeginSlot { device: device.to_owned() });
    }

    /// Plays one clip in the slot and reports what reached the device. `None` if the audio
    /// thread did not answer (it died or is stuck).
    pub async fn play(&self, item: PlayItem, progress: Progress) -> Option<Measurement> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Play { item, progress, reply }).ok()?;
        answer.await.ok()
    }

    /// Ends the slot: the device is closed.
    pub fn end_slot(&self) {
        let _ = self.send(Command::EndSlot);
    }

    fn send(&self, command: Command) -> Result<(), String> {
        self.commands.send(command).map_err(|_| "the audio thread died".to_owned())
    }
}

/// An open device: rodio's sink plus the last error its stream reported.
struct OpenDevice {
    sink: MixerDeviceSink,
    error: Arc<Mutex<Option<String>>>,
}

/// The device of the slot in progress: its name, and the output once opened.
#[derive(Default)]
struct SlotDevice {
    name: Option<String>,
    output: Option<OpenDevice>,
}

impl SlotDevice {
    fn open(&mut self) -> Result<&OpenDevice, String> {
        if self.output.is_none() {
            let name = self.name.as_deref().ok_or("no slot is in progress")?;
            self.output = Some(open_output(name)?);
        }
        Ok(self.output.as_ref().expect("just opened"))
    }
}

fn player_thread(commands: mpsc::Receiver<Command>, alive: Arc<Mutex<Instant>>) {
    let mut device = SlotDevice::default();
    loop {
        *alive.lock().expect("liveness lock") = Instant::now();
        let command = match commands.recv_timeout(LIVENESS_TICK) {
            Ok(command) => command,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match command {
            Command::BeginSlot { device: name } => device = SlotDevice { name: Some(name), output: None },
            Command::Play { item, progress, reply } => {
                let _ = reply.send(play_one(&mut device, &item, &progress, &alive));
            }
            Command::EndSlot => device = SlotDevice::default(),
        }
    }
}

fn open_output(device_name: &str) -> Result<OpenDevice, String> {
    let host = rodio::cpal::default_host();
    let device = if device_name == "default" {
        host.default_output_device()
    } else {
        host.device_by_id(&rodio::cpal::DeviceId::new(host.id(), device_name))
    }
    .ok_or_else(|| format!("ALSA device \"{device_name}\" not found (`aplay -L` lists them; set audio.device)"))?;
    let error = Arc::new(Mutex::new(None));
    let stream_error = Arc::clone(&error);
    let mut sink = DeviceSinkBuilder::from_device(device)
        .map_err(|e| format!("cannot configure ALSA device \"{device_name}\": {}", error_chain(&e)))?
        .with_error_callback(move |e| {
            stream_error.lock().expect("error lock").get_or_insert_with(|| e.to_string());
        })
        .open_stream()
        .map_err(|e| format!("cannot open ALSA device \"{device_name}\": {}", error_chain(&e)))?;
    sink.log_on_drop(false);
    let config = sink.config();
    tracing::info!(
        device = device_name,
        sample_rate = config.sample_rate().get(),
        channels = config.channel_count().get(),
        format = ?config.sample_format(),
        "audio device open"
    );
    Ok(OpenDevice { sink, error })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn play_one(device: &mut SlotDevice, item: &PlayItem, progress: &Progress, alive: &Mutex<Instant>) -> Measurement {
    let requested = Instant::now();
    let source = match open_clip(item) {
        Ok(source) => source,
        Err(e) => return Measurement::nothing(PlaybackEnd::DeviceError(e), requested.elapsed()),
    };
    let meter = Arc::new(Mutex::new(MeterState::default()));
    let sample_rate = source.sample_rate().get();
    let gain = 10f32.powf(item.gain_db as f32 / 20.0);
    let metered = MeteredSource::new(source, gain, Arc::clone(&meter), item.stop.clone());
    let release_at = requested + item.start_after;
    while let Some(wait) = release_at.checked_duration_since(Instant::now()).filter(|w| !w.is_zero()) {
        if let Some(cause) = item.stop.cause() {
            return Measurement::nothing(PlaybackEnd::Stopped(cause), requested.elapsed());
        }
        thread::sleep(wait.min(POLL));
    }
    let output = match device.open() {
        Ok(output) => output,
        Err(e) => return Measurement::nothing(PlaybackEnd::DeviceError(e), requested.elapsed()),
    };
    if let Some(error) = output.error.lock().expect("error lock").clone() {
        return Measurement::nothing(PlaybackEnd::DeviceError(error), requested.elapsed());
    }
    output.sink.mixer().add(metered);

    let deadline = item.start_after + item.planned + item.planned / 20 + Duration::from_secs(3);
    let mut last_frames = 0;
    let mut last_progress = Instant::now();
    let end = loop {
        thread::sleep(POLL);
        *alive.lock().expect("liveness lock") = Instant::now();
        let state = meter.lock().expect("meter lock").clone();
        *progress.0.lock().expect("progress lock") = Duration::from_secs_f64(state.frames as f64 / sample_rate as f64);
        if let Some(end) = state.end {
            break end;
        }
        if let Some(error) = output.error.lock().expect("error lock").clone() {
            break PlaybackEnd::DeviceError(error);
        }
        if state.frames != last_frames {
            last_frames = state.frames;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL {
            break PlaybackEnd::Stalled;
        }
        if requested.elapsed() > deadline {
            break PlaybackEnd::Overran;
        }
    };
    // Whatever ended it, make sure the source stops feeding the mixer.
    item.stop.stop(StopCause::Shutdown);
    let state = meter.lock().expect("meter lock").clone();
    Measurement {
        first_frame_after: state.first_frame.map(|at| at.duration_since(requested)),
        elapsed: requested.elapsed(),
        frames: state.frames,
        sample_rate,
        peak: state.peak,
        rms: if state.frames == 0 { 0.0 } else { (state.sum_squares / state.samples as f64).sqrt() },
        silent: WINDOW * state.silent_windows,
        end,
    }
}

fn open_clip(item: &PlayItem) -> Result<rodio::Decoder<BufReader<File>>, String> {
    let file = File::open(&item.path).map_err(|e| format!("cannot open clip {}: {e}", item.path.display()))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    rodio::Decoder::builder()
        .with_data(BufReader::new(file))
        .with_byte_len(len)
        .with_hint("mp3")
        .with_gapless(true)
        .with_seekable(true)
        .build()
        .map_err(|e| format!("cannot decode clip {}: {e}", item.path.display()))
}

#[derive(Debug, Clone, Default)]
struct MeterState {
    first_frame: Option<Instant>,
    frames: u64,
    samples: u64,
    peak: f32,
    sum_squares: f64,
    silent_windows: u32,
    end: Option<PlaybackEnd>,
}

/// Wraps a clip: applies gain and measures every sample the device pulls.
struct MeteredSource<S> {
    inner: S,
    gain: f32,
    shared: Arc<Mutex<MeterState>>,
    stop: StopSignal,
    channels: u64,
    window_samples: u64,
    // Accumulated since the last publish (one window), to keep the lock off the per-sample path.
    pending: MeterState,
    window_sum_squares: f64,
    window_count: u64,
    done: bool,
}

impl<S: Source> MeteredSource<S> {
    fn new(inner: S, gain: f32, shared: Arc<Mutex<MeterState>>, stop: StopSignal) -> Self {
        let channels = u64::from(inner.channels().get());
        let window_samples =
            (u64::from(inner.sample_rate().get()) * WINDOW.as_millis() as u64 / 1000).max(1) * channels;
        MeteredSource {
            inner,
            gain,
            shared,
            stop,
            channels,
            window_samples,
            pending: MeterState::default(),
            window_sum_squares: 0.0,
            window_count: 0,
            done: false,
        }
    }

    fn publish(&mut self, end: Option<PlaybackEnd>) {
        if self.window_count > 0 && (self.window_sum_squares / self.window_count as f64).sqrt() < SILENCE_RMS {
            self.pending.silent_windows += 1;
        }
        self.window_sum_squares = 0.0;
        self.window_count = 0;
        let mut shared = self.shared.lock().expect("meter lock");
        shared.first_frame = shared.first_frame.or(self.pending.first_frame);
        shared.samples += self.pending.samples;
        shared.frames = shared.samples / self.channels;
        shared.peak = shared.peak.max(self.pending.peak);
        shared.sum_squares += self.pending.sum_squares;
        shared.silent_windows += self.pending.silent_windows;
        if end.is_some() {
            shared.end = end;
        }
        self.pending = MeterState::default();
    }

    fn finish(&mut self, end: PlaybackEnd) -> Option<f32> {
        self.done = true;
        self.publish(Some(end));
        None
    }
}

impl<S: Source> Iterator for MeteredSource<S> {
    type Item = rodio::Sample;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.window_count == 0 {
            if let Some(cause) = self.stop.cause() {
                return self.finish(PlaybackEnd::Stopped(cause));
            }
        }
        let Some(sample) = self.inner.next() else {
            return self.finish(PlaybackEnd::Finished);
        };
        let out = sample * self.gain;
        if self.pending.first_frame.is_none() && self.pending.samples == 0 {
            self.pending.first_frame = Some(Instant::now());
        }
        let square = f64::from(out) * f64::from(out);
        self.pending.samples += 1;
        self.pending.peak = self.pending.peak.max(out.abs());
        self.pending.sum_squares += square;
        self.window_sum_squares += square;
        self.window_count += 1;
        if self.window_count == self.window_samples {
            self.publish(None);
        }
        Some(out)
    }
}

impl<S: Source> Source for MeteredSource<S> {
    fn current_span_len(&self) -> Option<usize> {
        self.inner.current_span_len()
    }

    fn channels(&self) -> rodio::ChannelCount {
        self.inner.channels()
    }

    fn sample_rate(&self) -> rodio::SampleRate {
        self.inner.sample_rate()
    }

    fn total_duration(&self) -> Option<Duration> {
        self.inner.total_duration()
    }
}
