//! `POST /api/v1/receipt`: the auditing office hands back its signed receipt for what it holds
//! of this log after a pull (district role). The station keeps the latest one outside its
//! database (`audit::receipt`) and shows it (`GET /api/v1/station`, the operator page).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;

use super::{ApiError, AppState, Caller, ErrorBody, Office};
use crate::audit::receipt::{self, ReceiptError};

#[utoipa::path(post, path = "/api/v1/receipt", tag = "station", security(("bearer" = [])),
    request_body(content = String, description = "the receipt line the office signed", content_type = "application/json"),
    responses((status = 204, description = "kept"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`office_not_pinned`: no [office] public_key; `not_our_office`: signed by another key"), (status = 409, body = ErrorBody, description = "`not_this_log`: the receipt is for another station or another log")))]
pub async fn take(
    State(state): State<AppState>,
    _caller: Caller<Office>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = body.map_err(super::small_body_error)?;
    let line = String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("send the receipt line as UTF-8"))?;
    let (data_dir, office) = (state.config.station.data_dir.clone(), state.config.office);
    let taken = state.store.call(move |s| receipt::take(&data_dir, s, &line, office.as_ref())).await;
    match taken {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(e @ ReceiptError::Invalid(_)) => Err(ApiError::bad_request(e.to_string())),
        Err(e @ ReceiptError::NoOfficePinned) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "office_not_pinned", e.to_string()))
        }
        Err(e @ ReceiptError::OtherOffice(_)) => {
            tracing::warn!("a receipt was refused: {e}");
            Err(ApiError::new(StatusCode::FORBIDDEN, "not_our_office", e.to_string()))
        }
        Err(e @ (ReceiptError::OtherStation(_) | ReceiptError::NotThisLog { .. })) => {
            tracing::warn!("a receipt was refused: {e}");
            Err(ApiError::new(StatusCode::CONFLICT, "not_this_log", e.to_string()))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}
