//! The clip library's table: a clip and its `clip_added` / `clip_retired` event commit together;
//! clips are never deleted (a trigger), only retired.

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{OptionalExtension, Row, TransactionBehavior, params};

use super::log::append_in;
use super::{Store, StoreError, timestamp};
use crate::model::clip::{AudioFacts, Clip, ClipMeta};
use crate::proof::events;

/// The outcome of adding audio the library may already hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Inserted {
    New(Clip),
    /// The same SHA-256 is already in the library; nothing was added.
    Existing(Clip),
}

const CLIP_COLUMNS: &str = "id, sha256, title, topic, language, priority, valid_from, valid_until, duration_ms, \
     sample_rate, channels, loudness_lufs, peak_dbfs, true_peak_dbfs, size_bytes, created_at, retired_at";

fn clip_from_row(row: &Row) -> rusqlite::Result<Clip> {
    let date = |index: usize| -> rusqlite::Result<Option<NaiveDate>> {
        row.get::<_, Option<String>>(index)?
            .map(|text| {
                text.parse().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
                })
            })
            .transpose()
    };
    let priority: String = row.get(5)?;
    Ok(Clip {
        id: row.get(0)?,
        sha256: row.get(1)?,
        meta: ClipMeta {
            title: row.get(2)?,
            topic: row.get(3)?,
            language: row.get(4)?,
            priority: priority.parse().map_err(|e: String| {
                rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, e.into())
            })?,
            valid_from: date(6)?,
            valid_until: date(7)?,
        },
        audio: AudioFacts {
            duration_ms: row.get::<_, i64>(8)? as u64,
            sample_rate: row.get(9)?,
            channels: row.get(10)?,
            loudness_lufs: row.get(11)?,
            peak_dbfs: row.get(12)?,
            true_peak_dbfs: row.get(13)?,
        },
        size_bytes: row.get::<_, i64>(14)? as u64,
        created_at: row.get(15)?,
        retired_at: row.get(16)?,
    })
}

impl Store {
    /// Adds a clip, or returns the one already holding this SHA-256. Atomic against concurrent
    /// writers: exactly one of two simultaneous inserts of the same audio creates it.
    pub fn insert_clip(
        &mut self,
        sha256: &str,
        size_bytes: u64,
        meta: &ClipMeta,
        audio: &AudioFacts,
        created_at: DateTime<Utc>,
    ) -> Result<Inserted, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let added = tx.execute(
            "INSERT INTO clips (sha256, title, topic, language, priority, valid_from, valid_until, duration_ms, \
             sample_rate, channels, loudness_lufs, peak_dbfs, true_peak_dbfs, size_bytes, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT (sha256) DO NOTHING",
            params![
                sha256,
                meta.title.trim(),
                meta.topic,
                meta.language,
                meta.priority.as_str(),
                meta.valid_from.map(|d| d.to_string()),
                meta.valid_until.map(|d| d.to_string()),
                audio.duration_ms as i64,
                audio.sample_rate,
                audio.channels,
                audio.loudness_lufs,
                audio.peak_dbfs,
                audio.true_peak_dbfs,
                size_bytes as i64,
                timestamp(created_at),
            ],
        )?;
        let clip =
            tx.query_row(&format!("SELECT {CLIP_COLUMNS} FROM clips WHERE sha256 = ?1"), [sha256], clip_from_row)?;
        if added == 1 {
            append_in(&tx, &self.sealer, created_at, events::clip_added(&clip))?;
        }
        tx.commit()?;
        Ok(if added == 1 { Inserted::New(clip) } else { Inserted::Existing(clip) })
    }

    pub fn clip(&self, id: i64) -> Result<Option<Clip>, StoreError> {
        let sql = format!("SELECT {CLIP_COLUMNS} FROM clips WHERE id = ?1");
        Ok(self.conn.query_row(&sql, [id], clip_from_row).optional()?)
    }

    pub fn clip_by_sha256(&self, sha256: &str) -> Result<Option<Clip>, StoreError> {
        let sql = format!("SELECT {CLIP_COLUMNS} FROM clips WHERE sha256 = ?1");
        Ok(self.conn.query_row(&sql, [sha256], clip_from_row).optional()?)
    }

    /// All clips, retired ones included, oldest first.
    pub fn clips(&self) -> Result<Vec<Clip>, StoreError> {
        let mut stmt = self.conn.prepare(&format!("SELECT {CLIP_COLUMNS} FROM clips ORDER BY id"))?;
        let clips = stmt.query_map([], clip_from_row)?.collect::<Result<_, _>>()?;
        Ok(clips)
    }

    /// Marks a clip retired (kept forever, never aired again). Retiring twice keeps the first
    /// time. `None` when no clip has this id. `reason`: why the station itself set it aside.
    pub fn retire_clip(
        &mut self,
        id: i64,
        at: DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<Option<Clip>, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let retired = tx.execute(
            "UPDATE clips SET retired_at = ?2 WHERE id = ?1 AND retired_at IS NULL",
            params![id, timestamp(at)],
        )?;
        let clip =
            tx.query_row(&format!("SELECT {CLIP_COLUMNS} FROM clips WHERE id = ?1"), [id], clip_from_row).optional()?;
        if let (1, Some(clip)) = (retired, &clip) {
            append_in(&tx, &self.sealer, at, events::clip_retired(clip, reason))?;
        }
        tx.commit()?;
        Ok(clip)
    }

    /// Puts a retired clip back in the library with `meta` (the office sent its audio again as a
    /// new bulletin), recorded as `clip_added` again under its id; `None` if it is not retired.
    pub fn reinstate_clip(&mut self, id: i64, meta: &ClipMeta, at: DateTime<Utc>) -> Result<Option<Clip>, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let reinstated = tx.execute(
            "UPDATE clips SET title = ?2, topic = ?3, language = ?4, priority = ?5, valid_from = ?6, valid_until = ?7, \
             retired_at = NULL WHERE id = ?1 AND retired_at IS NOT NULL",
            params![
                id,
                meta.title.trim(),
                meta.topic,
                meta.language,
                meta.priority.as_str(),
                meta.valid_from.map(|d| d.to_string()),
                meta.valid_until.map(|d| d.to_string()),
            ],
        )?;
        let clip = match reinstated {
            1 => {
                let clip =
                    tx.query_row(&format!("SELECT {CLIP_COLUMNS} FROM clips WHERE id = ?1"), [id], clip_from_row)?;
                append_in(&tx, &self.sealer, at, events::clip_added(&clip))?;
                Some(clip)
            }
            _ => None,
        };
        tx.commit()?;
        Ok(clip)
    }

    /// Clips that may air on any day (not retired), oldest first.
    pub fn active_clips(&self) -> Result<Vec<Clip>, StoreError> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {CLIP_COLUMNS} FROM clips WHERE retired_at IS NULL ORDER BY id"))?;
        let clips = stmt.query_map([], clip_from_row)?.collect::<Result<_, _>>()?;
        Ok(clips)
    }
}
