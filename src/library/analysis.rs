//! Proving a file is a playable bulletin: walk its frames, decode every packet, measure it.
//!
//! A file is accepted only after all of its audio has been decoded — by the same decoder the
//! player uses (`decode`) — so what the library holds is known to play to the end. Duration
//! comes from the frames in the file and the samples decoded from them; loudness and peaks
//! (EBU R128, `ebur128`) are what the player later uses to set a safe gain.

use std::fmt;
use std::path::Path;
use std::sync::mpsc;

use ebur128::{EbuR128, Mode};

use crate::config::ClipLimits;
use crate::library::decode::{ClipDecoder, DecodeError};
use crate::library::mp3::Problem;
use crate::model::clip::AudioFacts;
use crate::model::level::{dbfs, hundredths};

/// Below this sample peak a bulletin is inaudible on any loudspeaker.
const SILENT_PEAK_DBFS: f64 = -60.0;
/// EBU R128's absolute gate: programme below it is silence.
const SILENT_LOUDNESS_LUFS: f64 = -70.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    Empty,
    NotMp3,
    NoAudio,
    Truncated,
    DecodeError,
    Silent,
    TooShort,
    TooLong,
}

impl RejectKind {
    /// Stable machine-readable code (the HTTP API's error code).
    pub fn code(self) -> &'static str {
        match self {
            RejectKind::Empty => "empty",
            RejectKind::NotMp3 => "not_mp3",
            RejectKind::NoAudio => "no_audio",
            RejectKind::Truncated => "truncated",
            RejectKind::DecodeError => "decode_error",
            RejectKind::Silent => "silent",
            RejectKind::TooShort => "too_short",
            RejectKind::TooLong => "too_long",
        }
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a file is not a playable bulletin, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Rejection {
    pub kind: RejectKind,
    pub message: String,
}

impl Rejection {
    fn new(kind: RejectKind, message: impl Into<String>) -> Self {
        Rejection { kind, message: message.into() }
    }
}

impl From<Problem> for Rejection {
    fn from(problem: Problem) -> Self {
        let kind = match &problem {
            Problem::NotMp3(_) => RejectKind::NotMp3,
            Problem::NoAudio(_) => RejectKind::NoAudio,
            Problem::Truncated(_) => RejectKind::Truncated,
            Problem::Corrupt(_) => RejectKind::DecodeError,
        };
        Rejection::new(kind, problem.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("cannot read the staged file: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks and measures the MP3 at `path`.
pub fn analyse(path: &Path, limits: ClipLimits) -> Result<AudioFacts, AnalysisError> {
    if std::fs::metadata(path)?.len() == 0 {
        return Err(Rejection::new(RejectKind::Empty, "the file is empty (0 bytes); choose the recording again").into());
    }
    let decoder = ClipDecoder::open(path).map_err(rejection)?;
    let layout = decoder.layout().clone();
    if let Some(declared) = layout.declared_frames {
        if layout.frames < declared {
            return Err(Rejection::new(
                RejectKind::Truncated,
                format!(
                    "the file is cut short: its header announces {declared} frames but only {} are present; upload the complete file",
                    layout.frames
                ),
            )
            .into());
        }
    }
    let duration_ms = decoder.frames() * 1000 / u64::from(layout.sample_rate);
    if duration_ms > limits.max_duration_ms {
        return Err(Rejection::new(
            RejectKind::TooLong,
            format!(
                "the audio is longer than the {} s maximum (clips.max_seconds); split it or raise the limit",
                limits.max_duration_ms / 1000
            ),
        )
        .into());
    }
    if duration_ms < limits.min_duration_ms {
        return Err(Rejection::new(
            RejectKind::TooShort,
            format!(
                "the audio lasts {duration_ms} ms, shorter than the {} ms minimum (clips.min_seconds)",
                limits.min_duration_ms
            ),
        )
        .into());
    }
    let measured = decode_and_measure(decoder)?;
    if measured.peak_dbfs < SILENT_PEAK_DBFS
        || !measured.loudness_lufs.is_finite()
        || measured.loudness_lufs <= SILENT_LOUDNESS_LUFS
    {
        return Err(Rejection::new(
            RejectKind::Silent,
            format!(
                "the audio is silent (peak {:.1} dBFS, loudness {:.1} LUFS); check the microphone or the export and record again",
                measured.peak_dbfs, measured.loudness_lufs
            ),
        )
        .into());
    }
    Ok(AudioFacts {
        duration_ms,
        sample_rate: layout.sample_rate,
        channels: layout.channels,
        loudness_lufs: hundredths(measured.loudness_lufs),
        peak_dbfs: hundredths(measured.peak_dbfs),
        true_peak_dbfs: hundredths(measured.true_peak_dbfs),
    })
}

fn rejection(error: DecodeError) -> AnalysisError {
    match error {
        DecodeError::Io(e) => AnalysisError::Io(e),
        DecodeError::Invalid(problem) => Rejection::from(problem).into(),
        undecodable @ DecodeError::Undecodable { .. } => {
            Rejection::new(RejectKind::DecodeError, undecodable.to_string()).into()
        }
    }
}

struct Measured {
    loudness_lufs: f64,
    peak_dbfs: f64,
    true_peak_dbfs: f64,
}

/// Decoded blocks waiting for the meter; bounds memory when metering falls behind.
const METER_QUEUE: usize = 64;

/// Decodes every frame on this thread while a second thread meters, so a long clip costs
/// about the slower of the two rather than their sum (a Pi has 4 cores; the test machine 2).
fn decode_and_measure(mut decoder: ClipDecoder) -> Result<Measured, AnalysisError> {
    let (channels, sample_rate) = (decoder.channels(), decoder.sample_rate());
    let (to_meter, from_decoder) = mpsc::sync_channel::<Vec<f32>>(METER_QUEUE);
    std::thread::scope(|scope| {
        let metering = scope.spawn(move || meter_blocks(from_decoder, channels, sample_rate));
        // The decoder itself refuses a file whose decoded samples disagree with its frames.
        let decoded: Result<(), AnalysisError> = loop {
            match decoder.next_block() {
                Ok(Some(block)) => {
                    if to_meter.send(block.to_vec()).is_err() {
                        break Ok(()); // the meter stopped; its panic surfaces at join
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(rejection(e)),
            }
        };
        drop(to_meter);
        let meter = metering.join().expect("metering thread does not panic");
        decoded?;
        let peak_of = |f: &dyn Fn(u32) -> Result<f64, ebur128::Error>| {
            (0..u32::from(channels)).map(|c| f(c).unwrap_or(0.0)).fold(0.0, f64::max)
        };
        Ok(Measured {
            loudness_lufs: meter.loudness_global().unwrap_or(f64::NEG_INFINITY),
            peak_dbfs: dbfs(peak_of(&|c| meter.sample_peak(c))),
            true_peak_dbfs: dbfs(peak_of(&|c| meter.true_peak(c))),
        })
    })
}

fn meter_blocks(blocks: mpsc::Receiver<Vec<f32>>, channels: u16, sample_rate: u32) -> EbuR128 {
    let mut meter = EbuR128::new(u32::from(channels), sample_rate, Mode::I | Mode::SAMPLE_PEAK | Mode::TRUE_PEAK)
        .expect("MP3 channel counts and rates are within ebur128's range");
    for block in blocks {
        meter.add_frames_f32(&block).expect("blocks hold whole frames of the meter's channel count");
    }
    meter
}
