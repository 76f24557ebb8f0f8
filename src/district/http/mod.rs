//! `loa district serve`: the office's dashboard (Vietnamese, printable, plain HTML that works on
//! a phone), its JSON status, period reports, and the push receiver for stations behind 4G
//! routers and CGNAT that cannot be pulled. While serving it also pulls on a schedule and raises
//! `unreachable` for stations gone silent. Same connection limits as a station's API
//! (`http::conn`); a push is authenticated before its body is read, and bounded.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

mod bulletins;
mod clerk;
mod pages;
mod push;

use super::Office;
use crate::audit::render::{REPORT_STYLE, ReportFormat};
use crate::audit::words::escape;
use crate::http::{AuthFailures, conn};
use crate::model::protocol;

pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

/// What the dashboard's handlers share: the office, and failed authentications by peer
/// (logged, and answered ever more slowly, as on a station's API).
#[derive(Clone)]
pub struct Desk {
    office: Arc<Office>,
    auth_failures: Arc<AuthFailures>,
    /// The office log's last seq, as one watcher reads it: every waiting feed request wakes on
    /// a change instead of each reading the database.
    ledger: tokio::sync::watch::Receiver<i64>,
}

pub fn router(office: Arc<Office>, ledger: tokio::sync::watch::Receiver<i64>) -> Router {
    let desk = Desk { office, auth_failures: Arc::default(), ledger };
    Router::new()
        .route("/", get(pages::dashboard))
        .route("/station/{id}", get(pages::station_page))
        .route("/report", get(report))
        .route(protocol::STATUS, get(status))
        .route(protocol::PUSH, post(push::push))
        .route(
            "/bulletins",
            get(bulletins::page).post(bulletins::send).layer(axum::extract::DefaultBodyLimit::max(201 * 1024 * 1024)),
        )
        .route(protocol::BULLETINS, get(bulletins::feed))
        .route(protocol::BULLETIN_AUDIO, get(bulletins::audio))
        .route("/alarms/{id}/ack", post(clerk::acknowledge).layer(axum::extract::DefaultBodyLimit::max(16 * 1024)))
        .route("/clerk", post(clerk::sign_in).layer(axum::extract::DefaultBodyLimit::max(4 * 1024)))
        .route("/clerk/sign-out", post(clerk::sign_out))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such page") })
        .layer(axum::middleware::from_fn_with_state(desk.clone(), refuse_when_damaged))
        .layer(axum::middleware::from_fn_with_state(desk.clone(), reserved_for_tokens))
        .layer(axum::middleware::from_fn(harden))
        .with_state(desk)
}

/// Nothing is served or taken from memory the office cannot prove (`Office::damaged`): 503
/// `office_damaged` to tools, a plain page to a clerk.
async fn refuse_when_damaged(State(desk): State<Desk>, request: Request, next: axum::middleware::Next) -> Response {
    let Some(problems) = desk.office.damaged() else { return next.run(request).await };
    if request.uri().path().starts_with("/api/") {
        let message =
            format!("the office's memory cannot be trusted: {}; run `loa district check`", problems.join("; "));
        return error(StatusCode::SERVICE_UNAVAILABLE, "office_damaged", message);
    }
    let items: String = problems.iter().map(|p| format!("<li>{}</li>", escape(p))).collect();
    let body = format!(
        "<h1>Dữ liệu của phòng đã bị sửa đổi</h1><p class=\"alarm\">Cơ sở dữ liệu của phòng không khớp với nhật ký có chữ ký \
         của chính phòng, nên không thể tin các số liệu trong đó. Không hiển thị báo cáo nào cho đến khi khôi phục bản sao \
         lưu (district.sqlite). Người quản trị chạy <code>loa district check</code> để xem chi tiết.</p><ul>{items}</ul>"
    );
    page_with(StatusCode::SERVICE_UNAVAILABLE, "Dữ liệu bị sửa đổi", &body)
}

/// A signed-in clerk's address may use the reserved slots (`conn::Vouch`), whatever page it
/// opens; a request on a reserved slot (`conn::Reserved`) is served only with a station's push
/// token or a signed-in clerk's cookie, otherwise 503 and the connection closes.
async fn reserved_for_tokens(State(desk): State<Desk>, request: Request, next: axum::middleware::Next) -> Response {
    let reserved = request.extensions().get::<conn::Reserved>().is_some();
    let (push, clerk) = (bearer(request.headers()).filter(|_| reserved), clerk::presented(request.headers()));
    if !reserved && clerk.is_none() {
        return next.run(request).await;
    }
    let office = Arc::clone(&desk.office);
    let valid = tokio::task::spawn_blocking(move || {
        let push = push.map(|t| office.push_token_station(&t)).transpose()?.flatten();
        let clerk = clerk.map(|t| office.clerk(&t)).transpose()?.flatten();
        Ok::<_, super::store::DistrictStoreError>((push.is_some(), clerk.is_some()))
    })
    .await;
    let (push, clerk) = match valid {
        Ok(Ok(valid)) => valid,
        _ => (false, false),
    };
    if clerk && let Some(vouch) = request.extensions().get::<conn::Vouch>() {
        vouch.vouch();
    }
    if !reserved || push || clerk {
        return next.run(request).await;
    }
    crate::http::busy_and_closing()
}

/// How often a serving office checks its own memory again.
const MEMORY_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// How often the office's log is looked at for something new for the feed.
const LEDGER_WATCH: std::time::Duration = std::time::Duration::from_millis(200);

/// Serves (over TLS when `tls` is given) until `shutdown` resolves, pulling every `pull_every`
/// meanwhile.
pub async fn serve(
    office: Arc<Office>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let registry = conn::Registry::default();
    let limits = office_limits(office.config.stations.len());
    let (ledger_moved, ledger) = tokio::sync::watch::channel(0);
    let app = router(Arc::clone(&office), ledger);
    // A bulletin may be sent by another process (`bulletin add`): the log is watched, once.
    let watcher = {
        let (office, mut stopping) = (Arc::clone(&office), stopping.clone());
        async move {
            loop {
                let reader = Arc::clone(&office);
                if let Ok(Ok(head)) = tokio::task::spawn_blocking(move || reader.ledger_head()).await {
                    ledger_moved.send_if_modified(|seen| std::mem::replace(seen, head) != head);
                }
                tokio::select! {
                    _ = tokio::time::sleep(LEDGER_WATCH) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        }
    };
    let every = office.config.pull_every;
    let puller = {
        let (office, mut stopping) = (Arc::clone(&office), stopping.clone());
        async move {
            let mut checked = tokio::time::Instant::now();
            loop {
                // Damaged memory is neither written to nor reported from.
                if office.damaged().is_none() {
                    let round = super::pull::pull_all(Arc::clone(&office), None);
                    tokio::select! {
                        contacts = round => log_round(&contacts),
                        _ = stopping.wait_for(|s| *s) => return,
                    }
                    let reach = Arc::clone(&office);
                    let _ = tokio::task::spawn_blocking(move || reach.check_reachability()).await;
                }
                // The office's memory is checked again hourly while serving (from its checkpoints).
                if checked.elapsed() >= MEMORY_CHECK_EVERY {
                    let again = Arc::clone(&office);
                    let _ = tokio::task::spawn_blocking(move || again.check_memory()).await;
                    checked = tokio::time::Instant::now();
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        }
    };
    let stopper = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    tokio::join!(conn::accept_loop(listener, tls, registry.clone(), app, limits, stopping), puller, watcher, stopper);
    conn::drain(&registry).await;
    Ok(())
}

fn log_round(contacts: &[super::Contact]) {
    for c in contacts {
        match &c.error {
            Some(e) => tracing::warn!(station = %c.station_id, "pull failed: {e}"),
            None => {
                tracing::info!(station = %c.station_id, accepted = c.accepted, head = c.head_seq, alarms = ?c.alarms, "pulled")
            }
        }
    }
}

async fn status(State(Desk { office, .. }): State<Desk>) -> Response {
    let (name, key) = (office.config.name.clone(), office.public_key_hex());
    match tokio::task::spawn_blocking(move || {
        Ok::<_, super::store::DistrictStoreError>((office.status()?, office.behind()?))
    })
    .await
    {
        Ok(Ok((stations, behind))) => {
            axum::Json(json!({ "office": name, "office_key": key, "stations": stations, "office_behind": behind }))
                .into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<String> {
    protocol::bearer(headers.get(header::AUTHORIZATION)?.to_str().ok()?).map(str::to_owned)
}

pub(super) fn page_with(status: StatusCode, title: &str, body: &str) -> Response {
    let body = format!("<nav><a href=\"/\">← Các đài</a></nav><h1>{}</h1>{body}", escape(title));
    (status, page(title, &body)).into_response()
}

#[derive(Deserialize)]
struct ReportQuery {
    period: Option<String>,
    format: Option<String>,
}

async fn report(State(Desk { office, .. }): State<Desk>, Query(query): Query<ReportQuery>) -> Response {
    let tz = office.config.timezone;
    let Some(period) = query.period.as_deref() else {
        return error(StatusCode::BAD_REQUEST, "period", "give ?period=2026-W48, 2026-11, 2026-Q4, 2026-H2 or 2026");
    };
    let period = match crate::time::calendar::parse_period(period, tz) {
        Ok(period) => period,
        Err(e) => return error(StatusCode::BAD_REQUEST, "period", e),
    };
    let format: ReportFormat = match query.format.as_deref().unwrap_or("html").parse() {
        Ok(format) => format,
        Err(e) => return error(StatusCode::BAD_REQUEST, "format", e),
    };
    let now = office.clock.now();
    match tokio::task::spawn_blocking(move || super::report::build(&office, &period, now)).await {
        Ok(Ok(report)) => {
            let (body, content_type) = super::report::render(&report, format);
            ([(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "report", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// The office's connections: every station may hold a long-poll of the bulletins' feed and push
/// at once, even all behind one carrier NAT address, with room for clerks (at least 256, 64 per
/// address); the open-file limit is raised to match where the hard limit allows.
fn office_limits(stations: usize) -> conn::Limits {
    let wanted = (2 * stations + 64).max(256);
    let descriptors = crate::ops::sys::open_file_limit(wanted as u64 + 64) as usize;
    let max_connections = wanted.min(descriptors.saturating_sub(64).max(64));
    let max_per_peer = (stations + 16).max(64).min(max_connections);
    conn::Limits { max_connections, max_per_peer, reserved: conn::RESERVED_FOR_TOKENS }
}

/// The style sheet of the office's pages: one `<style>` block, allowed by its hash (`POLICY`).
static PAGE_STYLE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        r#"{REPORT_STYLE}
body {{ margin: 1em; font-family: system-ui, sans-serif; font-size: 15px; }}
.alarm {{ color: #b00; font-weight: bold; }} .ok {{ color: #060; }} .pending {{ color: #555; }}
table {{ font-size: 14px; }} nav a {{ margin-right: 1em; }}
"#
    )
});

/// The office's pages run no script and load nothing: only their own style blocks (the pages'
/// and the printable report's, by hash) and forms posted back to the office.
static POLICY: std::sync::LazyLock<axum::http::HeaderValue> = std::sync::LazyLock::new(|| {
    use base64::Engine;
    use sha2::Digest;
    let hash = |css: &str| base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(css));
    let policy = format!(
        "default-src 'none'; style-src 'sha256-{}' {}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        hash(&PAGE_STYLE),
        crate::audit::render::style_hash()
    );
    axum::http::HeaderValue::from_str(&policy).expect("ASCII")
});

/// Every answer of the office: the station's hardening headers, and its content policy.
async fn harden(request: Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    crate::http::harden(response.headers_mut());
    response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, POLICY.clone());
    response
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="vi"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{style}</style></head><body>{body}</body></html>"#,
        title = escape(title),
        style = PAGE_STYLE.as_str()
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_station_can_hold_a_long_poll_even_all_behind_one_address() {
        let small = super::office_limits(3);
        assert_eq!((small.max_connections, small.max_per_peer), (256, 64));
        let province = super::office_limits(1000);
        let descriptors = crate::ops::sys::open_file_limit(0) as usize;
        match descriptors >= 2064 + 64 {
            true => assert_eq!((province.max_connections, province.max_per_peer), (2064, 1016)),
            false => assert!(province.max_connections + 64 <= descriptors.max(128)),
        }
    }
}
