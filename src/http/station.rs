//! The station's state over HTTP: health, identity, schedule, the proof log, metrics.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::{ApiError, AppState, Caller, ErrorBody, Readers};
use crate::air::{planner, quota, scheduler};
use crate::audit::chain;
use crate::audit::render::{self, Labels, ReportFormat};
use crate::model::queue::Wanted;
use crate::proof::export::{self, Format, Head};
use crate::store::EventQuery;
use crate::time::calendar::Period;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

/// A query parameter parsed as `T`, with a 400 that names it when it does not parse.
fn param<T: FromStr>(query: &HashMap<String, String>, name: &str, expected: &str) -> Result<Option<T>, ApiError> {
    query
        .get(name)
        .map(|text| text.parse().map_err(|_| ApiError::bad_request(format!("{name}: \"{text}\" is not {expected}"))))
        .transpose()
}

fn local_time(state: &AppState, at: DateTime<Utc>) -> String {
    at.with_timezone(&state.config.station.timezone).to_rfc3339()
}

#[utoipa::path(get, path = "/healthz", tag = "station",
    responses((status = 200, description = "`{\"status\": \"ok\"|\"degraded\", \"checks\": {store, proof_log, audio_device, clock_synced, clock, quotas, next_slot}}`; an unsynchronised clock is reported but does not degrade health"), (status = 503, description = "the store does not answer")))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let store = state.store.call(|s| s.ping().and_then(|()| s.recorded_damage())).await;
    let (config, now) = (Arc::clone(&state.config), state.clock.now());
    let quotas = state.store.call(move |s| quota::standings(s, &config, now)).await.unwrap_or_default();
    let live = state.live.snapshot();
    let clock_synced = state.clock.synchronized();
    let device_ok = live.audio_device.as_ref().is_none_or(|d| d.ok);
    let quotas_ok = quotas.iter().all(|q| q.status != quota::QuotaStatus::AtRisk);
    let damage = store.as_ref().ok().cloned().flatten();
    // Health is what the box can do: air, keep its log, meet its quotas. An unsynchronised clock
    // (every box without network, every container) is reported, and recorded on each airing,
    // but is not a fault by itself; a clock that reads earlier than the log is.
    let healthy = damage.is_none() && store.is_ok() && device_ok && quotas_ok && live.clock_behind.is_none();
    let clock = match &live.clock_behind {
        Some(behind) => json!({
            "state": if behind.waiting_for_sync { "waiting_for_sync" } else { "behind_last_event" },
            "message": if behind.waiting_for_sync {
                "the clock reads earlier than the last recorded event; waiting for NTP before airing"
            } else {
                "no NTP: running on a clock that reads earlier than the last recorded event; check the network"
            },
            "last_recorded_at": DateTime::from_timestamp_millis(behind.last_recorded_at).map(|t| local_time(&state, t)),
        }),
        None => json!({ "state": if clock_synced { "synced" } else { "unsynced" } }),
    };
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "checks": {
            "store": match (&store, &damage) {
                (Err(e), _) => e.to_string(),
                (Ok(_), Some((seq, why))) => format!("the proof log is damaged at seq {seq}: {why}"),
                (Ok(_), None) => "ok".to_owned(),
            },
            "proof_log": match &damage {
                Some((seq, why)) => json!({ "state": "damaged", "seq": seq, "reason": why }),
                None => json!({ "state": "ok" }),
            },
            "audio_device": live.audio_device,
            "clock_synced": clock_synced,
            "clock": clock,
            "quotas": quotas,
            "next_slot": live.next_slot.map(|(slot, at)| json!({
                "slot": slot,
                "at": DateTime::from_timestamp_millis(at).map(|t| local_time(&state, t)),
            })),
        }
    });
    let status = if store.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

fn next_slots(state: &AppState, count: usize) -> Vec<Value> {
    scheduler::upcoming(&state.config.slots, state.config.station.timezone, state.clock.now(), count)
        .into_iter()
        .map(|(slot, at)| json!({ "slot": state.config.slots[slot].name, "at": local_time(state, at) }))
        .collect()
}

#[utoipa::path(get, path = "/api/v1/station", tag = "station", security(("bearer" = [])),
    responses((status = 200, description = "id, name, timezone, public_key, version, clock_synced, next_slots, the caller's role, `topics` and `languages` (`id`, `label`: what a bulletin may be given), `slots` (`id`, `label`: the slots by the names an operator reads), `report_periods` (`name`, `code`, `label`): last week, last month, this quarter, half-year and year in station time, and `receipt` (`office`, `head_seq`, `head_hash`, `at`): the auditing office's latest receipt for what it holds of this log, or null"), (status = 401, body = ErrorBody)))]
pub async fn station(State(state): State<AppState>, caller: Caller<Readers>) -> Result<Json<Value>, ApiError> {
    let s = &state.config.station;
    let (data_dir, office) = (s.data_dir.clone(), state.config.office);
    let receipt = tokio::task::spawn_blocking(move || crate::audit::receipt::read(&data_dir, office.as_ref()))
        .await
        .ok()
        .flatten();
    Ok(Json(json!({
        "id": s.id,
        "name": s.name,
        "timezone": s.timezone.name(),
        "public_key": state.public_key,
        "version": env!("CARGO_PKG_VERSION"),
        "clock_synced": state.clock.synchronized(),
        "next_slots": next_slots(&state, 10),
        "role": caller.role.as_str(),
        "receipt": receipt,
        "topics": state.config.topics,
        "slots": state.config.slots.iter().map(|s| json!({ "id": s.name, "label": s.label })).collect::<Vec<_>>(),
        "languages": state.config.languages,
        "report_periods": crate::time::calendar::recent_periods(state.clock.now().with_timezone(&s.timezone).date_naive())
            .into_iter()
            .map(|(name, code)| json!({ "name": name, "code": code, "label": crate::audit::words::period_vi(&code) }))
            .collect::<Vec<_>>(),
    })))
}

/// The longest look ahead, and the most slot instances one answer plans: a slot every minute
/// for a week would otherwise plan ten thousand, with a store query each.
const MAX_SCHEDULE_DAYS: i64 = 7;
const MAX_SCHEDULE_SLOTS: usize = 500;

/// A schedule answer and what it was computed for: (days, the minute it was computed in).
pub struct ScheduleAnswer {
    key: (i64, i64),
    body: Value,
}

/// What each slot in the next `days` would air if the planner decided now. Computed at most
/// once a minute per `days` (concurrent callers wait for the one computation), on the API's own
/// store connection: however often it is asked, it costs the airing nothing.
#[utoipa::path(get, path = "/api/v1/schedule", tag = "station", security(("bearer" = [])),
    params(("days" = Option<i64>, Query, minimum = 1, maximum = 7, description = "1 to 7, default 7")),
    responses((status = 200, description = "each slot in the period (at most 500) and what the planner would air now; `truncated` when there were more"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn schedule(
    State(state): State<AppState>,
    _caller: Caller<Readers>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let days: i64 = param(&query, "days", "a whole number of days (1 to 7)")?.unwrap_or(MAX_SCHEDULE_DAYS);
    if !(1..=MAX_SCHEDULE_DAYS).contains(&days) {
        return Err(ApiError::bad_request(format!("days: {days} is outside 1 to {MAX_SCHEDULE_DAYS}")));
    }
    let now = state.clock.now();
    let key = (days, now.timestamp() / 60);
    let mut cached = state.schedule.lock().await;
    if let Some(answer) = cached.as_ref().filter(|answer| answer.key == key) {
        return Ok(Json(answer.body.clone()));
    }
    let body = plan_schedule(&state, days, now).await?;
    *cached = Some(ScheduleAnswer { key, body: body.clone() });
    Ok(Json(body))
}

async fn plan_schedule(state: &AppState, days: i64, now: DateTime<Utc>) -> Result<Value, ApiError> {
    let until = now + TimeDelta::days(days);
    let tz = state.config.station.timezone;
    let mut upcoming: Vec<(usize, DateTime<Utc>)> =
        scheduler::upcoming(&state.config.slots, tz, now, MAX_SCHEDULE_SLOTS + 1)
            .into_iter()
            .take_while(|(_, at)| *at <= until)
            .collect();
    let truncated = upcoming.len() > MAX_SCHEDULE_SLOTS;
    upcoming.truncate(MAX_SCHEDULE_SLOTS);
    let (config, slots_ahead) = (Arc::clone(&state.config), upcoming.clone());
    let (clips, last_completed, queued, needs) = state
        .store
        .call(move |s| {
            // Quotas as they stand now: what each slot would carry if nothing aired before it.
            let needs = slots_ahead
                .iter()
                .map(|(slot, at)| {
                    quota::unmet(s, &config.quotas, config.slots[*slot].peak, *at, config.station.timezone)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let queued = s.pending_queue(Wanted::NextSlot)?;
            let needs = (needs, planner::Owed::of(&s.priority_bulletins()?));
            Ok::<_, crate::store::StoreError>((s.active_clips()?, s.last_completed_by_clip()?, queued, needs))
        })
        .await
        .map_err(ApiError::internal)?;
    let (needs, owed) = needs;
    // The engine's own builder: what each slot would air, queued items leading the first.
    let queued: Vec<(i64, i64)> = queued.iter().map(|q| (q.id, q.clip_id)).collect();
    let mut slots = Vec::new();
    for (i, ((slot_index, at), needs)) in upcoming.into_iter().zip(needs).enumerate() {
        let slot = &state.config.slots[slot_index];
        let budget_ms = u64::from(slot.max_minutes) * 60_000;
        let frame = planner::SlotFrame { date: at.with_timezone(&tz).date_naive(), budget_ms, peak: slot.peak };
        let leading = if i == 0 { queued.as_slice() } else { &[] };
        let program = planner::slot_program(&clips, leading, &last_completed, frame, &needs, &owed);
        let items: Vec<Value> = program.iter().map(|p| item(state, &p.clip, p.queue_id.is_some(), p.quota)).collect();
        slots.push(json!({ "slot": slot.name, "peak": slot.peak, "at": local_time(state, at), "items": items }));
    }
    Ok(json!({ "from": local_time(state, now), "days": days, "slots": slots, "truncated": truncated }))
}

fn item(state: &AppState, clip: &crate::model::clip::Clip, queued: bool, quota: Option<usize>) -> Value {
    let quota = quota.map(|i| {
        let q = &state.config.quotas[i];
        json!({ "index": i, "topic": q.topic, "language": q.language, "per": q.per.as_str(), "count": q.count })
    });
    json!({
        "quota": quota,
        "clip_id": clip.id,
        "title": clip.meta.title,
        "topic": clip.meta.topic,
        "language": clip.meta.language,
        "priority": clip.meta.priority,
        "duration_ms": clip.audio.duration_ms,
        "queued": queued,
    })
}

#[utoipa::path(get, path = "/api/v1/airtime", tag = "proof", security(("bearer" = [])),
    params(("after_seq" = Option<i64>, Query, minimum = 0, description = "events after this seq (default 0)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "1 to 10000, default 1000"),
        ("from" = Option<String>, Query, description = "first local date, YYYY-MM-DD"),
        ("to" = Option<String>, Query, description = "last local date, YYYY-MM-DD"),
        ("format" = Option<String>, Query, description = "json (default), jsonl or csv (every member, the proof); csv-vi: the airings and missed slots for people (Vietnamese words and dates, for Excel; no hashes)")),
    responses((status = 200, description = "events exactly as `loa airtime` exports them, checked first; JSON: `{events, head: {seq, hash}, next_after_seq, public_key}`, and `head_statement` (the head signed over `challenge`, when given); every format: header `Loa-Head: SEQ:HASH`"), (status = 400, body = ErrorBody), (status = 500, description = "`log_damaged`: the stored log is damaged at `seq`; nothing is exported", body = ErrorBody)))]
pub async fn airtime(
    State(state): State<AppState>,
    _caller: Caller<Readers>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let after_seq: i64 = param(&query, "after_seq", "a whole number (the last seq you have, or 0)")?.unwrap_or(0);
    if after_seq < 0 {
        return Err(ApiError::bad_request(format!("after_seq: {after_seq} is negative; use 0 for the start")));
    }
    let limit: u32 = param(&query, "limit", &format!("a whole number from 1 to {MAX_LIMIT}"))?.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit: {limit} is outside 1 to {MAX_LIMIT}")));
    }
    let date = |name| {
        param::<String>(&query, name, "a date").and_then(|d| {
            d.map(|d| {
                crate::model::clip::parse_date("date", &d)
                    .map_err(|_| ApiError::bad_request(format!("{name}: \"{d}\" is not a date; write YYYY-MM-DD")))
            })
            .transpose()
        })
    };
    let (from, to) = (date("from")?, date("to")?);
    // `csv-vi` is the people's rendering of the same checked page; the rest are the export's.
    let for_people = query.get("format").is_some_and(|f| f == ReportFormat::CsvVi.as_str());
    let format: Format = match query.get("format") {
        _ if for_people => Format::Csv,
        Some(f) => f.parse().map_err(|e| {
            ApiError::bad_request(format!("format: {e}, or {} (for people)", ReportFormat::CsvVi.as_str()))
        })?,
        None => Format::Json,
    };
    let labels = Labels::of(&state.config);
    let challenge = param::<String>(&query, "challenge", "64 lowercase hex digits")?;
    if let Some(challenge) = challenge.as_deref().filter(|c| !crate::proof::head::is_challenge(c)) {
        return Err(ApiError::bad_request(format!(
            "challenge: \"{challenge}\" is not 64 lowercase hex digits (the office makes a fresh one per pull)"
        )));
    }
    let tz = state.config.station.timezone;
    let (from, to) = export::local_date_bounds(from, to, tz);
    let now = state.clock.now();
    // The head first, then the page up to it: the two agree even while the station appends; the
    // answer to the office's challenge names that same head.
    let (head, events, check, statement) = state
        .store
        .call(move |s| {
            let (seq, hash) = s.head()?;
            let query = EventQuery { after_seq, from, to, limit: Some(limit), through_seq: Some(seq) };
            let events = s.events(query)?;
            let check = chain::PageCheck::of(s, &events)?;
            let statement = challenge.map(|c| s.head_statement((seq, &hash), &c, now));
            Ok::<_, crate::store::StoreError>((Head { seq, hash }, events, check, statement))
        })
        .await
        .map_err(ApiError::internal)?;
    let public_key = state.public_key.clone();
    let head_header = head.to_arg();
    // Checking and encoding are the heavy part: off the store thread, which the airing uses,
    // and side by side; the encoded page is dropped if the check fails.
    let body = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let checked = scope.spawn(|| check.check(&events));
            let mut body = Vec::with_capacity(events.len() * 700);
            let written = if for_people {
                body = render::airtime::csv_vi(&events, &labels, tz);
                Ok(())
            } else {
                export::write(&mut body, format, &events, &head, &public_key, tz, statement.as_deref())
            };
            match checked.join().expect("the check does not panic") {
                Err(damage) => Ok(Err(damage)),
                Ok(()) => written.map(|()| Ok(body)),
            }
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let body = match body {
        Ok(body) => body,
        Err(damage) => return Err(damaged(&state, damage).await),
    };
    let content_type = match format {
        Format::Json => "application/json",
        Format::Jsonl => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (HeaderName::from_static(crate::model::protocol::HEAD_HEADER), head_header.as_str()),
        ],
        body,
    )
        .into_response())
}

/// The answer when the stored log is damaged: nothing is served from it as if whole; the damage
/// is recorded in the log (once), which `/healthz` then reports.
async fn damaged(state: &AppState, damage: crate::proof::events::Damage) -> ApiError {
    let (now, recorded) = (state.clock.now(), damage.clone());
    if let Err(e) = state.store.call(move |s| chain::record(s, &recorded, now)).await {
        return ApiError::internal(e);
    }
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "log_damaged",
        format!("{damage}; nothing is served from it. The station's administrator must restore its latest backup"),
    )
    .with("seq", json!(damage.seq))
}

#[utoipa::path(get, path = "/api/v1/compliance", tag = "proof", security(("bearer" = [])),
    params(("period" = String, Query, description = "2026-W47, 2026-11, 2026-Q4, 2026-H2 or 2026"),
        ("format" = Option<String>, Query, description = "json (default) or csv for tools; csv-vi (Vietnamese words and dates, for Excel) or html (printable) for people")),
    responses((status = 200, description = "per quota and week/month: required, completed, met, reason; airings by status, topic, language, peak"), (status = 400, body = ErrorBody), (status = 500, description = "`log_damaged`: the stored log the report would count is damaged at `seq`", body = ErrorBody)))]
pub async fn compliance(
    State(state): State<AppState>,
    _caller: Caller<Readers>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let period = period_param(&state, &query)?;
    let format: ReportFormat = match query.get("format") {
        Some(f) => f.parse().map_err(|e| ApiError::bad_request(format!("format: {e}")))?,
        None => ReportFormat::Json,
    };
    let report = period_report(&state, period).await?;
    let (body, content_type) = render::station::render(&report, format, &Labels::of(&state.config));
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

/// The `period` query parameter, parsed in station time.
pub(super) fn period_param(state: &AppState, query: &HashMap<String, String>) -> Result<Period, ApiError> {
    let period = query.get("period").ok_or_else(|| ApiError::bad_request("period: missing; e.g. period=2026-Q4"))?;
    crate::time::calendar::parse_period(period, state.config.station.timezone)
        .map_err(|e| ApiError::bad_request(format!("period: {e}")))
}

/// The compliance report for `period`; a damaged log is recorded and answered `log_damaged`.
pub(super) async fn period_report(
    state: &AppState,
    period: Period,
) -> Result<crate::audit::compliance::Report, ApiError> {
    let (config, now) = (Arc::clone(&state.config), state.clock.now());
    match state.store.call(move |s| crate::audit::compliance::from_store(s, &config, &period, now)).await {
        Ok(report) => Ok(report),
        Err(crate::audit::compliance::ReportError::Damaged(damage)) => Err(damaged(state, damage).await),
        Err(e) => Err(ApiError::internal(e)),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "station", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Result<Caller<Readers>, ApiError>,
) -> Result<Response, ApiError> {
    if !state.config.http.metrics_public {
        caller?;
    }
    let counts = state.store.call(|s| s.airing_counts()).await.map_err(ApiError::internal)?;
    let (config, now) = (Arc::clone(&state.config), state.clock.now());
    let standings = state.store.call(move |s| quota::standings(s, &config, now)).await.map_err(ApiError::internal)?;
    let now = state.clock.now().timestamp_millis();
    let c = &state.counters;
    let mut text = String::new();
    text.push_str("# HELP loa_airings_total Airings and missed slots in the proof log, by status.\n# TYPE loa_airings_total counter\n");
    for (status, count) in counts.by_status {
        let _ = writeln!(text, "loa_airings_total{{status=\"{status}\"}} {count}");
    }
    text.push_str("# HELP loa_last_airing_age_seconds Seconds since the last airing ended.\n# TYPE loa_last_airing_age_seconds gauge\n");
    if let Some(last) = counts.last_airing_at {
        let _ = writeln!(text, "loa_last_airing_age_seconds {:.3}", (now - last) as f64 / 1000.0);
    }
    let _ = writeln!(
        text,
        "# HELP loa_clock_synced Whether the system clock is synchronised.\n# TYPE loa_clock_synced gauge\nloa_clock_synced {}",
        u8::from(state.clock.synchronized())
    );
    text.push_str(
        "# HELP loa_quota_at_risk 1 when a quota may not be met this period.\n# TYPE loa_quota_at_risk gauge\n",
    );
    text.push_str(
        "# HELP loa_quota_completed Completed qualifying airings this period.\n# TYPE loa_quota_completed gauge\n",
    );
    for q in &standings {
        let labels = format!(
            "topic=\"{}\",language=\"{}\",period=\"{}\"",
            q.topic,
            q.language.as_deref().unwrap_or(""),
            q.period
        );
        let _ = writeln!(text, "loa_quota_at_risk{{{labels}}} {}", u8::from(q.status == quota::QuotaStatus::AtRisk));
        let _ = writeln!(text, "loa_quota_completed{{{labels}}} {}", q.completed);
    }
    text.push_str("# HELP loa_uploads_total Uploads since start, by result.\n# TYPE loa_uploads_total counter\n");
    for (result, counter) in
        [("accepted", &c.uploads_accepted), ("duplicate", &c.uploads_duplicate), ("refused", &c.uploads_refused)]
    {
        let _ = writeln!(text, "loa_uploads_total{{result=\"{result}\"}} {}", counter.load(Ordering::Relaxed));
    }
    text.push_str("# HELP loa_http_requests_total HTTP requests since start, by status class.\n# TYPE loa_http_requests_total counter\n");
    for (class, counter) in [("2xx", &c.requests_2xx), ("4xx", &c.requests_4xx), ("5xx", &c.requests_5xx)] {
        let _ = writeln!(text, "loa_http_requests_total{{class=\"{class}\"}} {}", counter.load(Ordering::Relaxed));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
