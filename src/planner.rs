//! What a slot plays: eligible clips, most urgent first, then the least recently completed,
//! within the slot's minutes and never the same clip twice in one slot.

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::clip::Clip;

/// Whether `clip` may air on local date `date` (inclusive validity window).
pub fn is_valid_on(clip: &Clip, date: NaiveDate) -> bool {
    clip.retired_at.is_none()
        && clip.meta.valid_from.is_none_or(|from| from <= date)
        && clip.meta.valid_until.is_none_or(|until| date <= until)
}

/// The program of one slot on local date `date`. `last_completed`: per clip id, when it last
/// completed an airing (UTC ms); never-aired clips come first among equals.
pub fn program(clips: &[Clip], last_completed: &HashMap<i64, i64>, date: NaiveDate, budget_ms: u64) -> Vec<Clip> {
    let mut eligible: Vec<&Clip> = clips.iter().filter(|clip| is_valid_on(clip, date)).collect();
    eligible
        .sort_by_key(|clip| (std::cmp::Reverse(clip.meta.priority), last_completed.get(&clip.id).copied(), clip.id));
    let mut used = 0;
    let mut chosen = Vec::new();
    for clip in eligible {
        if used + clip.audio.duration_ms <= budget_ms {
            used += clip.audio.duration_ms;
            chosen.push(clip.clone());
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::{AudioFacts, ClipMeta, Priority};

    fn clip(id: i64, priority: Priority, duration_ms: u64, window: (Option<&str>, Option<&str>)) -> Clip {
        Clip {
            id,
            sha256: format!("{id:064}"),
            meta: ClipMeta {
                title: format!("clip {id}"),
                topic: "cchc".into(),
                language: "vi".into(),
                priority,
                valid_from: window.0.map(|d| d.parse().unwrap()),
                valid_until: window.1.map(|d| d.parse().unwrap()),
            },
            audio: AudioFacts {
                duration_ms,
                sample_rate: 44100,
                channels: 1,
                loudness_lufs: -16.0,
                peak_dbfs: -1.0,
                true_peak_dbfs: -1.0,
            },
            size_bytes: 1,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            retired_at: None,
        }
    }

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn ids(program: &[Clip]) -> Vec<i64> {
        program.iter().map(|c| c.id).collect()
    }

    #[test]
    fn priority_first_then_least_recently_completed() {
        let clips = [
            clip(1, Priority::Normal, 60_000, (None, None)),
            clip(2, Priority::Normal, 60_000, (None, None)),
            clip(3, Priority::Priority, 60_000, (None, None)),
            clip(4, Priority::Normal, 60_000, (None, None)),
        ];
        let last = HashMap::from([(1, 300), (2, 100)]); // 4 never aired
        assert_eq!(ids(&program(&clips, &last, date("2026-11-23"), 900_000)), [3, 4, 2, 1]);
    }

    #[test]
    fn the_budget_is_never_exceeded_and_shorter_clips_fill_it() {
        let clips = [
            clip(1, Priority::Normal, 600_000, (None, None)),
            clip(2, Priority::Normal, 400_000, (None, None)),
            clip(3, Priority::Normal, 300_000, (None, None)),
        ];
        let chosen = program(&clips, &HashMap::new(), date("2026-11-23"), 900_000);
        assert_eq!(ids(&chosen), [1, 3]);
        assert!(chosen.iter().map(|c| c.audio.duration_ms).sum::<u64>() <= 900_000);
    }

    #[test]
    fn validity_windows_are_inclusive_local_dates() {
        let clips = [clip(1, Priority::Normal, 1000, (Some("2026-03-01"), Some("2026-03-31")))];
        for (day, airs) in [("2026-02-28", false), ("2026-03-01", true), ("2026-03-31", true), ("2026-04-01", false)] {
            assert_eq!(!program(&clips, &HashMap::new(), date(day), 900_000).is_empty(), airs, "{day}");
        }
    }

    #[test]
    fn retired_clips_never_air() {
        let mut retired = clip(1, Priority::Emergency, 1000, (None, None));
        retired.retired_at = Some("2026-11-01T00:00:00.000Z".into());
        assert!(program(&[retired], &HashMap::new(), date("2026-11-23"), 900_000).is_empty());
    }
}
