//! Pushing the log to the office (`[upstream]`), for a box the office cannot reach (a 3G/4G
//! router, CGNAT): after each append, and every minute anyway, the events the office does not
//! hold yet go to its `loa district serve` (`POST /api/v1/push`), beginning with the last one
//! its receipt names, so it can check they extend what it holds. Its answer carries a new
//! receipt, kept like a pulled one. While the office is unreachable the push backs off (up to
//! ten minutes); nothing in airing ever waits on it: it runs on the API's runtime, reading
//! through the API's store connection, woken by the engine's "logged" bell (`air::live`).

use std::path::PathBuf;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;

use crate::audit::receipt;
use crate::config::Upstream;
use crate::store::{EventQuery, StoreHandle};

/// Events per push (the office takes up to 32 MiB).
const PER_PUSH: u32 = 5_000;
const QUIET_LOOK: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Pushes until `stopping` turns true.
pub async fn run(
    upstream: Upstream,
    data_dir: PathBuf,
    store: StoreHandle,
    logged: std::sync::Arc<tokio::sync::Notify>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    clock: std::sync::Arc<dyn crate::time::clock::Clock>,
) {
    let client = office_client(&upstream);
    let mut backoff = Duration::from_secs(5);
    // The office's challenge from its last answer: the next push answers it.
    let mut challenge = None;
    // Where an office that forgot part of the log asked to be pushed from (`office_behind`).
    let mut resume = None;
    loop {
        let mut asked = Asked { challenge: &mut challenge, resume: &mut resume };
        let wait = match push_once(&client, &upstream, &data_dir, &store, &mut asked, clock.as_ref()).await {
            Ok(true) => Duration::ZERO, // a full push: more may be waiting
            Ok(false) => {
                backoff = Duration::from_secs(5);
                QUIET_LOOK
            }
            Err(e) => {
                tracing::warn!(url = %upstream.url, "push to the office failed, trying again in {} s: {e}", backoff.as_secs());
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = logged.notified(), if wait == QUIET_LOOK => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// The client for the office at `upstream.url` (the push, and the bulletins followed): an
/// `https://` office is trusted by its pinned certificate only. Its timeout outlasts a feed's
/// long-poll.
pub fn office_client(upstream: &Upstream) -> reqwest::Client {
    crate::ops::tls::install_provider();
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .user_agent(concat!("loa/", env!("CARGO_PKG_VERSION")));
    let builder = match upstream.tls_fingerprint {
        Some(fingerprint) => builder.tls_backend_preconfigured(crate::ops::tls::pinned_client(fingerprint)),
        None => builder,
    };
    builder.build().expect("an HTTP client of a fixed configuration builds")
}

/// What the office's last answer asked of the next push.
struct Asked<'a> {
    /// Its challenge: the next push answers it.
    challenge: &'a mut Option<String>,
    /// The seq it holds, when it forgot more than its receipt says (restored from a copy).
    resume: &'a mut Option<i64>,
}

/// The office's receipt kept (its line) and the office head the feed saw last, if any.
async fn shown_to_office(
    data_dir: &std::path::Path,
    office: VerifyingKey,
) -> (Option<receipt::Receipt>, Option<String>) {
    let dir = data_dir.to_owned();
    tokio::task::spawn_blocking(move || {
        (receipt::read(&dir, Some(&office)), crate::audit::follow::office_head_seen(&dir))
    })
    .await
    .unwrap_or_default()
}

/// One push of what the office lacks. `Ok(true)`: a full batch went (push again at once).
async fn push_once(
    client: &reqwest::Client,
    upstream: &Upstream,
    data_dir: &std::path::Path,
    store: &StoreHandle,
    asked: &mut Asked<'_>,
    clock: &dyn crate::time::clock::Clock,
) -> Result<bool, String> {
    let (kept, office_head) = shown_to_office(data_dir, upstream.office_key).await;
    let held = asked.resume.take().unwrap_or_else(|| kept.as_ref().map_or(0, |r| r.head_seq));
    let query = EventQuery { after_seq: (held - 1).max(0), limit: Some(PER_PUSH), ..EventQuery::default() };
    let events = store.call(move |s| s.events(query)).await.map_err(|e| e.to_string())?;
    if events.last().is_none_or(|last| last.seq <= held) {
        return Ok(false);
    }
    let body: String = events.iter().map(|e| e.export_line() + "\n").collect();
    // The station's head now, signed over the office's last challenge: proof this push is live.
    let now = clock.now();
    let statement = match asked.challenge.take() {
        Some(c) => Some(
            store
                .call(move |s| s.head().map(|(seq, hash)| s.head_statement((seq, &hash), &c, now)))
                .await
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let mut request = client
        .post(format!("{}{}", upstream.url, crate::model::protocol::PUSH))
        .bearer_auth(&upstream.token)
        .header("content-type", "application/jsonl")
        .body(body);
    if let Some(statement) = statement {
        request = request.header(crate::model::protocol::STATEMENT_HEADER, statement);
    }
    if let Some(kept) = &kept {
        request = request.header(crate::model::protocol::RECEIPT_HEADER, kept.line.as_str());
    }
    if let Some(head) = office_head {
        request = request.header(crate::model::protocol::OFFICE_HEAD_HEADER, head);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("the office answered {status}: {e}"))?;
    let answer: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("the office answered {status}, not JSON ({e})"))?;
    *asked.challenge = answer["challenge"].as_str().map(str::to_owned);
    if status == reqwest::StatusCode::CONFLICT && answer["error"]["code"] == "office_behind" {
        *asked.resume = answer["head"]["seq"].as_i64().filter(|seq| (0..held).contains(seq));
    }
    if !status.is_success() {
        return Err(format!("the office answered {status}: {answer}"));
    }
    let line = answer["receipt"].as_str().ok_or("the office sent no receipt")?.to_owned();
    let (dir, office) = (data_dir.to_owned(), upstream.office_key);
    store
        .call(move |s| receipt::take(&dir, s, &line, Some(&office)))
        .await
        .map_err(|e| format!("the office's receipt: {e}"))?;
    Ok(events.len() as u32 == PER_PUSH)
}
