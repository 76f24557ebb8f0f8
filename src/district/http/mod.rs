//! `loa district serve`: the office's dashboard (Vietnamese, printable, plain HTML that works on
//! a phone), its JSON status, period reports, and the push receiver for stations behind 4G
//! routers and CGNAT that cannot be pulled. While serving it also pulls on a schedule and raises
//! `unreachable` for stations gone silent. Same connection limits as a station's API
//! (`http::conn`); a push is authenticated before its body is read, and bounded.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

mod bulletins;
mod clerk;
mod push;

use super::Office;
use super::words::alarm_vi;
use crate::audit::compliance::Standing;
use crate::audit::render::{Labels, REPORT_STYLE, ReportFormat};
use crate::audit::words::{escape, miss_vi, missed_vi, standing_vi, status_vi, time_vi};
use crate::http::{AuthFailures, conn};
use crate::model::protocol;
use crate::proof::events::{Counted, Logged};

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
        .route("/", get(dashboard))
        .route("/station/{id}", get(station_page))
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
    match tokio::task::spawn_blocking(move || office.status()).await {
        Ok(Ok(stations)) => {
            axum::Json(json!({ "office": name, "office_key": key, "stations": stations })).into_response()
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

async fn dashboard(State(Desk { office, .. }): State<Desk>) -> Response {
    let now = office.clock.now();
    let built = tokio::task::spawn_blocking(move || {
        let status = office.status()?;
        let tz = office.config.timezone;
        let week = crate::time::calendar::period_of(crate::time::calendar::QuotaPeriod::Week, now, tz);
        let month = crate::time::calendar::period_of(crate::time::calendar::QuotaPeriod::Month, now, tz);
        let weekly = super::report::build(&office, &week, now).map_err(|e| e.to_string());
        let monthly = super::report::build(&office, &month, now).map_err(|e| e.to_string());
        let last_airings: Vec<Option<String>> =
            office.config.stations.iter().map(|s| office.last_airing(&s.id).ok().flatten()).collect();
        Ok::<_, super::store::DistrictStoreError>((
            office.config.name.clone(),
            status,
            weekly,
            monthly,
            last_airings,
            tz,
        ))
    })
    .await;
    let Ok(Ok((name, status, weekly, monthly, last_airings, tz))) = built else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "store", "the office database does not answer");
    };
    let local = |rfc: &Option<String>| {
        rfc.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| time_vi(&t.with_timezone(&tz).to_rfc3339()))
            .unwrap_or_else(|| "chưa có".to_owned())
    };
    let standing = |report: &Result<super::report::OfficeReport, String>, i: usize| match report {
        Ok(r) => r.stations.get(i).map_or(String::new(), |s| {
            s.quotas
                .iter()
                .map(|q| {
                    let class = match q.standing {
                        Standing::Met => "ok",
                        Standing::NotMet => "alarm",
                        _ => "pending",
                    };
                    format!(
                        "<span class=\"{class}\">{}: {} ({} lần, cần {})</span>",
                        escape(&Labels::default().quota_label(&q.quota)),
                        standing_vi(q.standing),
                        q.completed,
                        q.required
                    )
                })
                .collect::<Vec<_>>()
                .join("<br>")
        }),
        Err(e) => escape(e),
    };
    let mut rows = String::new();
    for (i, s) in status.iter().enumerate() {
        let alarms = if s.alarms.is_empty() {
            "<span class=\"ok\">Không</span>".to_owned()
        } else {
            s.alarms
                .iter()
                .map(|a| {
                    format!("<div class=\"alarm\">#{} {}</div>", a.id, escape(&alarm_vi(&a.kind, a.seq, &a.detail)))
                })
                .collect::<String>()
        };
        rows.push_str(&format!(
            "<tr><td><a href=\"/station/{id}\">{name}</a></td><td data-label=\"Liên lạc gần nhất\">{contact}</td>\
             <td data-label=\"Tuần này\">{week}</td><td data-label=\"Tháng này\">{month}</td>\
             <td data-label=\"Lần phát gần nhất\">{last}</td><td data-label=\"Cảnh báo\">{alarms}</td></tr>\n",
            id = escape(&s.id),
            name = escape(&s.name),
            contact = local(&s.last_ok_at),
            week = standing(&weekly, i),
            month = standing(&monthly, i),
            last = local(&last_airings[i]),
        ));
    }
    let periods: String = crate::time::calendar::recent_periods(now.with_timezone(&tz).date_naive())
        .into_iter()
        .map(|(label, code)| {
            format!(
                "<li>{label}: <a href=\"/report?period={code}&amp;format=html\">xem, in</a> · <a href=\"/report?period={code}&amp;format=csv-vi\">tải CSV (Excel)</a> · <a href=\"/report?period={code}&amp;format=csv\">CSV cho phần mềm</a></li>"
            )
        })
        .collect();
    let body = format!(
        "<h1>{}</h1><p class=\"center\">Theo dõi các đài truyền thanh cơ sở</p>\
         <table><tr class=\"head\"><th>Đài</th><th>Liên lạc gần nhất</th><th>Tuần này</th><th>Tháng này</th><th>Lần phát gần nhất</th><th>Cảnh báo</th></tr>\n{rows}</table>\
         <h2>Báo cáo</h2><ul>{periods}</ul><p><a href=\"/bulletins\">Bản tin đã gửi các đài và nơi đã phát</a></p>\
         <p class=\"small\">Xác nhận đã xử lý một cảnh báo: trên trang của đài, hoặc <code>loa district ack SỐ --note \"…\"</code> (cảnh báo và ghi chú đều được lưu lại).</p>",
        escape(&name)
    );
    page(&name, &body).into_response()
}

async fn station_page(State(Desk { office, .. }): State<Desk>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let Some(station) = office.config.station(&id).cloned() else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no station {id} in district.toml"));
    };
    let tz = office.config.timezone;
    let office2 = Arc::clone(&office);
    let station_id = station.id.clone();
    let read = tokio::task::spawn_blocking(move || {
        let latest = office2.with_store(|s| s.latest(&station_id, 100))?;
        let alarms = office2.with_store(|s| s.alarms(Some(&station_id), false))?;
        Ok::<_, super::store::DistrictStoreError>((latest, alarms))
    })
    .await;
    let Ok(Ok((latest, alarms))) = read else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "store", "the office database does not answer");
    };
    let labels = Labels::default();
    let mut rows = String::new();
    for e in &latest {
        let Ok(logged) = Logged::parse(&e.body, &e.hash) else { continue };
        // The members shown beside the counted ones (title, slot, reason), from the same
        // verified body.
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
        let text = |name: &str| body[name].as_str().map(escape).unwrap_or_default();
        let at = DateTime::<Utc>::from_timestamp_millis(e.at).map(|t| time_vi(&t.with_timezone(&tz).to_rfc3339()));
        let (bulletin, outcome) = match &logged.what {
            Counted::AiringEnded { status, topic, language, .. } => (
                format!(
                    "«{}» — {}, {}",
                    text("title"),
                    escape(&labels.topic(topic)),
                    escape(&labels.language(language))
                ),
                status_vi(status.as_str()).to_owned(),
            ),
            Counted::SlotMissed { reason, count } => {
                let when = |name: &str| {
                    let at = DateTime::<Utc>::from_timestamp_millis(body[name].as_i64()?)?;
                    Some(time_vi(&at.with_timezone(&tz).to_rfc3339()))
                };
                let span = match (when("scheduled_at"), when("last_scheduled_at")) {
                    (Some(first), Some(last)) => format!(", từ {first} đến {last}"),
                    _ => String::new(),
                };
                (String::new(), format!("{} ({}){span}", missed_vi(*count), miss_vi(*reason)))
            }
            Counted::Other => continue,
        };
        let detail = text("reason");
        let detail = match detail.is_empty() {
            true => format!("<details><summary>Chi tiết</summary>bản ghi số {}</details>", e.seq),
            false => format!("<details><summary>Chi tiết kỹ thuật</summary>{detail} (bản ghi số {})</details>", e.seq),
        };
        // The station's slot names are its own codes: the office shows whether it was peak time.
        let hours = if body["peak"].as_bool() == Some(true) { "giờ cao điểm" } else { "ngoài giờ cao điểm" };
        rows.push_str(&format!(
            "<tr><td data-label=\"Lúc\">{}, {hours}</td><td data-label=\"Bản tin\">{bulletin}</td>\
             <td data-label=\"Kết quả\">{outcome}{detail}</td></tr>",
            at.unwrap_or_default(),
        ));
    }
    // A clerk signed in (the cookie; judged when the form is sent) acknowledges with a note.
    let signed_in = clerk::presented(&headers).is_some();
    let alarm_rows: String = alarms
        .iter()
        .map(|a| {
            let state = match &a.note {
                Some(note) => format!("đã xử lý: {}", escape(note)),
                None if signed_in => format!(
                    "<span class=\"alarm\">chưa xử lý</span>\
                     <form method=\"post\" action=\"/alarms/{}/ack\">\
                     <input name=\"note\" required maxlength=\"1000\" placeholder=\"Đã kiểm tra gì, xử lý thế nào\">\
                     <button>Xác nhận đã xử lý</button></form>",
                    a.id
                ),
                None => "<span class=\"alarm\">chưa xử lý</span>".to_owned(),
            };
            format!("<li>#{} {} — {state}</li>", a.id, escape(&alarm_vi(&a.kind, a.seq, &a.detail)))
        })
        .collect();
    let clerk_line = match (signed_in, alarms.iter().any(|a| a.note.is_none())) {
        (true, _) => {
            "<form method=\"post\" action=\"/clerk/sign-out\"><button>Đăng xuất cán bộ</button></form>".to_owned()
        }
        (false, true) => clerk::sign_in_form(&format!("/station/{}", station.id)),
        (false, false) => String::new(),
    };
    let body = format!(
        "<nav><a href=\"/\">← Các đài</a></nav><h1>{}</h1><h2>Cảnh báo</h2><ul>{}</ul>{clerk_line}\
         <h2>Các lượt phát gần đây</h2><table><tr class=\"head\"><th>Lúc</th><th>Bản tin</th><th>Kết quả</th></tr>{rows}</table>",
        escape(&station.name),
        if alarm_rows.is_empty() { "<li class=\"ok\">Không có</li>".to_owned() } else { alarm_rows },
    );
    page(&station.name, &body).into_response()
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
