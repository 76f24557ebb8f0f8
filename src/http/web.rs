//! The operator page (Vietnamese, phone-first), served from the binary: the station's LAN may
//! have no internet, so nothing comes from a CDN. It is a plain client of the JSON API — no
//! second code path — and needs no build step.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/app.css");

/// Served from the box itself: no inline code, no third parties, not framed elsewhere. The one
/// inline style allowed is the printable report's (by its hash), which the page opens as a
/// blob under this policy.
static POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let report = crate::audit::render::style_hash();
    let policy =
        format!("default-src 'self'; style-src 'self' {report}; img-src 'self' data: blob:; frame-ancestors 'none'");
    HeaderValue::from_str(&policy).expect("the policy is ASCII")
});

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, POLICY.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

pub async fn index() -> Response {
    asset(INDEX, "text/html; charset=utf-8")
}

pub async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

pub async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}
