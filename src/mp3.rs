//! The MP3 container, walked frame by frame before anything is decoded.
//!
//! symphonia's demuxer is built to play whatever it can: it skips junk, resyncs, and treats a
//! cut-off last frame as a normal end of stream. A broadcast library needs the opposite: know
//! that the file is MPEG Layer III from its first frame to its last, and notice when it was cut
//! short. This walker reads only frame headers (and the first frame, for a Xing/Info/VBRI count)
//! and says precisely what is wrong; the full decode in `analysis` does the rest.

use std::io::{self, BufRead, BufReader, Read, Seek};

/// How far past the tags we look for the first frame before calling the file not-MP3.
const FIRST_FRAME_SEARCH: u64 = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Audio frames, not counting a Xing/Info/VBRI frame.
    pub frames: u64,
    /// Frame count the Xing/Info/VBRI header declares, when there is one.
    pub declared_frames: Option<u64>,
    pub sample_rate: u32,
    pub version: &'static str,
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

#[derive(Debug, Clone, Copy, PartialEq)]
struct Header {
    version: Version,
    layer: u8,
    protected: bool,
    bitrate_kbps: u32,
    sample_rate: u32,
    padding: bool,
    mono: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Mpeg1,
    Mpeg2,
    Mpeg25,
}

impl Header {
    fn parse(word: u32) -> Option<Header> {
        if word >> 21 != 0x7ff {
            return None;
        }
        let version = match (word >> 19) & 3 {
            0 => Version::Mpeg25,
            2 => Version::Mpeg2,
            3 => Version::Mpeg1,
            _ => return None,
        };
        let layer = match (word >> 17) & 3 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => return None,
        };
        let bitrate_index = ((word >> 12) & 0xf) as usize;
        let rate_index = ((word >> 10) & 3) as usize;
        if bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 || word & 3 == 2 {
            return None; // free format, bad bitrate, reserved rate or reserved emphasis
        }
        const RATES: [u32; 3] = [44100, 48000, 32000];
        let sample_rate = RATES[rate_index]
            / match version {
                Version::Mpeg1 => 1,
                Version::Mpeg2 => 2,
                Version::Mpeg25 => 4,
            };
        let bitrate_kbps = bitrate_kbps(version, layer, bitrate_index);
        Some(Header {
            version,
            layer,
            protected: (word >> 16) & 1 == 0,
            bitrate_kbps,
            sample_rate,
            padding: (word >> 9) & 1 == 1,
            mono: (word >> 6) & 3 == 3,
        })
    }

    /// Bytes in a frame, header included (ISO 11172-3 and 13818-3).
    fn frame_len(&self) -> u64 {
        let bits_per_second = self.bitrate_kbps as u64 * 1000;
        let rate = self.sample_rate as u64;
        match (self.layer, self.version) {
            (1, _) => (12 * bits_per_second / rate + self.padding as u64) * 4,
            (3, Version::Mpeg2 | Version::Mpeg25) => 72 * bits_per_second / rate + self.padding as u64,
            _ => 144 * bits_per_second / rate + self.padding as u64,
        }
    }

    fn same_stream(&self, other: &Header) -> bool {
        self.version == other.version && self.layer == other.layer && self.sample_rate == other.sample_rate
    }

    /// Offset of a Xing/Info tag: after the header and the side information. (LAME writes it
    /// there even in CRC-protected streams, where the CRC would push the side information on.)
    fn xing_offset(&self) -> usize {
        let side_info = match (self.version == Version::Mpeg1, self.mono) {
            (true, false) => 32,
            (true, true) => 17,
            (false, false) => 17,
            (false, true) => 9,
        };
        4 + side_info
    }

    fn version_name(&self) -> &'static str {
        match self.version {
            Version::Mpeg1 => "MPEG-1 Layer III",
            Version::Mpeg2 => "MPEG-2 Layer III",
            Version::Mpeg25 => "MPEG-2.5 Layer III",
        }
    }
}

fn bitrate_kbps(version: Version, layer: u8, index: usize) -> u32 {
    const MPEG1: [[u32; 15]; 3] = [
        [0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
        [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
        [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    ];
    const MPEG2_LAYER1: [u32; 15] = [0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256];
    const MPEG2_LAYERS23: [u32; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    match (version, layer) {
        (Version::Mpeg1, _) => MPEG1[layer as usize - 1][index],
        (_, 1) => MPEG2_LAYER1[index],
        _ => MPEG2_LAYERS23[index],
    }
}

/// Walks `reader` (of `len` bytes) and describes its MP3 frame layout, or says what is wrong.
pub fn scan<R: Read + Seek>(reader: R, len: u64) -> io::Result<Result<Layout, Problem>> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let audio_start = skip_id3v2(&mut reader, len)?;
    let audio_end = trailing_tags_start(&mut reader, audio_start, len)?;
    if audio_start >= audio_end {
        return Ok(Err(Problem::NoAudio(format!("the file holds only tags ({len} bytes) and no audio"))));
    }
    if let Some(kind) = sniff_other_format(&mut reader, audio_start, audio_end)? {
        let fix = if kind.is_audio {
            "convert it, e.g. `ffmpeg -i INPUT -codec:a libmp3lame -b:a 64k OUTPUT.mp3`"
        } else {
            "choose the recording (the .mp3 audio file) instead"
        };
        return Ok(Err(Problem::NotMp3(format!("this is {}, not MP3 audio; {fix}", kind.name))));
    }
    let Some((first_pos, first)) = find_first_frame(&mut reader, audio_start, audio_end)? else {
        return Ok(Err(if all_zero(&mut reader, audio_start, audio_end)? {
            Problem::NoAudio("there is no audio after the tags, only empty bytes".into())
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
    let declared_frames = read_declared_frames(&mut reader, first_pos, &first)?;

    let mut frames = 0u64;
    let mut pos = first_pos;
    while pos < audio_end {
        let remaining = audio_end - pos;
        if remaining < 4 && !all_zero(&mut reader, pos, audio_end)? {
            return Ok(Err(Problem::Truncated(format!(
                "the file is cut short: it ends {remaining} byte(s) into a frame header at byte {pos}; upload the complete file"
            ))));
        }
        match read_header(&mut reader, pos)? {
            Some(h) if h.same_stream(&first) => {
                if h.frame_len() > remaining {
                    return Ok(Err(Problem::Truncated(format!(
                        "the file is cut short: its last frame (at byte {pos}) has {remaining} of {} bytes; upload the complete file",
                        h.frame_len()
                    ))));
                }
                frames += 1;
                pos += h.frame_len();
            }
            _ if all_zero(&mut reader, pos, audio_end)? => break,
            _ => {
                return Ok(Err(Problem::Corrupt(format!(
                    "the audio is damaged: byte {pos} of {len} is not the start of an MP3 frame; re-export or re-encode the file"
                ))));
            }
        }
    }
    let frames = frames - declared_frames.is_some() as u64;
    Ok(Ok(Layout { frames, declared_frames, sample_rate: first.sample_rate, version: first.version_name() }))
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
        _ if looks_like_text(&head) => other("a text file"),
        _ => return Ok(None),
    }))
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

/// Frame count from a Xing/Info or VBRI header in the first frame.
fn read_declared_frames<R: Read + Seek>(
    reader: &mut BufReader<R>,
    pos: u64,
    header: &Header,
) -> io::Result<Option<u64>> {
    let mut frame = vec![0u8; header.frame_len() as usize];
    if !read_at(reader, pos, &mut frame)? {
        return Ok(None);
    }
    let be32 = |at: usize| frame.get(at..at + 4).map(|b| u64::from(u32::from_be_bytes(b.try_into().expect("4 bytes"))));
    let crc_len = if header.protected { 2 } else { 0 };
    for xing in [header.xing_offset(), header.xing_offset() + crc_len] {
        if matches!(frame.get(xing..xing + 4), Some(b"Xing" | b"Info")) {
            let flags = be32(xing + 4).unwrap_or(0);
            return Ok(if flags & 1 != 0 { be32(xing + 8) } else { None });
        }
    }
    const VBRI_OFFSET: usize = 36;
    if frame.get(VBRI_OFFSET..VBRI_OFFSET + 4) == Some(b"VBRI") {
        return Ok(be32(VBRI_OFFSET + 14));
    }
    Ok(None)
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
