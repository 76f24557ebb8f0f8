//! The office's side of the bulletins that flow down: the feed a station follows
//! (`GET /api/v1/bulletins?after=N&wait=S`, long-polled so an emergency reaches it at once) and
//! the audio it downloads (streamed from disk, `Range` for a download resumed over 4G). Both
//! judge the station by its push token from the headers; a station sees only what is
//! addressed to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt as _;

use super::push::station_of;
use super::{Desk, error};
use crate::audit::words::escape;
use crate::district::bulletins::{NewBulletin, Reach};
use crate::district::words::reach_vi;
use crate::http::conn;
use crate::model::clip::ClipMeta;
use crate::model::protocol::{FEED_PAGE_FILL, FeedNotice, FeedPage, MAX_FEED_WAIT};
use crate::proof::bulletin::{AllStations, Stations};

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
    State(Desk { office, auth_failures, mut ledger }): State<Desk>,
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
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        ledger.mark_unchanged();
        // An office that forgot what this station has seen serves no page (its ids would go
        // back): the poll waits for a recovery (which moves the log), else says so at its end.
        if let Some(refusal) = super::push::office_behind(&office, &station.id, request.headers()).await {
            if tokio::time::Instant::now() >= deadline {
                return refusal;
            }
            if let Ok(Err(_)) = tokio::time::timeout_at(deadline, ledger.changed()).await {
                deadline = tokio::time::Instant::now();
            }
            continue;
        }
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
            // A page of bounded size: the station asks after its last line for the rest.
            let mut filled = 0;
            let notices: Vec<FeedNotice> = notices
                .into_iter()
                .take_while(|n| {
                    let first = filled == 0;
                    filled += n.line.len();
                    first || filled <= FEED_PAGE_FILL
                })
                .map(|n| FeedNotice { seq: n.seq, line: n.line })
                .collect();
            let next_after = notices.last().map_or(after, |n| n.seq);
            // Signed after the notices were read: no notice's seq is beyond it.
            let head = match tokio::task::spawn_blocking(move || office.office_head()).await {
                Ok(Ok(head)) => head,
                Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
            };
            return axum::Json(FeedPage { notices, next_after, office_head: Some(head) }).into_response();
        }
        // Woken when the office's log moves (one watcher reads it for every waiting station);
        // marked seen before each read, so a move during the read still wakes it.
        // At the deadline: one last read, then the (empty) page. A watcher gone (the office
        // stopping) ends the wait too.
        if let Ok(Err(_)) = tokio::time::timeout_at(deadline, ledger.changed()).await {
            deadline = tokio::time::Instant::now();
        }
    }
}

/// `GET /api/v1/bulletins/{id}/audio`: the MP3, for a station it is addressed to.
pub(super) async fn audio(
    State(Desk { office, auth_failures, .. }): State<Desk>,
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
    // Small chunks: a thousand stations downloading at once hold a chunk each.
    match tower_http::services::ServeFile::new(path).with_buf_chunk_size(16 * 1024).oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `GET /bulletins`: each bulletin sent with its reach ("đã phát 2/3 đài"), and for each station
/// that has not aired it, where it stands and why.
pub(super) async fn page(State(Desk { office, .. }): State<Desk>, headers: axum::http::HeaderMap) -> Response {
    let listing = Arc::clone(&office);
    let built = tokio::task::spawn_blocking(move || {
        let office = listing;
        let listed = office.bulletins()?;
        listed.iter().rev().map(|b| office.reach(b)).collect::<Result<Vec<_>, _>>()
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
    let form = match super::clerk::presented(&headers) {
        Some(_) => send_form(&office),
        None => format!("<h2>Gửi bản tin</h2>{}", super::clerk::sign_in_form("/bulletins")),
    };
    super::page_with(StatusCode::OK, "Bản tin gửi các đài", &(body + &form))
}

/// The form a signed-in clerk sends a bulletin with (no script: a plain multipart form).
fn send_form(office: &crate::district::Office) -> String {
    let stations: String = office
        .config
        .stations
        .iter()
        .map(|s| {
            format!(
                "<label><input type=\"checkbox\" name=\"station\" value=\"{}\"> {}</label><br>",
                escape(&s.id),
                escape(&s.name)
            )
        })
        .collect();
    format!(
        "<h2>Gửi bản tin</h2><form method=\"post\" action=\"/bulletins\" enctype=\"multipart/form-data\">\
         <p><label>Tệp MP3 <input type=\"file\" name=\"file\" accept=\".mp3,audio/mpeg\" required></label></p>\
         <p><label>Tên bản tin <input name=\"title\" required maxlength=\"200\"></label></p>\
         <p><label>Chủ đề (mã) <input name=\"topic\" value=\"cchc\" required maxlength=\"32\"></label></p>\
         <p><label>Mức <select name=\"priority\"><option value=\"normal\">Thông thường</option>\
         <option value=\"priority\">Ưu tiên</option><option value=\"emergency\">Khẩn cấp</option></select></label></p>\
         <p><label>Từ ngày <input type=\"date\" name=\"from\"></label> <label>đến ngày <input type=\"date\" name=\"until\"></label></p>\
         <p><label>Số lần mỗi đài phải phát <input type=\"number\" name=\"airings\" value=\"1\" min=\"1\" max=\"100\"></label><br>\
         <small>Khẩn cấp: phát ngay khi đài nhận được, ngắt mọi bản tin đang phát; đến khi đủ số lần thì đứng đầu \
         mọi khung giờ cao điểm, sau đó đài tự sắp xếp. Ưu tiên: đứng đầu mọi khung giờ cao điểm đến khi đủ số lần. \
         Thông thường: đài tự sắp xếp trong thời hạn.</small></p>\
         <p>Gửi cho (không chọn đài nào: tất cả các đài):<br>{stations}</p>\
         <p><button>Gửi bản tin</button></p></form>"
    )
}

/// The largest file the form takes (the station's own default upload limit).
const MAX_FORM_FILE: u64 = 200 * 1024 * 1024;
/// The longest text field of the form, in bytes (a title is at most 200 characters).
const MAX_FORM_TEXT: usize = 1000;

/// `POST /bulletins`: a signed-in clerk (judged from the cookie before the form is read) sends a
/// bulletin from the dashboard, as `bulletin add` does.
pub(super) async fn send(
    State(Desk { office, .. }): State<Desk>,
    super::clerk::Clerk(_clerk): super::clerk::Clerk,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let refused = |why: String| {
        super::page_with(
            StatusCode::BAD_REQUEST,
            "Chưa gửi được bản tin",
            &format!("<p>{}</p><p><a href=\"/bulletins\">Quay lại</a></p>", escape(&why)),
        )
    };
    let Ok(mut multipart) = multipart else { return refused("Hãy gửi bằng biểu mẫu của trang.".into()) };
    let dir = crate::district::bulletins::audio_dir(&office.config.data_dir);
    let mut file: Option<tempfile::NamedTempFile> = None;
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut stations: Vec<String> = Vec::new();
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return refused(format!("Biểu mẫu bị cắt giữa chừng ({e}).")),
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let staged = std::fs::create_dir_all(&dir).and_then(|()| tempfile::NamedTempFile::new_in(&dir));
            let Ok(mut staged) = staged else { return refused("Máy của phòng không ghi được tệp.".into()) };
            let mut size = 0u64;
            loop {
                // A cut upload is refused, never sent on as if whole.
                let chunk = match field.chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(e) => return refused(format!("Tệp bị cắt giữa chừng ({e}); hãy gửi lại.")),
                };
                size += chunk.len() as u64;
                if size > MAX_FORM_FILE {
                    return refused(format!("Tệp lớn hơn {} MiB.", MAX_FORM_FILE >> 20));
                }
                // A chunk to disk: brief, but blocking, so off the runtime's workers' duty.
                if tokio::task::block_in_place(|| std::io::Write::write_all(&mut staged, &chunk)).is_err() {
                    return refused("Máy của phòng không ghi được tệp.".into());
                }
            }
            file = Some(staged);
        } else {
            // Read up to its bound, not whole first: memory per request stays small.
            let mut value = Vec::new();
            loop {
                match field.chunk().await {
                    Ok(Some(chunk)) if value.len() + chunk.len() <= MAX_FORM_TEXT => value.extend_from_slice(&chunk),
                    Ok(Some(_)) => return refused(format!("Trường {name} quá dài.")),
                    Ok(None) => break,
                    Err(_) => return refused(format!("Trường {name} bị cắt.")),
                }
            }
            let Ok(value) = String::from_utf8(value) else {
                return refused(format!("Trường {name} không phải văn bản."));
            };
            match name.as_str() {
                "station" => stations.push(value),
                _ => {
                    fields.insert(name, value);
                }
            }
        }
    }
    let Some(file) = file else { return refused("Hãy chọn tệp MP3.".into()) };
    let text = |name: &str| fields.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let day = |name: &str| text(name).map(|d| crate::district::bulletins::parse_day(&d)).transpose();
    let (from, until) = match (day("from"), day("until")) {
        (Ok(from), Ok(until)) => (from, until),
        (Err(e), _) | (_, Err(e)) => return refused(e),
    };
    let Ok(priority) = text("priority").unwrap_or_else(|| "normal".into()).parse() else {
        return refused("Mức ưu tiên không đúng.".into());
    };
    let airings = text("airings").map_or(Ok(1), |n| n.parse::<u32>()).unwrap_or(0);
    let stations = match stations.is_empty() {
        true => Stations::All(AllStations::All),
        false => Stations::Listed(stations),
    };
    let meta = ClipMeta {
        title: text("title").unwrap_or_default(),
        topic: text("topic").unwrap_or_default(),
        language: text("language").unwrap_or_else(|| "vi".into()),
        priority,
        valid_from: from,
        valid_until: until,
    };
    let new = NewBulletin { file: file.path().to_owned(), meta, stations, airings };
    let sent = tokio::task::spawn_blocking(move || {
        let sent = office.send_bulletin(&new);
        drop(file);
        sent
    })
    .await;
    match sent {
        Ok(Ok(_)) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/bulletins")]).into_response(),
        Ok(Err(e)) => refused(e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}
