//! The office sends bulletins down (issue 25): a file proven playable by the station's own gate
//! (full decode, `library::analysis`, the one piece of the station the office shares), kept in
//! `data_dir/bulletins/` by its SHA-256, and a manifest signed with `district.key` recorded in
//! the office's log; a withdrawal likewise. What the stations read is `proof::bulletin`.

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Office;
use super::store::{DistrictStoreError, LoggedNotice, Withdrawn, rfc3339};
use crate::config::ClipLimits;
use crate::model::clip::ClipMeta;
use crate::proof::bulletin::{Manifest, ManifestKind, Stations, Withdrawal, WithdrawalKind};

/// A bulletin to send: the file, what the office says of it, to whom, how often.
#[derive(Debug, Clone)]
pub struct NewBulletin {
    pub file: PathBuf,
    pub meta: ClipMeta,
    pub stations: Stations,
    pub airings: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BulletinError {
    /// What to correct in the command (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The file is not a playable bulletin.
    #[error("{}: not sent: {reason}", file.display())]
    NotPlayable { file: PathBuf, reason: String },
    #[error("{0}")]
    Io(String),
    /// A station has seen more of the office's log than it holds (`district::behind`): nothing
    /// is signed until `loa district recover`.
    #[error("not sent: {}", .0.describe())]
    Behind(super::behind::Ahead),
    #[error(transparent)]
    Store(#[from] DistrictStoreError),
}

/// A sent bulletin as listed: its manifest read back, and whether it was withdrawn.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub id: i64,
    pub sent_at: String,
    pub withdrawn: bool,
    pub manifest: serde_json::Value,
}

named_enum! {
    /// Where a bulletin stands at one station, from the station's log the office holds.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Reach("a bulletin's state at a station") {
        /// Nothing from the station yet about it (not followed yet, or not pulled yet).
        Pending = "pending",
        /// Taken into the station's library; not aired as often as owed yet.
        Received = "received",
        /// The station refused it (`refused_reason`).
        Refused = "refused",
        /// Completed airings as many as owed (`airings`), each an `airing_ended` the office holds.
        Aired = "aired",
        /// Its window ended before it aired as owed.
        Expired = "expired",
        /// The office withdrew it before it aired as owed.
        Withdrawn = "withdrawn",
    }
}

/// A bulletin at one station.
#[derive(Debug, Clone, Serialize)]
pub struct StationReach {
    pub station_id: String,
    pub station_name: String,
    pub state: Reach,
    pub received_at: Option<String>,
    pub refused_reason: Option<String>,
    pub refused_detail: Option<String>,
    pub airings: Airings,
}

/// The completed airings of a bulletin at a station: how many, and the seqs of the
/// `airing_ended` events (in the station's log, which the office holds) that prove them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Airings {
    pub completed: u32,
    pub seqs: Vec<i64>,
}

/// A bulletin's reach: each station it is addressed to.
#[derive(Debug, Clone, Serialize)]
pub struct BulletinStatus {
    pub id: i64,
    pub title: String,
    pub priority: String,
    pub valid_from: String,
    pub valid_until: String,
    pub airings_owed: u32,
    pub withdrawn: bool,
    /// Stations where it stands `aired`.
    pub aired: usize,
    pub stations: Vec<StationReach>,
}

/// Where the office keeps the audio of bulletins, by SHA-256.
pub fn audio_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("bulletins")
}

impl Office {
    /// Proves the file playable, keeps it, signs and records the manifest. Blocking (a full
    /// decode).
    pub fn send_bulletin(&self, new: &NewBulletin) -> Result<Manifest, BulletinError> {
        if let Some(ahead) = self.behind()?.into_iter().next() {
            return Err(BulletinError::Behind(ahead));
        }
        let meta = &new.meta;
        meta.check().map_err(|e| BulletinError::Usage(format!("--{}: {}", e.field.replace('_', "-"), e.message)))?;
        if let Stations::Listed(ids) = &new.stations {
            if let Some(unknown) = ids.iter().find(|id| self.config.station(id).is_none()) {
                let known: Vec<&str> = self.config.stations.iter().map(|s| s.id.as_str()).collect();
                return Err(BulletinError::Usage(format!(
                    "--stations: no [[station]] \"{unknown}\" in district.toml; its stations are {}, or give all",
                    known.join(", ")
                )));
            }
        }
        if new.airings == 0 {
            return Err(BulletinError::Usage("--airings: give 1 or more".into()));
        }
        let today = self.clock.now().with_timezone(&self.config.timezone).date_naive();
        let valid_from = meta.valid_from.unwrap_or(today);
        let valid_until = meta.valid_until.unwrap_or(valid_from + chrono::Days::new(6));
        if valid_until < valid_from {
            return Err(BulletinError::Usage(format!(
                "--until: {valid_until} is before the window opens ({valid_from}, today unless --from says); \
                 give a later date"
            )));
        }
        // Every station would refuse it `expired`: a window already over is never signed.
        if valid_until < today {
            return Err(BulletinError::Usage(format!(
                "--until: {valid_until} is over (today is {today}); a bulletin must be able to air: give today or later"
            )));
        }
        let facts = crate::library::analysis::analyse(&new.file, ClipLimits::default())
            .map_err(|e| BulletinError::NotPlayable { file: new.file.clone(), reason: e.to_string() })?;
        let (sha256, bytes) = self.keep_audio(&new.file)?;
        let now = self.clock.now().timestamp_millis();
        let mut manifest = Manifest {
            kind: ManifestKind::Bulletin,
            office: self.config.name.clone(),
            office_key: self.key.public_key_hex(),
            id: 0,
            sha256,
            bytes,
            duration_ms: facts.duration_ms,
            title: meta.title.trim().to_owned(),
            topic: meta.topic.clone(),
            language: meta.language.clone(),
            priority: meta.priority,
            stations: new.stations.clone(),
            valid_from,
            valid_until,
            airings: new.airings,
            created_at: now,
        };
        self.store().send_bulletin(
            |id| {
                manifest.id = id;
                manifest.sign(&self.key)
            },
            now,
        )?;
        Ok(manifest)
    }

    /// Withdraws a bulletin: a signed withdrawal the stations follow.
    pub fn withdraw_bulletin(&self, id: i64) -> Result<Withdrawal, BulletinError> {
        let now = self.clock.now().timestamp_millis();
        let withdrawal = Withdrawal {
            kind: WithdrawalKind::BulletinWithdrawn,
            office: self.config.name.clone(),
            office_key: self.key.public_key_hex(),
            id,
            at: now,
        };
        match self.store().withdraw_bulletin(id, || withdrawal.sign(&self.key), now)? {
            Withdrawn::Now(_) => Ok(withdrawal),
            Withdrawn::Already => Err(BulletinError::Usage(format!("bulletin {id} is already withdrawn"))),
            Withdrawn::NoSuchBulletin => {
                Err(BulletinError::Usage(format!("there is no bulletin {id}; `loa district bulletin list` shows them")))
            }
        }
    }

    /// Every bulletin sent, in order.
    pub fn bulletins(&self) -> Result<Vec<Listed>, BulletinError> {
        let mut listed: Vec<Listed> = Vec::new();
        for notice in self.store().notices(0)? {
            match notice.withdrawal {
                false => listed.push(Listed {
                    id: notice.id,
                    sent_at: rfc3339(notice.at),
                    withdrawn: false,
                    manifest: statement_fields(&notice.line),
                }),
                true => listed.iter_mut().filter(|b| b.id == notice.id).for_each(|b| b.withdrawn = true),
            }
        }
        Ok(listed)
    }

    /// The feed for `station` after `after`: the manifests addressed to it and their
    /// withdrawals, as signed (the station checks each line itself).
    pub fn feed(&self, station: &str, after: i64) -> Result<Vec<LoggedNotice>, DistrictStoreError> {
        // Nothing new (what a long-poll mostly finds): one read of the new rows, no more.
        if self.store().notices(after)?.is_empty() {
            return Ok(Vec::new());
        }
        let notices = self.store().notices(0)?;
        let addressed: Vec<i64> =
            notices.iter().filter(|n| !n.withdrawal && addressed_to(&n.line, station)).map(|n| n.id).collect();
        Ok(notices.into_iter().filter(|n| n.seq > after && addressed.contains(&n.id)).collect())
    }

    /// The last seq of the office's log (what the feed's watcher looks at).
    pub fn ledger_head(&self) -> Result<i64, DistrictStoreError> {
        self.store().ledger_head()
    }

    /// The audio of bulletin `id` for `station`: its file and size, if the bulletin is
    /// addressed to it.
    pub fn bulletin_audio(&self, station: &str, id: i64) -> Result<Option<PathBuf>, DistrictStoreError> {
        let notices = self.store().notices(id - 1)?;
        let Some(sent) = notices.iter().find(|n| n.seq == id && !n.withdrawal) else { return Ok(None) };
        if !addressed_to(&sent.line, station) {
            return Ok(None);
        }
        let sha256 = statement_fields(&sent.line)["sha256"].as_str().unwrap_or_default().to_owned();
        Ok(Some(audio_dir(&self.config.data_dir).join(format!("{sha256}.mp3"))))
    }

    /// Where bulletin `id` stands at each station it is addressed to, from the stations' logs
    /// the office holds (verified; airings it found implausible are not counted).
    pub fn bulletin_status(&self, id: i64) -> Result<BulletinStatus, BulletinError> {
        let listed = self.bulletins()?;
        let sent = listed.iter().find(|b| b.id == id).ok_or_else(|| {
            BulletinError::Usage(format!("there is no bulletin {id}; `loa district bulletin list` shows them"))
        })?;
        self.reach(sent)
    }

    /// The reach of a bulletin listed by [`Office::bulletins`].
    pub fn reach(&self, sent: &Listed) -> Result<BulletinStatus, BulletinError> {
        let id = sent.id;
        let manifest: Manifest = serde_json::from_value(sent.manifest.clone())
            .map_err(|e| BulletinError::Io(format!("bulletin {id}'s manifest does not read back: {e}")))?;
        let today = self.clock.now().with_timezone(&self.config.timezone).date_naive();
        let mut stations = Vec::new();
        for station in self.config.stations.iter().filter(|s| manifest.stations.includes(&s.id)) {
            let (trail, implausible) = {
                let store = self.store();
                (store.bulletin_trail(&station.id, id)?, store.implausible(&station.id)?)
            };
            let mut reach = StationReach {
                station_id: station.id.clone(),
                station_name: station.name.clone(),
                state: Reach::Pending,
                received_at: None,
                refused_reason: None,
                refused_detail: None,
                airings: Airings::default(),
            };
            for event in &trail {
                let body: serde_json::Value = serde_json::from_str(&event.body).unwrap_or_default();
                match event.kind.as_str() {
                    "bulletin_received" => reach.received_at = Some(rfc3339(event.at)),
                    "bulletin_refused" => {
                        reach.refused_reason = body["reason"].as_str().map(str::to_owned);
                        reach.refused_detail = body["detail"].as_str().map(str::to_owned);
                    }
                    "airing_ended" if body["status"] == "completed" && !implausible.contains_key(&event.seq) => {
                        reach.airings.completed += 1;
                        reach.airings.seqs.push(event.seq);
                    }
                    _ => {}
                }
            }
            reach.state = match (&reach.received_at, &reach.refused_reason) {
                _ if reach.airings.completed >= manifest.airings => Reach::Aired,
                (None, Some(_)) => Reach::Refused,
                _ if sent.withdrawn => Reach::Withdrawn,
                _ if manifest.valid_until < today => Reach::Expired,
                (Some(_), _) => Reach::Received,
                (None, None) => Reach::Pending,
            };
            stations.push(reach);
        }
        Ok(BulletinStatus {
            id,
            title: manifest.title.clone(),
            priority: manifest.priority.to_string(),
            valid_from: manifest.valid_from.to_string(),
            valid_until: manifest.valid_until.to_string(),
            airings_owed: manifest.airings,
            withdrawn: sent.withdrawn,
            aired: stations.iter().filter(|s| s.state == Reach::Aired).count(),
            stations,
        })
    }

    /// Copies the file into `data_dir/bulletins/SHA256.mp3` (written whole, then renamed: a
    /// half-written file never carries the name); its SHA-256 and size.
    fn keep_audio(&self, file: &Path) -> Result<(String, u64), BulletinError> {
        let io = |what: &str, e: std::io::Error| BulletinError::Io(format!("{what}: {e}"));
        let dir = audio_dir(&self.config.data_dir);
        std::fs::create_dir_all(&dir).map_err(|e| io(&format!("cannot create {}", dir.display()), e))?;
        let mut source = std::fs::File::open(file).map_err(|e| io(&format!("cannot read {}", file.display()), e))?;
        let mut copy = tempfile::NamedTempFile::new_in(&dir).map_err(|e| io("cannot stage the audio", e))?;
        let (mut hasher, mut bytes, mut buffer) = (Sha256::new(), 0u64, vec![0u8; 64 * 1024]);
        loop {
            let n = source.read(&mut buffer).map_err(|e| io(&format!("cannot read {}", file.display()), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            copy.write_all(&buffer[..n]).map_err(|e| io("cannot stage the audio", e))?;
            bytes += n as u64;
        }
        copy.as_file().sync_all().map_err(|e| io("cannot stage the audio", e))?;
        let sha256 = hex::encode(hasher.finalize());
        let kept = dir.join(format!("{sha256}.mp3"));
        copy.persist(&kept).map_err(|e| io(&format!("cannot keep {}", kept.display()), e.error))?;
        Ok((sha256, bytes))
    }
}

/// The members of a signed line the office made itself.
fn statement_fields(line: &str) -> serde_json::Value {
    crate::proof::split_line(line).ok().and_then(|(body, _, _)| serde_json::from_str(&body).ok()).unwrap_or_default()
}

fn addressed_to(line: &str, station: &str) -> bool {
    serde_json::from_value::<Stations>(statement_fields(line)["stations"].clone()).is_ok_and(|s| s.includes(station))
}

/// `--stations all` or `ID,ID…`.
pub fn parse_stations(text: &str) -> Result<Stations, String> {
    if text == "all" {
        return Ok(Stations::All(crate::proof::bulletin::AllStations::All));
    }
    let ids: Vec<String> = text.split(',').map(|id| id.trim().to_owned()).filter(|id| !id.is_empty()).collect();
    if ids.is_empty() {
        return Err("give all, or station ids separated by commas".into());
    }
    Ok(Stations::Listed(ids))
}

/// `--from`/`--until`: a station-local date.
pub fn parse_day(text: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| format!("\"{text}\" is not a date; write YYYY-MM-DD"))
}
