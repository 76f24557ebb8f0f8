//! The meter in the device callback: what the device took of the current clip (frames, peak,
//! RMS, silent 10 ms windows, when the first frame went out and when the last will have played
//! out of the buffer). Lock-free and allocation-free, since it runs in the audio callback; it
//! knows nothing of cpal, so it is tested on plain sample slices.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Level windows: a window whose RMS is below [`SILENCE_RMS`] counts as silent.
pub(super) const WINDOW: Duration = Duration::from_millis(10);

pub(super) const SILENCE_RMS: f64 = 0.001; // -60 dBFS

/// A clip's (and so the device's) sample rate and channel count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Format {
    pub(super) sample_rate: u32,
    pub(super) channels: u16,
}

impl Format {
    pub(super) fn frames_in(&self, duration: Duration) -> usize {
        (u128::from(self.sample_rate) * duration.as_micros() / 1_000_000) as usize
    }
}

/// What the device callback measured of the current clip. Written only by the callback (but
/// for the reset between clips); `taken` is published last, so a reader that sees it sees the
/// rest.
pub(super) struct Meter {
    pub(super) base: Instant,
    /// PLAYING, ALL_TAKEN, UNDECODABLE or STOPPED.
    pub(super) state: AtomicU8,
    /// Samples the device took.
    pub(super) taken: AtomicU64,
    /// Nanoseconds after `base` (plus one; 0: not yet) the first sample was taken.
    pub(super) first_at: AtomicU64,
    /// Nanoseconds after `base` the last sample taken will have played out of the buffer.
    pub(super) played_out_at: AtomicU64,
    pub(super) peak_bits: AtomicU32,
    pub(super) sum_squares_bits: AtomicU64,
    pub(super) silent_windows: AtomicU64,
    pub(super) period_frames: AtomicU64,
    /// Which clip this is: the callback restarts its level window when it changes.
    pub(super) clip: AtomicU64,
    /// What the device reported (the stream's error callback).
    pub(super) error: Mutex<Option<String>>,
    /// Why the clip stopped decoding.
    pub(super) undecodable: Mutex<Option<String>>,
}

impl Meter {
    pub(super) fn new() -> Meter {
        Meter {
            base: Instant::now(),
            state: AtomicU8::new(STOPPED),
            taken: AtomicU64::new(0),
            first_at: AtomicU64::new(0),
            played_out_at: AtomicU64::new(0),
            peak_bits: AtomicU32::new(0),
            sum_squares_bits: AtomicU64::new(0),
            silent_windows: AtomicU64::new(0),
            period_frames: AtomicU64::new(0),
            clip: AtomicU64::new(0),
            error: Mutex::new(None),
            undecodable: Mutex::new(None),
        }
    }

    /// Starts measuring a new clip (with the clip lock held, so the callback is not in it).
    pub(super) fn next_clip(&self) {
        for counter in [&self.taken, &self.first_at, &self.played_out_at, &self.sum_squares_bits, &self.silent_windows]
        {
            counter.store(0, Ordering::Relaxed);
        }
        self.peak_bits.store(0, Ordering::Relaxed);
        *self.undecodable.lock().expect("decode error lock") = None;
        self.clip.fetch_add(1, Ordering::Relaxed);
        self.state.store(PLAYING, Ordering::Release);
    }

    pub(super) fn at(&self, nanos: u64) -> Instant {
        self.base + Duration::from_nanos(nanos)
    }

    pub(super) fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    pub(super) fn error(&self) -> Option<String> {
        self.error.lock().expect("error lock").clone()
    }
}

/// A sample type the device may take.
pub(super) trait OutSample: Copy + Send + 'static {
    const SILENCE: Self;
    fn from_f32(x: f32) -> Self;
    fn level(self) -> f32;
}

impl OutSample for i16 {
    const SILENCE: i16 = 0;
    fn from_f32(x: f32) -> i16 {
        (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
    }
    fn level(self) -> f32 {
        f32::from(self) / 32768.0
    }
}

impl OutSample for f32 {
    const SILENCE: f32 = 0.0;
    fn from_f32(x: f32) -> f32 {
        x.clamp(-1.0, 1.0)
    }
    fn level(self) -> f32 {
        self
    }
}

/// How the clip in the callback's hands stands.
pub(super) const PLAYING: u8 = 0;

pub(super) const ALL_TAKEN: u8 = 1;

pub(super) const UNDECODABLE: u8 = 2;

pub(super) const STOPPED: u8 = 3;

/// The callback's 10 ms level window, restarted with each clip.
pub(super) struct Window {
    pub(super) clip: u64,
    pub(super) frames: u64,
    pub(super) sum_squares: f64,
}

/// Adds what the device just took to the clip's measurement; `buffered` is how long the
/// device says it holds audio before it reaches the loudspeaker.
pub(super) fn measure<T: OutSample>(
    taken: &[T],
    buffered: Duration,
    now: Instant,
    meter: &Meter,
    window: &mut Window,
    format: Format,
    period: usize,
) {
    let channels = usize::from(format.channels);
    let window_frames = format.frames_in(WINDOW).max(1) as u64;
    let clip = meter.clip.load(Ordering::Acquire);
    if window.clip != clip {
        *window = Window { clip, frames: 0, sum_squares: 0.0 };
    }
    let (mut peak, mut sum_squares, mut silent) = (0f32, 0f64, 0u64);
    for frame in taken.chunks_exact(channels) {
        for &sample in frame {
            let level = sample.level();
            peak = peak.max(level.abs());
            let square = f64::from(level) * f64::from(level);
            sum_squares += square;
            window.sum_squares += square;
        }
        window.frames += 1;
        if window.frames == window_frames {
            if (window.sum_squares / (window_frames as f64 * channels as f64)).sqrt() < SILENCE_RMS {
                silent += 1;
            }
            window.frames = 0;
            window.sum_squares = 0.0;
        }
    }
    let frames = (taken.len() / channels) as u64;
    let played_out = now + buffered + Duration::from_nanos(frames * 1_000_000_000 / u64::from(format.sample_rate));
    if meter.first_at.load(Ordering::Relaxed) == 0 {
        meter.first_at.store(meter.nanos(now) + 1, Ordering::Relaxed);
    }
    meter.played_out_at.store(meter.nanos(played_out), Ordering::Relaxed);
    meter.period_frames.store(period as u64, Ordering::Relaxed);
    meter.peak_bits.fetch_max(peak.to_bits(), Ordering::Relaxed);
    let total = f64::from_bits(meter.sum_squares_bits.load(Ordering::Relaxed)) + sum_squares;
    meter.sum_squares_bits.store(total.to_bits(), Ordering::Relaxed);
    meter.silent_windows.fetch_add(silent, Ordering::Relaxed);
    meter.taken.fetch_add(taken.len() as u64, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: Format = Format { sample_rate: 48_000, channels: 2 };
    const PERIOD: usize = 1_920;

    /// A fresh meter on its first clip, and the callback's window.
    fn meter() -> (Meter, Window) {
        let meter = Meter::new();
        meter.next_clip();
        (meter, Window { clip: 0, frames: 0, sum_squares: 0.0 })
    }

    fn take(meter: &Meter, window: &mut Window, samples: &[i16], now: Instant) {
        measure(samples, Duration::from_millis(80), now, meter, window, FORMAT, PERIOD);
    }

    #[test]
    fn it_counts_what_the_device_took_with_its_peak_and_when_it_plays_out() {
        let (meter, mut window) = meter();
        let now = meter.base + Duration::from_secs(1);
        let half = i16::from_f32(0.5);
        let samples: Vec<i16> = (0..PERIOD * 2).map(|i| if i % 2 == 0 { half } else { -half }).collect();
        take(&meter, &mut window, &samples, now);
        assert_eq!(meter.taken.load(Ordering::Acquire), (PERIOD * 2) as u64);
        assert_eq!(f32::from_bits(meter.peak_bits.load(Ordering::Relaxed)), 0.5);
        assert_eq!(meter.first_at.load(Ordering::Relaxed), meter.nanos(now) + 1, "first frame out now");
        // The last frame leaves 80 ms of buffer plus the period's own 40 ms later.
        let played_out = meter.at(meter.played_out_at.load(Ordering::Relaxed));
        assert_eq!(played_out - now, Duration::from_millis(120));
        let later = now + Duration::from_millis(40);
        take(&meter, &mut window, &samples, later);
        assert_eq!(meter.first_at.load(Ordering::Relaxed), meter.nanos(now) + 1, "the first frame stays the first");
        assert_eq!(meter.taken.load(Ordering::Acquire), (PERIOD * 4) as u64);
    }

    #[test]
    fn silence_is_counted_in_whole_10_ms_windows_across_callbacks_and_restarts_per_clip() {
        let (meter, mut window) = meter();
        let now = meter.base;
        // 15 ms of silence: one whole window, half of the next.
        take(&meter, &mut window, &vec![0i16; 720 * 2], now);
        assert_eq!(meter.silent_windows.load(Ordering::Relaxed), 1);
        // 5 ms more completes the second window.
        take(&meter, &mut window, &vec![0i16; 240 * 2], now);
        assert_eq!(meter.silent_windows.load(Ordering::Relaxed), 2);
        // Speech-level audio is not silent.
        take(&meter, &mut window, &vec![i16::from_f32(0.1); 480 * 2], now);
        assert_eq!(meter.silent_windows.load(Ordering::Relaxed), 2);

        // A new clip starts its counts and its window afresh: 5 ms left over from the last clip
        // does not make up a window with 5 ms of the next.
        take(&meter, &mut window, &vec![0i16; 240 * 2], now);
        meter.next_clip();
        take(&meter, &mut window, &vec![0i16; 240 * 2], now);
        assert_eq!(meter.silent_windows.load(Ordering::Relaxed), 0);
        assert_eq!(meter.taken.load(Ordering::Acquire), 480);
    }

    #[test]
    fn samples_convert_with_clipping_not_wrapping() {
        assert_eq!((i16::from_f32(1.5), i16::from_f32(-1.5)), (i16::MAX, i16::MIN));
        assert_eq!(i16::from_f32(0.5).level(), 0.5);
        assert_eq!((f32::from_f32(2.0), f32::from_f32(-2.0)), (1.0, -1.0));
    }
}
