//! The device backend: the only module that touches the sound device (rodio's cpal, and
//! through it ALSA).
//!
//! It runs in the device's own process (`audio::worker`, started by `audio::process`): a fault
//! in alsa-lib (an abort), a hang or a vanished device ends that process, never the station.
//! One dedicated thread owns the device. The device is opened for a slot — at the instant its
//! first clip is released, so the stream's first callback takes the first frame at once — at
//! the clip's own sample rate and channel count, and closed after the slot, so the amplifier
//! input is idle between slots and a device that failed is retried fresh next time. A clip of
//! another format within the slot reopens it.
//!
//! Clips are decoded by `decode` — the decoder ingest measured them with — in the device's
//! callback, as the device asks for samples, gain applied, in the device's sample format: so
//! the device never gets silence mid-clip because a thread fell behind (a pipe or a network
//! sink takes seconds at once), and nothing is held decoded ahead. The callback takes no
//! blocking lock, allocates nothing once playing, and never resamples. What it counts —
//! frames the device took, their levels, when the first went out and when the last will have
//! played (its buffer included) — is the evidence an airing record carries. A clip is handed
//! to the callback only between clips, so each measurement belongs to one clip.
//!
//! The thread never waits on the device's writes: it polls the meter with a deadline and a
//! stall detector, and answers before it closes a device that failed (closing one that hangs
//! may hang too: its process is then ended from outside). It reads no wall clock: it reports monotonic durations since each play request,
//! and the caller turns them into wall times through `clock`.
//!
//! Why cpal's callback and not rodio's mixer: the mixer pulls every sample through a chain of
//! boxed iterators (mixer, channel and rate converters) and hides the callback's timestamps,
//! which say when a frame reaches the loudspeaker (see ARCHITECTURE.md, "Audio output").

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use rodio::cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use rodio::cpal::{self, SampleFormat, SizedSample};
use tokio::sync::oneshot;

use super::meter::{ALL_TAKEN, Format, Meter, OutSample, PLAYING, STOPPED, UNDECODABLE, WINDOW, Window, measure};
use super::output::{Measurement, PlayItem, PlaybackEnd, Progress};
use crate::library::decode::ClipDecoder;

/// How often the player thread looks at the meter while a clip plays (and at a stop request
/// while one is held for its instant).
const POLL: Duration = Duration::from_millis(40);
/// The longest a finished clip waits for the device's buffer to play out.
const PLAY_OUT_WAIT: Duration = Duration::from_secs(1);
/// A device that pulls no frame for this long has stopped.
const STALL: Duration = Duration::from_secs(3);

enum Command {
    BeginSlot { device: String },
    Play { item: PlayItem, progress: Progress, reply: oneshot::Sender<Measurement> },
    EndSlot,
}

/// The player thread notes it is alive at least this often (idle or playing).
const LIVENESS_TICK: Duration = Duration::from_secs(1);
/// The handle to the player thread (in the device's own process: `audio::worker`).
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

    /// Plays one clip in the slot; the answer is what reached the device (`progress` says
    /// what has so far). `None` if the player thread is gone.
    pub fn play(&self, item: PlayItem, progress: Progress) -> Option<oneshot::Receiver<Measurement>> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Play { item, progress, reply }).ok()?;
        Some(answer)
    }

    /// How long since the player thread last showed it was alive (it does every second idle,
    /// every poll while a clip plays): long means stuck in the device.
    pub fn quiet_for(&self) -> Duration {
        self.alive.lock().expect("liveness lock").elapsed()
    }

    /// Ends the slot: the device is closed.
    pub fn end_slot(&self) {
        let _ = self.send(Command::EndSlot);
    }

    fn send(&self, command: Command) -> Result<(), String> {
        self.commands.send(command).map_err(|_| "the audio thread died".to_owned())
    }
}

/// The device as the start-up log names it: the PCM, and the ALSA configuration that defines it
/// when it is not the system's (the demo's file device on a machine without a sound card).
pub fn describe(device: &str) -> String {
    match std::env::var("ALSA_CONFIG_PATH") {
        Ok(path) => format!("\"{device}\" as defined in ALSA_CONFIG_PATH={path}"),
        Err(_) => format!("\"{device}\""),
    }
}

/// Sample formats asked of the device, in order of preference: 16-bit first, what DACs and
/// ALSA's plug/dmix take natively, at half the bytes of float (see ARCHITECTURE.md).
const SAMPLE_FORMATS: [SampleFormat; 2] = [SampleFormat::I16, SampleFormat::F32];
/// The device's period asked for: short enough that a stop is heard at once, long enough
/// that the callback wakes rarely (cpal keeps two periods in the device's buffer).
const PERIOD: Duration = Duration::from_millis(40);

/// The clip the device is playing, decoded as the device asks for it: whatever the device's
/// pace, it never waits on a thread that is behind, and never gets silence mid-clip.
struct Playing {
    decoder: ClipDecoder,
    gain: f32,
    /// The decoded block being handed out, and how much of it has been.
    block: Vec<f32>,
    offset: usize,
}

/// The device callback's state, shared with the player thread: the clip (handed over only
/// between clips, so the callback's `try_lock` always gets it while one plays) and what was
/// measured of it.
struct Shared {
    clip: Mutex<Option<Playing>>,
    meter: Meter,
}

/// The device of the slot in progress, at one format, and (once the first clip is released)
/// its running stream.
struct OpenDevice {
    device: cpal::Device,
    name: String,
    format: Format,
    config: cpal::StreamConfig,
    sample_format: SampleFormat,
    shared: Arc<Shared>,
    stream: Option<cpal::Stream>,
}

impl OpenDevice {
    /// Finds the device and a configuration at `format`; the stream itself starts with
    /// [`start`](Self::start).
    fn prepare(name: &str, format: Format) -> Result<OpenDevice, String> {
        let host = cpal::default_host();
        let device = if name == "default" {
            host.default_output_device()
        } else {
            host.device_by_id(&cpal::DeviceId::new(host.id(), name))
        }
        .ok_or_else(|| format!("ALSA device \"{name}\" not found (`aplay -L` lists them; set audio.device)"))?;
        let ranges: Vec<_> = device
            .supported_output_configs()
            .map_err(|e| format!("cannot configure ALSA device \"{name}\": {}", error_chain(&e)))?
            .collect();
        let Format { sample_rate, channels } = format;
        let sample_format = SAMPLE_FORMATS
            .into_iter()
            .find(|&f| {
                ranges.iter().any(|r| {
                    r.sample_format() == f
                        && r.channels() == channels
                        && (r.min_sample_rate()..=r.max_sample_rate()).contains(&sample_rate)
                })
            })
            .ok_or_else(|| {
                format!(
                    "ALSA device \"{name}\" cannot play {sample_rate} Hz {channels}-channel audio as 16-bit or float samples; \
                     use a converting device such as \"default\" or \"plughw:0,0\" (audio.device)"
                )
            })?;
        let period = format.frames_in(PERIOD) as u32;
        let fits = ranges.iter().any(|r| match r.buffer_size() {
            cpal::SupportedBufferSize::Range { min, max } => (*min..=*max).contains(&period),
            cpal::SupportedBufferSize::Unknown => false,
        });
        let buffer_size = if fits { cpal::BufferSize::Fixed(period) } else { cpal::BufferSize::Default };
        Ok(OpenDevice {
            device,
            name: name.to_owned(),
            format,
            config: cpal::StreamConfig { channels, sample_rate, buffer_size },
            sample_format,
            shared: Arc::new(Shared { clip: Mutex::new(None), meter: Meter::new() }),
            stream: None,
        })
    }

    /// Hands the device its next clip; only between clips.
    fn load(&self, decoder: ClipDecoder, gain: f32) {
        let mut clip = self.shared.clip.lock().expect("clip lock");
        self.shared.meter.next_clip();
        *clip = Some(Playing { decoder, gain, block: Vec::new(), offset: 0 });
    }

    /// Takes the clip back from the device (the callback no longer touches it).
    fn unload(&self) -> Option<ClipDecoder> {
        self.shared.clip.lock().expect("clip lock").take().map(|p| p.decoder)
    }

    /// Starts the stream, if it is not running yet: from now on the device takes the clip.
    fn start(&mut self) -> Result<(), String> {
        if self.stream.is_some() {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let on_error = move |e: cpal::Error| {
            shared.meter.error.lock().expect("error lock").get_or_insert_with(|| e.to_string());
        };
        let (device, config, name, format) = (&self.device, self.config, &self.name, self.format);
        let shared = Arc::clone(&self.shared);
        let stream = match self.sample_format {
            SampleFormat::I16 => {
                device.build_output_stream(config, device_callback::<i16>(shared, format), on_error, None)
            }
            _ => device.build_output_stream(config, device_callback::<f32>(shared, format), on_error, None),
        }
        .map_err(|e| format!("cannot open ALSA device \"{name}\": {}", error_chain(&e)))?;
        stream.play().map_err(|e| format!("cannot start ALSA device \"{name}\": {}", error_chain(&e)))?;
        tracing::info!(
            device = %name,
            sample_rate = format.sample_rate,
            channels = format.channels,
            sample_format = %self.sample_format,
            "audio device open"
        );
        self.stream = Some(stream);
        Ok(())
    }
}

/// What the device runs each period: decode what it asks for, apply the gain, fill the rest
/// with silence, and measure what it took. No allocation once the clip's first block is in;
/// the only lock is a `try_lock` the player thread never holds while a clip plays.
fn device_callback<T: OutSample + SizedSample>(
    shared: Arc<Shared>,
    format: Format,
) -> impl FnMut(&mut [T], &cpal::OutputCallbackInfo) + Send + 'static {
    let channels = usize::from(format.channels);
    let mut window = Window { clip: 0, frames: 0, sum_squares: 0.0 };
    move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
        let now = Instant::now();
        let meter = &shared.meter;
        let period = data.len() / channels;
        let (taken, ended) = match shared.clip.try_lock() {
            Ok(mut clip) => match clip.as_mut() {
                Some(playing) if meter.state.load(Ordering::Acquire) == PLAYING => fill(playing, data, meter),
                _ => (0, None),
            },
            Err(_) => (0, None), // the player thread is handing over a clip: between clips, silence
        };
        let (taken, rest) = data.split_at_mut(taken);
        rest.fill(T::SILENCE);
        if !taken.is_empty() {
            let timestamp = info.timestamp();
            let buffered = timestamp.playback.checked_duration_since(timestamp.callback).unwrap_or_default();
            measure(taken, buffered, now, meter, &mut window, format, period);
        }
        // Published after what was measured, so the player reads a complete measurement.
        if let Some(ended) = ended {
            meter.state.store(ended, Ordering::Release);
        }
    }
}

/// Fills `data` from the clip, decoding as needed; returns how many samples it wrote, and the
/// clip's new state when it ended (taken whole, or undecodable).
fn fill<T: OutSample>(playing: &mut Playing, data: &mut [T], meter: &Meter) -> (usize, Option<u8>) {
    let mut written = 0;
    while written < data.len() {
        if playing.offset == playing.block.len() {
            match playing.decoder.next_block() {
                Ok(Some(block)) => {
                    playing.block.clear();
                    playing.block.extend_from_slice(block);
                    playing.offset = 0;
                }
                Ok(None) => return (written, Some(ALL_TAKEN)),
                Err(e) => {
                    *meter.undecodable.lock().expect("decode error lock") = Some(e.to_string());
                    return (written, Some(UNDECODABLE));
                }
            }
        }
        let n = (playing.block.len() - playing.offset).min(data.len() - written);
        let block = &playing.block[playing.offset..playing.offset + n];
        for (out, &x) in data[written..written + n].iter_mut().zip(block) {
            *out = T::from_f32(x * playing.gain);
        }
        playing.offset += n;
        written += n;
    }
    (written, None)
}

/// The device of the slot in progress: its name, and the output once prepared.
#[derive(Default)]
struct SlotDevice {
    name: Option<String>,
    output: Option<OpenDevice>,
}

impl SlotDevice {
    /// The device at `format`: the open one if it plays that format and has not failed, else
    /// a fresh one (the stream starts when the clip is released).
    fn at(&mut self, format: Format) -> Result<&mut OpenDevice, String> {
        let reusable = self.output.as_ref().is_some_and(|o| o.format == format && o.shared.meter.error().is_none());
        if !reusable {
            self.output = None; // closes a stream of another format before the next opens
            let name = self.name.as_deref().ok_or("no slot is in progress")?;
            self.output = Some(OpenDevice::prepare(name, format)?);
        }
        Ok(self.output.as_mut().expect("just prepared"))
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
                let measured = play_one(&mut device, &item, &progress, &alive);
                let failed = measured.end != PlaybackEnd::Finished;
                // Answered before the device is closed: closing a hung device may hang too.
                let _ = reply.send(measured);
                if failed {
                    device.output = None; // whatever the device still holds is not to be heard
                }
            }
            Command::EndSlot => device = SlotDevice::default(),
        }
    }
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
    let requested = item.requested;
    let decoder = match ClipDecoder::open(&item.path) {
        Ok(decoder) => decoder,
        Err(e) => return Measurement::nothing(PlaybackEnd::DecodeError(e.to_string()), requested.elapsed()),
    };
    let (format, expected_frames) =
        (Format { sample_rate: decoder.sample_rate(), channels: decoder.channels() }, decoder.frames());
    let output = match device.at(format) {
        Ok(output) => output,
        Err(e) => return Measurement::nothing(PlaybackEnd::DeviceError(e), requested.elapsed()),
    };
    output.load(decoder, 10f32.powf(item.gain_db as f32 / 20.0));
    let release_at = requested + item.start_after;
    while let Some(wait) = release_at.checked_duration_since(Instant::now()).filter(|w| !w.is_zero()) {
        if let Some(cause) = item.stop.cause() {
            return Measurement::nothing(PlaybackEnd::Stopped(cause), requested.elapsed());
        }
        *alive.lock().expect("liveness lock") = Instant::now();
        thread::sleep(wait.min(POLL)); // the last sleep ends exactly at the instant
    }
    if let Err(e) = output.start() {
        return Measurement::nothing(PlaybackEnd::DeviceError(e), requested.elapsed());
    }

    let meter = &output.shared.meter;
    let deadline = item.start_after + item.planned + item.planned / 20 + Duration::from_secs(3);
    let mut last_taken = 0;
    let mut last_progress = Instant::now();
    let end = loop {
        thread::sleep(POLL);
        *alive.lock().expect("liveness lock") = Instant::now();
        let state = meter.state.load(Ordering::Acquire);
        let taken = meter.taken.load(Ordering::Acquire);
        progress.set(measured(meter, format, requested, expected_frames, PlaybackEnd::Finished));
        if let Some(cause) = item.stop.cause() {
            if meter.state.compare_exchange(PLAYING, STOPPED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                break PlaybackEnd::Stopped(cause);
            }
        }
        if let Some(error) = meter.error() {
            break PlaybackEnd::DeviceError(error);
        }
        match state {
            ALL_TAKEN => break PlaybackEnd::Finished,
            UNDECODABLE => {
                let why = meter.undecodable.lock().expect("decode error lock").clone();
                break PlaybackEnd::DecodeError(why.unwrap_or_default());
            }
            _ => {}
        }
        if taken != last_taken {
            last_taken = taken;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL {
            break PlaybackEnd::Stalled;
        }
        if requested.elapsed() > deadline {
            break PlaybackEnd::Overran;
        }
    };
    output.unload();
    if end == PlaybackEnd::Finished {
        // Return once the last frame has left the device's buffer: what follows (the next clip,
        // the amplifier's after_air) must not cut it off.
        let played_out = meter.at(meter.played_out_at.load(Ordering::Relaxed));
        if let Some(wait) = played_out.checked_duration_since(Instant::now()) {
            thread::sleep(wait.min(PLAY_OUT_WAIT));
        }
    }
    measured(meter, format, requested, expected_frames, end)
}

/// What the meter has measured since the play request, ending with `end`.
fn measured(meter: &Meter, format: Format, requested: Instant, expected_frames: u64, end: PlaybackEnd) -> Measurement {
    let channels = u64::from(format.channels);
    let taken = meter.taken.load(Ordering::Acquire);
    let since_request = |nanos: u64| meter.at(nanos).saturating_duration_since(requested);
    let first_at = meter.first_at.load(Ordering::Relaxed);
    let sum_squares = f64::from_bits(meter.sum_squares_bits.load(Ordering::Relaxed));
    Measurement {
        first_frame_after: (first_at > 0).then(|| since_request(first_at - 1)),
        played_out_after: (first_at > 0).then(|| since_request(meter.played_out_at.load(Ordering::Relaxed))),
        elapsed: requested.elapsed(),
        frames: taken / channels,
        expected_frames,
        sample_rate: format.sample_rate,
        period_frames: meter.period_frames.load(Ordering::Relaxed),
        peak: f32::from_bits(meter.peak_bits.load(Ordering::Relaxed)),
        rms: if taken == 0 { 0.0 } else { (sum_squares / taken as f64).sqrt() },
        silent: WINDOW * meter.silent_windows.load(Ordering::Relaxed) as u32,
        end,
    }
}
