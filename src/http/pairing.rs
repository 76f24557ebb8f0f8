//! Signing a phone in without typing a token: `loa token create --pair` prints a one-time code
//! (and a QR code of the page's link with it); the page sends the code here and receives the
//! token, made now and shown this once. A wrong code counts as a failed authentication (logged,
//! slowed per address); a code works once and for 10 minutes. The code comes in a header
//! (`Authorization: Pairing K7QM-3XWD`), so it is judged before any body byte is read; a JSON
//! body `{"code": …}` is still taken from clients that send no such header.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use serde_json::{Value, json};

use super::{ApiError, AppState, ErrorBody, conn};
use crate::model::{protocol, token};

/// `Authorization: Pairing <code>`.
const PAIRING_SCHEME: &str = "pairing";

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairRequest {
    /// The code `loa token create --pair` printed, e.g. `K7QM-3XWD` (case and dash optional).
    code: String,
}

/// The code from a JSON body, for clients that do not send it in the header.
async fn code_from_body(request: Request) -> Result<String, ApiError> {
    let body = axum::body::Bytes::from_request(request, &()).await.map_err(super::small_body_error)?;
    let request: PairRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "send the code as `Authorization: Pairing K7QM-3XWD`, or JSON like {{\"code\": \"K7QM-3XWD\"}}; {e}"
        ))
    })?;
    Ok(request.code)
}

#[utoipa::path(post, path = "/api/v1/pair", tag = "station", request_body = PairRequest,
    params(("Authorization" = Option<String>, Header, description = "`Pairing <code>`: the code, judged before any body is read (then send no body)")),
    responses((status = 200, description = "`{\"token\", \"role\", \"label\"}`: the new token, shown this once"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "`pairing_code_unknown`: wrong, used or expired"),
        (status = 429, body = ErrorBody, description = "`too_many_failures`: this address must wait (`Retry-After`)")))]
pub async fn pair(
    State(state): State<AppState>,
    peer: Option<axum::Extension<conn::Peer>>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    // A code is short enough to guess: while this address must wait, its codes are not looked at.
    if let Some(wait) = state.auth_failures.waiting(peer.as_ref().map(|p| p.0.0)) {
        return Err(ApiError::too_many_failures(wait, "wrong pairing codes"));
    }
    let header = request.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default());
    let code = match header {
        Some(value) => protocol::credential(value, PAIRING_SCHEME)
            .ok_or_else(|| {
                ApiError::bad_request("the Authorization header must be `Pairing <code>`, e.g. `Pairing K7QM-3XWD`")
            })?
            .to_owned(),
        None => code_from_body(request).await?,
    };
    let code = token::normalise_code(&code);
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
