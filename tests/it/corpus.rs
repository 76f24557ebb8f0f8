//! The whole class of MP3 a ward receives, made here by the encoders themselves (LAME and
//! ffmpeg: CBR, ABR, VBR -V0…-V9, CRC-protected, with and without an Info/Xing tag, MPEG-1/2/2.5
//! from 8 to 48 kHz, mono/stereo/joint) plus the wrappings tools add (ID3v2 with padding,
//! trailing APEv2 and ID3v1, junk before the first frame). For each file `loa`'s length must
//! match ffmpeg's and mpg123's within one frame, and what reaches the ALSA device must be the
//! decoded audio, sample for sample, from the first to the last.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use loa::library::decode::ClipDecoder;

use crate::helpers::{Device, of_kind, station};

/// One file of the corpus: its name and how it was made.
pub struct Sample {
    pub name: String,
    pub path: PathBuf,
}

/// The corpus, generated once per test run (set `LOA_CORPUS_DIR` to keep it).
pub fn corpus() -> &'static [Sample] {
    static CORPUS: OnceLock<(Option<tempfile::TempDir>, Vec<Sample>)> = OnceLock::new();
    &CORPUS.get_or_init(generate).1
}

fn tool(name: &str, args: &[&str]) {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("the corpus needs `{name}` (apt-get install lame ffmpeg mpg123 sox): {e}"));
    assert!(out.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn generate() -> (Option<tempfile::TempDir>, Vec<Sample>) {
    let (keep, dir) = match std::env::var_os("LOA_CORPUS_DIR") {
        Some(dir) => (None, PathBuf::from(dir)),
        None => {
            let temp = tempfile::tempdir().expect("corpus dir");
            let dir = temp.path().to_owned();
            (Some(temp), dir)
        }
    };
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let wav = dir.join("source.wav");
    let wav = wav.to_str().unwrap();
    // 3 s of two sweeping tones, a different one per channel, faded in and out: audible from
    // its first sample to its last, like a bulletin, and easy to tell apart per channel.
    tool(
        "sox",
        &[
            "-n", "-r", "44100", "-c", "2", "-b", "16", wav, "synth", "3", "sine", "300-1200", "sine", "500-2400",
            "tremolo", "3", "60", "gain", "-8", "fade", "0.01", "3", "0.01",
        ],
    );
    let mut lame: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |name: String, args: &[&str]| lame.push((name, args.iter().map(|a| a.to_string()).collect()));
    for bitrate in ["32", "64", "128", "320"] {
        add(format!("lame-cbr{bitrate}"), &["-b", bitrate]);
    }
    add("lame-abr96".into(), &["--abr", "96"]);
    for quality in 0..=9 {
        let q = quality.to_string();
        add(format!("lame-v{quality}"), &["-V", &q]);
    }
    add("lame-crc-v5".into(), &["-p", "-V", "5"]);
    add("lame-crc-v7".into(), &["-p", "-V", "7"]);
    add("lame-crc-cbr128".into(), &["-p", "-b", "128"]);
    add("lame-crc-v5-mpeg2-22k".into(), &["-p", "-V", "5", "--resample", "22.05"]);
    add("lame-notag-v3".into(), &["-t", "-V", "3"]);
    add("lame-notag-cbr128".into(), &["-t", "-b", "128"]);
    add("lame-notag-crc-v7".into(), &["-t", "-p", "-V", "7"]);
    let modes = ["m", "j", "s"];
    for (i, rate) in ["8", "11.025", "12", "16", "22.05", "24", "32", "44.1", "48"].iter().enumerate() {
        let mode = modes[i % 3];
        add(format!("lame-{rate}k-{mode}"), &["--resample", rate, "-m", mode, "-V", "6"]);
        add(format!("lame-{rate}k-{mode}-notag"), &["-t", "--resample", rate, "-m", mode, "-V", "6"]);
    }
    add("lame-mono-cbr64".into(), &["-m", "m", "-b", "64"]);
    add("lame-stereo-cbr128".into(), &["-m", "s", "-b", "128"]);
    add("lame-joint-cbr128".into(), &["-m", "j", "-b", "128"]);
    add("lame-mono-v5-22k".into(), &["-V", "5", "-m", "m", "--resample", "22.05"]);

    let mut samples = Vec::new();
    for (name, args) in &lame {
        let path = dir.join(format!("{name}.mp3"));
        let mut full: Vec<&str> = vec!["--quiet"];
        full.extend(args.iter().map(String::as_str));
        full.extend([wav, path.to_str().unwrap()]);
        tool("lame", &full);
        samples.push(Sample { name: name.clone(), path });
    }
    let ffmpeg: [(&str, &[&str]); 5] = [
        ("ffmpeg-64k", &["-b:a", "64k"]),
        ("ffmpeg-16k-32k", &["-ar", "16000", "-b:a", "32k"]),
        ("ffmpeg-q4", &["-q:a", "4"]),
        ("ffmpeg-noxing-128k", &["-write_xing", "0", "-b:a", "128k"]),
        ("ffmpeg-mono-22k", &["-ac", "1", "-ar", "22050", "-b:a", "48k"]),
    ];
    for (name, args) in ffmpeg {
        let path = dir.join(format!("{name}.mp3"));
        let mut full = vec!["-y", "-v", "error", "-i", wav, "-codec:a", "libmp3lame"];
        full.extend(args);
        full.push(path.to_str().unwrap());
        tool("ffmpeg", &full);
        samples.push(Sample { name: name.into(), path });
    }
    // Wrappings other tools add around the same frames.
    let base = std::fs::read(dir.join("lame-v5.mp3")).unwrap();
    let mut wrapped = |name: &str, bytes: Vec<u8>| {
        let path = dir.join(format!("{name}.mp3"));
        std::fs::write(&path, bytes).unwrap();
        samples.push(Sample { name: name.into(), path });
    };
    wrapped("tags-id3v2-padded", [id3v2_with_padding(), base.clone()].concat());
    wrapped("tags-apev2-id3v1", [base.clone(), apev2(), id3v1()].concat());
    wrapped("junk-before-first-frame", [vec![0x4a; 700], base.clone()].concat());
    let binary_junk: Vec<u8> = (0..900u32).map(|i| (i * 37 % 200) as u8).collect();
    wrapped("binary-junk-before-first-frame", [binary_junk, base.clone()].concat());
    wrapped("tags-all-and-junk", [id3v2_with_padding(), vec![0x4a; 300], base, apev2(), id3v1()].concat());
    (keep, samples)
}

fn syncsafe(n: u32) -> [u8; 4] {
    [(n >> 21) as u8 & 0x7f, (n >> 14) as u8 & 0x7f, (n >> 7) as u8 & 0x7f, n as u8 & 0x7f]
}

/// An ID3v2.3 tag with a title frame and 2 KiB of padding, as tag editors leave it.
fn id3v2_with_padding() -> Vec<u8> {
    let title = "\u{0}Bản tin cải cách hành chính".as_bytes().to_vec();
    let mut frame = b"TIT2".to_vec();
    frame.extend((title.len() as u32).to_be_bytes());
    frame.extend([0, 0]);
    frame.extend(title);
    let body = [frame, vec![0; 2048]].concat();
    [b"ID3\x03\x00\x00".to_vec(), syncsafe(body.len() as u32).to_vec(), body].concat()
}

/// An APEv2 tag (header, one item, footer), as foobar2000 and mp3gain write.
fn apev2() -> Vec<u8> {
    let mut item = 5u32.to_le_bytes().to_vec();
    item.extend(0u32.to_le_bytes());
    item.extend(b"Title\x00Hello");
    let size = (item.len() + 32) as u32;
    let part = |flags: u32| {
        let mut p = b"APETAGEX".to_vec();
        p.extend(2000u32.to_le_bytes());
        p.extend(size.to_le_bytes());
        p.extend(1u32.to_le_bytes());
        p.extend(flags.to_le_bytes());
        p.extend([0; 8]);
        p
    };
    [part(0xa000_0000), item, part(0x8000_0000)].concat()
}

fn id3v1() -> Vec<u8> {
    let mut tag = b"TAG".to_vec();
    tag.extend(b"Ban tin CCHC");
    tag.resize(128, 0);
    tag
}

/// Samples per channel a reference decoder gives for `path`, and its channel count.
fn reference_length(program: &str, path: &Path) -> u64 {
    let path = path.to_str().unwrap();
    let (args, channels): (Vec<&str>, u64) = match program {
        "ffmpeg" => (vec!["-v", "error", "-i", path, "-f", "s16le", "-"], ffmpeg_channels(path)),
        _ => (vec!["-q", "-s", path], ffmpeg_channels(path)),
    };
    let out = Command::new(program).args(&args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {path}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.len() as u64 / 2 / channels
}

fn ffmpeg_channels(path: &str) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0", "-show_entries", "stream=channels", "-of", "default=nw=1:nk=1"])
        .arg(path)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("ffprobe gave no channel count for {path}: {text}"))
}

#[test]
fn every_file_of_the_corpus_decodes_to_the_reference_decoders_length_within_one_frame() {
    let mut wrong = Vec::new();
    for sample in corpus() {
        let decoder = ClipDecoder::open(&sample.path).unwrap_or_else(|e| panic!("{}: {e}", sample.name));
        let ours = decoder.frames();
        let frame = u64::from(decoder.layout().samples_per_frame);
        // ffmpeg reads the Info tag only where the frames start after the ID3v2 tag; past junk
        // it decodes the Info frame as audio and trims nothing (mpg123 finds the tag).
        let references: &[&str] = if sample.name.contains("junk") { &["mpg123"] } else { &["ffmpeg", "mpg123"] };
        for &program in references {
            let theirs = reference_length(program, &sample.path);
            if ours.abs_diff(theirs) > frame {
                wrong.push(format!("{}: loa {ours} samples, {program} {theirs}", sample.name));
            }
        }
    }
    assert!(wrong.is_empty(), "lengths that disagree:\n{}", wrong.join("\n"));
}

#[test]
fn every_file_of_the_corpus_is_accepted_and_its_decoded_length_is_every_frames_samples() {
    for sample in corpus() {
        let mut decoder = ClipDecoder::open(&sample.path).unwrap_or_else(|e| panic!("{}: {e}", sample.name));
        let channels = usize::from(decoder.channels());
        let expected = decoder.frames();
        let mut decoded = 0u64;
        while let Some(block) = decoder.next_block().unwrap_or_else(|e| panic!("{}: {e}", sample.name)) {
            assert_eq!(block.len() % channels, 0);
            decoded += (block.len() / channels) as u64;
        }
        assert_eq!(decoded, expected, "{}", sample.name);
        // Each is the source's 3 s: no estimate cut it short. Without a LAME tag nothing says
        // what the encoder added, so up to three frames of delay and padding stay.
        let rate = f64::from(decoder.sample_rate());
        let seconds = expected as f64 / rate;
        let untrimmed = 3.0 * f64::from(decoder.layout().samples_per_frame) / rate;
        assert!((2.99..=3.0 + untrimmed).contains(&seconds), "{}: {seconds:.3} s", sample.name);
        if decoder.layout().gapless.is_some() {
            assert_eq!(expected, 3 * decoder.sample_rate() as u64, "{}: trimmed as the tag says", sample.name);
        }
        let facts = loa::library::analysis::analyse(
            &sample.path,
            loa::config::ClipLimits { min_duration_ms: 1000, max_duration_ms: 600_000, keep_free_bytes: 0 },
        )
        .unwrap_or_else(|e| panic!("{} refused at ingest: {e}", sample.name));
        assert_eq!(facts.duration_ms, expected * 1000 / u64::from(decoder.sample_rate()), "{}", sample.name);
    }
}

/// The clip's decoded samples as the device gets them: gain applied, 16-bit.
fn expected_air(path: &Path, gain_db: f64) -> Vec<i16> {
    let mut decoder = ClipDecoder::open(path).unwrap();
    let gain = 10f32.powf(gain_db as f32 / 20.0);
    let mut air = Vec::new();
    while let Some(block) = decoder.next_block().unwrap() {
        air.extend(block.iter().map(|&x| (x * gain * 32768.0).round().clamp(-32768.0, 32767.0) as i16));
    }
    air
}

#[test]
fn what_reaches_the_device_is_the_decoded_audio_sample_for_sample_at_the_clips_own_rate() {
    // The kinds that aired short, or not at all, when length came from a demuxer's estimate.
    let names = [
        "lame-crc-v5",
        "lame-notag-v3",
        "lame-mono-v5-22k",
        "lame-cbr64",
        "ffmpeg-16k-32k",
        "lame-8k-m",
        "lame-48k-s-notag",
        "tags-all-and-junk",
    ];
    std::thread::scope(|scope| {
        for name in names {
            scope.spawn(move || {
                let sample = corpus().iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no {name}"));
                let station = station(3, 1, &[sample.path.to_str().unwrap()]);
                let daemon = station.start(Device::Unpaced);
                let events = station
                    .wait_for("an airing", Duration::from_secs(60), |e| !of_kind(e, "airing_ended", None).is_empty());
                daemon.stop();
                let ended = of_kind(&events, "airing_ended", None)[0];
                let expected = expected_air(&sample.path, ended["gain_cdb"].as_f64().unwrap() / 100.0);
                let decoder = ClipDecoder::open(&sample.path).unwrap();
                let frames = expected.len() as u64 / u64::from(decoder.channels());
                assert_eq!(ended["played_ms"], frames * 1000 / u64::from(decoder.sample_rate()), "{name}: {ended}");
                let bytes = std::fs::read(station.air_path()).unwrap();
                let air: Vec<i16> = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
                assert!(
                    air.len() >= expected.len(),
                    "{name}: the device got {} of {} samples",
                    air.len(),
                    expected.len()
                );
                let first_difference = air.iter().zip(&expected).position(|(a, e)| a != e);
                assert_eq!(first_difference, None, "{name}: the air signal differs from the decoded audio");
                assert!(air[expected.len()..].iter().all(|&s| s == 0), "{name}: sound after the clip's end");
            });
        }
    });
}
