//! Pulling stations (after Prometheus: each target on its own, with connect and read timeouts,
//! a bounded number at once, so a slow or dead station never holds up the others). A station is
//! asked for its events from one before the head the office holds (`after_seq = head - 1`), so
//! each pull must begin with the event the office already has; the pages are read byte for byte
//! and handed to the office's witness. The receipt for what the office then holds is posted back.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::config::StationEntry;
use super::witness::{AlarmKind, Batch, Freshness};
use super::{Contact, Office};

/// Events asked for per page (the station's maximum).
const PAGE: u32 = 10_000;
/// A pull reads at most this many pages (a million events); the next pull goes on from there.
const MAX_PAGES: usize = 100;
/// A page bigger than this is refused (10,000 events of about 1 KiB each, with room).
const MAX_PAGE_BYTES: usize = 32 << 20;

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    head: Head,
    next_after_seq: i64,
    public_key: String,
    /// The station's head signed over this pull's challenge.
    head_statement: Option<String>,
}

#[derive(Deserialize)]
struct Head {
    seq: i64,
}

/// An HTTP client for pulls, with the office's timeouts; for a station whose certificate is
/// pinned, one that trusts that certificate only.
pub fn client(office: &Office, pinned: Option<[u8; 32]>) -> reqwest::Client {
    crate::ops::tls::install_provider();
    let builder = reqwest::Client::builder()
        .connect_timeout(office.config.connect_timeout)
        .read_timeout(office.config.read_timeout)
        .timeout(office.config.read_timeout * 4)
        .user_agent(concat!("loa-district/", env!("CARGO_PKG_VERSION")));
    let builder = match pinned {
        Some(fingerprint) => builder.tls_backend_preconfigured(crate::ops::tls::pinned_client(fingerprint)),
        None => builder,
    };
    builder.build().expect("the HTTP client builds")
}

/// Pulls every station with a `url` (or only `only`), at most `max_parallel_pulls` at once.
pub async fn pull_all(office: Arc<Office>, only: Option<&str>) -> Vec<Contact> {
    let plain = client(&office, None);
    let limit = Arc::new(tokio::sync::Semaphore::new(office.config.max_parallel_pulls));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, station) in office.config.stations.iter().enumerate() {
        if station.url.is_none() || only.is_some_and(|id| id != station.id) {
            continue;
        }
        let client = match station.tls_fingerprint {
            Some(fingerprint) => client(&office, Some(fingerprint)),
            None => plain.clone(),
        };
        let (office, limit) = (Arc::clone(&office), Arc::clone(&limit));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.expect("the semaphore is never closed");
            let station = &office.config.stations[index];
            (index, pull_within_deadline(&office, &client, station).await)
        });
    }
    let mut contacts: Vec<(usize, Contact)> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(contact) = done {
            contacts.push(contact);
        }
    }
    contacts.sort_by_key(|(index, _)| *index);
    contacts.into_iter().map(|(_, contact)| contact).collect()
}

/// `pull_one` within the office's `pull_deadline`: a station that answers, but too slowly (a
/// page dripping in), is `stale` for this round (pages verified before the deadline stay), and
/// the next round tries again; the other stations' pulls never wait for it.
pub async fn pull_within_deadline(office: &Arc<Office>, client: &reqwest::Client, station: &StationEntry) -> Contact {
    let deadline = office.config.pull_deadline;
    match tokio::time::timeout(deadline, pull_one(office, client, station)).await {
        Ok(contact) => contact,
        Err(_) => {
            let why = format!(
                "the pull did not finish within district.pull_deadline_seconds = {} s: the station or its \
                 network answers too slowly (or something holds the answer back)",
                deadline.as_secs()
            );
            let (office2, station2, why2) = (Arc::clone(office), station.clone(), why.clone());
            let raised = tokio::task::spawn_blocking(move || office2.raise(&station2, AlarmKind::Stale, &why2)).await;
            let held = held_now(office, station).await.unwrap_or_default();
            let alarms = match raised {
                Ok(Ok(_)) => vec![AlarmKind::Stale],
                _ => Vec::new(),
            };
            Contact { alarms, ..failed(station, &held, why) }
        }
    }
}

/// One station: its new events, judged and recorded, and the receipt posted back.
pub async fn pull_one(office: &Arc<Office>, client: &reqwest::Client, station: &StationEntry) -> Contact {
    let held = match held_now(office, station).await {
        Ok(held) => held,
        Err(e) => return failed(station, &Default::default(), e),
    };
    let failed = |error: String| failed(station, &held, error);
    // What was verified before a failure stays (and is receipted); the pull did not finish.
    let unfinished = |so_far: Option<Contact>, error: String| match so_far {
        Some(so_far) => Contact { error: Some(error), ..so_far },
        None => failed(error),
    };
    let (Some(url), Some(token)) = (&station.url, &station.token) else {
        return failed("no url to pull from".into());
    };
    let challenge = match crate::proof::head::new_challenge() {
        Ok(challenge) => challenge,
        Err(e) => return failed(e.to_string()),
    };
    let mut after = (held.head_seq - 1).max(0);
    let mut contact: Option<Contact> = None;
    for _ in 0..MAX_PAGES {
        let page = match fetch(client, url, token, after, &challenge).await {
            Ok(page) => page,
            Err(e) => {
                contact = Some(unfinished(contact, e));
                break;
            }
        };
        let (office2, station2, challenge2) = (Arc::clone(office), station.clone(), challenge.clone());
        let judged = tokio::task::spawn_blocking(move || {
            let page: Page =
                serde_json::from_str(&page).map_err(|e| format!("the station's page is not its JSON page ({e})"))?;
            let lines: Vec<&str> = page.events.iter().map(|e| e.get()).collect();
            let batch = Batch {
                lines,
                reported_head: Some(page.head.seq),
                reported_key: Some(&page.public_key),
                after_seq: after,
                freshness: Some(Freshness { challenge: &challenge2, statement: page.head_statement.as_deref() }),
                unproven: false,
            };
            let contact = office2.ingest(&station2, &batch).map_err(|e| e.to_string())?;
            Ok::<_, String>((contact, page.events.len(), page.next_after_seq, page.head.seq))
        })
        .await;
        let (page_contact, count, next, head) = match judged {
            Ok(Ok(judged)) => judged,
            Ok(Err(e)) => {
                contact = Some(unfinished(contact, e));
                break;
            }
            Err(e) => {
                contact = Some(unfinished(contact, format!("the check of the page failed: {e}")));
                break;
            }
        };
        let merged = match contact.take() {
            Some(mut so_far) => {
                so_far.accepted += page_contact.accepted;
                so_far.alarms.extend(page_contact.alarms.iter().copied());
                Contact { accepted: so_far.accepted, alarms: so_far.alarms, ..page_contact }
            }
            None => page_contact,
        };
        let stop = !merged.clean() || count == 0 || next >= head || next <= after;
        contact = Some(merged);
        if stop {
            break;
        }
        after = next;
    }
    let contact = contact.unwrap_or_else(|| failed("no page was read".into()));
    if let Some(receipt) = &contact.receipt {
        post_receipt(client, url, token, receipt).await;
    }
    contact
}

/// What the office holds of `station`, read off the async runtime (SQLite blocks).
async fn held_now(office: &Arc<Office>, station: &StationEntry) -> Result<super::store::Held, String> {
    let (office, station) = (Arc::clone(office), station.clone());
    match tokio::task::spawn_blocking(move || office.held(&station)).await {
        Ok(held) => held.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the office's store did not answer: {e}")),
    }
}

/// A contact that failed, reporting the head the office still holds.
fn failed(station: &StationEntry, held: &super::store::Held, error: String) -> Contact {
    Contact {
        station_id: station.id.clone(),
        accepted: 0,
        head_seq: held.head_seq,
        head_hash: held.head_hash.clone(),
        alarms: Vec::new(),
        error: Some(error),
        receipt: None,
    }
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    after: i64,
    challenge: &str,
) -> Result<String, String> {
    let airtime = crate::model::protocol::AIRTIME;
    let address = format!("{url}{airtime}?after_seq={after}&limit={PAGE}&format=json&challenge={challenge}");
    let response = client.get(&address).bearer_auth(token).send().await.map_err(|e| describe(&e))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let said = body.chars().take(300).collect::<String>();
        return Err(match status.as_u16() {
            401 | 403 => format!("the station refused the token ({status}): make a district-role token on it: {said}"),
            _ => format!("the station answered {status}: {said}"),
        });
    }
    if response.content_length().is_some_and(|n| n > MAX_PAGE_BYTES as u64) {
        return Err("the station's page is larger than any page of events can be".into());
    }
    let mut body = Vec::new();
    let mut response = response;
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_PAGE_BYTES {
            return Err("the station's page is larger than any page of events can be".into());
        }
    }
    String::from_utf8(body).map_err(|_| "the station's page is not UTF-8".into())
}

/// Posts the receipt; a station too old to take one, or gone again, is not the pull's failure.
async fn post_receipt(client: &reqwest::Client, url: &str, token: &str, receipt: &str) {
    let sent = client
        .post(format!("{url}{}", crate::model::protocol::RECEIPT))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(receipt.to_owned())
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    if let Err(e) = sent
        .as_ref()
        .map_err(describe)
        .and_then(|r| if r.status().is_success() { Ok(()) } else { Err(format!("answered {}", r.status())) })
    {
        tracing::info!(url, "the receipt was not taken: {e}");
    }
}

fn describe(error: &reqwest::Error) -> String {
    // The cause is at the bottom of the chain (a refused connection, a certificate not pinned).
    let mut cause = std::error::Error::source(error);
    let mut deepest = None;
    while let Some(next) = cause {
        deepest = Some(next.to_string());
        cause = next.source();
    }
    let why = deepest.unwrap_or_else(|| error.to_string());
    if error.is_timeout() {
        "no answer within the timeout (district.read_timeout_seconds)".into()
    } else if error.is_connect() {
        format!("cannot connect ({why}): the station is off, unreachable, or not the box pinned")
    } else {
        why
    }
}
