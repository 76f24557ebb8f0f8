//! What the station's log says of its office's bulletins (`bulletin_received`, `_refused`,
//! `_withdrawn`, and the airings of the clips they became): read back for the follower (which
//! clip to retire), the planner (which priority bulletins are still owed), the operator page
//! and the guard that keeps an operator from retiring one still owed.

use chrono::NaiveDate;
use rusqlite::OptionalExtension;
use serde::Serialize;

use super::{Store, StoreError};

/// A bulletin from the office as the station's log tells it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfficeBulletin {
    /// As the office numbered it (for a refused line, as the line claimed it).
    pub bulletin_id: Option<i64>,
    /// `received`, `refused` or `withdrawn`.
    pub state: String,
    pub office: Option<String>,
    pub clip_id: Option<i64>,
    pub priority: Option<String>,
    pub valid_from: Option<String>,
    pub valid_until: Option<String>,
    /// Completed airings owed in the window, and done since it was received.
    pub airings: Option<u32>,
    pub completed: u32,
    pub refused_reason: Option<String>,
    pub refused_detail: Option<String>,
    /// When the station recorded it (UTC ms).
    pub at: i64,
}

impl OfficeBulletin {
    /// Still owed on `today`: received, not withdrawn, its window not over, fewer completed
    /// airings than owed.
    pub fn is_owed(&self, today: NaiveDate) -> bool {
        self.is_live(today) && self.airings.is_some_and(|n| self.completed < n)
    }

    /// Received, not withdrawn, and its window not over on `today`: the station may still air it.
    pub fn is_live(&self, today: NaiveDate) -> bool {
        let open = self.valid_until.as_deref().and_then(|d| d.parse::<NaiveDate>().ok()).is_some_and(|d| today <= d);
        self.state == "received" && open
    }

    /// Why an operator may not retire the clip of a bulletin still owed.
    pub fn why_kept(&self) -> String {
        format!(
            "this is bulletin {} from {}, still owed {} more completed airing(s) until {}; it cannot be \
             retired at the station (the office can withdraw it)",
            self.bulletin_id.unwrap_or_default(),
            self.office.as_deref().unwrap_or("the office"),
            self.airings.unwrap_or_default().saturating_sub(self.completed),
            self.valid_until.as_deref().unwrap_or("-")
        )
    }
}

/// Each bulletin event with the completed airings of its clip since it.
const BULLETIN_EVENTS: &str = "SELECT r.seq, r.kind, r.at, json_extract(r.body, '$.bulletin_id'), \
    json_extract(r.body, '$.office'), r.clip_id, json_extract(r.body, '$.priority'), \
    json_extract(r.body, '$.valid_from'), json_extract(r.body, '$.valid_until'), json_extract(r.body, '$.airings'), \
    json_extract(r.body, '$.reason'), json_extract(r.body, '$.detail'), \
    (SELECT count(*) FROM events a WHERE r.kind = 'bulletin_received' AND a.clip_id = r.clip_id \
       AND a.kind = 'airing_ended' AND a.status = 'completed' AND a.seq > r.seq) \
    FROM events r WHERE r.kind IN ('bulletin_received', 'bulletin_refused', 'bulletin_withdrawn') ORDER BY r.seq";

impl Store {
    /// The office's bulletins, newest last: each received or refused one, marked withdrawn
    /// when the office took it back.
    pub fn office_bulletins(&self) -> Result<Vec<OfficeBulletin>, StoreError> {
        let mut stmt = self.conn.prepare_cached(BULLETIN_EVENTS)?;
        let rows = stmt.query_map([], |r| {
            Ok(OfficeBulletin {
                bulletin_id: r.get(3)?,
                state: r.get::<_, String>(1)?.trim_start_matches("bulletin_").to_owned(),
                office: r.get(4)?,
                clip_id: r.get(5)?,
                priority: r.get(6)?,
                valid_from: r.get(7)?,
                valid_until: r.get(8)?,
                airings: r.get(9)?,
                completed: r.get(12)?,
                refused_reason: r.get(10)?,
                refused_detail: r.get(11)?,
                at: r.get(2)?,
            })
        })?;
        let mut bulletins: Vec<OfficeBulletin> = Vec::new();
        for row in rows {
            let row = row?;
            match row.state.as_str() {
                "withdrawn" => bulletins
                    .iter_mut()
                    .filter(|b| b.bulletin_id == row.bulletin_id && b.state == "received")
                    .for_each(|b| b.state = "withdrawn".into()),
                _ => bulletins.push(row),
            }
        }
        Ok(bulletins)
    }

    /// The clip a bulletin of the office became (its `bulletin_received` event), if any.
    pub fn bulletin_clip(&self, bulletin_id: i64) -> Result<Option<i64>, StoreError> {
        let sql = "SELECT clip_id FROM events WHERE kind = 'bulletin_received' \
                   AND json_extract(body, '$.bulletin_id') = ?1 ORDER BY seq DESC LIMIT 1";
        Ok(self.conn.query_row(sql, [bulletin_id], |r| r.get(0)).optional()?)
    }

    /// Another of the office's bulletins (not `bulletin_id`) that airs `clip_id` and may still
    /// air on `today`: the same audio sent twice is one clip, which a withdrawal of one of them
    /// must not retire.
    pub fn clip_shared_by(&self, clip_id: i64, bulletin_id: i64, today: NaiveDate) -> Result<Option<i64>, StoreError> {
        Ok(self
            .office_bulletins()?
            .into_iter()
            .find(|b| b.clip_id == Some(clip_id) && b.bulletin_id != Some(bulletin_id) && b.is_live(today))
            .and_then(|b| b.bulletin_id))
    }

    /// Whether the log already records the withdrawal of `bulletin_id` (a withdrawal read again
    /// is recorded once).
    pub fn bulletin_withdrawn(&self, bulletin_id: i64) -> Result<bool, StoreError> {
        let sql = "SELECT EXISTS (SELECT 1 FROM events WHERE kind = 'bulletin_withdrawn' \
                   AND json_extract(body, '$.bulletin_id') = ?1)";
        Ok(self.conn.query_row(sql, [bulletin_id], |r| r.get(0))?)
    }

    /// The office's priority and emergency bulletins taken: per clip, the completed airings its
    /// window owes and those done since it was received (what `planner::Owed` leads slots with,
    /// and what makes one a normal bulletin once aired as often as owed).
    pub fn priority_bulletins(&self) -> Result<Vec<(i64, u32, u32)>, StoreError> {
        Ok(self
            .office_bulletins()?
            .into_iter()
            .filter(|b| b.state == "received" && matches!(b.priority.as_deref(), Some("priority" | "emergency")))
            .filter_map(|b| Some((b.clip_id?, b.airings?, b.completed)))
            .collect())
    }

    /// The office bulletin `clip_id` airs, while it is still owed on `today` (not withdrawn,
    /// its window not over, fewer completed airings than owed): an operator may not retire it.
    pub fn owed_bulletin(&self, clip_id: i64, today: NaiveDate) -> Result<Option<OfficeBulletin>, StoreError> {
        Ok(self.office_bulletins()?.into_iter().find(|b| b.clip_id == Some(clip_id) && b.is_owed(today)))
    }
}
