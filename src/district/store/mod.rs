//! The office's memory: one SQLite file, `<data_dir>/district.sqlite`. What it holds is what
//! makes a signed chain evidence: every verified event of every station (append-only, like the
//! station's log: nothing a station sends later can change them), each station's head and the
//! key in force after it, the alarms (never deleted; acknowledged with a note, both kept) with
//! the conflicting events they are about, and the push and clerk tokens (SHA-256 only).
//!
//! The only module of the district that touches rusqlite (tests/it/tidy.rs).

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use rusqlite_migration::{M, Migrations};
use serde::Serialize;

use super::plausible::Context;
use crate::proof::{SealedEvent, StationKey};

pub const DATABASE_FILE: &str = "district.sqlite";
/// A clean contact is logged at most this often per station (a pull every 15 minutes would
/// otherwise fill the office's log): `last_ok_at` is proved to within this much.
pub const CONTACT_GRAIN_MS: i64 = 3_600_000;

mod bulletins;
mod ledger;
pub mod tables;
pub use bulletins::{LoggedNotice, Withdrawn};
mod tokens;

pub use tokens::OfficeToken;

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("v1_district.sql")),
        M::up(include_str!("v2_plausibility.sql")),
        M::up(include_str!("v3_ledger.sql")),
    ])
});

#[derive(Debug, thiserror::Error)]
pub enum DistrictStoreError {
    #[error("cannot open the office database {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("the office database failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot bring the office database up to date: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("there is no alarm {0}; `loa district status` lists them with their ids")]
    NoSuchAlarm(i64),
    #[error("alarm {id} was acknowledged already at {at}: {note}")]
    AlreadyAcknowledged { id: i64, at: String, note: String },
    #[error("this connection to the office database only reads")]
    ReadOnly,
    #[error("cannot make a challenge: {0}")]
    Challenge(String),
}

/// What the office holds of one station.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Held {
    /// 0 before the first event.
    pub head_seq: i64,
    pub head_hash: String,
    /// The key in force after the head (the pinned key, until the log rotates it).
    pub key: String,
    /// UTC ms of the last pull or push that verified clean.
    pub last_ok_at: Option<i64>,
    /// UTC ms the station was enrolled (first seen in the config).
    pub enrolled_at: i64,
    /// The keys the held log was signed with before the one in force (the pinned key and those
    /// its rotations named), for judging an event at a held seq.
    pub earlier_keys: Vec<String>,
    /// What plausibility remembers of the log through the head.
    pub context: Context,
}

/// What a contact adds to what the office holds of a station.
#[derive(Debug, Default)]
pub struct Accepted {
    /// Verified new events, in order.
    pub events: Vec<HeldEvent>,
    /// The key in force after the last of them.
    pub key: String,
    /// Plausibility's memory after the last of them.
    pub context: Context,
    /// Events among them the office does not believe: (seq, why).
    pub implausible: Vec<(i64, String)>,
}

/// An event as the station signed it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldEvent {
    pub seq: i64,
    /// The event's `at` (UTC ms).
    pub at: i64,
    /// The event's `kind`, as the verifier parsed it.
    pub kind: String,
    pub body: String,
    pub hash: String,
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    pub id: i64,
    pub station_id: String,
    pub kind: String,
    pub seq: Option<i64>,
    pub detail: String,
    /// RFC 3339 UTC.
    pub raised_at: String,
    pub acknowledged_at: Option<String>,
    pub note: Option<String>,
}

pub struct DistrictStore {
    conn: Connection,
    /// `district.key`, which signs the office's log; `None` for a reader (reports, the check).
    key: Option<StationKey>,
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) fn held_event(r: &Row) -> rusqlite::Result<HeldEvent> {
    Ok(HeldEvent { seq: r.get(0)?, at: r.get(1)?, kind: r.get(2)?, body: r.get(3)?, hash: r.get(4)?, sig: r.get(5)? })
}

const ALARM_COLUMNS: &str = "id, station_id, kind, seq, detail, raised_at, acknowledged_at, note";

fn alarm_from_row(row: &Row) -> rusqlite::Result<Alarm> {
    Ok(Alarm {
        id: row.get(0)?,
        station_id: row.get(1)?,
        kind: row.get(2)?,
        seq: row.get(3)?,
        detail: row.get(4)?,
        raised_at: rfc3339(row.get(5)?),
        acknowledged_at: row.get::<_, Option<i64>>(6)?.map(rfc3339),
        note: row.get(7)?,
    })
}

impl DistrictStore {
    pub fn open(data_dir: &Path) -> Result<DistrictStore, DistrictStoreError> {
        let path = data_dir.join(DATABASE_FILE);
        let open_error = |source| DistrictStoreError::Open { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(open_error)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(open_error)?;
        MIGRATIONS.to_latest(&mut conn)?;
        Ok(DistrictStore { conn, key: None })
    }

    /// The store the office writes through: every change it makes is logged, signed by `key`.
    pub fn open_writer(data_dir: &Path, key: StationKey) -> Result<DistrictStore, DistrictStoreError> {
        Ok(DistrictStore { key: Some(key), ..DistrictStore::open(data_dir)? })
    }

    fn ledger_key(&self) -> Result<&StationKey, DistrictStoreError> {
        self.key.as_ref().ok_or(DistrictStoreError::ReadOnly)
    }

    /// The office's own log, in order.
    pub fn ledger(&self) -> Result<Vec<SealedEvent>, DistrictStoreError> {
        Ok(ledger::read(&self.conn)?)
    }

    /// Appends an office event outside any other change (a receipt signed, a check's checkpoint).
    pub fn log<const N: usize>(
        &mut self,
        kind: &str,
        fields: [(&str, serde_json::Value); N],
        now: i64,
    ) -> Result<(), DistrictStoreError> {
        let key = self.ledger_key()?.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        ledger::append(&tx, &key, kind, ledger::fields(fields), now)?;
        tx.commit()?;
        Ok(())
    }

    /// The station's record, made on first sight with its pinned key.
    pub fn held(&mut self, station_id: &str, pinned_key: &str, now: i64) -> Result<Held, DistrictStoreError> {
        let known: Option<i64> = self
            .conn
            .query_row("SELECT head_seq FROM stations WHERE id = ?1", [station_id], |r| r.get(0))
            .optional()?;
        match known {
            None => {
                let key = self.ledger_key()?.clone();
                let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // Another process (a verb beside `serve`) may have enrolled it since the look above.
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO stations (id, head_seq, head_hash, key, enrolled_at) VALUES (?1, 0, '', ?2, ?3)",
                    params![station_id, pinned_key, now],
                )?;
                if inserted == 1 {
                    let fields = ledger::fields([("station_id", station_id.into()), ("enrolled_at", now.into())]);
                    ledger::append(&tx, &key, "enrolled", fields, now)?;
                    tx.commit()?;
                }
            }
            // Nothing accepted yet: the key the clerk pins now is the key (a mistyped one,
            // corrected in district.toml, simply takes effect).
            Some(0) => {
                self.conn.execute(
                    "UPDATE stations SET key = ?2 WHERE id = ?1 AND key IS NOT ?2",
                    params![station_id, pinned_key],
                )?;
            }
            Some(_) => {}
        }
        let mut held = self.conn.query_row(
            "SELECT head_seq, head_hash, key, last_ok_at, enrolled_at, plausibility FROM stations WHERE id = ?1",
            [station_id],
            |r| {
                Ok(Held {
                    head_seq: r.get(0)?,
                    head_hash: r.get(1)?,
                    key: r.get(2)?,
                    last_ok_at: r.get(3)?,
                    enrolled_at: r.get(4)?,
                    earlier_keys: Vec::new(),
                    // An unreadable context judges the next events as a fresh start would.
                    context: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
                })
            },
        )?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT json_extract(body, '$.public_key') FROM events WHERE station_id = ?1 AND kind = 'key_rotated' \
             ORDER BY seq",
        )?;
        held.earlier_keys = stmt.query_map([station_id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(held)
    }

    /// The challenge the station's next push must answer, if one was issued.
    pub fn push_challenge(&self, station_id: &str) -> Result<Option<String>, DistrictStoreError> {
        Ok(self
            .conn
            .query_row("SELECT push_challenge FROM stations WHERE id = ?1", [station_id], |r| r.get(0))
            .optional()?
            .flatten())
    }

    pub fn set_push_challenge(&mut self, station_id: &str, challenge: &str) -> Result<(), DistrictStoreError> {
        self.conn.execute("UPDATE stations SET push_challenge = ?2 WHERE id = ?1", params![station_id, challenge])?;
        Ok(())
    }

    /// The hash of the event the office holds at `seq`.
    pub fn hash_at(&self, station_id: &str, seq: i64) -> Result<Option<String>, DistrictStoreError> {
        Ok(self
            .conn
            .query_row("SELECT hash FROM events WHERE station_id = ?1 AND seq = ?2", params![station_id, seq], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Stores verified events (received at `now`) and moves the head to the last of them with
    /// the key in force and the plausibility context after it, with the events found
    /// implausible, in one transaction; when `clean`, records a clean contact.
    pub fn accept(
        &mut self,
        station_id: &str,
        accepted: &Accepted,
        now: i64,
        clean: bool,
    ) -> Result<(), DistrictStoreError> {
        let Accepted { events, key, context, implausible } = accepted;
        let ledger_key = self.ledger_key()?.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut finding = tx.prepare_cached("INSERT INTO implausible (station_id, seq, why) VALUES (?1, ?2, ?3)")?;
        for (seq, why) in implausible {
            finding.execute(params![station_id, seq, why])?;
            let fields = ledger::fields([
                ("station_id", station_id.into()),
                ("event_seq", (*seq).into()),
                ("why", why.as_str().into()),
            ]);
            ledger::append(&tx, &ledger_key, "finding", fields, now)?;
        }
        drop(finding);
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (station_id, seq, at, kind, body, hash, sig, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for e in events {
            insert.execute(params![station_id, e.seq, e.at, e.kind, e.body, e.hash, e.sig, now])?;
        }
        drop(insert);
        if let Some(last) = events.last() {
            let context = serde_json::to_string(context).expect("a context serialises");
            tx.execute(
                "UPDATE stations SET head_seq = ?2, head_hash = ?3, key = ?4, plausibility = ?5 WHERE id = ?1",
                params![station_id, last.seq, last.hash, key, context],
            )?;
            let fields = ledger::fields([
                ("station_id", station_id.into()),
                ("head_seq", last.seq.into()),
                ("head_hash", last.hash.as_str().into()),
                ("key", key.as_str().into()),
                ("context", context.into()),
            ]);
            ledger::append(&tx, &ledger_key, "held", fields, now)?;
        }
        if clean {
            tx.execute("UPDATE stations SET last_ok_at = ?2 WHERE id = ?1", params![station_id, now])?;
            // Logged at most hourly per station: `last_ok_at` may be at most that far ahead of
            // what the log proves (`CONTACT_GRAIN_MS`).
            let logged: Option<i64> = tx
                .query_row("SELECT contact_logged_at FROM stations WHERE id = ?1", [station_id], |r| r.get(0))
                .optional()?
                .flatten();
            if logged.is_none_or(|logged| now < logged || now - logged >= CONTACT_GRAIN_MS) {
                tx.execute("UPDATE stations SET contact_logged_at = ?2 WHERE id = ?1", params![station_id, now])?;
                let fields = ledger::fields([("station_id", station_id.into()), ("ok_at", now.into())]);
                ledger::append(&tx, &ledger_key, "contact", fields, now)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Raises an alarm, keeping `evidence` (the conflicting event as received) with it; an
    /// alarm of the same kind at the same seq still open is not raised twice. Returns the new
    /// alarm's id.
    pub fn raise(
        &mut self,
        station_id: &str,
        kind: &str,
        seq: Option<i64>,
        detail: &str,
        evidence: Option<&str>,
        now: i64,
    ) -> Result<Option<i64>, DistrictStoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let open: Option<i64> = tx
            .query_row(
                "SELECT id FROM alarms WHERE station_id = ?1 AND kind = ?2 AND seq IS ?3 AND acknowledged_at IS NULL",
                params![station_id, kind, seq],
                |r| r.get(0),
            )
            .optional()?;
        if open.is_some() {
            return Ok(None);
        }
        tx.execute(
            "INSERT INTO alarms (station_id, kind, seq, detail, raised_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![station_id, kind, seq, detail, now],
        )?;
        let id = tx.last_insert_rowid();
        if let Some(line) = evidence {
            tx.execute("INSERT INTO evidence (alarm_id, line) VALUES (?1, ?2)", params![id, line])?;
        }
        let fields = ledger::fields([
            ("alarm_id", id.into()),
            ("station_id", station_id.into()),
            ("alarm_kind", kind.into()),
            ("event_seq", seq.into()),
            ("detail", detail.into()),
            ("evidence_sha256", evidence.map(|line| crate::proof::sha256_hex(line.as_bytes())).into()),
        ]);
        ledger::append(&tx, self.key.as_ref().ok_or(DistrictStoreError::ReadOnly)?, "alarm", fields, now)?;
        tx.commit()?;
        Ok(Some(id))
    }

    /// Alarms, newest first: of one station or all; only the open ones, or all.
    pub fn alarms(&self, station_id: Option<&str>, open_only: bool) -> Result<Vec<Alarm>, DistrictStoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {ALARM_COLUMNS} FROM alarms WHERE (?1 IS NULL OR station_id = ?1) \
             AND (?2 = 0 OR acknowledged_at IS NULL) ORDER BY id DESC"
        ))?;
        Ok(stmt.query_map(params![station_id, open_only], alarm_from_row)?.collect::<Result<_, _>>()?)
    }

    /// The events kept with an alarm (a fork's other event, as received).
    pub fn evidence(&self, alarm_id: i64) -> Result<Vec<String>, DistrictStoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT line FROM evidence WHERE alarm_id = ?1 ORDER BY id")?;
        Ok(stmt.query_map([alarm_id], |r| r.get(0))?.collect::<Result<_, _>>()?)
    }

    /// A clerk's acknowledgement: the alarm stays, with when and the note.
    pub fn acknowledge(&mut self, id: i64, note: &str, now: i64) -> Result<Alarm, DistrictStoreError> {
        let alarm = self
            .conn
            .query_row(&format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = ?1"), [id], alarm_from_row)
            .optional()?
            .ok_or(DistrictStoreError::NoSuchAlarm(id))?;
        if let (Some(at), note) = (&alarm.acknowledged_at, &alarm.note) {
            return Err(DistrictStoreError::AlreadyAcknowledged {
                id,
                at: at.clone(),
                note: note.clone().unwrap_or_default(),
            });
        }
        let key = self.ledger_key()?.clone();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("UPDATE alarms SET acknowledged_at = ?2, note = ?3 WHERE id = ?1", params![id, now, note])?;
        ledger::append(&tx, &key, "ack", ledger::fields([("alarm_id", id.into()), ("note", note.into())]), now)?;
        tx.commit()?;
        Ok(Alarm { acknowledged_at: Some(rfc3339(now)), note: Some(note.to_owned()), ..alarm })
    }

    /// The events reports count (airings' ends and missed slots) of a station with
    /// `from <= at < to` (UTC ms), ascending.
    pub fn counted_events(&self, station_id: &str, from: i64, to: i64) -> Result<Vec<HeldEvent>, DistrictStoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, at, kind, body, hash, sig FROM events WHERE station_id = ?1 \
             AND kind IN ('airing_ended', 'slot_missed') AND at >= ?2 AND at < ?3 ORDER BY seq",
        )?;
        Ok(stmt.query_map(params![station_id, from, to], held_event)?.collect::<Result<_, _>>()?)
    }

    /// The events of a station the office found implausible, with `from <= seq` (seq → why).
    pub fn implausible(&self, station_id: &str) -> Result<std::collections::BTreeMap<i64, String>, DistrictStoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT seq, why FROM implausible WHERE station_id = ?1")?;
        Ok(stmt.query_map([station_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?)
    }

    /// The last `limit` events of a station, newest first.
    pub fn latest(&self, station_id: &str, limit: u32) -> Result<Vec<HeldEvent>, DistrictStoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, at, kind, body, hash, sig FROM events WHERE station_id = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        Ok(stmt.query_map(params![station_id, limit], held_event)?.collect::<Result<_, _>>()?)
    }

    /// When the station's first held event happened (UTC ms).
    pub fn first_event_at(&self, station_id: &str) -> Result<Option<i64>, DistrictStoreError> {
        Ok(self
            .conn
            .query_row("SELECT at FROM events WHERE station_id = ?1 ORDER BY seq LIMIT 1", [station_id], |r| r.get(0))
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_alarms_are_append_only_and_an_acknowledgement_keeps_the_alarm() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = DistrictStore::open_writer(dir.path(), StationKey::from_seed([1; 32])).unwrap();
        assert_eq!(store.held("a", "key", 1).unwrap().head_seq, 0);
        let event = HeldEvent {
            seq: 1,
            at: 5,
            kind: "station_stopped".into(),
            body: "{\"at\":5,\"seq\":1}".into(),
            hash: "h1".into(),
            sig: "s".into(),
        };
        let accepted = |events: &[HeldEvent], key: &str| Accepted {
            events: events.to_vec(),
            key: key.into(),
            ..Accepted::default()
        };
        store.accept("a", &accepted(std::slice::from_ref(&event), "key"), 2, true).unwrap();
        let held = store.held("a", "other", 3).unwrap();
        assert_eq!((held.head_seq, held.head_hash.as_str(), held.key.as_str()), (1, "h1", "key"));
        assert!(store.conn.execute("UPDATE events SET body = 'x'", []).is_err());
        assert!(store.conn.execute("DELETE FROM events", []).is_err());
        assert!(store.accept("a", &accepted(&[event], "key"), 4, true).is_err(), "a held seq is never stored twice");
        let body = "{\"at\":6,\"kind\":\"key_rotated\",\"new_public_key\":\"k2\",\"public_key\":\"key\",\"seq\":2}";
        let rotation = HeldEvent {
            seq: 2,
            at: 6,
            kind: "key_rotated".into(),
            body: body.into(),
            hash: "h2".into(),
            sig: "s".into(),
        };
        store.accept("a", &accepted(&[rotation], "k2"), 4, true).unwrap();
        let held = store.held("a", "other", 4).unwrap();
        assert_eq!((held.key.as_str(), held.earlier_keys.clone()), ("k2", vec!["key".to_owned()]));

        let id = store.raise("a", "fork", Some(1), "two events at seq 1", Some("{…}"), 5).unwrap().unwrap();
        assert_eq!(store.raise("a", "fork", Some(1), "again", None, 6).unwrap(), None, "one open alarm per finding");
        assert!(store.conn.execute("DELETE FROM alarms", []).is_err());
        let acked = store.acknowledge(id, "called the ward; restored box", 7).unwrap();
        assert_eq!(acked.note.as_deref(), Some("called the ward; restored box"));
        assert!(matches!(store.acknowledge(id, "again", 8), Err(DistrictStoreError::AlreadyAcknowledged { .. })));
        assert!(store.conn.execute("UPDATE alarms SET note = 'x'", []).is_err(), "a note, once written, stays");
        assert_eq!(store.evidence(id).unwrap(), ["{…}"]);
        assert_eq!(store.alarms(Some("a"), true).unwrap().len(), 0);
        assert_eq!(store.alarms(None, false).unwrap().len(), 1);
    }
}
