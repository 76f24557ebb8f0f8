//! One MPEG audio frame header (ISO 11172-3, 13818-3 and MPEG-2.5): what it declares and how
//! long its frame is. Only a header that could be real parses: free format, a reserved rate,
//! bitrate or emphasis are not headers (they are how junk is told from audio).

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Header {
    pub(super) version: Version,
    pub(super) layer: u8,
    pub(super) protected: bool,
    pub(super) bitrate_kbps: u32,
    pub(super) sample_rate: u32,
    pub(super) padding: bool,
    pub(super) mono: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Version {
    Mpeg1,
    Mpeg2,
    Mpeg25,
}

impl Header {
    pub(super) fn parse(word: u32) -> Option<Header> {
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
    pub(super) fn frame_len(&self) -> u64 {
        let bits_per_second = self.bitrate_kbps as u64 * 1000;
        let rate = self.sample_rate as u64;
        match (self.layer, self.version) {
            (1, _) => (12 * bits_per_second / rate + self.padding as u64) * 4,
            (3, Version::Mpeg2 | Version::Mpeg25) => 72 * bits_per_second / rate + self.padding as u64,
            _ => 144 * bits_per_second / rate + self.padding as u64,
        }
    }

    /// Frames the decoder can take one after another: one format throughout.
    pub(super) fn same_stream(&self, other: &Header) -> bool {
        self.version == other.version
            && self.layer == other.layer
            && self.sample_rate == other.sample_rate
            && self.mono == other.mono
    }

    pub(super) fn samples_per_frame(&self) -> u32 {
        match (self.layer, self.version) {
            (1, _) => 384,
            (3, Version::Mpeg2 | Version::Mpeg25) => 576,
            _ => 1152,
        }
    }

    /// Offset of a Xing/Info tag: after the header and the side information. (LAME writes it
    /// there even in CRC-protected streams, where the CRC would push the side information on.)
    pub(super) fn xing_offset(&self) -> usize {
        let side_info = match (self.version == Version::Mpeg1, self.mono) {
            (true, false) => 32,
            (true, true) => 17,
            (false, false) => 17,
            (false, true) => 9,
        };
        4 + side_info
    }

    pub(super) fn version_name(&self) -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_headers_parse_to_their_frame_lengths() {
        // MPEG-1 Layer III, 128 kb/s, 44.1 kHz, stereo, no CRC, no padding: 417 bytes.
        let h = Header::parse(0xFFFB_9064).unwrap();
        assert_eq!(
            (h.version, h.layer, h.bitrate_kbps, h.sample_rate, h.mono),
            (Version::Mpeg1, 3, 128, 44_100, false)
        );
        assert_eq!((h.frame_len(), h.samples_per_frame(), h.protected), (417, 1152, false));
        // The same with the padding bit: one byte more.
        assert_eq!(Header::parse(0xFFFB_9264).unwrap().frame_len(), 418);
        // MPEG-2 Layer III, 64 kb/s, 22.05 kHz, mono, CRC: 576 samples, 72 × bitrate / rate.
        let h = Header::parse(0xFFF2_80C0).unwrap();
        assert_eq!((h.version, h.sample_rate, h.mono, h.protected), (Version::Mpeg2, 22_050, true, true));
        assert_eq!((h.frame_len(), h.samples_per_frame(), h.xing_offset()), (208, 576, 13));
        // MPEG-2.5, 8 kHz.
        assert_eq!(Header::parse(0xFFE3_2800).unwrap().sample_rate, 8_000);
    }

    #[test]
    fn what_cannot_be_a_header_is_not_one() {
        for word in [
            0x0000_0000, // no sync
            0xFFFB_0064, // free format
            0xFFFB_F064, // bitrate index 15
            0xFFFB_9C64, // reserved sample rate
            0xFFFB_9066, // reserved emphasis
            0xFFEB_9064, // reserved version
            0xFFF9_9064, // reserved layer
        ] {
            assert_eq!(Header::parse(word), None, "{word:#010x}");
        }
    }
}
