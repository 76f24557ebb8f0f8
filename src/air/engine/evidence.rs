//! The verdict on an airing from what the device measurably took: completed only if it took
//! every frame at a believable pace; otherwise partial, failed, pre-empted or interrupted, with
//! the reason in words. Pure, so each rule is tested on its own.

use super::*;

/// Why an airing went wrong in a way that changes what happens next in the slot.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Failure {
    /// The clip cannot be played (it does not decode): set it aside, go on with the next.
    Clip(String),
    /// The audio device (or its thread) is gone: nothing more airs in this slot.
    Device(String),
}

/// What the player measured, turned into the airing's evidence and verdict, and what it
/// means for the rest of the slot.
pub(super) struct Judged {
    pub(super) evidence: AiringEvidence,
    pub(super) failure: Option<Failure>,
}

/// An airing is judged not to have been heard in real time when the device took its audio at
/// more than twice real time, beyond the buffer it reports and this much more it may hold
/// unreported (a pipe, a network sink's queue: seconds at a low byte rate). A device that
/// takes a 26 s bulletin in a tenth of a second is far beyond it.
const REAL_TIME_SLACK: Duration = Duration::from_secs(5);

/// Turns what the player measured into the airing's evidence and verdict. `requested_at` is
/// the wall time of the play request, `start_after` how long after it the clip was due out.
pub(super) fn evidence_of(
    measured: Option<&Measurement>,
    (requested_at, start_after): (DateTime<Utc>, Duration),
    now: DateTime<Utc>,
) -> Judged {
    let Some(m) = measured else {
        let reason = "the audio thread did not answer; it may be stuck on the device";
        return Judged {
            evidence: AiringEvidence::unmeasured(
                AiringStatus::Failed,
                Some(now.timestamp_millis()),
                0,
                reason.to_owned(),
            ),
            failure: Some(Failure::Device(reason.to_owned())),
        };
    };
    let played = m.played();
    let played_ms = played.as_millis() as u64;
    let silent_ms = m.silent.as_millis() as u64;
    let ms = |frames: u64| frames * 1000 / u64::from(m.sample_rate.max(1));
    let some_or = |played: AiringStatus| if m.frames > 0 { played } else { AiringStatus::Failed };
    // From the first frame taken to the last played out: at least what was played, less the
    // device's buffer, on a device that plays in real time.
    let heard_for = m.first_frame_after.zip(m.played_out_after).map(|(first, out)| out.saturating_sub(first));
    let buffer = Duration::from_secs_f64(2.0 * m.period_frames as f64 / f64::from(m.sample_rate.max(1)));
    let too_fast = heard_for.filter(|&wall| played > (wall + buffer) * 2 + REAL_TIME_SLACK);
    let mut failure = None;
    let (status, reason) = match &m.end {
        PlaybackEnd::Finished if m.frames + m.period_frames < m.expected_frames => (
            some_or(AiringStatus::Partial),
            Some(format!("the device took {} ms of the clip's {} ms", ms(m.frames), ms(m.expected_frames))),
        ),
        PlaybackEnd::Finished if too_fast.is_some() => (
            AiringStatus::Partial,
            Some(format!(
                "the audio device took {played_ms} ms of audio in {} ms: it is not playing in real time, so nobody \
                 heard it whole (check audio.device)",
                too_fast.unwrap_or_default().as_millis()
            )),
        ),
        PlaybackEnd::Finished if silent_ms * 10 >= played_ms * 9 => {
            (AiringStatus::Partial, Some("the output was silent".to_owned()))
        }
        PlaybackEnd::Finished => (AiringStatus::Completed, None),
        PlaybackEnd::Stopped(StopCause::Shutdown) => (AiringStatus::Interrupted, Some("shutdown".to_owned())),
        PlaybackEnd::Stopped(StopCause::Preempted) => {
            (AiringStatus::Preempted, Some("pre-empted by an emergency bulletin".to_owned()))
        }
        PlaybackEnd::DecodeError(e) => {
            let reason = format!("the clip cannot be decoded: {e}");
            failure = Some(Failure::Clip(reason.clone()));
            (some_or(AiringStatus::Partial), Some(reason))
        }
        PlaybackEnd::DeviceError(e) => {
            let reason = format!("audio device error: {e}");
            failure = Some(Failure::Device(reason.clone()));
            (some_or(AiringStatus::Partial), Some(reason))
        }
        PlaybackEnd::Stalled => {
            let reason = "the audio device stopped taking samples".to_owned();
            failure = Some(Failure::Device(reason.clone()));
            (some_or(AiringStatus::Partial), Some(reason))
        }
        PlaybackEnd::Overran => {
            (some_or(AiringStatus::Partial), Some("still playing past its duration and margin; stopped".to_owned()))
        }
    };
    // An airing that did not complete counts no more than real time allowed since its first
    // frame: what a failing device swallowed faster (a file plugin's broken pipe takes the rest
    // of the clip at once before it reports) was never heard.
    let played_ms = match heard_for {
        Some(wall) if status != AiringStatus::Completed => played_ms.min((wall + buffer).as_millis() as u64),
        _ => played_ms,
    };
    let at = |d: Duration| (requested_at + TimeDelta::from_std(d).unwrap_or_default()).timestamp_millis();
    let evidence = AiringEvidence {
        started_at: m.first_frame_after.map(at),
        ended_at: Some(at(m.played_out_after.unwrap_or(m.elapsed))),
        played_ms,
        peak_cdbfs: level_cdbfs(f64::from(m.peak)),
        rms_cdbfs: level_cdbfs(m.rms),
        silent_ms,
        first_frame_latency_ms: m.first_frame_after.map(|d| d.saturating_sub(start_after).as_millis() as i64),
        status,
        reason,
    };
    Judged { evidence, failure }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    /// A 10 s clip the device took whole, in real time, at a sensible level, 2 s after the request.
    fn whole() -> Measurement {
        Measurement {
            first_frame_after: Some(Duration::from_millis(2_000)),
            played_out_after: Some(Duration::from_millis(12_050)),
            elapsed: Duration::from_millis(12_100),
            frames: 10 * u64::from(RATE),
            expected_frames: 10 * u64::from(RATE),
            sample_rate: RATE,
            period_frames: 1_920,
            peak: 0.5,
            rms: 0.1,
            silent: Duration::ZERO,
            end: PlaybackEnd::Finished,
        }
    }

    fn judge(m: &Measurement) -> Judged {
        let requested_at = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        evidence_of(Some(m), (requested_at, Duration::from_secs(2)), requested_at + TimeDelta::seconds(13))
    }

    #[test]
    fn every_frame_taken_in_real_time_is_completed_with_measured_times_and_levels() {
        let judged = judge(&whole());
        let e = &judged.evidence;
        assert_eq!((e.status, e.reason.as_deref(), judged.failure), (AiringStatus::Completed, None, None));
        assert_eq!(e.played_ms, 10_000);
        assert_eq!(e.started_at, Some(1_800_000_002_000));
        assert_eq!(e.ended_at, Some(1_800_000_012_050), "when the last frame left the device's buffer");
        assert_eq!(e.first_frame_latency_ms, Some(0));
        assert_eq!((e.peak_cdbfs, e.rms_cdbfs), (level_cdbfs(0.5), level_cdbfs(0.1)));
    }

    #[test]
    fn a_device_short_by_more_than_one_period_is_partial_and_says_how_much_it_took() {
        let m = Measurement { frames: 10 * u64::from(RATE) - 1_921, ..whole() };
        let e = judge(&m).evidence;
        assert_eq!(e.status, AiringStatus::Partial);
        assert!(e.reason.unwrap().contains("took 9959 ms of the clip's 10000 ms"));
        // Within one period of the end is the device's rounding, not a cut.
        let m = Measurement { frames: 10 * u64::from(RATE) - 1_920, ..whole() };
        assert_eq!(judge(&m).evidence.status, AiringStatus::Completed);
    }

    #[test]
    fn audio_taken_far_faster_than_real_time_was_not_heard_whole() {
        // 10 s of audio gone in 0.1 s: a sink with no clock behind it.
        let m = Measurement {
            played_out_after: Some(Duration::from_millis(2_100)),
            elapsed: Duration::from_millis(2_100),
            ..whole()
        };
        let e = judge(&m).evidence;
        assert_eq!(e.status, AiringStatus::Partial);
        assert!(e.reason.unwrap().contains("not playing in real time"));
        // Within twice real time (plus the buffer) and 5 s more is believable: a pipe's buffer
        // filling. 10 s in 2.6 s is; 10 s in 2.4 s is not.
        let heard_in =
            |ms: u64| judge(&Measurement { played_out_after: Some(Duration::from_millis(2_000 + ms)), ..whole() });
        assert_eq!(heard_in(2_600).evidence.status, AiringStatus::Completed);
        assert_eq!(heard_in(2_400).evidence.status, AiringStatus::Partial);
    }

    #[test]
    fn a_device_lost_counts_only_what_real_time_allowed_since_its_first_frame() {
        // 3 s into a 10 s clip the pipe behind the device broke; the device swallowed the rest
        // at once before it reported the error: 3 s (and its buffer) were heard, not 10.
        let m = Measurement {
            played_out_after: Some(Duration::from_millis(5_050)),
            end: PlaybackEnd::DeviceError("broken pipe".into()),
            ..whole()
        };
        let e = judge(&m).evidence;
        assert_eq!(e.status, AiringStatus::Partial);
        assert_eq!(e.played_ms, 3_050 + 80, "the wall time from the first frame, and the device's two periods");
        // A device that failed at its real-time pace keeps what it took.
        let m = Measurement { frames: 3 * u64::from(RATE), ..m };
        assert_eq!(judge(&m).evidence.played_ms, 3_000);
    }

    #[test]
    fn silence_is_partial_not_completed() {
        let m = Measurement { silent: Duration::from_millis(9_000), peak: 0.0, rms: 0.0, ..whole() };
        assert_eq!(judge(&m).evidence.reason.as_deref(), Some("the output was silent"));
        let m = Measurement { silent: Duration::from_millis(8_900), ..whole() };
        assert_eq!(judge(&m).evidence.status, AiringStatus::Completed);
    }

    #[test]
    fn a_failing_clip_sets_it_aside_and_a_failing_device_ends_the_slot() {
        let m = Measurement { end: PlaybackEnd::DecodeError("bad frame".into()), frames: 0, ..whole() };
        let judged = judge(&m);
        assert_eq!(judged.evidence.status, AiringStatus::Failed, "nothing reached the device");
        assert!(matches!(judged.failure, Some(Failure::Clip(ref r)) if r.contains("cannot be decoded: bad frame")));

        let m = Measurement { end: PlaybackEnd::DeviceError("unplugged".into()), frames: RATE.into(), ..whole() };
        let judged = judge(&m);
        assert_eq!(judged.evidence.status, AiringStatus::Partial, "a second of it was heard");
        assert!(matches!(judged.failure, Some(Failure::Device(_))));
        assert!(matches!(
            judge(&Measurement { end: PlaybackEnd::Stalled, ..whole() }).failure,
            Some(Failure::Device(_))
        ));
    }

    #[test]
    fn stops_are_named_by_their_cause() {
        let status = |end| judge(&Measurement { end, ..whole() }).evidence.status;
        assert_eq!(status(PlaybackEnd::Stopped(StopCause::Shutdown)), AiringStatus::Interrupted);
        assert_eq!(status(PlaybackEnd::Stopped(StopCause::Preempted)), AiringStatus::Preempted);
        assert_eq!(status(PlaybackEnd::Overran), AiringStatus::Partial);
    }

    #[test]
    fn an_audio_thread_that_does_not_answer_is_a_failed_airing_and_a_device_failure() {
        let now = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        let judged = evidence_of(None, (now, Duration::ZERO), now);
        assert_eq!((judged.evidence.status, judged.evidence.played_ms), (AiringStatus::Failed, 0));
        assert!(matches!(judged.failure, Some(Failure::Device(_))));
        assert_eq!(judged.evidence.started_at, None, "nothing was measured, so nothing is claimed");
    }
}
