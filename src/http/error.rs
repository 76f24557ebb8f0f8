//! The API's one error shape: `{"error": {"code": "snake_case", "message": "…"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The body of every error response (for the OpenAPI document).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
struct ErrorDetail {
    /// snake_case, stable: what kind of failure
    code: String,
    /// what is wrong and how to fix it
    message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Extra members of the error object (e.g. the existing `clip_id` of a duplicate).
    pub extra: Option<(&'static str, serde_json::Value)>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.into(), message: message.into(), extra: None, retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", format!("{field}: {message}"))
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A failure of the station itself, not of the request: logged, and reported without detail.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!("request failed: {error}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the station could not do this; see its log")
    }

    /// Too many failed authentications from this address: answered at once, never held open.
    pub fn too_many_failures(retry_after: std::time::Duration, what: &str) -> ApiError {
        let seconds = retry_after.as_secs().max(1);
        let message = format!("too many {what} from this address; try again in {seconds} s");
        ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_failures", message)
        }
    }

    /// Every connection is in use and this one holds a slot kept for valid tokens: closed after
    /// the answer.
    pub fn server_busy() -> ApiError {
        let message = "every connection is in use; the few kept free serve valid tokens only; try again in 1 s";
        ApiError { retry_after: Some(1), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_busy", message) }
    }

    pub fn with(mut self, key: &'static str, value: serde_json::Value) -> ApiError {
        self.extra = Some((key, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some((key, value)) = self.extra {
            error[key] = value;
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
