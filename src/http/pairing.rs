//! Signing a phone in without typing a token: `loa token create --pair` prints a one-time code
//! (and a QR code of the page's link with it); the page sends the code here and receives the
//! token, made now and shown this once. A wrong code counts as a failed authentication (logged,
//! slowed per address); a code works once and for 10 minutes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState, ErrorBody, conn};
use crate::model::token;

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    /// The code `loa token create --pair` printed, e.g. `K7QM-3XWD` (case and dash optional).
    code: String,
}

#[utoipa::path(post, path = "/api/v1/pair", tag = "station", request_body = PairRequest,
    responses((status = 200, description = "`{\"token\", \"role\", \"label\"}`: the new token, shown this once"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "`pairing_code_unknown`: wrong, used or expired"),
        (status = 429, body = ErrorBody, description = "`too_many_failures`: this address must wait (`Retry-After`)")))]
pub async fn pair(
    State(state): State<AppState>,
    peer: Option<axum::Extension<conn::Peer>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    // A code is short enough to guess: while this address must wait, its codes are not looked at.
    if let Some(wait) = state.auth_failures.waiting(peer.as_ref().map(|p| p.0.0)) {
        return Err(ApiError::too_many_failures(wait, "wrong pairing codes"));
    }
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => super::body_too_large(super::SMALL_BODY, false),
        _ => ApiError::bad_request(format!("the request body could not be read ({rejection}); send it again")),
    })?;
    let request: PairRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("send JSON like {{\"code\": \"K7QM-3XWD\"}}; {e}")))?;
    let code = token::normalise_code(&request.code);
    let secret = token::generate().map_err(ApiError::internal)?;
    let (code_digest, token_digest, now) = (token::digest(&code), token::digest(&secret), state.clock.now());
    let token = state
        .store
        .call(move |s| s.redeem_pairing(&code_digest, &token_digest, now))
        .await
        .map_err(ApiError::internal)?;
    match token {
        Some(token) => Ok(Json(json!({ "token": secret, "role": token.role.as_str(), "label": token.label }))),
        None => {
            if let Some(wait) = state.auth_failures.failed(peer.map(|p| p.0.0), "a wrong, used or expired pairing code")
            {
                return Err(ApiError::too_many_failures(wait, "wrong pairing codes"));
            }
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "pairing_code_unknown",
                "this pairing code is wrong, already used or expired; ask the station admin for a new one \
                 (`loa token create --pair`)",
            ))
        }
    }
}
