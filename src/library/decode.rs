//! One decoder for ingest and air, so what airs is exactly what was measured.
//!
//! The frames come from our own walk of the file (`mp3::Frames`), not from a demuxer's
//! guess: every frame the walker finds is decoded (symphonia's Layer III decoder), a Xing/Info
//! frame never is, and encoder delay and padding are trimmed only as a valid LAME tag states
//! them (`mp3::Layout::playable`). The decoder must yield exactly `samples_per_frame` samples
//! per frame; anything else is refused, never rounded into a length.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::Path;

use symphonia::core::codecs::audio::well_known::CODEC_ID_MP3;
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::packet::PacketRef;
use symphonia::core::units::{Duration, Timestamp};
use symphonia::default::codecs::MpaDecoder;

use crate::library::mp3::{self, Layout, Problem};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read the clip: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Invalid(#[from] Problem),
    #[error("the audio cannot be decoded at {seconds:.1} s ({message}); re-export or re-encode the file")]
    Undecodable { seconds: f64, message: String },
}

/// A clip being decoded, block by block (one MP3 frame's samples, interleaved, trimmed).
pub struct ClipDecoder {
    frames: mp3::Frames<File>,
    decoder: MpaDecoder,
    packet: Vec<u8>,
    block: Vec<f32>,
    /// Samples per channel decoded so far, before trimming.
    decoded: u64,
    keep: Range<u64>,
}

impl ClipDecoder {
    /// Walks the whole file (every header, so its length is known and checked), then stands
    /// ready to decode it from the first audio frame.
    pub fn open(path: &Path) -> Result<ClipDecoder, DecodeError> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let frames = mp3::Frames::open(file, len)??;
        let mut params = AudioCodecParameters::new();
        params.for_codec(CODEC_ID_MP3);
        // Gapless off: the trim is ours, from the tag, applied below.
        let decoder = MpaDecoder::try_new(&params, &AudioDecoderOptions::default().gapless(false))
            .map_err(|e| DecodeError::Undecodable { seconds: 0.0, message: e.to_string() })?;
        let keep = frames.layout().playable();
        Ok(ClipDecoder { frames, decoder, packet: Vec::new(), block: Vec::new(), decoded: 0, keep })
    }

    pub fn layout(&self) -> &Layout {
        self.frames.layout()
    }

    pub fn sample_rate(&self) -> u32 {
        self.layout().sample_rate
    }

    pub fn channels(&self) -> u16 {
        self.layout().channels
    }

    /// The bulletin's length in samples per channel: what [`next_block`](Self::next_block)
    /// yields in all.
    pub fn frames(&self) -> u64 {
        self.keep.end - self.keep.start
    }

    /// The next block of interleaved samples in [-1, 1]; `None` once every frame is decoded.
    pub fn next_block(&mut self) -> Result<Option<&[f32]>, DecodeError> {
        let layout = self.frames.layout();
        let (per_frame, channels) = (u64::from(layout.samples_per_frame), usize::from(layout.channels));
        let (all_frames, all_decoded) = (layout.frames, layout.decoded_frames());
        loop {
            if !self.frames.next_frame(&mut self.packet)?? {
                return if self.decoded == all_decoded {
                    Ok(None)
                } else {
                    Err(self.undecodable(format!(
                        "{all_frames} frames were found but {} were decoded",
                        self.decoded / per_frame
                    )))
                };
            }
            let packet = PacketRef::new(0, Timestamp::new(self.decoded as i64), Duration::new(per_frame), &self.packet);
            let decoded = match self.decoder.decode_ref(&packet) {
                Ok(buffer) if buffer.frames() as u64 == per_frame && buffer.spec().channels().count() == channels => {
                    self.block.resize(buffer.frames() * channels, 0.0);
                    buffer.copy_to_slice_interleaved(&mut self.block[..]);
                    Ok(())
                }
                Ok(buffer) => Err(format!(
                    "a frame decoded to {} samples of {} channels, not {per_frame} of {channels}",
                    buffer.frames(),
                    buffer.spec().channels().count()
                )),
                Err(e) => Err(e.to_string()),
            };
            decoded.map_err(|message| self.undecodable(message))?;
            let start = self.decoded;
            self.decoded += per_frame;
            let (from, to) = (self.keep.start.max(start), self.keep.end.min(self.decoded));
            if from < to {
                let (from, to) = ((from - start) as usize * channels, (to - start) as usize * channels);
                return Ok(Some(&self.block[from..to]));
            }
        }
    }

    fn undecodable(&self, message: String) -> DecodeError {
        let seconds = self.decoded as f64 / f64::from(self.sample_rate().max(1));
        DecodeError::Undecodable { seconds, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
    }

    /// Decodes the whole clip: samples per channel, and the largest absolute sample.
    fn decode_all(decoder: &mut ClipDecoder) -> (u64, f32) {
        let (mut samples, mut peak) = (0u64, 0f32);
        while let Some(block) = decoder.next_block().unwrap() {
            samples += block.len() as u64;
            peak = block.iter().fold(peak, |p, x| p.max(x.abs()));
        }
        (samples / u64::from(decoder.channels()), peak)
    }

    #[test]
    fn every_encoding_decodes_to_exactly_the_frames_its_walk_counted() {
        for name in
            ["cbr128_stereo_44k.mp3", "vbr_stereo_44k.mp3", "mono_22k.mp3", "mpeg25_8k.mp3", "crc_protected.mp3"]
        {
            let mut decoder = ClipDecoder::open(&fixture(name)).unwrap();
            let expected = decoder.frames();
            let (decoded, peak) = decode_all(&mut decoder);
            assert_eq!(decoded, expected, "{name}");
            // A -6 dBFS tone: the peak is about 0.5 (an MP3's overshoot aside).
            assert!((0.4..0.65).contains(&peak), "{name}: peak {peak}");
            // 2.000 s encoded; a gapless tag gives it back to the sample.
            if decoder.layout().gapless.is_some() {
                assert_eq!(decoded, 2 * u64::from(decoder.sample_rate()), "{name}");
            }
        }
    }

    #[test]
    fn a_file_that_is_not_mp3_is_refused_before_decoding() {
        assert!(ClipDecoder::open(&fixture("wav_renamed.mp3")).is_err());
        assert!(ClipDecoder::open(&fixture("no-such-file.mp3")).is_err());
    }
}
