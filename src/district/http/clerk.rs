//! A clerk signs in once (`POST /clerk`, the clerk token from `loa district token create --clerk`)
//! and the browser then carries the token in a cookie — a header — so acknowledging an alarm is
//! judged before a byte of its form is read, like every other route with a role. The pages run
//! no script, so the sign-in form is the one route that takes a secret from a body: it is small,
//! bounded in size and time like any body, and refused at once (429) while its address must wait.
//! The cookie is `HttpOnly`, `SameSite=Strict` (no other site can post with it) and `Secure`
//! when the office serves TLS.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{Desk, error, page_with};
use crate::audit::words::escape;
use crate::http::conn;

/// The cookie that carries a signed-in clerk's token.
const COOKIE: &str = "loa_clerk";
/// How long a sign-in lasts: a working day.
const SIGNED_IN_SECONDS: u32 = 12 * 3600;

/// The clerk token the browser carries, if any (not yet judged).
pub(super) fn presented(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_owned))
        .filter(|token| !token.is_empty())
}

/// The signed-in clerk's name, judged from the cookie before the body: a wrong token counts as a
/// failed authentication; the refusal is a page with the sign-in form.
pub(super) struct Clerk(pub(super) String);

impl FromRequestParts<Desk> for Clerk {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, desk: &Desk) -> Result<Self, Response> {
        let peer = parts.extensions.get::<conn::Peer>().map(|p| p.0);
        if let Some(wait) = desk.auth_failures.waiting(peer) {
            return Err(wait_page(wait));
        }
        // The pages send no referrer, so a refusal here offers the way back to the dashboard.
        let back = "/";
        let Some(token) = presented(&parts.headers) else {
            return Err(sign_in_page(StatusCode::UNAUTHORIZED, "Cần đăng nhập", back));
        };
        let office = Arc::clone(&desk.office);
        match tokio::task::spawn_blocking(move || office.clerk(token.trim())).await {
            Ok(Ok(Some(name))) => Ok(Clerk(name)),
            Ok(Ok(None)) => match desk.auth_failures.failed(peer, "a wrong clerk token") {
                Some(wait) => Err(wait_page(wait)),
                None => Err(sign_in_page(StatusCode::UNAUTHORIZED, "Mã cán bộ không đúng", back)),
            },
            Ok(Err(e)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string())),
            Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())),
        }
    }
}

/// Only a path on this office (`/station/…`), never another site: where to go after signing in.
fn local_path(url: &str) -> String {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    let safe = path.starts_with('/') && !path.starts_with("//") && !path.contains(['\\', '\r', '\n']);
    if safe { path.to_owned() } else { "/".to_owned() }
}

fn wait_page(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs().max(1);
    let body = format!("<p>Nhập sai mã quá nhiều lần. Xin thử lại sau {seconds} giây.</p>");
    let mut page = page_with(StatusCode::TOO_MANY_REQUESTS, "Thử lại sau", &body);
    page.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    page
}

/// The sign-in form, which returns to `back` once the token is right.
pub(super) fn sign_in_form(back: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/clerk\"><input type=\"hidden\" name=\"back\" value=\"{}\">\
         <input name=\"token\" type=\"password\" required autocomplete=\"current-password\" placeholder=\"Mã cán bộ\">\
         <button>Đăng nhập để xác nhận cảnh báo</button></form>",
        escape(back)
    )
}

fn sign_in_page(status: StatusCode, title: &str, back: &str) -> Response {
    let body = format!(
        "<p>{}. Mã cán bộ do người quản trị cấp: <code>loa district token create --clerk \"Họ tên\"</code>.</p>{}",
        escape(title),
        sign_in_form(back)
    );
    page_with(status, title, &body)
}

#[derive(Deserialize)]
pub(super) struct SignIn {
    token: String,
    #[serde(default)]
    back: String,
}

/// `POST /clerk`: the token is checked, then kept in the cookie; the clerk returns to the page.
pub(super) async fn sign_in(
    State(desk): State<Desk>,
    peer: Option<axum::Extension<conn::Peer>>,
    request: axum::extract::Request,
) -> Response {
    let peer = peer.map(|p| p.0.0);
    // Guessing is not even looked at while the address must wait, and its form is not read.
    if let Some(wait) = desk.auth_failures.waiting(peer) {
        return wait_page(wait);
    }
    let secure = desk.office.config.tls.is_some();
    let Ok(axum::Form(form)) = axum::Form::<SignIn>::from_request(request, &()).await else {
        return error(StatusCode::BAD_REQUEST, "form", "send the form's token");
    };
    let back = local_path(&form.back);
    let (office, token) = (Arc::clone(&desk.office), form.token.trim().to_owned());
    let checked = token.clone();
    match tokio::task::spawn_blocking(move || office.clerk(&checked)).await {
        Ok(Ok(Some(_))) => {
            let cookie = format!(
                "{COOKIE}={token}; Path=/; Max-Age={SIGNED_IN_SECONDS}; HttpOnly; SameSite=Strict{}",
                if secure { "; Secure" } else { "" }
            );
            (StatusCode::SEE_OTHER, [(header::LOCATION, back), (header::SET_COOKIE, cookie)]).into_response()
        }
        Ok(Ok(None)) => match desk.auth_failures.failed(peer, "a wrong clerk token") {
            Some(wait) => wait_page(wait),
            None => sign_in_page(StatusCode::UNAUTHORIZED, "Mã cán bộ không đúng", &back),
        },
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `POST /clerk/sign-out`: the cookie is dropped.
pub(super) async fn sign_out() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    (StatusCode::SEE_OTHER, [(header::LOCATION, "/".to_owned()), (header::SET_COOKIE, cookie)]).into_response()
}

#[derive(Deserialize)]
pub(super) struct AckForm {
    note: String,
}

/// A signed-in clerk acknowledges an alarm from the station page with a note; the note is kept
/// with the clerk's name.
pub(super) async fn acknowledge(
    State(Desk { office, .. }): State<Desk>,
    Clerk(clerk): Clerk,
    Path(id): Path<i64>,
    form: Result<axum::Form<AckForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(form)) = form else {
        return error(StatusCode::BAD_REQUEST, "form", "send the form's note");
    };
    let note = form.note.trim().to_owned();
    if note.is_empty() || note.chars().count() > 1000 {
        return page_with(
            StatusCode::BAD_REQUEST,
            "Thiếu ghi chú",
            "<p>Hãy ghi rõ đã kiểm tra gì và xử lý thế nào (tối đa 1000 ký tự).</p>",
        );
    }
    let acknowledged = tokio::task::spawn_blocking(move || office.acknowledge(id, &format!("{note} — {clerk}"))).await;
    match acknowledged {
        Ok(Ok(alarm)) => {
            let to = format!("/station/{}", alarm.station_id);
            (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
        }
        Ok(Err(crate::district::store::DistrictStoreError::NoSuchAlarm(_))) => {
            page_with(StatusCode::NOT_FOUND, "Không có cảnh báo này", "<p>Không có cảnh báo này.</p>")
        }
        Ok(Err(e @ crate::district::store::DistrictStoreError::AlreadyAcknowledged { .. })) => page_with(
            StatusCode::CONFLICT,
            "Đã xác nhận",
            &format!("<p>Cảnh báo này đã được xác nhận: {}</p>", escape(&e.to_string())),
        ),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn after_signing_in_a_clerk_goes_back_only_to_a_page_of_this_office() {
        assert_eq!(super::local_path("http://office:8090/station/phu-thuy"), "/station/phu-thuy");
        assert_eq!(super::local_path("/station/phu-thuy"), "/station/phu-thuy");
        for elsewhere in
            ["//evil.example/x", "https://evil.example", "javascript:alert(1)", "/\\evil", "/a\r\nSet-Cookie: x"]
        {
            let path = super::local_path(elsewhere);
            assert!(path == "/" || !path.starts_with("//") && !path.contains('\\'), "{elsewhere} -> {path}");
        }
        assert_eq!(super::local_path("https://evil.example"), "/");
    }

    #[test]
    fn the_clerk_token_is_read_from_its_cookie_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("cookie", "a=1; loa_clerk=loa_abc; b=2".parse().unwrap());
        assert_eq!(super::presented(&headers).as_deref(), Some("loa_abc"));
        headers.insert("cookie", "loa_clerkx=1; loa_clerk=".parse().unwrap());
        assert_eq!(super::presented(&headers), None);
    }
}
