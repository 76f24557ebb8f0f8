//! The operators' queue: bulletins asked for "now" or "next slot", emergencies first.

use chrono::{DateTime, Utc};
use rusqlite::{Row, params};

use super::{Store, StoreError, timestamp};
use crate::model::queue::{QueueItem, Wanted};

/// What is queued to air at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingNow {
    pub any: bool,
    pub emergency: bool,
}

const QUEUE_COLUMNS: &str = "id, clip_id, wanted, created_at, taken_at";

fn queue_from_row(row: &Row) -> rusqlite::Result<QueueItem> {
    let wanted: String = row.get(2)?;
    Ok(QueueItem {
        id: row.get(0)?,
        clip_id: row.get(1)?,
        when: if wanted == "now" { Wanted::Now } else { Wanted::NextSlot },
        created_at: row.get(3)?,
        taken_at: row.get(4)?,
    })
}

impl Store {
    pub fn enqueue(&mut self, clip_id: i64, when: Wanted, at: DateTime<Utc>) -> Result<QueueItem, StoreError> {
        self.conn.execute(
            "INSERT INTO queue (clip_id, wanted, created_at) VALUES (?1, ?2, ?3)",
            params![clip_id, when.as_str(), timestamp(at)],
        )?;
        let id = self.conn.last_insert_rowid();
        Ok(self.conn.query_row(&format!("SELECT {QUEUE_COLUMNS} FROM queue WHERE id = ?1"), [id], queue_from_row)?)
    }

    /// Queue items not yet taken: emergencies first, then in the order they were queued.
    pub fn pending_queue(&self, when: Wanted) -> Result<Vec<QueueItem>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {QUEUE_COLUMNS} FROM queue WHERE taken_at IS NULL AND wanted = ?1 \
             ORDER BY (SELECT priority FROM clips WHERE clips.id = queue.clip_id) = 'emergency' DESC, id"
        ))?;
        let items = stmt.query_map([when.as_str()], queue_from_row)?.collect::<Result<_, _>>()?;
        Ok(items)
    }

    /// Whether anything is queued "now", and whether an emergency is.
    pub fn pending_now(&self) -> Result<PendingNow, StoreError> {
        Ok(self.conn.query_row(
            "SELECT count(*) > 0, coalesce(max(c.priority = 'emergency'), 0) FROM queue q JOIN clips c ON c.id = q.clip_id \
             WHERE q.taken_at IS NULL AND q.wanted = 'now'",
            [],
            |r| Ok(PendingNow { any: r.get(0)?, emergency: r.get(1)? }),
        )?)
    }

    pub fn take_queue_item(&mut self, id: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn
            .execute("UPDATE queue SET taken_at = ?2 WHERE id = ?1 AND taken_at IS NULL", params![id, timestamp(at)])?;
        Ok(())
    }
}
