//! The HTTP API: the only module that touches axum.
//!
//! Operators upload and queue bulletins; the district pulls the proof log. Every failure is a
//! JSON `{"error": {"code", "message"}}` with a 4xx status that says what and how to fix it;
//! bad input never reaches a 500 or a panic. Uploads stream to disk through the same ingest as
//! `loa clip add` — hashed on the way in, decoded on a blocking thread, recorded on the store
//! thread — so the runtime never waits on disk or CPU.

mod clips;
pub mod conn;
mod error;
mod pairing;
mod receipt;
mod report_link;
pub mod station;
pub mod tls;
mod web;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody};

use crate::air::live::Live;
use crate::config::Config;
use crate::library::ingest::Library;
use crate::model::token;
use crate::model::token::Role;
use crate::store::{Store, StoreHandle};
use crate::time::clock::Clock;

/// Which roles a route admits, as a type: the check is then an extractor, which runs on the
/// headers before any extractor reads the body (a wrong role never gets to send one).
pub trait Admits {
    const ROLES: &'static [Role];
}
/// Who may read (library, schedule, proof, reports).
pub enum Readers {}
/// Who may change things (upload, queue, retire).
pub enum Operators {}
/// The auditing office (receipts).
pub enum Office {}
impl Admits for Readers {
    const ROLES: &'static [Role] = &[Role::Operator, Role::District];
}
impl Admits for Operators {
    const ROLES: &'static [Role] = &[Role::Operator];
}
impl Admits for Office {
    const ROLES: &'static [Role] = &[Role::District];
}

/// Everything a handler may use.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: StoreHandle,
    pub library: Library,
    pub clock: Arc<dyn Clock>,
    pub live: Live,
    pub public_key: String,
    pub counters: Arc<Counters>,
    /// The last schedule answer, reused within its minute (see `station::schedule`).
    pub schedule: Arc<tokio::sync::Mutex<Option<station::ScheduleAnswer>>>,
    pub auth_failures: Arc<AuthFailures>,
}

/// Failed authentications by peer: logged (one line per peer per [`AuthFailures::LOG_EVERY`],
/// with the count); after a few, answered at once with 429 and `Retry-After` (a growing wait)
/// instead of a 401 — never by holding the connection, which would let guessing take the
/// connection slots. A valid token is never refused or slowed, and nothing here touches the airing.
#[derive(Default)]
pub struct AuthFailures {
    by_peer: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, PeerFailures>>,
}

struct PeerFailures {
    count: u32,
    since_logged: u32,
    last_at: std::time::Instant,
    logged_at: Option<std::time::Instant>,
}

impl AuthFailures {
    const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
    /// Failures forgiven after this long without one.
    const FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(600);
    const FREE_FAILURES: u32 = 5;
    const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

    /// Records a failure from `peer`; how long it should wait before trying again, once it is
    /// past its free failures (then the answer is 429 with `Retry-After`).
    pub fn failed(&self, peer: Option<std::net::IpAddr>, why: &str) -> Option<std::time::Duration> {
        let peer = peer?;
        let now = std::time::Instant::now();
        let mut by_peer = self.by_peer.lock().expect("auth failures lock");
        if by_peer.len() > 10_000 {
            by_peer.retain(|_, f| now - f.last_at < Self::FORGET_AFTER);
        }
        let entry =
            by_peer.entry(peer).or_insert(PeerFailures { count: 0, since_logged: 0, last_at: now, logged_at: None });
        if now - entry.last_at > Self::FORGET_AFTER {
            entry.count = 0;
        }
        entry.count += 1;
        entry.since_logged += 1;
        entry.last_at = now;
        if entry.logged_at.is_none_or(|at| now - at >= Self::LOG_EVERY) {
            tracing::warn!(%peer, failures = entry.since_logged, total = entry.count, "API authentication failed: {why}");
            entry.logged_at = Some(now);
            entry.since_logged = 0;
        }
        Self::wait_after(entry.count)
    }

    /// How long an address must wait after `count` failures: nothing for the first five, then a
    /// second more for each, up to `MAX_DELAY`.
    fn wait_after(count: u32) -> Option<std::time::Duration> {
        let over = count.saturating_sub(Self::FREE_FAILURES);
        (over > 0).then(|| (std::time::Duration::from_secs(1) * over).min(Self::MAX_DELAY))
    }

    /// Whether `peer` must wait before its next attempt (for codes short enough to guess, which
    /// are then not even looked at): how long, if so.
    pub fn waiting(&self, peer: Option<std::net::IpAddr>) -> Option<std::time::Duration> {
        let peer = peer?;
        let by_peer = self.by_peer.lock().expect("auth failures lock");
        let entry = by_peer.get(&peer)?;
        let wait = Self::wait_after(entry.count)?;
        let since = std::time::Instant::now() - entry.last_at;
        (since < wait).then(|| wait - since)
    }
}

impl AppState {
    /// The API's state over its own store connection (given to a store thread here).
    pub fn new(config: Arc<Config>, store: Store, library: Library, clock: Arc<dyn Clock>, live: Live) -> AppState {
        AppState {
            config,
            public_key: store.public_key_hex(),
            store: StoreHandle::spawn(store),
            library,
            clock,
            live,
            counters: Default::default(),
            schedule: Default::default(),
            auth_failures: Default::default(),
        }
    }

    /// The library or the queue changed: the next schedule answer is planned afresh.
    pub async fn schedule_changed(&self) {
        self.schedule.lock().await.take();
    }
}

/// In-memory counters for `/metrics` (the proof log holds the durable numbers).
#[derive(Debug, Default)]
pub struct Counters {
    pub requests_2xx: AtomicU64,
    pub requests_4xx: AtomicU64,
    pub requests_5xx: AtomicU64,
    pub uploads_accepted: AtomicU64,
    pub uploads_duplicate: AtomicU64,
    pub uploads_refused: AtomicU64,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "loa", description = "Loudspeaker station API: bulletins, queue, signed proof of airing."),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme =
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("`loa token create` makes one")).build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The answers every route can give besides its own, so the document lists every status a
/// client can see: 400 (a malformed query or path), 401/403/429 (token missing, wrong role, too
/// many wrong tokens from this address) on the routes that take one, 413 (a body over its bound, refused before auth) on POST routes.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [(&mut item.get, false), (&mut item.post, true), (&mut item.put, true), (&mut item.delete, false)];
            for (operation, has_body) in operations {
                let Some(operation) = operation.as_mut() else { continue };
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let responses = &mut operation.responses.responses;
                let mut add = |status: &str, description: &str| {
                    responses.entry(status.to_owned()).or_insert_with(|| error(description).into());
                };
                add("400", "a malformed query, path or body; the message says which and how to fix it");
                if secured {
                    add("401", "no token, or an unknown or revoked one");
                    add("403", "the token's role may not do this");
                    add(
                        "429",
                        "too many wrong tokens from this address: answered at once, try again after `Retry-After`",
                    );
                }
                if has_body {
                    add("413", "the body is over this route's bound (refused before the token is looked at)");
                }
            }
        }
    }
}

/// The routes and their OpenAPI document, from the same declarations (so they cannot drift).
fn routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(station::healthz))
        .routes(routes!(station::metrics))
        .routes(routes!(station::station))
        .routes(routes!(clips::list, clips::upload))
        .routes(routes!(clips::show, clips::retire))
        .routes(routes!(clips::audio))
        .routes(routes!(clips::office_bulletins))
        .routes(routes!(station::schedule))
        .routes(routes!(clips::enqueue))
        .routes(routes!(station::airtime))
        .routes(routes!(station::compliance))
        .routes(routes!(report_link::link))
        .routes(routes!(pairing::pair))
        .routes(routes!(receipt::take))
        .split_for_parts();
    // After the routes are in: a modifier on the base document would see no paths.
    CommonResponses.modify(&mut document);
    (router, document)
}

/// The OpenAPI 3 document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

pub fn router(state: AppState) -> Router {
    // The document is rebuilt when asked for, not kept: a station box is short of memory and
    // the document is read rarely.
    let (routes, _) = routes();
    routes
        .route("/api/v1/openapi.json", get(|| async { axum::Json(openapi()) }))
        .route("/", get(web::index))
        .route("/app.js", get(web::script))
        .route("/app.css", get(web::style))
        .route("/reports/compliance", get(report_link::printable))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are bounded in `guard` (before any extractor, auth included); uploads are
        // also limited while they stream (http.max_upload_mib), never buffered.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serves the API on `listener` (plain HTTP) and, when given, on a TLS listener, until
/// `shutdown` resolves, within the connection limits of [`conn`] (one count for both).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<(tokio::net::TcpListener, tls::Tls)>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let http = &state.config.http;
    let limits = conn::Limits {
        max_connections: http.max_connections,
        max_per_peer: http.max_connections_per_peer,
        reserved: conn::RESERVED_FOR_TOKENS,
    };
    let (registry, app) = (conn::Registry::default(), router(state));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let plain = conn::accept_loop(listener, None, registry.clone(), app.clone(), limits, stopping.clone());
    let secure = async {
        if let Some((listener, tls)) = tls {
            conn::accept_loop(listener, Some(tls.acceptor), registry.clone(), app, limits, stopping).await;
        }
    };
    let stopper = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    tokio::join!(plain, secure, stopper);
    conn::drain(&registry).await;
    Ok(())
}

async fn not_found() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::NOT_FOUND,
        "not_found",
        "no such route; the API is under /api/v1 (see README)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// The largest body of any request but an upload (a queue request is a few dozen bytes).
pub(crate) const SMALL_BODY: u64 = 16 * 1024;
/// What a multipart form may add to the file it carries (boundaries, part headers, text fields).
const FORM_SLACK: u64 = 64 * 1024;

/// Runs before anything else reads the request: a body that announces more than its route
/// takes is refused at once (413, before authentication), and no body may stream more; every
/// answer says not to sniff its type, not to cache it, not to send a referrer and not to frame it.
async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    // A reserved slot serves valid tokens only (`conn::Reserved`).
    if request.extensions().get::<conn::Reserved>().is_some() {
        let (parts, body) = request.into_parts();
        if authenticate(&parts, &state).await.is_err() {
            return busy_and_closing();
        }
        request = Request::from_parts(parts, body);
    }
    let is_upload = request.method() == axum::http::Method::POST && request.uri().path() == "/api/v1/clips";
    let limit = if is_upload { state.config.http.max_upload_mib * 1024 * 1024 + FORM_SLACK } else { SMALL_BODY };
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut response = match announced {
        Some(length) if length > limit => body_too_large(limit, is_upload).into_response(),
        _ => {
            let request = request.map(|body| axum::body::Body::new(http_body_util::Limited::new(body, limit as usize)));
            next.run(request).await
        }
    };
    harden(response.headers_mut());
    response
}

/// What every answer of a station or an office says: not to sniff its type, not to send a
/// referrer, not to frame it, and (unless it says otherwise) not to cache it.
pub fn harden(headers: &mut axum::http::HeaderMap) {
    for (name, value) in [
        (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (axum::http::header::REFERRER_POLICY, "no-referrer"),
        (axum::http::header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, axum::http::HeaderValue::from_static(value));
    }
    if !headers.contains_key(axum::http::header::CACHE_CONTROL) {
        headers.insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    }
}

/// 413 for a body over its route's limit.
pub fn body_too_large(limit: u64, is_upload: bool) -> ApiError {
    let message = if is_upload {
        format!(
            "the upload is over the {} MiB limit (http.max_upload_mib); shorten or re-encode the bulletin",
            limit / 1024 / 1024
        )
    } else {
        format!("the request body is over {} KiB; this route takes a small JSON object", limit / 1024)
    };
    ApiError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
}

/// A small body (`SMALL_BODY`) that could not be read whole: 413 past its bound, else 400.
pub(crate) fn small_body_error(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    match rejection.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => body_too_large(SMALL_BODY, false),
        _ => ApiError::bad_request(format!("the request body could not be read ({rejection}); send it again")),
    }
}

/// The answer on a reserved slot (`conn::Reserved`) to a request without a valid token: 503
/// `server_busy`, and the connection is closed (station and office alike).
pub fn busy_and_closing() -> Response {
    let mut response = ApiError::server_busy().into_response();
    harden(response.headers_mut());
    response.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    response
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let counter = match response.status().as_u16() {
        200..=399 => &state.counters.requests_2xx,
        400..=499 => &state.counters.requests_4xx,
        _ => &state.counters.requests_5xx,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    response
}

/// The authenticated caller, from `Authorization: Bearer <token>`, whose role `R` admits.
pub struct Caller<R: Admits> {
    pub role: Role,
    admitted: std::marker::PhantomData<R>,
}

/// 403 unless `role` is one of `roles`.
fn require(role: Role, roles: &[Role]) -> Result<(), ApiError> {
    if roles.contains(&role) {
        return Ok(());
    }
    let with_article =
        |role: &str| format!("{} {role}", if role.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" });
    let allowed: Vec<String> = roles.iter().map(|r| with_article(r.as_str())).collect();
    Err(ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "forbidden",
        format!("{} token cannot do this; it needs {} token", with_article(role.as_str()), allowed.join(" or ")),
    ))
}

impl<R: Admits> FromRequestParts<AppState> for Caller<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts.extensions.get::<conn::Peer>().map(|peer| peer.0);
        match authenticate(parts, state).await {
            Err(refusal) if refusal.status == axum::http::StatusCode::UNAUTHORIZED => {
                match state.auth_failures.failed(peer, &refusal.message) {
                    Some(wait) => Err(ApiError::too_many_failures(wait, "wrong tokens")),
                    None => Err(refusal),
                }
            }
            Err(refusal) => Err(refusal),
            Ok(role) => {
                // A valid token: this address may use the reserved slots (whatever the role).
                if let Some(vouch) = parts.extensions.get::<conn::Vouch>() {
                    vouch.vouch();
                }
                require(role, R::ROLES)?;
                Ok(Caller { role, admitted: std::marker::PhantomData })
            }
        }
    }
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Role, ApiError> {
    let unauthorized = |message: &str| ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", message);
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("send `Authorization: Bearer <token>`; `loa token create` makes one"))?;
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let presented = header
        .to_str()
        .ok()
        .and_then(crate::model::protocol::bearer)
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?
        .to_owned();
    let tokens = state.store.call(|s| s.tokens()).await.map_err(ApiError::internal)?;
    token::find(&tokens, &presented)
        .map(|token| token.role)
        .ok_or_else(|| unauthorized("unknown or revoked token; ask the station admin for a new one"))
}
