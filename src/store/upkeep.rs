//! Keeping the database well outside the chain: the heartbeat (how far an airing got before a
//! power cut), WAL checkpoints, online backup and a liveness ping.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError, integrity_findings};
use std::time::Duration;

/// The daemon's last sign of life, kept outside the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub at: i64,
    /// The airing in progress then (its `airing_started` seq) and how far it had played.
    pub airing: Option<(i64, u64)>,
}

/// What `Store::backup` copied.
#[derive(Debug, Clone, Copy)]
pub struct BackupSummary {
    pub events: i64,
    pub last_seq: Option<i64>,
    pub clips: i64,
}

impl Store {
    /// Folds the write-ahead log into the database and truncates it, so the log file does not
    /// stay at its high-water mark on a small SD card. Returns false when a reader (a CLI
    /// command) held it back; the next one catches up.
    pub fn checkpoint(&self) -> Result<bool, StoreError> {
        let busy: i64 = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// Copies the database to `destination` with SQLite's online backup: a consistent
    /// snapshot even while the daemon writes. The copy is checked before it is named.
    pub fn backup(&self, destination: &Path) -> Result<BackupSummary, StoreError> {
        let partial = destination.with_extension("partial");
        let result = (|| {
            let mut copy = Connection::open(&partial)?;
            {
                use rusqlite::backup::{Backup, StepResult};
                let backup = Backup::new(&self.conn, &mut copy)?;
                // All pages in one step (-1): a live daemon's writes would restart a stepwise copy.
                let mut attempts = 0;
                while backup.step(-1)? != StepResult::Done {
                    attempts += 1;
                    if attempts > 100 {
                        return Err(StoreError::Sql(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some("the database stayed locked for 10 s; try again".into()),
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            copy.pragma_update(None, "journal_mode", "DELETE")?; // one self-contained file
            if let Some(finding) = integrity_findings(&copy)? {
                return Err(StoreError::Damaged { path: partial.clone(), finding });
            }
            let (events, last_seq) =
                copy.query_row("SELECT count(*), max(seq) FROM events", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let clips = copy.query_row("SELECT count(*) FROM clips", [], |r| r.get(0))?;
            copy.close().map_err(|(_, e)| e)?;
            std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(StoreError::File)?;
            std::fs::rename(&partial, destination).map_err(StoreError::File)?;
            Ok(BackupSummary { events, last_seq, clips })
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    /// Whether the database answers a trivial query (for health checks).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    pub fn heartbeat(&self) -> Result<Option<Heartbeat>, StoreError> {
        let row = self
            .conn
            .query_row("SELECT at, airing_seq, played_ms FROM heartbeat WHERE id = 1", [], |row| {
                let airing: Option<i64> = row.get(1)?;
                let played: Option<i64> = row.get(2)?;
                Ok(Heartbeat { at: row.get(0)?, airing: airing.map(|seq| (seq, played.unwrap_or(0) as u64)) })
            })
            .optional()?;
        Ok(row)
    }

    pub fn beat(&mut self, beat: Heartbeat) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO heartbeat (id, at, airing_seq, played_ms) VALUES (1, ?1, ?2, ?3) \
             ON CONFLICT (id) DO UPDATE SET at = excluded.at, airing_seq = excluded.airing_seq, played_ms = excluded.played_ms",
            params![beat.at, beat.airing.map(|(seq, _)| seq), beat.airing.map(|(_, ms)| ms as i64)],
        )?;
        Ok(())
    }
}
