//! The MP3 container, walked frame by frame: what is audio, where it ends, what it declares.
//!
//! A general demuxer (symphonia's, ffmpeg's) is built to play whatever it can: it skips junk,
//! resyncs, treats a cut-off last frame as a normal end, and estimates a stream's length from
//! its first frames when no tag says it. A broadcast library needs the opposite: know that the
//! file is MPEG Layer III from its first frame to its last, know exactly how many frames it
//! holds, and say precisely what is wrong. [`Frames::open`] walks every frame header once and
//! checks the whole file; [`Frames`] then hands the same frames, in the same order, to the
//! decoder (`decode`), so the length of a clip is the audio in it and never a header's estimate.
//!
//! A first frame carrying a Xing/Info or VBRI tag is not audio. Encoder delay and padding are
//! trimmed only as a valid LAME tag (its CRC checks) states them, exactly as ffmpeg and mpg123
//! do: skip `delay + 529` decoded samples (529: the Layer III decoder's own delay) and keep
//! `frames × samples_per_frame − delay − padding`.

mod header;

use std::io::{self, BufRead, BufReader, Read, Seek};

use header::Header;
use std::ops::Range;

/// How far past the tags we look for the first frame before calling the file not-MP3.
const FIRST_FRAME_SEARCH: u64 = 64 * 1024;
/// The Layer III decoder's delay (the synthesis filterbank's), in samples, which a LAME tag's
/// encoder delay does not include.
const DECODER_DELAY: u64 = 529;

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Byte offset of the first audio frame (after a Xing/Info/VBRI frame, if any).
    pub audio_start: u64,
    /// Byte offset where the frames end (trailing tags and zero padding excluded).
    pub audio_end: u64,
    /// Audio frames, not counting a Xing/Info/VBRI frame.
    pub frames: u64,
    /// Frame count the Xing/Info or VBRI tag declares, when there is one.
    pub declared_frames: Option<u64>,
    /// Encoder delay and padding, from a valid LAME tag only.
    pub gapless: Option<Gapless>,
    pub sample_rate: u32,
    pub channels: u16,
    /// Decoded samples (per channel) in each frame: 1152 (MPEG-1) or 576 (MPEG-2 and 2.5).
    pub samples_per_frame: u32,
    pub version: &'static str,
}

/// What a LAME tag says the encoder added around the audio, in samples per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gapless {
    pub delay: u32,
    pub padding: u32,
}

impl Layout {
    /// Samples per channel the decoder produces for all the frames.
    pub fn decoded_frames(&self) -> u64 {
        self.frames * u64::from(self.samples_per_frame)
    }

    /// Which of the decoded samples (per channel) are the bulletin: all of them, unless a
    /// valid LAME tag says how much the encoder added at each end.
    pub fn playable(&self) -> Range<u64> {
        let decoded = self.decoded_frames();
        match self.gapless {
            None => 0..decoded,
            Some(Gapless { delay, padding }) => {
                let start = (u64::from(delay) + DECODER_DELAY).min(decoded);
                let end = (decoded + DECODER_DELAY).saturating_sub(u64::from(padding)).clamp(start, decoded);
                start..end
            }
        }
    }

    /// The bulletin's length in samples per channel.
    pub fn playable_frames(&self) -> u64 {
        let range = self.playable();
        range.end - range.start
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    NotMp3(String),
    #[error("{0}")]
    NoAudio(String),
    #[error("{0}")]
    Truncated(String),
    #[error("{0}")]
    Corrupt(String),
}

/// The audio frames of a stream, walked once to be counted and checked, then handed out one
/// after another.
pub struct Frames<R> {
    reader: BufReader<R>,
    layout: Layout,
    first: Header,
    pos: u64,
    len: u64,
}

impl<R: Read + Seek> Frames<R> {
    /// Finds the first audio frame of `reader` (of `len` bytes), past tags and any Xing/Info
    /// or VBRI frame, walks every frame header after it (so the frame count is known and the
    /// whole file checked), and stands at the first frame again; or says what is wrong.
    pub fn open(reader: R, len: u64) -> io::Result<Result<Frames<R>, Problem>> {
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        let tags_end = skip_id3v2(&mut reader, len)?;
        let audio_end = trailing_tags_start(&mut reader, tags_end, len)?;
        if tags_end >= audio_end {
            return Ok(Err(Problem::NoAudio(format!("the file holds only tags ({len} bytes) and no audio"))));
        }
        if let Some(kind) = sniff_other_format(&mut reader, tags_end, audio_end)? {
            let fix = if kind.is_audio {
                "convert it, e.g. `ffmpeg -i INPUT -codec:a libmp3lame -b:a 64k OUTPUT.mp3`"
            } else {
                "choose the recording (the .mp3 audio file) instead"
            };
            return Ok(Err(Problem::NotMp3(format!("this is {}, not MP3 audio; {fix}", kind.name))));
        }
        let Some((first_pos, first)) = find_first_frame(&mut reader, tags_end, audio_end)? else {
            return Ok(Err(if all_zero(&mut reader, tags_end, audio_end)? {
                Problem::NoAudio("there is no audio after the tags, only empty bytes".into())
            } else if starts_with_text(&mut reader, tags_end, audio_end)? {
                Problem::NotMp3(
                    "this is a text file, not MP3 audio; choose the recording (the .mp3 audio file) instead".into(),
                )
            } else {
                Problem::NotMp3(
                    "no MP3 audio frames were found; this is not an MP3 file (choose the recording, or convert it to MP3)"
                        .into(),
                )
            }));
        };
        if first.layer != 3 {
            let kind = if first.layer == 2 { "MPEG Layer II audio (MP2)" } else { "MPEG Layer I audio (MP1)" };
            return Ok(Err(Problem::NotMp3(format!(
                "this is {kind}, not MP3; convert it, e.g. `ffmpeg -i INPUT -codec:a libmp3lame -b:a 64k OUTPUT.mp3`"
            ))));
        }
        let tag = read_tag_frame(&mut reader, first_pos, &first)?;
        let audio_start = if tag.is_some() { first_pos + first.frame_len() } else { first_pos };
        let layout = Layout {
            audio_start,
            audio_end,
            frames: 0,
            declared_frames: tag.and_then(|t| t.declared_frames),
            gapless: tag.and_then(|t| t.gapless),
            sample_rate: first.sample_rate,
            channels: if first.mono { 1 } else { 2 },
            samples_per_frame: first.samples_per_frame(),
            version: first.version_name(),
        };
        let mut walk = Frames { reader, layout, first, pos: audio_start, len };
        loop {
            match walk.next_header()? {
                Ok(Some(_)) => walk.layout.frames += 1,
                Ok(None) => break,
                Err(problem) => return Ok(Err(problem)),
            }
        }
        walk.pos = audio_start;
        Ok(Ok(walk))
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The next frame's position and length in bytes, checked against the first; `None` at
    /// the end of the audio.
    fn next_header(&mut self) -> io::Result<Result<Option<(u64, u64)>, Problem>> {
        let (pos, end, len) = (self.pos, self.layout.audio_end, self.len);
        if pos >= end {
            return Ok(Ok(None));
        }
        let remaining = end - pos;
        if remaining < 4 && !all_zero(&mut self.reader, pos, end)? {
            return Ok(Err(Problem::Truncated(format!(
                "the file is cut short: it ends {remaining} byte(s) into a frame header at byte {pos}; upload the complete file"
            ))));
        }
        match read_header(&mut self.reader, pos)? {
            Some(h) if h.same_stream(&self.first) => {
                if h.frame_len() > remaining {
                    return Ok(Err(Problem::Truncated(format!(
                        "the file is cut short: its last frame (at byte {pos}) has {remaining} of {} bytes; upload the complete file",
                        h.frame_len()
                    ))));
                }
                self.pos += h.frame_len();
                Ok(Ok(Some((pos, h.frame_len()))))
            }
            _ if all_zero(&mut self.reader, pos, end)? => {
                self.pos = end;
                Ok(Ok(None))
            }
            _ => Ok(Err(Problem::Corrupt(format!(
                "the audio is damaged: byte {pos} of {len} is not the start of an MP3 frame; re-export or re-encode the file"
            )))),
        }
    }

    /// Reads the next audio frame, header included, into `frame`; `false` at the end.
    pub fn next_frame(&mut self, frame: &mut Vec<u8>) -> io::Result<Result<bool, Problem>> {
        let (pos, len) = match self.next_header()? {
            Ok(Some(at)) => at,
            Ok(None) => return Ok(Ok(false)),
            Err(problem) => return Ok(Err(problem)),
        };
        frame.resize(len as usize, 0);
        if !read_at(&mut self.reader, pos, frame)? {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was read"));
        }
        Ok(Ok(true))
    }
}

fn read_at<R: Read + Seek>(reader: &mut BufReader<R>, pos: u64, buf: &mut [u8]) -> io::Result<bool> {
    let here = reader.stream_position()?;
    reader.seek_relative(pos as i64 - here as i64)?;
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn read_header<R: Read + Seek>(reader: &mut BufReader<R>, pos: u64) -> io::Result<Option<Header>> {
    let mut word = [0u8; 4];
    Ok(if read_at(reader, pos, &mut word)? { Header::parse(u32::from_be_bytes(word)) } else { None })
}

/// ID3v2 tags (possibly several) at the start; returns where the audio begins.
fn skip_id3v2<R: Read + Seek>(reader: &mut BufReader<R>, len: u64) -> io::Result<u64> {
    let mut pos = 0;
    let mut head = [0u8; 10];
    while read_at(reader, pos, &mut head)? && &head[..3] == b"ID3" {
        let size = head[6..10].iter().fold(0u64, |acc, b| (acc << 7) | u64::from(b & 0x7f));
        let footer = if head[5] & 0x10 != 0 { 10 } else { 0 };
        pos = (pos + 10 + size + footer).min(len);
    }
    Ok(pos)
}

/// Where trailing ID3v1 and APEv2 tags begin (or `len` when there are none).
fn trailing_tags_start<R: Read + Seek>(reader: &mut BufReader<R>, start: u64, len: u64) -> io::Result<u64> {
    let mut end = len;
    if end >= start + 128 {
        let mut tag = [0u8; 3];
        if read_at(reader, end - 128, &mut tag)? && &tag == b"TAG" {
            end -= 128;
        }
    }
    if end >= start + 32 {
        let mut footer = [0u8; 32];
        if read_at(reader, end - 32, &mut footer)? && &footer[..8] == b"APETAGEX" {
            let size = u64::from(u32::from_le_bytes(footer[12..16].try_into().expect("4 bytes")));
            let has_header = footer[23] & 0x80 != 0;
            end = end.saturating_sub(size + if has_header { 32 } else { 0 }).max(start);
        }
    }
    Ok(end)
}

struct OtherFormat {
    name: &'static str,
    is_audio: bool,
}

fn sniff_other_format<R: Read + Seek>(
    reader: &mut BufReader<R>,
    pos: u64,
    end: u64,
) -> io::Result<Option<OtherFormat>> {
    let mut head = vec![0u8; (end - pos).min(512) as usize];
    read_at(reader, pos, &mut head)?;
    let mut magic = [0u8; 12];
    let n = head.len().min(12);
    magic[..n].copy_from_slice(&head[..n]);
    let audio = |name| OtherFormat { name, is_audio: true };
    let other = |name| OtherFormat { name, is_audio: false };
    Ok(Some(match magic {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E'] => audio("a WAV file"),
        [b'f', b'L', b'a', b'C', ..] => audio("a FLAC file"),
        [b'O', b'g', b'g', b'S', ..] => audio("an Ogg (Vorbis/Opus) file"),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => audio("an MP4/M4A file"),
        [b'F', b'O', b'R', b'M', ..] => audio("an AIFF file"),
        [b'#', b'!', b'A', b'M', b'R', ..] => audio("an AMR voice recording"),
        [0x30, 0x26, 0xb2, 0x75, ..] => audio("a WMA file"),
        [b'%', b'P', b'D', b'F', ..] => other("a PDF document"),
        [b'P', b'K', 3, 4, ..] => other("a ZIP/Office document"),
        _ => return Ok(None),
    }))
}

/// Whether the audio part begins like a text file (only asked once no MP3 frame was found:
/// junk before the first frame may well look like text).
fn starts_with_text<R: Read + Seek>(reader: &mut BufReader<R>, pos: u64, end: u64) -> io::Result<bool> {
    let mut head = vec![0u8; (end - pos).min(512) as usize];
    read_at(reader, pos, &mut head)?;
    Ok(looks_like_text(&head))
}

/// UTF-8 (Vietnamese included) with no control characters but whitespace.
fn looks_like_text(bytes: &[u8]) -> bool {
    let valid = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        // The sample may end inside a multi-byte character.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid prefix"),
        Err(_) => return false,
    };
    !valid.is_empty() && valid.chars().all(|c| !c.is_control() || c.is_whitespace())
}

/// The first position with two consecutive, consistent frame headers.
fn find_first_frame<R: Read + Seek>(
    reader: &mut BufReader<R>,
    start: u64,
    end: u64,
) -> io::Result<Option<(u64, Header)>> {
    let limit = (start + FIRST_FRAME_SEARCH).min(end);
    for pos in start..limit {
        let Some(first) = read_header(reader, pos)? else { continue };
        let next = pos + first.frame_len();
        if next == end {
            return Ok(Some((pos, first))); // a one-frame file: nothing to chain to
        }
        if read_header(reader, next)?.is_some_and(|second| second.same_stream(&first)) {
            return Ok(Some((pos, first)));
        }
    }
    Ok(None)
}

/// What a first frame that carries a tag instead of audio declares.
#[derive(Debug, Clone, Copy)]
struct TagFrame {
    declared_frames: Option<u64>,
    gapless: Option<Gapless>,
}

/// Reads a Xing/Info (with its LAME extension) or VBRI tag from the first frame, if it is one.
fn read_tag_frame<R: Read + Seek>(
    reader: &mut BufReader<R>,
    pos: u64,
    header: &Header,
) -> io::Result<Option<TagFrame>> {
    let mut frame = vec![0u8; header.frame_len() as usize];
    if !read_at(reader, pos, &mut frame)? {
        return Ok(None);
    }
    let be32 = |at: usize| frame.get(at..at + 4).map(|b| u64::from(u32::from_be_bytes(b.try_into().expect("4 bytes"))));
    let crc_len = if header.protected { 2 } else { 0 };
    for xing in [header.xing_offset(), header.xing_offset() + crc_len] {
        if matches!(frame.get(xing..xing + 4), Some(b"Xing" | b"Info")) {
            let flags = be32(xing + 4).unwrap_or(0);
            let declared_frames = if flags & 1 != 0 { be32(xing + 8) } else { None };
            // The optional fields the flags announce: frames, bytes, table of contents, quality.
            let lame = xing
                + 8
                + [(1, 4), (2, 4), (4, 100), (8, 4)]
                    .iter()
                    .filter(|(flag, _)| flags & flag != 0)
                    .map(|(_, size)| size)
                    .sum::<usize>();
            return Ok(Some(TagFrame { declared_frames, gapless: lame_gapless(&frame, lame) }));
        }
    }
    const VBRI_OFFSET: usize = 36;
    if frame.get(VBRI_OFFSET..VBRI_OFFSET + 4) == Some(b"VBRI") {
        return Ok(Some(TagFrame { declared_frames: be32(VBRI_OFFSET + 14), gapless: None }));
    }
    Ok(None)
}

/// Encoder delay and padding from the LAME extension at `at` in the tag frame, when it is
/// there and written by an encoder that fills it: LAME, whose tag CRC (over the frame up to
/// the CRC itself) must check, or ffmpeg's libavformat/libavcodec, which computes its CRC over
/// a fixed 190 bytes (past the tag in MPEG-2 and mono frames), so that it cannot vouch for it;
/// ffmpeg and mpg123 trust both, and so do we.
fn lame_gapless(frame: &[u8], at: usize) -> Option<Gapless> {
    const LENGTH: usize = 36;
    const DELAYS: usize = 21;
    const TAG_CRC: usize = 34;
    let tag = frame.get(at..at + LENGTH)?;
    let stored = u16::from_be_bytes([tag[TAG_CRC], tag[TAG_CRC + 1]]);
    let valid = match &tag[..4] {
        b"LAME" => crc16_arc(&frame[..at + TAG_CRC]) == stored,
        b"Lavf" | b"Lavc" => true,
        _ => false,
    };
    if !valid {
        return None;
    }
    let delays = u32::from_be_bytes([0, tag[DELAYS], tag[DELAYS + 1], tag[DELAYS + 2]]);
    Some(Gapless { delay: delays >> 12, padding: delays & 0xfff })
}

/// CRC-16/ARC (polynomial 0x8005, reflected, initial 0), the LAME tag's checksum.
fn crc16_arc(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(crc ^ u16::from(byte), |crc, _| if crc & 1 != 0 { (crc >> 1) ^ 0xa001 } else { crc >> 1 })
    })
}

fn all_zero<R: Read + Seek>(reader: &mut BufReader<R>, from: u64, to: u64) -> io::Result<bool> {
    let here = reader.stream_position()?;
    reader.seek_relative(from as i64 - here as i64)?;
    let mut left = to - from;
    while left > 0 {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let n = buf.len().min(left as usize);
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        reader.consume(n);
        left -= n as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// Walks `bytes`: the layout and every frame handed out, or the problem found.
    fn walk(bytes: Vec<u8>) -> Result<(Layout, Vec<Vec<u8>>), Problem> {
        let len = bytes.len() as u64;
        let mut frames = Frames::open(io::Cursor::new(bytes), len).unwrap()?;
        let layout = frames.layout().clone();
        let (mut out, mut frame) = (Vec::new(), Vec::new());
        while frames.next_frame(&mut frame).unwrap()? {
            out.push(frame.clone());
        }
        Ok((layout, out))
    }

    #[test]
    fn the_walk_hands_out_every_counted_frame_and_not_the_info_frame() {
        // 2.000 s at 44.1 kHz, CBR 128 kb/s with a LAME Info frame.
        let (layout, frames) = walk(fixture("cbr128_stereo_44k.mp3")).unwrap();
        assert_eq!(frames.len() as u64, layout.frames);
        assert!(frames.iter().all(|f| f.len() == 417 || f.len() == 418), "each frame is one whole frame");
        assert_eq!(layout.playable_frames(), 88_200, "exactly the 2 s encoded, as the LAME tag states");
        assert!(layout.gapless.is_some() && layout.audio_start > 0, "the Info frame is not audio");
        // No tag at all: nothing is trimmed, the count is what the frames hold.
        let (layout, _) = walk(fixture("cbr_no_xing.mp3")).unwrap();
        assert_eq!((layout.gapless, layout.declared_frames), (None, None));
        let decoded = layout.frames * u64::from(layout.samples_per_frame);
        assert_eq!(layout.playable_frames(), decoded);
    }

    #[test]
    fn tags_around_the_audio_are_skipped_and_junk_or_a_cut_is_named() {
        let clean = fixture("cbr128_stereo_44k.mp3");
        let (layout, _) = walk(clean.clone()).unwrap();
        // An ID3v2 tag in front (10-byte header, 20 bytes of body) and an ID3v1 tag behind.
        let mut tagged = b"ID3\x04\x00\x00\x00\x00\x00\x14".to_vec();
        tagged.extend([0u8; 20]);
        tagged.extend(&clean);
        tagged.extend(b"TAG");
        tagged.extend([b' '; 125]);
        let (with_tags, _) = walk(tagged).unwrap();
        assert_eq!((with_tags.frames, with_tags.playable_frames()), (layout.frames, layout.playable_frames()));

        let mut cut = clean.clone();
        cut.truncate(clean.len() - 200);
        assert!(matches!(walk(cut), Err(Problem::Truncated(_))));
        let mut junk = clean[..clean.len() / 2].to_vec();
        junk.extend([0x55u8; 300]);
        junk.extend(&clean[clean.len() / 2..]);
        assert!(walk(junk).is_err(), "bytes that are not frames inside the audio are refused");
        assert!(matches!(walk(fixture("wav_renamed.mp3")), Err(Problem::NotMp3(_))));
        assert!(matches!(walk(fixture("layer2_renamed.mp3")), Err(Problem::NotMp3(_))));
        assert!(walk(Vec::new()).is_err());
    }

    #[test]
    fn the_lame_tag_checksum_is_crc16_arc() {
        assert_eq!(crc16_arc(b"123456789"), 0xbb3d); // the catalogue's check value
        assert_eq!(crc16_arc(b""), 0);
    }

    fn layout(frames: u64, samples_per_frame: u32, gapless: Option<Gapless>) -> Layout {
        Layout {
            audio_start: 0,
            audio_end: 0,
            frames,
            declared_frames: None,
            gapless,
            sample_rate: 44100,
            channels: 2,
            samples_per_frame,
            version: "MPEG-1 Layer III",
        }
    }

    #[test]
    fn a_lame_tag_trims_its_delay_plus_the_decoders_and_its_padding_less_the_decoders() {
        let tagged = layout(100, 1152, Some(Gapless { delay: 576, padding: 1300 }));
        assert_eq!(tagged.playable(), 1105..(115_200 + 529 - 1300));
        assert_eq!(tagged.playable_frames(), 115_200 - 576 - 1300);
        assert_eq!(layout(100, 576, None).playable(), 0..57_600);
    }

    #[test]
    fn a_tag_claiming_more_than_the_audio_trims_to_nothing_rather_than_underflowing() {
        let absurd = layout(2, 576, Some(Gapless { delay: 4095, padding: 4095 }));
        assert_eq!(absurd.playable_frames(), 0);
        let small_padding = layout(10, 1152, Some(Gapless { delay: 0, padding: 0 }));
        assert_eq!(small_padding.playable(), 529..11_520);
    }
}
