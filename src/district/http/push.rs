//! `POST /api/v1/push`: a station behind a 4G router or CGNAT, which cannot be pulled, sends
//! the events the office lacks. The token is checked before a byte of the body is read, and the
//! body is bounded in effect, not only in size (`read_push`); then it is judged by the same
//! `Office::ingest` as a pulled page.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AuthFailures, Desk, bearer, error};
use crate::district::config::StationEntry;
use crate::http::conn;

/// A push carries at most this much (10,000 events of about 1 KiB, with room).
const MAX_PUSH_BYTES: usize = 32 << 20;
/// Events per push: what a station sends at once (`audit::upstream`), with room.
const MAX_PUSH_EVENTS: usize = 10_000;
/// The longest line an event can be: its texts (titles, reasons) are bounded far below this.
const MAX_EVENT_LINE: usize = 64 << 10;

/// The station whose push token the request presents, judged from its headers before any body
/// byte is read; else the answer refusing it (wrong tokens from one address are slowed).
pub(super) async fn station_of(
    office: &Arc<crate::district::Office>,
    auth_failures: &AuthFailures,
    peer: Option<axum::Extension<conn::Peer>>,
    (headers, extensions): (&axum::http::HeaderMap, &axum::http::Extensions),
) -> Result<StationEntry, Response> {
    let presented = bearer(headers);
    let who = {
        let office = Arc::clone(office);
        tokio::task::spawn_blocking(move || presented.map(|t| office.push_token_station(&t)).transpose()).await
    };
    let station_id = match who {
        Ok(Ok(Some(Some(id)))) => {
            if let Some(vouch) = extensions.get::<conn::Vouch>() {
                vouch.vouch();
            }
            id
        }
        Ok(Ok(_)) => {
            if let Some(wait) = auth_failures.failed(peer.map(|p| p.0.0), "a wrong or missing push token") {
                return Err(crate::http::ApiError::too_many_failures(wait, "wrong push tokens").into_response());
            }
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "give the push token from `loa district token create --station ID` as Authorization: Bearer …",
            ));
        }
        Ok(Err(e)) => return Err(error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string())),
        Err(e) => return Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
    };
    office.config.station(&station_id).cloned().ok_or_else(|| {
        error(StatusCode::FORBIDDEN, "unknown_station", format!("station {station_id} is no longer in district.toml"))
    })
}

/// The office head the station shows (`loa-office-head`), judged (`district::behind`): `Some`
/// answer 503 `office_behind` when the office's log lacks what the station has seen.
pub(super) async fn office_behind(
    office: &Arc<crate::district::Office>,
    station: &str,
    headers: &axum::http::HeaderMap,
) -> Option<Response> {
    let shown = headers.get(crate::model::protocol::OFFICE_HEAD_HEADER)?.to_str().ok()?.to_owned();
    let (office, station) = (Arc::clone(office), station.to_owned());
    match tokio::task::spawn_blocking(move || office.judge_shown_head(&station, &shown)).await {
        Ok(Ok(None)) => None,
        Ok(Ok(Some(ahead))) => Some(error(StatusCode::SERVICE_UNAVAILABLE, "office_behind", ahead.describe())),
        Ok(Err(e)) => Some(error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string())),
        Err(e) => Some(error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
    }
}

/// A push beyond what the office holds, from the office's own receipt for more
/// (`Office::forgot_receipted`): 409 `office_behind` with the head the office holds, so the
/// station pushes again from there (no `gap` blamed on it).
async fn forgot(
    office: &Arc<crate::district::Office>,
    station: &StationEntry,
    headers: &axum::http::HeaderMap,
    after_seq: i64,
) -> Option<Response> {
    // (The receipt names the office in its own words: UTF-8, not only ASCII.)
    let receipt = std::str::from_utf8(headers.get(crate::model::protocol::RECEIPT_HEADER)?.as_bytes()).ok()?.to_owned();
    let (office, station) = (Arc::clone(office), station.clone());
    match tokio::task::spawn_blocking(move || office.forgot_receipted(&station, &receipt, after_seq)).await {
        Ok(Ok(None)) => None,
        Ok(Ok(Some(held))) => {
            let message = format!("this office holds your log only up to seq {held}: push again from there");
            let body = json!({"error": {"code": "office_behind", "message": message}, "head": {"seq": held}});
            Some((StatusCode::CONFLICT, axum::Json(body)).into_response())
        }
        Ok(Err(e)) => Some(error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string())),
        Err(e) => Some(error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
    }
}

/// `POST /api/v1/push`: `Authorization: Bearer <push token>`, body: the station's new events as
/// JSON Lines (its export lines, oldest first, beginning with the last one the office holds).
pub(super) async fn push(
    State(Desk { office, auth_failures, .. }): State<Desk>,
    peer: Option<axum::Extension<conn::Peer>>,
    request: Request,
) -> Response {
    let station = match station_of(&office, &auth_failures, peer, (request.headers(), request.extensions())).await {
        Ok(station) => station,
        Err(refusal) => return refusal,
    };
    let statement = request
        .headers()
        .get(crate::model::protocol::STATEMENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let headers = request.headers().clone();
    let text = match read_push(request.into_body()).await {
        Ok(text) => text,
        Err(refusal) => return refusal,
    };
    let Some(first) = text.split('\n').find(|l| !l.is_empty()).and_then(crate::district::witness::seq_of) else {
        return error(
            StatusCode::BAD_REQUEST,
            "not_events",
            "line 1 is not an event as `loa airtime --format jsonl` exports it",
        );
    };
    // What the station has seen of the office's log is kept as evidence; its events are taken.
    let _ = office_behind(&office, &station.id, &headers).await;
    if let Some(refusal) = forgot(&office, &station, &headers, first - 1).await {
        return refusal;
    }
    let judged = tokio::task::spawn_blocking(move || {
        let lines: Vec<&str> = text.split('\n').filter(|l| !l.is_empty()).collect();
        office.ingest_push(&station, lines, first - 1, statement.as_deref())
    })
    .await;
    match judged {
        Ok(Ok((contact, challenge))) => {
            let status = if contact.clean() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
            let alarms: Vec<&str> = contact.alarms.iter().map(|k| k.as_str()).collect();
            let body = json!({
                "accepted": contact.accepted,
                "head": { "seq": contact.head_seq, "hash": contact.head_hash },
                "alarms": alarms,
                "receipt": contact.receipt,
                "error": contact.error,
                "challenge": challenge,
            });
            (status, axum::Json(body)).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// The body of a push, read as it arrives and refused as soon as it breaks a bound: at most
/// `MAX_PUSH_BYTES`, `MAX_PUSH_EVENTS` lines, each at most `MAX_EVENT_LINE` bytes, UTF-8, at
/// least one event. The lines stay slices of one buffer, so whatever their shape a push costs
/// the office at most its size plus a pointer per line.
async fn read_push(body: axum::body::Body) -> Result<String, Response> {
    use http_body_util::BodyExt;
    let too_large = |why: String| error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", why);
    let too_long =
        |line: usize| too_large(format!("line {line}: longer than {MAX_EVENT_LINE} bytes, which no event is"));
    let mut body = body;
    let (mut bytes, mut lines, mut line_start) = (Vec::new(), 0usize, 0usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| error(StatusCode::BAD_REQUEST, "body", format!("the body was cut: {e}")))?;
        let Ok(chunk) = frame.into_data() else { continue };
        if bytes.len() + chunk.len() > MAX_PUSH_BYTES {
            return Err(too_large(format!(
                "push at most {MAX_PUSH_EVENTS} events ({} MiB) at a time",
                MAX_PUSH_BYTES >> 20
            )));
        }
        for (i, byte) in chunk.iter().enumerate() {
            if *byte == b'\n' {
                let end = bytes.len() + i;
                if end - line_start > MAX_EVENT_LINE {
                    return Err(too_long(lines + 1));
                }
                lines += usize::from(end > line_start);
                line_start = end + 1;
            }
        }
        bytes.extend_from_slice(&chunk);
        if bytes.len() - line_start.min(bytes.len()) > MAX_EVENT_LINE {
            return Err(too_long(lines + 1));
        }
        if lines > MAX_PUSH_EVENTS {
            return Err(too_large(format!("push at most {MAX_PUSH_EVENTS} events at a time")));
        }
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "not_utf8", "the body must be the export's JSON Lines (UTF-8)"))?;
    if !text.split('\n').any(|l| !l.is_empty()) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "empty",
            "send at least one event (the last one the office holds first)",
        ));
    }
    Ok(text)
}
