//! Following the office's bulletins (`[office] public_key` and `[upstream]`): the station
//! long-polls the office's feed (`GET /api/v1/bulletins?after=N&wait=S`), reads each line with
//! the key it pins (`proof::bulletin::read`), downloads the audio (resumed with `Range` after a
//! cut or a restart), checks its SHA-256 and size, takes it through the library's own gate and
//! records `bulletin_received` — or `bulletin_refused` with the reason. An emergency is queued
//! at once (it pre-empts, as an operator's does); a priority or normal bulletin joins the
//! library with its topic and window, and the planner airs it (priority first). A withdrawal
//! retires the bulletin's clip and is recorded. The office is never waited on by airing: this
//! runs on the API's runtime, through the API's store connection, and backs off while the
//! office is unreachable. The feed's cursor is kept in `data_dir/office-feed.json` (outside the
//! database, like the receipt) with the lines that wait — a bulletin whose audio the office
//! cannot serve yet, an emergency whose window opens later — each tried again on its own, so
//! none holds up the lines after it. A half-downloaded file never enters the library.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Notify;

use crate::config::Upstream;
use crate::library::ingest::{IngestError, Library};
use crate::model::clip::{ClipMeta, Priority};
use crate::model::protocol::{BULLETIN_AUDIO, BULLETINS, FeedPage, MAX_FEED_PAGE_BYTES, OFFICE_HEAD_HEADER};
use crate::model::queue::Wanted;
use crate::proof::bulletin::{Manifest, Notice, Refusal, Refused};
use crate::proof::events;
use crate::store::{Inserted, StoreHandle};

use super::feed::{bounded_body, check_page, claimed_id, hash_file, higher_head};

/// How long one feed request waits at the office for something new.
const LONG_POLL: u64 = 55;
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// The first retry after the feed failed: soon, since a long-poll cut by the office's restart
/// must be waiting again before the next emergency is sent; doubling from there.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const CURSOR_FILE: &str = "office-feed.json";

/// What the follower needs from the station.
pub struct Follower {
    pub upstream: Upstream,
    pub station_id: String,
    pub timezone: Tz,
    pub data_dir: PathBuf,
    pub store: StoreHandle,
    pub library: Library,
    /// Rung when an emergency is queued: the engine airs it at once.
    pub queued: Arc<Notify>,
    /// Rung after each event recorded: the push tells the office at once.
    pub logged: Arc<Notify>,
    pub clock: Arc<dyn crate::time::clock::Clock>,
}

/// Follows the feed until `stopping` turns true.
pub async fn run(follower: Follower, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let client = crate::audit::upstream::office_client(&follower.upstream);
    let mut backlog = Backlog::default();
    let mut backoff = FIRST_RETRY;
    loop {
        let wait = match follower.follow_once(&client, &mut backlog).await {
            Ok(()) => {
                backoff = FIRST_RETRY;
                Duration::ZERO
            }
            Err(e) => {
                tracing::warn!(url = %follower.upstream.url, "the office's bulletins: {e}; trying again in {:.2} s", backoff.as_secs_f64());
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// What the follower keeps on disk: the feed's cursor, and the lines read but not finished
/// (their audio not yet downloaded, an emergency not yet due). One bulletin the office cannot
/// serve never holds up the lines after it — an emergency least of all.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    after: i64,
    #[serde(default)]
    waiting: Vec<Waiting>,
    /// The highest office head seen (`proof::office_head`, its signed line), shown back to the
    /// office on every request so an office restored from an older copy learns it is behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    office_head: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    seq: i64,
    line: String,
}

/// When each waiting line is tried again (in memory: after a restart every one is due).
#[derive(Default)]
struct Backlog {
    next_try: HashMap<i64, (DateTime<Utc>, u32)>,
}

impl Backlog {
    fn due(&self, seq: i64, now: DateTime<Utc>) -> bool {
        self.next_try.get(&seq).is_none_or(|(at, _)| *at <= now)
    }

    /// Tried and failed: again after 5 s, doubling to at most `MAX_BACKOFF`.
    fn failed(&mut self, seq: i64, now: DateTime<Utc>) {
        let tries = self.next_try.get(&seq).map_or(0, |(_, tries)| *tries);
        let wait = (Duration::from_secs(5) * 2u32.saturating_pow(tries.min(10))).min(MAX_BACKOFF);
        self.next_try.insert(seq, (now + wait, tries + 1));
    }

    /// How long the feed may wait at the office before a waiting line falls due.
    fn poll_wait(&self, now: DateTime<Utc>) -> u64 {
        let soonest = self.next_try.values().map(|(at, _)| (*at - now).num_seconds()).min();
        soonest.map_or(LONG_POLL, |s| s.clamp(1, LONG_POLL as i64) as u64)
    }
}

/// How far one line got.
enum Taken {
    /// Recorded: received or refused.
    Done,
    /// A withdrawal of this bulletin, recorded.
    Withdrew(i64),
    /// An emergency whose window opens later: its audio is here, it is queued then.
    NotDue(DateTime<Utc>),
}

impl Follower {
    /// The waiting lines that are due, then one long-poll of the feed and each line it brought,
    /// in order. An `Err` is the feed failing (the whole loop backs off); a line that cannot be
    /// finished now waits on its own.
    async fn follow_once(&self, client: &reqwest::Client, backlog: &mut Backlog) -> Result<(), String> {
        let dir = self.data_dir.clone();
        let mut cursor = tokio::task::spawn_blocking(move || read_cursor(&dir)).await.map_err(|e| e.to_string())?;
        let now = self.clock.now();
        let due: Vec<Waiting> = cursor.waiting.iter().filter(|w| backlog.due(w.seq, now)).cloned().collect();
        let mut changed = false;
        for waiting in due {
            if self.settle(client, &waiting, &mut cursor, backlog).await {
                cursor.waiting.retain(|w| w.seq != waiting.seq);
                changed = true;
            }
        }
        if changed {
            self.keep(&cursor).await?;
        }
        let wait = backlog.poll_wait(self.clock.now());
        let page = self.fetch_page(client, &cursor, wait).await?;
        if page.office_head != cursor.office_head && page.office_head.is_some() {
            cursor.office_head = page.office_head.clone();
            self.keep(&cursor).await?;
        }
        for notice in page.notices {
            if notice.seq <= cursor.after {
                continue;
            }
            let waiting = Waiting { seq: notice.seq, line: notice.line };
            if !self.settle(client, &waiting, &mut cursor, backlog).await {
                cursor.waiting.push(waiting);
            }
            cursor.after = notice.seq;
            self.keep(&cursor).await?;
        }
        Ok(())
    }

    /// One long-poll of the feed after the cursor, showing the office the highest head seen:
    /// the page, checked (`feed::check_page`), its office head kept only if higher; or why not.
    async fn fetch_page(&self, client: &reqwest::Client, cursor: &Cursor, wait: u64) -> Result<FeedPage, String> {
        let url = format!("{}{BULLETINS}?after={}&wait={wait}", self.upstream.url, cursor.after);
        let mut request = client.get(url).bearer_auth(&self.upstream.token);
        if let Some(head) = &cursor.office_head {
            request = request.header(OFFICE_HEAD_HEADER, head);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            let said = bounded_body(response, 4096).await.unwrap_or_default();
            let answer: serde_json::Value = serde_json::from_str(&said).unwrap_or_default();
            // Behind the station (restored from an older copy), the office held the poll and
            // serves nothing until its administrator recovers it: asked again at once, so a
            // bulletin sent after the recovery arrives at once.
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && answer["error"]["code"] == "office_behind" {
                tracing::error!(url = %self.upstream.url, "the office's bulletins: {}", answer["error"]["message"]);
                return Ok(FeedPage { notices: Vec::new(), next_after: cursor.after, office_head: None });
            }
            return Err(format!("the office answered {status}: {said}"));
        }
        let text = bounded_body(response, MAX_FEED_PAGE_BYTES).await?;
        let mut page: FeedPage =
            serde_json::from_str(&text).map_err(|e| format!("the office's feed is not a page: {e}"))?;
        check_page(&page, cursor.after)?;
        page.office_head = higher_head(&page, cursor.office_head.as_deref(), &self.upstream.office_key)?;
        Ok(page)
    }

    /// Takes one line; true when it is done with (recorded), false when it must wait.
    async fn settle(
        &self,
        client: &reqwest::Client,
        waiting: &Waiting,
        cursor: &mut Cursor,
        backlog: &mut Backlog,
    ) -> bool {
        match self.take(client, &waiting.line).await {
            Ok(taken @ (Taken::Done | Taken::Withdrew(_))) => {
                backlog.next_try.remove(&waiting.seq);
                self.logged.notify_one();
                // A withdrawal ends the wait of the bulletin it withdraws: it is never taken.
                if let Taken::Withdrew(id) = taken {
                    cursor.waiting.retain(|w| claimed_id(&w.line) != Some(id));
                    let _ = tokio::fs::remove_file(self.part_file(id)).await;
                }
                true
            }
            Ok(Taken::NotDue(at)) => {
                backlog.next_try.insert(waiting.seq, (at, 0));
                false
            }
            Err(e) => {
                tracing::warn!(seq = waiting.seq, "an office bulletin waits: {e}");
                backlog.failed(waiting.seq, self.clock.now());
                false
            }
        }
    }

    async fn keep(&self, cursor: &Cursor) -> Result<(), String> {
        let (dir, text) = (self.data_dir.clone(), serde_json::to_string(cursor).map_err(|e| e.to_string())?);
        tokio::task::spawn_blocking(move || write_cursor(&dir, &text))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot keep the feed's cursor: {e}"))
    }

    fn read(&self, line: &str) -> Result<Notice, Refused> {
        crate::proof::bulletin::read(line, &self.upstream.office_key, &self.station_id, self.today())
    }

    /// Reads one signed line and acts on it; an `Err` is the office or the disk failing (tried
    /// again), never the line's own fault (recorded as refused). A bulletin already received is
    /// not taken again (a line read again after a restart).
    async fn take(&self, client: &reqwest::Client, line: &str) -> Result<Taken, String> {
        let line_hash = crate::proof::sha256_hex(line.as_bytes());
        match self.read(line) {
            Err(refused) => self.refuse(claimed_id(line), &line_hash, refused).await?,
            Ok(Notice::Withdrawn(withdrawal)) => {
                self.withdraw(withdrawal.id).await?;
                return Ok(Taken::Withdrew(withdrawal.id));
            }
            Ok(Notice::Bulletin(manifest)) => {
                let id = manifest.id;
                let (taken, withdrawn) = self
                    .store
                    .call(move |s| Ok::<_, crate::store::StoreError>((s.bulletin_clip(id)?, s.bulletin_withdrawn(id)?)))
                    .await
                    .map_err(|e| e.to_string())?;
                if taken.is_some() {
                    return Ok(Taken::Done);
                }
                // Its (signed) withdrawal came first, as a reordering proxy would serve them.
                if withdrawn {
                    let detail = format!("the office withdrew bulletin {id} before it arrived");
                    self.refuse(Some(id), &line_hash, Refused { reason: Refusal::Withdrawn, detail }).await?;
                    return Ok(Taken::Done);
                }
                match self.fetch(client, &manifest).await? {
                    Err(refused) => self.refuse(Some(manifest.id), &line_hash, refused).await?,
                    Ok(_) if manifest.priority == Priority::Emergency && manifest.valid_from > self.today() => {
                        return Ok(Taken::NotDue(self.start_of(manifest.valid_from)));
                    }
                    Ok(file) => self.admit(&manifest, &line_hash, file).await?,
                }
            }
        }
        Ok(Taken::Done)
    }

    fn part_file(&self, bulletin_id: i64) -> PathBuf {
        self.data_dir.join("staging").join(format!("bulletin-{bulletin_id}.part"))
    }

    /// Downloads the audio into `staging/bulletin-ID.part`, resuming what is there; then checks
    /// its size and SHA-256. `Ok(Err(_))`: the file is not the manifest's (refused). The disk
    /// work is asynchronous or on a blocking thread: the API's runtime is never held by it.
    async fn fetch(&self, client: &reqwest::Client, manifest: &Manifest) -> Result<Result<PathBuf, Refused>, String> {
        let part = self.part_file(manifest.id);
        tokio::fs::create_dir_all(part.parent().expect("a staging dir")).await.map_err(|e| e.to_string())?;
        let have = tokio::fs::metadata(&part).await.map_or(0, |m| m.len());
        if have < manifest.bytes {
            // Room for the rest and for the clip it becomes, beside the proof log's reserve: a
            // manifest naming more than the disk holds waits (and says why), never fills it.
            let (library, rest) = (self.library.clone(), manifest.bytes.saturating_mul(2).saturating_sub(have));
            tokio::task::spawn_blocking(move || library.ensure_room(rest))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("bulletin {}'s audio waits: {e}", manifest.id))?;
            let path = BULLETIN_AUDIO.replace("{id}", &manifest.id.to_string());
            let mut request = client.get(format!("{}{path}", self.upstream.url)).bearer_auth(&self.upstream.token);
            if have > 0 {
                request = request.header("range", format!("bytes={have}-"));
            }
            let mut response = request.send().await.map_err(|e| e.to_string())?;
            let resumed = response.status() == reqwest::StatusCode::PARTIAL_CONTENT;
            if !response.status().is_success() {
                return Err(format!("the office answered {} for bulletin {}'s audio", response.status(), manifest.id));
            }
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(resumed)
                .truncate(!resumed)
                .open(&part)
                .await
                .map_err(|e| e.to_string())?;
            let mut written = if resumed { have } else { 0 };
            while let Some(chunk) = response.chunk().await.map_err(|e| format!("the download was cut: {e}"))? {
                written += chunk.len() as u64;
                if written > manifest.bytes {
                    break; // more than the manifest names: judged below, not stored without end
                }
                file.write_all(&chunk).await.map_err(|e| e.to_string())?;
            }
            file.sync_all().await.map_err(|e| e.to_string())?;
            // A body that ended before the manifest's length (cleanly or not) is a download cut
            // short, not a different file: kept, and resumed on the next try.
            if written < manifest.bytes {
                return Err(format!(
                    "bulletin {}'s audio ended at {written} of {} bytes; resumed later",
                    manifest.id, manifest.bytes
                ));
            }
        }
        let hashed = part.clone();
        let (bytes, sha256) = tokio::task::spawn_blocking(move || hash_file(&hashed))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if bytes != manifest.bytes || sha256 != manifest.sha256 {
            let _ = tokio::fs::remove_file(&part).await;
            let detail = format!(
                "the audio is {bytes} bytes with SHA-256 {sha256}, the manifest names {} bytes with {}",
                manifest.bytes, manifest.sha256
            );
            return Ok(Err(Refused { reason: Refusal::HashMismatch, detail }));
        }
        Ok(Ok(part))
    }

    /// Takes the checked file through the library's gate as a clip of the manifest's words.
    async fn admit(&self, manifest: &Manifest, line_hash: &str, part: PathBuf) -> Result<(), String> {
        let meta = ClipMeta {
            title: manifest.title.clone(),
            topic: manifest.topic.clone(),
            language: manifest.language.clone(),
            priority: manifest.priority,
            valid_from: Some(manifest.valid_from),
            valid_until: Some(manifest.valid_until),
        };
        let (library, now, file) = (self.library.clone(), self.clock.now(), part.clone());
        let admitted = self
            .store
            .call(move |s| {
                // Audio the library holds retired (a withdrawn bulletin's, sent again): back on
                // the air as this bulletin, not received and never aired.
                match library.admit_file(&file, &meta, s, now) {
                    Ok(Inserted::Existing(clip)) if clip.retired_at.is_some() => {
                        let back = s.reinstate_clip(clip.id, &meta, now).map_err(IngestError::Store)?;
                        Ok(Inserted::Existing(back.unwrap_or(clip)))
                    }
                    other => other,
                }
            })
            .await;
        let _ = tokio::fs::remove_file(&part).await;
        let (clip, new) = match admitted {
            Ok(Inserted::New(clip)) => (clip, true),
            Ok(Inserted::Existing(clip)) => (clip, false),
            Err(e @ (IngestError::Io(_) | IngestError::Store(_))) => return Err(e.to_string()),
            Err(e) => {
                let refused = Refused { reason: Refusal::NotPlayable, detail: e.to_string() };
                return self.refuse(Some(manifest.id), line_hash, refused).await;
            }
        };
        if clip.audio.duration_ms != manifest.duration_ms {
            let detail =
                format!("it plays {} ms, the manifest says {} ms", clip.audio.duration_ms, manifest.duration_ms);
            // A clip this refused bulletin brought in leaves the air with it.
            if new {
                let (now, why) = (self.clock.now(), format!("bulletin {} was refused: {detail}", manifest.id));
                self.store.call(move |s| s.retire_clip(clip.id, now, Some(&why))).await.map_err(|e| e.to_string())?;
            }
            return self.refuse(Some(manifest.id), line_hash, Refused { reason: Refusal::NotPlayable, detail }).await;
        }
        let (received, now, clip_id) =
            (events::bulletin_received(manifest, line_hash, clip.id), self.clock.now(), clip.id);
        let emergency = manifest.priority == Priority::Emergency;
        self.store
            .call(move |s| {
                s.append(now, received)?;
                if emergency {
                    s.enqueue(clip_id, Wanted::Now, now)?;
                }
                Ok::<_, crate::store::StoreError>(())
            })
            .await
            .map_err(|e| e.to_string())?;
        if emergency {
            self.queued.notify_one();
        }
        tracing::info!(bulletin = manifest.id, clip = clip_id, priority = %manifest.priority, "bulletin received from the office");
        Ok(())
    }

    async fn refuse(&self, bulletin_id: Option<i64>, line_hash: &str, refused: Refused) -> Result<(), String> {
        tracing::warn!(bulletin = ?bulletin_id, "bulletin refused: {refused}");
        let fields = events::bulletin_refused(bulletin_id, line_hash, refused.reason, &refused.detail);
        let now = self.clock.now();
        self.store.call(move |s| s.append(now, fields).map(drop)).await.map_err(|e| e.to_string())
    }

    /// Retires the bulletin's clip (if it was taken) and records the withdrawal, once: the same
    /// withdrawal read again (a replay, a restart) changes nothing.
    async fn withdraw(&self, bulletin_id: i64) -> Result<(), String> {
        let (now, today) = (self.clock.now(), self.today());
        self.store
            .call(move |s| {
                if s.bulletin_withdrawn(bulletin_id)? {
                    return Ok(());
                }
                let clip = s.bulletin_clip(bulletin_id)?;
                // The clip stays while another bulletin of the same audio may still air.
                let shared = match clip {
                    Some(clip) => s.clip_shared_by(clip, bulletin_id, today)?,
                    None => None,
                };
                if let (Some(clip), None) = (clip, shared) {
                    s.retire_clip(clip, now, Some("withdrawn by the office"))?;
                }
                s.append(now, events::bulletin_withdrawn(bulletin_id, clip)).map(drop)
            })
            .await
            .map_err(|e| e.to_string())
    }

    fn today(&self) -> NaiveDate {
        self.clock.now().with_timezone(&self.timezone).date_naive()
    }

    /// The first instant of `day` at the station.
    fn start_of(&self, day: NaiveDate) -> DateTime<Utc> {
        let midnight = day.and_time(chrono::NaiveTime::MIN);
        self.timezone.from_local_datetime(&midnight).earliest().map_or_else(|| midnight.and_utc(), |t| t.to_utc())
    }
}

/// The highest office head the feed has seen (its signed line), shown to the office on a push.
pub fn office_head_seen(data_dir: &Path) -> Option<String> {
    read_cursor(data_dir).office_head
}

/// A cursor that cannot be read starts the feed again from the beginning: every line is read
/// again, and a bulletin already received is not taken twice.
fn read_cursor(data_dir: &Path) -> Cursor {
    std::fs::read_to_string(data_dir.join(CURSOR_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Written whole, then renamed: a cut never leaves half a cursor.
fn write_cursor(data_dir: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = tempfile::NamedTempFile::new_in(data_dir)?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(data_dir.join(CURSOR_FILE)).map_err(|e| e.error)?;
    Ok(())
}
