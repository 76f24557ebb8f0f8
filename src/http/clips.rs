//! Bulletins over HTTP: upload (streamed through the shared ingest), list, show, audio with
//! Range, retire, and the queue.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tower::ServiceExt;

use super::{ApiError, AppState, Caller, ErrorBody, Operators, Readers};
use crate::library::ingest::{IngestError, Staged};
use crate::model::clip::{self, Clip, ClipMeta, Priority};
use crate::model::queue::{QueueItem, Wanted};
use crate::store::Inserted;

/// Text fields of an upload form are short; a longer one is refused rather than buffered.
const MAX_TEXT_FIELD: usize = 4096;
/// The upload form (for the OpenAPI document; the handler reads the fields as they stream).
#[allow(dead_code)]
#[derive(utoipa::ToSchema)]
pub struct UploadForm {
    #[schema(format = Binary, value_type = String)]
    file: Vec<u8>,
    title: String,
    topic: String,
    language: Option<String>,
    priority: Option<Priority>,
    valid_from: Option<chrono::NaiveDate>,
    valid_until: Option<chrono::NaiveDate>,
}

const TEXT_FIELDS: [&str; 6] = ["title", "topic", "language", "priority", "valid_from", "valid_until"];

#[utoipa::path(get, path = "/api/v1/clips", tag = "clips", security(("bearer" = [])),
    responses((status = 200, description = "`{\"clips\": [...]}`, retired clips included, each with `last_aired_at` (UTC ms of its last completed airing, or null)"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    _caller: Caller<Readers>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (clips, last_completed) = state
        .store
        .call(|s| Ok::<_, crate::store::StoreError>((s.clips()?, s.last_completed_by_clip()?)))
        .await
        .map_err(ApiError::internal)?;
    // Each clip, plus when it last aired to the end (UTC ms), from the proof log.
    let clips: Vec<serde_json::Value> = clips
        .iter()
        .map(|clip| {
            let mut value = json!(clip);
            value["last_aired_at"] = json!(last_completed.get(&clip.id));
            value
        })
        .collect();
    Ok(Json(json!({ "clips": clips })))
}

#[utoipa::path(get, path = "/api/v1/office-bulletins", tag = "clips", security(("bearer" = [])),
    responses((status = 200, description = "`{\"bulletins\": [...]}`: the office's bulletins as this station's log tells them, oldest first: `bulletin_id`, `state` (`received`, `refused`, `withdrawn`), `office`, `clip_id` and its `title`, `priority`, `valid_from`, `valid_until`, `airings` owed and `completed`, `owed` (still owed: the operator cannot retire it), `refused_reason` and `refused_detail`, `at`"), (status = 401, body = ErrorBody)))]
pub async fn office_bulletins(
    State(state): State<AppState>,
    _caller: Caller<Readers>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let today = state.clock.now().with_timezone(&state.config.station.timezone).date_naive();
    let (bulletins, clips) = state
        .store
        .call(|s| Ok::<_, crate::store::StoreError>((s.office_bulletins()?, s.clips()?)))
        .await
        .map_err(ApiError::internal)?;
    let bulletins: Vec<serde_json::Value> = bulletins
        .iter()
        .map(|b| {
            let mut value = json!(b);
            let clip = clips.iter().find(|c| Some(c.id) == b.clip_id);
            value["title"] = json!(clip.map(|c| c.meta.title.clone()));
            value["owed"] = json!(b.is_owed(today));
            value
        })
        .collect();
    Ok(Json(json!({ "bulletins": bulletins })))
}

#[utoipa::path(get, path = "/api/v1/clips/{id}", tag = "clips", security(("bearer" = [])), params(("id" = i64, Path, minimum = 1, description = "clip id")),
    responses((status = 200, body = Clip), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    _caller: Caller<Readers>,
    Path(id): Path<String>,
) -> Result<Json<Clip>, ApiError> {
    Ok(Json(find_clip(&state, &id).await?))
}

#[utoipa::path(delete, path = "/api/v1/clips/{id}", tag = "clips", security(("bearer" = [])), params(("id" = i64, Path, minimum = 1, description = "clip id")),
    responses((status = 204, description = "retired; it stays in the library"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, description = "an office's bulletin still owed airings: only the office can withdraw it", body = ErrorBody)))]
pub async fn retire(
    State(state): State<AppState>,
    _caller: Caller<Operators>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = clip_id(&id)?;
    let now = state.clock.now();
    let today = now.with_timezone(&state.config.station.timezone).date_naive();
    if let Some(owed) = state.store.call(move |s| s.owed_bulletin(id, today)).await.map_err(ApiError::internal)? {
        return Err(ApiError::invalid_field("id", format!("clip {id}: {}", owed.why_kept())));
    }
    let retired = state.store.call(move |s| s.retire_clip(id, now, None)).await.map_err(ApiError::internal)?;
    state.schedule_changed().await;
    retired.map(|_| StatusCode::NO_CONTENT).ok_or_else(|| no_such_clip(id))
}

#[utoipa::path(get, path = "/api/v1/clips/{id}/audio", tag = "clips", security(("bearer" = [])), params(("id" = i64, Path, minimum = 1, description = "clip id")),
    responses((status = 200, description = "the MP3", content_type = "audio/mpeg"), (status = 206, description = "a Range of it"), (status = 404, body = ErrorBody)))]
pub async fn audio(
    State(state): State<AppState>,
    _caller: Caller<Readers>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let clip = find_clip(&state, &id).await?;
    // `.mp3` → audio/mpeg; ServeFile answers Range requests (206) and HEAD.
    let file = tower_http::services::ServeFile::new(state.library.clip_path(&clip.sha256));
    let response = file.oneshot(request).await.map_err(ApiError::internal)?;
    Ok(response.map(Body::new))
}

fn clip_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad_request(format!("\"{text}\" is not a clip id; ids are whole numbers, see GET /api/v1/clips"))
    })
}

fn no_such_clip(id: i64) -> ApiError {
    ApiError::not_found(format!("there is no clip {id}; GET /api/v1/clips lists them"))
}

async fn find_clip(state: &AppState, id: &str) -> Result<Clip, ApiError> {
    let id = clip_id(id)?;
    state.store.call(move |s| s.clip(id)).await.map_err(ApiError::internal)?.ok_or_else(|| no_such_clip(id))
}

#[utoipa::path(post, path = "/api/v1/clips", tag = "clips", security(("bearer" = [])),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, body = Clip), (status = 409, body = ErrorBody, description = "duplicate; `clip_id` names the existing clip"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody, description = "not a playable MP3; the code says why"),
        (status = 422, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    _caller: Caller<Operators>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Clip>), ApiError> {
    // The form's announced length bounds the file's; a chunked upload announces none and is
    // checked as it arrives.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let outcome = receive_upload(&state, multipart, announced).await;
    let counter = match &outcome {
        Ok(_) => &state.counters.uploads_accepted,
        Err(e) if e.code == "duplicate" => &state.counters.uploads_duplicate,
        Err(_) => &state.counters.uploads_refused,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if outcome.is_ok() {
        state.schedule_changed().await;
    }
    outcome.map(|clip| (StatusCode::CREATED, Json(clip)))
}

async fn receive_upload(
    state: &AppState,
    multipart: Result<Multipart, MultipartRejection>,
    announced: u64,
) -> Result<Clip, ApiError> {
    let multipart =
        multipart.map_err(|e| ApiError::bad_request(format!("send the bulletin as multipart/form-data ({e})")))?;
    let (staged, text) = read_form(state, multipart, announced).await?;
    let meta = meta_from_form(&text, &state.config)?;
    let staged =
        staged.ok_or_else(|| ApiError::invalid_field("file", "missing: attach the MP3 as the `file` field"))?;
    admit(state, staged, meta).await
}

/// The form's fields: the file streamed to staging (never held in memory), the text fields
/// bounded; anything else refused by name.
async fn read_form(
    state: &AppState,
    mut multipart: Multipart,
    announced: u64,
) -> Result<(Option<Staged>, HashMap<String, String>), ApiError> {
    let mut text: HashMap<String, String> = HashMap::new();
    let mut staged: Option<Staged> = None;
    while let Some(field) = multipart.next_field().await.map_err(broken_form)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if staged.is_some() {
                return Err(ApiError::invalid_field("file", "send one file per upload"));
            }
            staged = Some(receive_file(state, field, announced).await?);
        } else if TEXT_FIELDS.contains(&name.as_str()) {
            let value = read_text_field(&name, field).await?;
            text.insert(name, value);
        } else {
            return Err(ApiError::invalid_field(
                &name,
                format!("unknown field; the form takes `file` and {}", TEXT_FIELDS.join(", ")),
            ));
        }
    }
    Ok((staged, text))
}

/// Streams the file field into a staging file, within `http.max_upload_mib` and the disk's
/// reserve; a refused file is read to its end (bounded) so the client hears why.
async fn receive_file(state: &AppState, mut field: Field<'_>, announced: u64) -> Result<Staged, ApiError> {
    let limit = state.config.http.max_upload_mib * 1024 * 1024;
    // The free-space check and the file's creation touch the disk: off the runtime.
    let library = state.library.clone();
    let mut upload = tokio::task::spawn_blocking(move || library.stage(announced.min(limit)))
        .await
        .map_err(ApiError::internal)?
        .map_err(storage_error)?;
    while let Some(chunk) = field.chunk().await.map_err(broken_form)? {
        if upload.size() + chunk.len() as u64 > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the file is over the {} MiB limit (http.max_upload_mib); shorten or re-encode it",
                    limit / 1024 / 1024
                ),
            ));
        }
        upload = match write_chunk(upload, chunk).await {
            Ok(upload) => upload,
            Err(refused) => {
                // Read (and drop) the rest of the file, bounded, so that the client hears the
                // refusal instead of a connection closed under its upload.
                let mut rest = 0u64;
                while let Ok(Some(chunk)) = field.chunk().await {
                    rest += chunk.len() as u64;
                    if rest > limit {
                        break;
                    }
                }
                return Err(refused);
            }
        };
    }
    Ok(upload)
}

async fn read_text_field(name: &str, mut field: Field<'_>) -> Result<String, ApiError> {
    let mut value = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(broken_form)? {
        value.extend_from_slice(&chunk);
        if value.len() > MAX_TEXT_FIELD {
            return Err(ApiError::invalid_field(name, format!("longer than {MAX_TEXT_FIELD} bytes")));
        }
    }
    String::from_utf8(value).map_err(|_| ApiError::invalid_field(name, "not UTF-8 text"))
}

/// Hashes, checks for a duplicate, decodes and measures (off the runtime), then keeps the clip.
async fn admit(state: &AppState, staged: Staged, meta: ClipMeta) -> Result<Clip, ApiError> {
    let finished = tokio::task::spawn_blocking(move || staged.finish())
        .await
        .map_err(ApiError::internal)?
        .map_err(storage_error)?;
    let sha256 = finished.sha256.clone();
    if let Some(existing) = state.store.call(move |s| s.clip_by_sha256(&sha256)).await.map_err(ApiError::internal)? {
        return Err(duplicate(&existing));
    }
    let library = state.library.clone();
    let (finished, audio) = tokio::task::spawn_blocking(move || {
        let audio = library.analyse(&finished);
        (finished, audio)
    })
    .await
    .map_err(ApiError::internal)?;
    let audio = audio.map_err(ingest_error)?;
    let (library, now) = (state.library.clone(), state.clock.now());
    let inserted =
        state.store.call(move |s| library.keep(finished, &meta, &audio, s, now)).await.map_err(ingest_error)?;
    match inserted {
        Inserted::New(clip) => Ok(clip),
        Inserted::Existing(clip) => Err(duplicate(&clip)),
    }
}

async fn write_chunk(mut upload: Staged, chunk: Bytes) -> Result<Staged, ApiError> {
    tokio::task::spawn_blocking(move || upload.write_all(&chunk).map(|()| upload))
        .await
        .map_err(ApiError::internal)?
        .map_err(storage_error)
}

fn meta_from_form(text: &HashMap<String, String>, config: &crate::config::Config) -> Result<ClipMeta, ApiError> {
    let required = |name: &str| {
        text.get(name).cloned().ok_or_else(|| ApiError::invalid_field(name, "missing: this field is required"))
    };
    let date = |name: &'static str| {
        text.get(name)
            .filter(|v| !v.trim().is_empty())
            .map(|v| clip::parse_date(name, v.trim()).map_err(|e| ApiError::invalid_field(e.field, e.message)))
            .transpose()
    };
    let priority = match text.get("priority") {
        Some(p) => p.parse::<Priority>().map_err(|e| ApiError::invalid_field("priority", e))?,
        None => Priority::Normal,
    };
    let meta = ClipMeta {
        title: required("title")?,
        topic: required("topic")?,
        language: text.get("language").cloned().unwrap_or_else(|| "vi".to_owned()),
        priority,
        valid_from: date("valid_from")?,
        valid_until: date("valid_until")?,
    };
    meta.check().and_then(|()| config.check_choices(&meta)).map_err(|e| ApiError::invalid_field(e.field, e.message))?;
    Ok(meta)
}

fn duplicate(existing: &Clip) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "duplicate",
        format!("this audio is already clip {} (\"{}\"); nothing was added", existing.id, existing.meta.title),
    )
    .with("clip_id", json!(existing.id))
}

fn broken_form(error: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!("the upload form could not be read ({error}); send it again"))
}

fn storage_error(error: std::io::Error) -> ApiError {
    if error.kind() == std::io::ErrorKind::StorageFull {
        // Our own reserve check carries the figures; a bare ENOSPC does not.
        let message = match error.get_ref() {
            Some(ours) => ours.to_string(),
            None => "the station's disk is full; retire old bulletins or free space, then upload again".to_owned(),
        };
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "disk_full", message)
    } else {
        ApiError::internal(error)
    }
}

fn ingest_error(error: IngestError) -> ApiError {
    match error {
        IngestError::Rejected(rejection) => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, rejection.kind.code(), rejection.message)
        }
        IngestError::Meta(e) => ApiError::invalid_field(e.field, e.message),
        IngestError::Io(e) => storage_error(e),
        IngestError::Store(e) => ApiError::internal(e),
    }
}

#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueRequest {
    clip_id: i64,
    when: Wanted,
}

/// `{"clip_id": N, "when": "next_slot"|"now"}`: `now` pre-empts whatever plays.
#[utoipa::path(post, path = "/api/v1/queue", tag = "queue", security(("bearer" = [])), request_body = QueueRequest,
    responses((status = 202, body = QueueItem), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn enqueue(
    State(state): State<AppState>,
    _caller: Caller<Operators>,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let body = body.map_err(super::small_body_error)?;
    let request: QueueRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "send JSON like {{\"clip_id\": 3, \"when\": \"now\"}} (when: now or next_slot); {e}"
        ))
    })?;
    let id = request.clip_id;
    let clip =
        state.store.call(move |s| s.clip(id)).await.map_err(ApiError::internal)?.ok_or_else(|| no_such_clip(id))?;
    if clip.retired_at.is_some() {
        return Err(ApiError::invalid_field("clip_id", format!("clip {id} is retired and cannot air")));
    }
    let now = state.clock.now();
    let item = state.store.call(move |s| s.enqueue(id, request.when, now)).await.map_err(ApiError::internal)?;
    state.live.ring();
    state.schedule_changed().await;
    Ok((StatusCode::ACCEPTED, Json(item)))
}
