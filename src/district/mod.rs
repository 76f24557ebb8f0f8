//! `loa district`: the auditing office above the stations. It holds each station to account
//! without trusting the box: it pins each station's key (`config`), remembers every event it
//! verified and each station's head (`store`), only moves a head forward along the chain it has
//! seen and raises an alarm for anything else (`witness`), pulls stations over their API or takes
//! their pushes (`pull`, `http`), signs a receipt for what it holds (`receipt`), and reports
//! across stations (`report`).
//!
//! [`Office`] is the one entry: the CLI verbs and the server both go through it, so a pulled
//! batch and a pushed one are judged by the same code.

pub mod behind;
pub mod bulletins;
pub mod config;
pub mod http;
pub mod memory;
pub mod plausible;
pub mod pull;
pub mod receipt;
pub mod report;
pub mod store;
pub mod witness;
pub mod words;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::proof::{KeyError, StationKey};
use crate::time::clock::Clock;
use config::{DistrictConfig, StationEntry};
use store::{Accepted, Alarm, DistrictStore, DistrictStoreError};
use witness::{AlarmKind, Batch, Finding, Freshness, Holding};

pub const KEY_FILE: &str = "district.key";

#[derive(Debug, thiserror::Error)]
pub enum OfficeError {
    #[error("cannot create data_dir {}: {source}; check district.data_dir in {}", dir.display(), config.display())]
    DataDir { dir: std::path::PathBuf, config: std::path::PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] DistrictStoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The office: its config, its memory, its key and its clock.
pub struct Office {
    pub config: DistrictConfig,
    store: Mutex<DistrictStore>,
    /// What the last check of the office's own memory found (`memory`): nothing is reported
    /// from memory it cannot prove.
    memory: Mutex<memory::MemoryCheck>,
    /// One per station: a push and a pull of the same station judge against one head, in turn.
    ingesting: std::collections::HashMap<String, Mutex<()>>,
    key: StationKey,
    pub clock: Arc<dyn Clock>,
}

/// What one contact with a station (a pull or a push) came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    pub station_id: String,
    /// Events verified and stored now.
    pub accepted: usize,
    pub head_seq: i64,
    pub head_hash: String,
    /// Alarms raised now (kinds).
    pub alarms: Vec<AlarmKind>,
    /// Why the station could not be reached or read, if it could not.
    pub error: Option<String>,
    /// The office's signed receipt for what it holds, when the contact was clean.
    #[serde(skip)]
    pub receipt: Option<String>,
}

impl Contact {
    pub fn clean(&self) -> bool {
        self.alarms.is_empty() && self.error.is_none()
    }
}

/// One station in `status`.
#[derive(Debug, Clone, Serialize)]
pub struct StationStatus {
    pub id: String,
    pub name: String,
    pub head_seq: i64,
    pub head_hash: String,
    /// RFC 3339 UTC of the last clean pull or push.
    pub last_ok_at: Option<String>,
    /// Open (unacknowledged) alarms, newest first.
    pub alarms: Vec<Alarm>,
}

impl Office {
    pub fn open(config: DistrictConfig, clock: Arc<dyn Clock>) -> Result<Office, OfficeError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| OfficeError::DataDir {
            dir: config.data_dir.clone(),
            config: config.path.clone(),
            source,
        })?;
        let key = crate::proof::load_or_create(&config.data_dir, KEY_FILE)?;
        let store = DistrictStore::open_writer(&config.data_dir, key.clone())?;
        let ingesting = config.stations.iter().map(|s| (s.id.clone(), Mutex::new(()))).collect();
        let office = Office { config, store: Mutex::new(store), memory: Mutex::default(), ingesting, key, clock };
        office.check_memory()?;
        Ok(office)
    }

    /// Checks the office's own memory (`memory::check`) and keeps the verdict; when whole, logs a
    /// checkpoint for each station verified further, so the next check is quick.
    pub fn check_memory(&self) -> Result<memory::MemoryCheck, DistrictStoreError> {
        let office_key = crate::proof::parse_public_key(&self.key.public_key_hex()).expect("our own key parses");
        let found = memory::check(&self.config, &office_key)?;
        if found.is_whole() {
            let now = self.clock.now().timestamp_millis();
            let mut store = self.store();
            for (station, seq, hash) in &found.verified {
                let fields = [
                    ("station_id", station.as_str().into()),
                    ("event_seq", (*seq).into()),
                    ("hash", hash.as_str().into()),
                ];
                store.log("checked", fields, now)?;
            }
        } else {
            for problem in &found.problems {
                tracing::error!("the office's memory is damaged: {problem}");
            }
        }
        *self.memory.lock().expect("the memory verdict lock") = found.clone();
        Ok(found)
    }

    /// Why the office's memory cannot be trusted, if it cannot: each thing wrong.
    pub fn damaged(&self) -> Option<Vec<String>> {
        let memory = self.memory.lock().expect("the memory verdict lock");
        (!memory.is_whole()).then(|| memory.problems.clone())
    }

    /// The office's public key (hex): what a station checks receipts with.
    pub fn public_key_hex(&self) -> String {
        self.key.public_key_hex()
    }

    fn store(&self) -> std::sync::MutexGuard<'_, DistrictStore> {
        self.store.lock().expect("the office store lock")
    }

    /// Judges a batch from `station` (pulled or pushed) and records the outcome: verified events
    /// stored, head moved, alarms raised. Blocking (signature checks, SQLite): call it off an
    /// async runtime's worker threads.
    pub fn ingest(&self, station: &StationEntry, batch: &Batch) -> Result<Contact, DistrictStoreError> {
        // Read the head, judge, write: one station's contacts in turn, other stations' at once.
        let _turn = self.ingesting.get(&station.id).map(|m| m.lock().expect("a station's ingest lock"));
        self.judge(station, batch)
    }

    /// A push of `lines`, with the station's head statement over the challenge the office
    /// issued after its last push (`statement`): judged as a pull is, and a fresh challenge
    /// issued for the next one (returned). A push without a statement, when a challenge is
    /// outstanding, is kept but no contact; one over another challenge is `stale`.
    pub fn ingest_push(
        &self,
        station: &StationEntry,
        lines: Vec<&str>,
        after_seq: i64,
        statement: Option<&str>,
    ) -> Result<(Contact, String), DistrictStoreError> {
        let _turn = self.ingesting.get(&station.id).map(|m| m.lock().expect("a station's ingest lock"));
        let outstanding = self.store().push_challenge(&station.id)?;
        let freshness =
            outstanding.as_deref().filter(|_| statement.is_some()).map(|challenge| Freshness { challenge, statement });
        let unproven = outstanding.is_some() && statement.is_none();
        let batch = Batch { lines, after_seq, freshness, unproven, ..Batch::default() };
        let mut contact = self.judge(station, &batch)?;
        if unproven && contact.error.is_none() {
            contact.error = Some(
                "the push carries no head statement over the office's challenge (Loa-Head-Statement): its events \
                 are kept, but it is no contact; push again answering the challenge given"
                    .into(),
            );
        }
        let next = crate::proof::head::new_challenge().map_err(|e| DistrictStoreError::Challenge(e.to_string()))?;
        self.store().set_push_challenge(&station.id, &next)?;
        Ok((contact, next))
    }

    /// `ingest` without taking the station's turn (the caller holds it).
    fn judge(&self, station: &StationEntry, batch: &Batch) -> Result<Contact, DistrictStoreError> {
        let now = self.clock.now().timestamp_millis();
        let pinned = hex::encode(station.public_key.to_bytes());
        let (held, held_hashes) = {
            let mut store = self.store();
            let held = store.held(&station.id, &pinned, now)?;
            // The hashes of held events the batch repeats (the overlap: usually one).
            let mut hashes = std::collections::HashMap::new();
            for (_, seq) in witness::held_lines(&batch.lines, held.head_seq) {
                if let Some(hash) = store.hash_at(&station.id, seq)? {
                    hashes.insert(seq, hash);
                }
            }
            (held, hashes)
        };
        let holding = Holding {
            station_id: &station.id,
            held: &held,
            accepted_replacements: &station.accepted_replacements,
            now,
        };
        let mut decision = witness::witness(&holding, |seq| held_hashes.get(&seq).cloned(), batch);
        let mut store = self.store();
        let mut raised = Vec::new();
        for Finding { kind, seq, detail, evidence } in &one_per_kind(std::mem::take(&mut decision.findings)) {
            store.raise(&station.id, kind.as_str(), *seq, detail, evidence.as_deref(), now)?;
            tracing::warn!(station = %station.id, kind = kind.as_str(), ?seq, "{detail}");
            raised.push(*kind);
        }
        let clean = raised.is_empty() && !batch.unproven;
        // Events verified before the first bad one are good evidence: kept, though the contact
        // was not clean.
        let (head_seq, head_hash) = match decision.accepted.last() {
            Some(last) => (last.seq, last.hash.clone()),
            None => (held.head_seq, held.head_hash.clone()),
        };
        let accepted_count = decision.accepted.len();
        let accepted = Accepted {
            events: decision.accepted,
            key: decision.key,
            context: decision.context,
            implausible: decision.implausible,
        };
        store.accept(&station.id, &accepted, now, clean)?;
        let receipt = (clean && head_seq > 0)
            .then(|| receipt::sign(&self.key, &self.config.name, &station.id, head_seq, &head_hash, self.clock.now()));
        // A receipt for a head already receipted says nothing new to the log.
        if receipt.is_some() && accepted_count > 0 {
            let fields = [
                ("station_id", station.id.as_str().into()),
                ("head_seq", head_seq.into()),
                ("head_hash", head_hash.as_str().into()),
            ];
            store.log("receipt", fields, now)?;
        }
        Ok(Contact {
            station_id: station.id.clone(),
            accepted: accepted_count,
            head_seq,
            head_hash,
            alarms: raised,
            error: None,
            receipt,
        })
    }

    /// Raises an alarm about `station` outside a batch (a pull past its deadline); `None` when
    /// the same alarm is open already.
    pub fn raise(
        &self,
        station: &StationEntry,
        kind: AlarmKind,
        detail: &str,
    ) -> Result<Option<i64>, DistrictStoreError> {
        let now = self.clock.now().timestamp_millis();
        tracing::warn!(station = %station.id, kind = kind.as_str(), "{detail}");
        self.store().raise(&station.id, kind.as_str(), None, detail, None, now)
    }

    /// When the station's last airing the office holds ended (RFC 3339).
    pub fn last_airing(&self, station: &str) -> Result<Option<String>, DistrictStoreError> {
        let latest = self.store().latest(station, 200)?;
        Ok(latest
            .iter()
            .find(|e| e.kind == crate::proof::events::Kind::AiringEnded.as_str())
            .and_then(|e| DateTime::<Utc>::from_timestamp_millis(e.at))
            .map(|t| t.to_rfc3339()))
    }

    /// What the office holds of `station`.
    pub fn held(&self, station: &StationEntry) -> Result<store::Held, DistrictStoreError> {
        let now = self.clock.now().timestamp_millis();
        self.store().held(&station.id, &hex::encode(station.public_key.to_bytes()), now)
    }

    /// Raises `unreachable` for every station with no clean contact for `stale_after` (counted
    /// from its enrolment when it never had one). Returns the stations it raised it for.
    pub fn check_reachability(&self) -> Result<Vec<String>, DistrictStoreError> {
        let now = self.clock.now();
        let mut store = self.store();
        let mut raised = Vec::new();
        for station in &self.config.stations {
            let held = store.held(&station.id, &hex::encode(station.public_key.to_bytes()), now.timestamp_millis())?;
            let since = held.last_ok_at.unwrap_or(held.enrolled_at);
            let silent = now - DateTime::<Utc>::from_timestamp_millis(since).unwrap_or(now);
            if silent > self.config.stale_after {
                let detail = format!(
                    "no clean pull or push for {} hours (district.stale_after_hours = {}): the station is off, \
                     its network is down, or its token was revoked",
                    silent.num_hours(),
                    self.config.stale_after.num_hours()
                );
                let kind = AlarmKind::Unreachable.as_str();
                if store.raise(&station.id, kind, None, &detail, None, now.timestamp_millis())?.is_some() {
                    tracing::warn!(station = %station.id, "{detail}");
                    raised.push(station.id.clone());
                }
            }
        }
        Ok(raised)
    }

    /// Every configured station: what the office holds and its open alarms.
    pub fn status(&self) -> Result<Vec<StationStatus>, DistrictStoreError> {
        let now = self.clock.now().timestamp_millis();
        let mut store = self.store();
        let mut out = Vec::with_capacity(self.config.stations.len());
        for station in &self.config.stations {
            let held = store.held(&station.id, &hex::encode(station.public_key.to_bytes()), now)?;
            out.push(StationStatus {
                id: station.id.clone(),
                name: station.name.clone(),
                head_seq: held.head_seq,
                head_hash: held.head_hash,
                last_ok_at: held.last_ok_at.and_then(DateTime::from_timestamp_millis).map(|t| t.to_rfc3339()),
                alarms: store.alarms(Some(&station.id), true)?,
            });
        }
        Ok(out)
    }

    /// A clerk's acknowledgement of an alarm, with a note; both stay on record.
    pub fn acknowledge(&self, alarm: i64, note: &str) -> Result<Alarm, DistrictStoreError> {
        let now = self.clock.now().timestamp_millis();
        self.store().acknowledge(alarm, note, now)
    }

    /// A new push token for `station` (shown once; stored as SHA-256).
    pub fn create_push_token(&self, station: &str) -> Result<String, OfficeError> {
        let (secret, digest, now) = self.new_secret()?;
        self.store().add_token("push", station, &digest, now)?;
        Ok(secret)
    }

    /// A new clerk token (may acknowledge alarms on the dashboard), shown once.
    pub fn create_clerk_token(&self, label: &str) -> Result<String, OfficeError> {
        let (secret, digest, now) = self.new_secret()?;
        self.store().add_token("clerk", label, &digest, now)?;
        Ok(secret)
    }

    fn new_secret(&self) -> Result<(String, String, i64), OfficeError> {
        let secret = crate::model::token::generate()
            .map_err(|e| KeyError::Io { path: self.config.data_dir.clone(), source: e })?;
        let digest = crate::model::token::digest(&secret);
        Ok((secret, digest, self.clock.now().timestamp_millis()))
    }

    /// The clerk a token belongs to (by label).
    pub fn clerk(&self, presented: &str) -> Result<Option<String>, DistrictStoreError> {
        Ok(owner(self.store().active_tokens("clerk")?, presented))
    }

    /// The station a push token belongs to.
    pub fn push_token_station(&self, presented: &str) -> Result<Option<String>, DistrictStoreError> {
        Ok(owner(self.store().active_tokens("push")?, presented))
    }

    /// Every token the office made, and revoking one.
    pub fn tokens(&self) -> Result<Vec<store::OfficeToken>, DistrictStoreError> {
        self.store().tokens()
    }

    pub fn revoke_token(&self, id: i64) -> Result<Option<store::OfficeToken>, DistrictStoreError> {
        let now = self.clock.now().timestamp_millis();
        self.store().revoke_token(id, now)
    }

    /// Runs `f` with the office's store (reports, the dashboard).
    pub fn with_store<R>(&self, f: impl FnOnce(&DistrictStore) -> R) -> R {
        f(&self.store())
    }
}

/// At most one finding of each kind per contact: the first, naming how many more there were,
/// so a push of 20,000 bad lines raises one alarm, not 20,000.
fn one_per_kind(findings: Vec<Finding>) -> Vec<Finding> {
    let mut kept: Vec<(Finding, usize)> = Vec::new();
    for finding in findings {
        match kept.iter_mut().find(|(first, _)| first.kind == finding.kind) {
            Some((_, more)) => *more += 1,
            None => kept.push((finding, 0)),
        }
    }
    kept.into_iter()
        .map(|(first, more)| match more {
            0 => first,
            more => Finding { detail: format!("{} (and {more} more like it in this contact)", first.detail), ..first },
        })
        .collect()
}

/// Whose token `presented` is, among (owner, SHA-256) pairs, each compared in constant time.
fn owner(tokens: Vec<(String, String)>, presented: &str) -> Option<String> {
    let digest = crate::model::token::digest(presented);
    tokens.into_iter().find(|(_, stored)| crate::model::token::same_digest(stored, &digest)).map(|(owner, _)| owner)
}
