//! An office behind its own stations (issue 33): restored from an older copy of its data, its
//! log's tail cut, it would give the next bulletin an id its stations have already passed (they
//! never read it) and sign a history that contradicts what they hold. Every feed page carries
//! the office's signed head (`proof::office_head`); each station keeps the highest and shows it
//! back on every feed request and push. A head the office signed that its log no longer holds
//! (a later seq, or another event at that seq) proves it forgot: the statement is kept beside
//! the database (`office-heads-shown.jsonl`, one line per station — evidence that proves itself
//! by the office's own signature, so no database is trusted with it), `check` exits 1 naming the
//! stations, the feed answers 503 `office_behind`, and no bulletin is signed until an
//! administrator runs `loa district recover`: it records `office_recovered` events in the log up
//! to the highest seq any station saw, so no id a station has seen is ever used again.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Office;
use super::config::StationEntry;
use super::store::DistrictStoreError;
use crate::proof::office_head::OfficeHead;

/// Beside the database: the highest office head each station showed that the log lacked.
pub const SHOWN_FILE: &str = "office-heads-shown.jsonl";

/// A station that has seen more of the office's log than the office holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ahead {
    pub station_id: String,
    /// The seq the station saw the office's log reach, and its hash there.
    pub seq: i64,
    pub hash: String,
    /// The seq the office's log reaches now.
    pub held_seq: i64,
}

impl Ahead {
    /// What happened, for the administrator.
    pub fn describe(&self) -> String {
        let what = if self.seq > self.held_seq { "beyond the end of" } else { "another event than" };
        format!(
            "station {} has seen this office's log reach seq {} (hash {}), {what} what it holds (up to seq {}): \
             the office was restored from an older copy; run `loa district recover` before sending bulletins",
            self.station_id,
            self.seq,
            &self.hash[..12],
            self.held_seq
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shown {
    station_id: String,
    statement: String,
}

impl Office {
    /// The office's head now, signed: what every feed page carries.
    pub fn office_head(&self) -> Result<String, DistrictStoreError> {
        let (seq, hash) = self.store().ledger_head_event()?;
        Ok(OfficeHead { seq, hash, at: self.clock.now().timestamp_millis() }.sign(&self.key))
    }

    /// Judges the office head `station` showed: `Some` when the office is behind it (kept as
    /// evidence). A line the office did not sign proves nothing and changes nothing.
    pub fn judge_shown_head(&self, station: &str, line: &str) -> Result<Option<Ahead>, DistrictStoreError> {
        let Ok(head) = OfficeHead::check(line, &self.public_key()) else { return Ok(None) };
        let Some(ahead) = self.ahead_of(station, &head)? else { return Ok(None) };
        let store = self.store(); // (held: one writer of the file at a time)
        let mut shown = read_shown(&self.shown_path());
        let higher = shown.iter().any(|s| {
            s.station_id == station
                && OfficeHead::check(&s.statement, &self.public_key()).is_ok_and(|k| k.seq >= head.seq)
        });
        if !higher {
            shown.retain(|s| s.station_id != station);
            shown.push(Shown { station_id: station.to_owned(), statement: line.to_owned() });
            if let Err(e) = write_shown(&self.shown_path(), &shown) {
                tracing::error!("cannot keep the office head station {station} showed: {e}");
            }
            tracing::error!("{}", ahead.describe());
        }
        drop(store);
        Ok(Some(ahead))
    }

    /// A push from `station` that starts beyond what the office holds of it (`after_seq`), with
    /// a receipt (`loa-receipt`) the office itself signed for more: the office forgot, not the
    /// station (no `gap`). The seq the office holds, for the station to push from.
    pub fn forgot_receipted(
        &self,
        station: &StationEntry,
        receipt: &str,
        after_seq: i64,
    ) -> Result<Option<i64>, DistrictStoreError> {
        let Ok(fields) = crate::proof::check_statement(receipt, &self.public_key()) else { return Ok(None) };
        let ours = fields.get("kind").and_then(Value::as_str) == Some("receipt")
            && fields.get("station_id").and_then(Value::as_str) == Some(station.id.as_str());
        let Some(receipted) = fields.get("head_seq").and_then(Value::as_i64).filter(|_| ours) else { return Ok(None) };
        let held = self.held(station)?.head_seq;
        if after_seq > held && receipted > held {
            tracing::error!(
                "station {} shows this office's receipt for its log up to seq {receipted}, but the office holds it \
                 only up to seq {held}: restored from an older copy? the station is asked to push again from there",
                station.id
            );
            return Ok(Some(held));
        }
        Ok(None)
    }

    /// Every station whose shown head the office's log still lacks (after a recovery: none).
    pub fn behind(&self) -> Result<Vec<Ahead>, DistrictStoreError> {
        let mut found = Vec::new();
        for shown in read_shown(&self.shown_path()) {
            // (A line not signed by this office was not written by it: no evidence.)
            let Ok(head) = OfficeHead::check(&shown.statement, &self.public_key()) else { continue };
            found.extend(self.ahead_of(&shown.station_id, &head)?);
        }
        Ok(found)
    }

    /// `loa district recover`: when behind, records `office_recovered` events up to the highest
    /// seq a station saw; returns what was recovered from and the log's new head.
    pub fn recover(&self) -> Result<Option<(Vec<Ahead>, i64)>, DistrictStoreError> {
        let ahead = self.behind()?;
        let Some(lost_through) = ahead.iter().map(|a| a.seq).max() else { return Ok(None) };
        let stations: Vec<&str> = ahead.iter().map(|a| a.station_id.as_str()).collect();
        let now = self.clock.now().timestamp_millis();
        let head = self.store().recover_through(lost_through, &stations.join(","), now)?;
        Ok(Some((ahead, head)))
    }

    fn ahead_of(&self, station: &str, head: &OfficeHead) -> Result<Option<Ahead>, DistrictStoreError> {
        let store = self.store();
        if head.seq <= store.recovered_through()? {
            return Ok(None);
        }
        if store.ledger_hash(head.seq)?.is_some_and(|hash| hash == head.hash) {
            return Ok(None);
        }
        let (held_seq, _) = store.ledger_head_event()?;
        Ok(Some(Ahead { station_id: station.to_owned(), seq: head.seq, hash: head.hash.clone(), held_seq }))
    }

    fn public_key(&self) -> ed25519_dalek::VerifyingKey {
        crate::proof::parse_public_key(&self.key.public_key_hex()).expect("our own key parses")
    }

    fn shown_path(&self) -> PathBuf {
        self.config.data_dir.join(SHOWN_FILE)
    }
}

/// The kept lines; a line that cannot be read is skipped (it proves nothing).
fn read_shown(path: &std::path::Path) -> Vec<Shown> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// Written whole, then renamed: a cut never leaves half a file.
fn write_shown(path: &std::path::Path, shown: &[Shown]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    for entry in shown {
        writeln!(file, "{}", serde_json::to_string(entry).expect("strings serialise"))?;
    }
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
