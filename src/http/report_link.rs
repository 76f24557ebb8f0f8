//! The printable report at a plain URL. A phone browser blocks the blob pop-up a script opens
//! after a fetch, and a page a browser navigates to cannot carry the bearer token; so a reader
//! asks for a link (`GET /api/v1/compliance/link?period=P`) that is signed for that period and
//! expires after 10 minutes, and the page simply goes there.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::station::{period_param, period_report};
use super::{ApiError, AppState, Caller, ErrorBody, Readers};

const VALID_FOR: TimeDelta = TimeDelta::minutes(10);

/// Links are signed with a key made at start: they die with the process, as they should.
static KEY: LazyLock<[u8; 32]> = LazyLock::new(|| {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("randomness for the report links");
    key
});

/// HMAC-SHA-256 of `message`, hex.
fn sign(message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_slice()).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[utoipa::path(get, path = "/api/v1/compliance/link", tag = "proof", security(("bearer" = [])),
    params(("period" = String, Query, description = "2026-W47, 2026-11, 2026-Q4, 2026-H2 or 2026")),
    responses((status = 200, description = "`{\"url\"}`: the printable report for `period`, openable without a token for 10 minutes"), (status = 400, body = ErrorBody)))]
pub async fn link(
    State(state): State<AppState>,
    _caller: Caller<Readers>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let period = period_param(&state, &query)?.label;
    let expires = (state.clock.now() + VALID_FOR).timestamp();
    let sig = sign(&format!("{period}|{expires}"));
    Ok(Json(json!({ "url": format!("/reports/compliance?period={period}&expires={expires}&sig={sig}") })))
}

/// The printable report a signed link names (see [`link`]).
pub async fn printable(State(state): State<AppState>, Query(query): Query<HashMap<String, String>>) -> Response {
    let refused = |why: &str| {
        (
            StatusCode::FORBIDDEN,
            format!("Liên kết báo cáo không hợp lệ hoặc đã hết hạn ({why}). Hãy mở lại từ trang Tuân thủ."),
        )
            .into_response()
    };
    let (Some(period), Some(expires), Some(sig)) = (query.get("period"), query.get("expires"), query.get("sig")) else {
        return refused("thiếu tham số");
    };
    let expected = sign(&format!("{period}|{expires}"));
    if !bool::from(expected.as_bytes().ct_eq(sig.as_bytes())) {
        return refused("chữ ký sai");
    }
    if expires.parse::<i64>().map_or(true, |at| at < state.clock.now().timestamp()) {
        return refused("đã hết hạn");
    }
    let Ok(period) = crate::time::calendar::parse_period(period, state.config.station.timezone) else {
        return refused("kỳ báo cáo sai");
    };
    let report = match period_report(&state, period).await {
        Ok(report) => report,
        Err(refusal) => return refusal.into_response(),
    };
    let labels = crate::audit::render::Labels::of(&state.config);
    let (page, _) = crate::audit::render::station::render(&report, crate::audit::render::ReportFormat::Html, &labels);
    let mut response = page.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    let style = crate::audit::render::style_hash();
    let policy = format!("default-src 'none'; style-src {style}; frame-ancestors 'none'");
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&policy).expect("ASCII"));
    response
}
