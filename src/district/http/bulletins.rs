//! The office's side of the bulletins that flow down: the feed a station follows
//! (`GET /api/v1/bulletins?after=N&wait=S`, long-polled so an emergency reaches it at once) and
//! the audio it downloads (streamed from disk, `Range` for a download resumed over 4G). Both
//! judge the station by its push token from the headers; a station sees only what is
//! addressed to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use super::push::station_of;
use super::{Desk, error};
use crate::audit::words::escape;
use crate::district::bulletins::Reach;
use crate::district::words::reach_vi;
use crate::http::conn;
use crate::model::protocol::{FeedNotice, FeedPage, MAX_FEED_WAIT};

/// How often a waiting feed request looks for something new (a bulletin may be sent by
/// another process, `loa district bulletin add`, so the log is read, not a signal awaited).
const FEED_POLL: Duration = Duration::from_millis(250);

/// `after` and `wait` from the query, or which is wrong and why.
fn feed_query(query: &HashMap<String, String>) -> Result<(i64, u64), (&'static str, String)> {
    let bad = |name: &'static str, what: String| (name, format!("\"{}\" is not {what}", query[name]));
    let after = match query.get("after") {
        None => 0,
        Some(n) => n.parse().ok().filter(|n| *n >= 0).ok_or_else(|| bad("after", "a seq (0 or more)".into()))?,
    };
    let wait = match query.get("wait") {
        None => 0,
        Some(s) => s
            .parse()
            .ok()
            .filter(|s| *s <= MAX_FEED_WAIT)
            .ok_or_else(|| bad("wait", format!("a number of seconds from 0 to {MAX_FEED_WAIT}")))?,
    };
    Ok((after, wait))
}

/// `GET /api/v1/bulletins?after=N&wait=SECONDS`: a [`FeedPage`].
pub(super) async fn feed(
    State(Desk { office, auth_failures }): State<Desk>,
    peer: Option<axum::Extension<conn::Peer>>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let station = match station_of(&office, &auth_failures, peer, (request.headers(), request.extensions())).await {
        Ok(station) => station,
        Err(refusal) => return refusal,
    };
    let (after, wait) = match feed_query(&query) {
        Ok(query) => query,
        Err((name, why)) => return error(StatusCode::BAD_REQUEST, name, why),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        let read = {
            let (office, station) = (Arc::clone(&office), station.id.clone());
            tokio::task::spawn_blocking(move || office.feed(&station, after)).await
        };
        let notices = match read {
            Ok(Ok(notices)) => notices,
            Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        };
        if !notices.is_empty() || tokio::time::Instant::now() >= deadline {
            let next_after = notices.last().map_or(after, |n| n.seq);
            let notices = notices.into_iter().map(|n| FeedNotice { seq: n.seq, line: n.line }).collect();
            return axum::Json(FeedPage { notices, next_after }).into_response();
        }
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + FEED_POLL)).await;
    }
}

/// `GET /api/v1/bulletins/{id}/audio`: the MP3, for a station it is addressed to.
pub(super) async fn audio(
    State(Desk { office, auth_failures }): State<Desk>,
    peer: Option<axum::Extension<conn::Peer>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let station = match station_of(&office, &auth_failures, peer, (request.headers(), request.extensions())).await {
        Ok(station) => station,
        Err(refusal) => return refusal,
    };
    let not_found = || error(StatusCode::NOT_FOUND, "not_found", format!("no bulletin {id} for this station"));
    let Ok(id_number) = id.parse::<i64>() else { return not_found() };
    let found = {
        let office = Arc::clone(&office);
        tokio::task::spawn_blocking(move || office.bulletin_audio(&station.id, id_number)).await
    };
    let path = match found {
        Ok(Ok(Some(path))) => path,
        Ok(Ok(None)) => return not_found(),
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    // `.mp3` → audio/mpeg; ServeFile streams from disk and answers Range requests (206).
    match tower_http::services::ServeFile::new(path).oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `GET /bulletins`: each bulletin sent with its reach ("đã phát 2/3 đài"), and for each station
/// that has not aired it, where it stands and why.
pub(super) async fn page(State(Desk { office, .. }): State<Desk>) -> Response {
    let built = tokio::task::spawn_blocking(move || {
        let listed = office.bulletins()?;
        listed.iter().rev().map(|b| office.bulletin_status(b.id)).collect::<Result<Vec<_>, _>>()
    })
    .await;
    let Ok(Ok(statuses)) = built else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "store", "the office database does not answer");
    };
    let day = |iso: &str| crate::audit::words::date_vi(&format!("{iso}T00:00:00+00:00"), false);
    let rows: String = statuses
        .iter()
        .map(|s| {
            let missing: Vec<String> = s
                .stations
                .iter()
                .filter(|r| r.state != Reach::Aired)
                .map(|r| {
                    format!("{}: {}", escape(&r.station_name), escape(&reach_vi(r.state, r.refused_reason.as_deref())))
                })
                .collect();
            let priority = match s.priority.as_str() {
                "emergency" => "Khẩn cấp",
                "priority" => "Ưu tiên",
                _ => "Thông thường",
            };
            format!(
                "<tr><td data-label=\"Bản tin\">{}{}</td><td data-label=\"Mức\">{priority}</td>\
                 <td data-label=\"Thời hạn\">{} – {}</td><td data-label=\"Đã phát\">đã phát {}/{} đài</td>\
                 <td data-label=\"Chưa phát\">{}</td></tr>",
                escape(&s.title),
                if s.withdrawn { " (đã thu hồi)" } else { "" },
                day(&s.valid_from),
                day(&s.valid_until),
                s.aired,
                s.stations.len(),
                if missing.is_empty() { "—".to_owned() } else { missing.join("<br>") },
            )
        })
        .collect();
    let body = if statuses.is_empty() {
        "<p>Chưa gửi bản tin nào. Gửi bằng <code>loa district bulletin add</code>.</p>".to_owned()
    } else {
        format!(
            "<table><tr class=\"head\"><th>Bản tin</th><th>Mức</th><th>Thời hạn</th><th>Đã phát</th><th>Chưa phát</th></tr>{rows}</table>"
        )
    };
    super::page_with(StatusCode::OK, "Bản tin gửi các đài", &body)
}
