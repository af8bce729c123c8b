//! Webhook handlers. Each follows the same path:
//! credentials present (signature headers, or a known key) -> body within the size limit and
//! its deadline -> admission (a slot among `MAX_CONCURRENT_EVENTS`) -> signature ->
//! parse and normalise (pure core) -> durable append -> 2xx. Any step can refuse with a problem
//! document; nothing is written unless every earlier step passed, and the 2xx is sent only after
//! the log confirmed the write.
//!
//! The slot is taken only once the body is in: a client that sends headers and then dribbles
//! its body holds a connection (bounded by the body deadline and the connection cap), never a
//! slot that a legitimate webhook needs.

use super::problem::{ApiQuery, Problem};
use super::{header, AppState, ClientAddr};
use crate::log::{Appended, LogError, Record};
use auren_core::ingest;
use auren_core::model::{BiometricEvent, Vendor};
use auren_core::vendors::{
    self, health_auto_export, healthkit, oura, whoop, ParsedSamples, PushError, Rejections,
    Unsupported,
};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Instant;

/// Bounded label values for `source`.
fn source_label(v: Vendor) -> &'static str {
    v.as_str()
}

/// Counts the outcome, times the request and keeps the active-task gauge honest on every path.
async fn instrumented<F>(source: Vendor, work: F) -> Response
where
    F: std::future::Future<Output = Result<(StatusCode, &'static str, Value), Problem>>,
{
    let started = Instant::now();
    let gauge = metrics::gauge!("auren_active_webhook_tasks");
    gauge.increment(1.0);
    let span = tracing::info_span!(
        target: crate::telemetry::TRACE_TARGET,
        "webhook",
        otel.kind = "server",
        source = source_label(source),
        outcome = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let result = tracing::Instrument::instrument(work, span.clone()).await;
    gauge.decrement(1.0);
    metrics::histogram!("auren_webhook_process_duration_seconds", "source" => source_label(source))
        .record(started.elapsed().as_secs_f64());
    let (outcome, resp) = match result {
        Ok((status, outcome, body)) => (outcome, (status, Json(body)).into_response()),
        Err(p) => (p.reason, p.into_response()),
    };
    span.record("outcome", outcome);
    span.record("http.response.status_code", resp.status().as_u16());
    metrics::counter!("auren_webhook_events_total", "source" => source_label(source), "outcome" => outcome)
        .increment(1);
    resp
}

/// Waits a short time for a slot among `MAX_CONCURRENT_EVENTS`, then refuses with 503.
async fn admit(state: &AppState) -> Result<tokio::sync::SemaphorePermit<'_>, Problem> {
    match tokio::time::timeout(state.inner.admission_wait, state.inner.admission.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(Problem::unavailable(
            "overloaded",
            "too many webhooks in flight; retry shortly",
            1,
        )),
    }
}

/// The body, within the size limit and the body deadline. A declared `Content-Length` over the
/// limit is refused before a byte of the body is read.
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, Problem> {
    let limit = state.inner.max_body_bytes;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body is larger than the {limit} bytes accepted"),
        )
    };
    let declared = header(headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let deadline = state.inner.body_read_timeout;
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large()),
        Ok(Err(_)) => Err(Problem::bad_request(
            "body_incomplete",
            "the request body ended or broke off before it was complete",
        )),
        Err(_) => Err(Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} ms",
                deadline.as_millis()
            ),
        )),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Refuses a vendor delivery without its signature headers before its body is read.
fn require_headers(headers: &HeaderMap, names: [&'static str; 2]) -> Result<(), Problem> {
    match names.into_iter().find(|n| header(headers, n).is_none()) {
        Some(missing) => Err(signature_problem(
            auren_core::signature::SignatureError::MissingHeader(missing),
        )),
        None => Ok(()),
    }
}

fn signature_problem(e: auren_core::signature::SignatureError) -> Problem {
    Problem::unauthorized(e.reason(), e.to_string())
}

fn malformed(e: vendors::MalformedBody) -> Problem {
    Problem::bad_request("malformed_body", e.0)
}

fn push_problem(e: PushError) -> Problem {
    match e {
        PushError::Malformed(m) => malformed(m),
        e => Problem::new(StatusCode::PAYLOAD_TOO_LARGE, e.reason(), e.to_string()),
    }
}

/// Appends events durably. Returns the per-event outcome in order.
async fn append(state: &AppState, events: &[BiometricEvent]) -> Result<Vec<Appended>, Problem> {
    let records = events
        .iter()
        .map(|e| Record {
            key: e.subject.pseudonym.clone(),
            event_id: e.id.to_string(),
            value: serde_json::to_vec(e).expect("events always serialise"),
        })
        .collect();
    let started = Instant::now();
    let span = tracing::info_span!(
        target: crate::telemetry::TRACE_TARGET,
        "log.append",
        backend = state.inner.log.backend(),
        records = events.len(),
    );
    let result = tracing::Instrument::instrument(
        tokio::time::timeout(
            state.inner.log_timeout,
            state.inner.log.append(&state.inner.events_topic, records),
        ),
        span,
    )
    .await;
    metrics::histogram!("auren_log_append_seconds", "backend" => state.inner.log.backend())
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok(Ok(outcomes)) => Ok(outcomes),
        Ok(Err(LogError::InFlight)) => Err(Problem::unavailable(
            "duplicate_in_flight",
            "the same event is being written by another request; retry shortly",
            1,
        )),
        Ok(Err(e)) => {
            tracing::warn!(backend = state.inner.log.backend(), error = %crate::telemetry::chain(&e), "event log append failed");
            Err(Problem::unavailable(
                "log_unavailable",
                "the event log could not make the event durable; nothing was acknowledged",
                5,
            ))
        }
        Err(_) => {
            tracing::warn!(
                backend = state.inner.log.backend(),
                "event log append timed out"
            );
            Err(Problem::unavailable(
                "log_unavailable",
                "the event log did not confirm in time; nothing was acknowledged",
                5,
            ))
        }
    }
}

/// Answer for a single vendor notification.
fn notification_answer(
    event: &BiometricEvent,
    outcome: Appended,
) -> (StatusCode, &'static str, Value) {
    let status = match outcome {
        Appended::Stored { .. } => "accepted",
        Appended::Duplicate => "duplicate",
    };
    (
        StatusCode::OK,
        status,
        json!({"status": status, "event_id": event.id}),
    )
}

#[derive(Deserialize)]
pub struct HandshakeQuery {
    verification_token: Option<String>,
    challenge: Option<String>,
}

#[utoipa::path(get, path = "/webhooks/oura", tag = "webhooks",
    params(("verification_token" = Option<String>, Query), ("challenge" = Option<String>, Query)),
    responses(
        (status = 200, description = "The challenge echoed", body = crate::http::openapi::ChallengeAnswer),
        (status = 400, description = "challenge missing", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "verification_token does not match", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed attempts from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn oura_handshake(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    ApiQuery(q): ApiQuery<HandshakeQuery>,
) -> Response {
    if let Err(p) = state.inner.auth.check(ip) {
        return p.into_response();
    }
    let expected = &state.inner.secrets.oura_verification_token;
    match oura::handshake(
        expected,
        q.verification_token.as_deref(),
        q.challenge.as_deref(),
    ) {
        oura::Handshake::Echo(c) => Json(json!({"challenge": c})).into_response(),
        oura::Handshake::WrongToken => state
            .inner
            .auth
            .failed(
                ip,
                Problem::unauthorized(
                    "verification_token_mismatch",
                    "verification_token does not match",
                ),
            )
            .into_response(),
        oura::Handshake::MissingChallenge => {
            Problem::bad_request("missing_challenge", "query parameter challenge is required")
                .into_response()
        }
    }
}

#[utoipa::path(post, path = "/webhooks/oura", tag = "webhooks",
    request_body(content = Object, content_type = "application/json", description = "The vendor's delivery, signed"),
    responses(
        (status = 200, description = "Logged durably (or a duplicate)", body = crate::http::openapi::NotificationAnswer),
        (status = 400, description = "Malformed body, or a body that broke off", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Signature missing, wrong or outside the replay window", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within the body deadline", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than the limit", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded, or the log could not make the event durable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn oura(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    instrumented(Vendor::Oura, async {
        require_headers(&headers, [oura::SIGNATURE_HEADER, oura::TIMESTAMP_HEADER])?;
        let body = read_body(&state, &headers, body).await?;
        let _permit = admit(&state).await?;
        let now = Utc::now();
        let verified = oura::verify(
            state.inner.secrets.oura_client_secret.as_bytes(),
            header(&headers, oura::SIGNATURE_HEADER),
            header(&headers, oura::TIMESTAMP_HEADER),
            &body,
            now,
        )
        .map_err(signature_problem)?;
        if verified == oura::Verified::CompactFallback {
            metrics::counter!("auren_oura_signature_fallback_total").increment(1);
        }
        let delivery = oura::parse_delivery(&body).map_err(malformed)?;
        let event = ingest::oura_notification(&delivery, &state.inner.pseudonyms, now);
        let outcome = append(&state, std::slice::from_ref(&event)).await?;
        tracing::debug!(user = %event.subject.pseudonym, data_type = %delivery.data_type, "oura notification logged");
        Ok(notification_answer(&event, outcome[0]))
    })
    .await
}

#[utoipa::path(post, path = "/webhooks/whoop", tag = "webhooks",
    request_body(content = Object, content_type = "application/json", description = "The vendor's delivery, signed"),
    responses(
        (status = 200, description = "Logged durably (or a duplicate)", body = crate::http::openapi::NotificationAnswer),
        (status = 400, description = "Malformed body, or a body that broke off", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Signature missing, wrong or outside the replay window", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within the body deadline", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than the limit", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded, or the log could not make the event durable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn whoop(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    instrumented(Vendor::Whoop, async {
        require_headers(&headers, [whoop::SIGNATURE_HEADER, whoop::TIMESTAMP_HEADER])?;
        let body = read_body(&state, &headers, body).await?;
        let _permit = admit(&state).await?;
        let now = Utc::now();
        let ts = header(&headers, whoop::TIMESTAMP_HEADER);
        whoop::verify(
            state.inner.secrets.whoop_client_secret.as_bytes(),
            header(&headers, whoop::SIGNATURE_HEADER),
            ts,
            &body,
            now,
        )
        .map_err(signature_problem)?;
        let signed_at = ts
            .and_then(|t| t.trim().parse::<i64>().ok())
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or(now);
        let delivery = whoop::parse_delivery(&body).map_err(malformed)?;
        let event = ingest::whoop_notification(&delivery, &state.inner.pseudonyms, signed_at, now);
        let outcome = append(&state, std::slice::from_ref(&event)).await?;
        Ok(notification_answer(&event, outcome[0]))
    })
    .await
}

/// The user bound to the request's key: `Authorization: Bearer <key>` or `X-API-Key`. Unknown
/// keys count against the client's address ([`super::auth_limit`]).
async fn authenticate(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    headers: &HeaderMap,
) -> Result<String, Problem> {
    state.inner.auth.check(ip)?;
    let key = super::bearer_token(headers).ok_or_else(|| {
        Problem::unauthorized(
            "missing_api_key",
            "send the user's key as Authorization: Bearer <key>",
        )
    })?;
    match state.inner.user_for_key(key).await {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(state.inner.auth.failed(
            ip,
            Problem::unauthorized("invalid_api_key", "the API key is not known or was revoked"),
        )),
        Err(e) => Err(e.into()),
    }
}

fn count_samples(source: Vendor, parsed: &ParsedSamples) {
    let s = source_label(source);
    for (&reason, &n) in &parsed.rejected.by_reason {
        metrics::counter!("auren_ingest_samples_rejected_total", "source" => s, "reason" => reason)
            .increment(n as u64);
    }
    if !parsed.unsupported.is_empty() {
        metrics::counter!("auren_ingest_samples_total", "source" => s, "outcome" => "unsupported")
            .increment(parsed.unsupported.total as u64);
    }
}

/// Logs the valid samples of a push and answers with what became of each part of it.
async fn log_samples(
    state: &AppState,
    source: Vendor,
    per_user: Vec<(String, ParsedSamples)>,
) -> Result<(StatusCode, &'static str, Value), Problem> {
    let now = Utc::now();
    let mut events = Vec::new();
    let mut rejected = Rejections::default();
    let mut unsupported = Unsupported::default();
    for (user, parsed) in per_user {
        count_samples(source, &parsed);
        events.extend(
            parsed
                .samples
                .iter()
                .map(|s| ingest::sample_event(source, &user, s, &state.inner.pseudonyms, now)),
        );
        rejected.merge(parsed.rejected);
        unsupported.merge(parsed.unsupported);
    }
    if events.is_empty() && !rejected.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_samples",
            format!("none of the {} samples is valid", rejected.total),
        )
        .with("rejected", json!(rejected.listed))
        .with("rejected_total", json!(rejected.total)));
    }
    let outcomes = if events.is_empty() {
        Vec::new()
    } else {
        append(state, &events).await?
    };
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, Appended::Stored { .. }))
        .count();
    let duplicates = outcomes.len() - accepted;
    let s = source_label(source);
    metrics::counter!("auren_ingest_samples_total", "source" => s, "outcome" => "accepted")
        .increment(accepted as u64);
    metrics::counter!("auren_ingest_samples_total", "source" => s, "outcome" => "duplicate")
        .increment(duplicates as u64);
    let outcome = if !rejected.is_empty() {
        "partially_accepted"
    } else if accepted == 0 && duplicates > 0 {
        "duplicate"
    } else {
        "accepted"
    };
    Ok((
        StatusCode::OK,
        outcome,
        json!({
            "accepted": accepted,
            "duplicates": duplicates,
            "rejected": rejected.listed,
            "rejected_total": rejected.total,
            "unsupported": unsupported.names,
            "unsupported_total": unsupported.total,
            "event_ids": events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        }),
    ))
}

#[utoipa::path(post, path = "/webhooks/healthkit", tag = "webhooks",
    request_body(content = crate::http::openapi::HealthKitPushDoc, content_type = "application/json"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Valid samples logged durably; the others listed", body = crate::http::openapi::PushAnswer),
        (status = 400, description = "Malformed body, or a body that broke off", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Key missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The key belongs to another user", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within the body deadline", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body, samples or points over their limits", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "No sample is valid", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded, store or log unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn healthkit(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    instrumented(Vendor::Healthkit, async {
        let user = authenticate(&state, ip, &headers).await?;
        let body = read_body(&state, &headers, body).await?;
        let _permit = admit(&state).await?;
        let pushes = healthkit::parse(&body, &state.inner.ingest_limits, Utc::now())
            .map_err(push_problem)?;
        if pushes.iter().any(|p| p.user_id != user) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "user_mismatch",
                "this key may only write its own user's data",
            ));
        }
        log_samples(
            &state,
            Vendor::Healthkit,
            pushes.into_iter().map(|p| (p.user_id, p.parsed)).collect(),
        )
        .await
    })
    .await
}

#[utoipa::path(post, path = "/webhooks/health-auto-export", tag = "webhooks",
    request_body(content = Object, content_type = "application/json", description = "A Health Auto Export REST automation body"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Valid samples logged durably; the others listed", body = crate::http::openapi::PushAnswer),
        (status = 400, description = "Malformed body, or a body that broke off", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Key missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The key belongs to another user", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within the body deadline", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Body, samples or points over their limits", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "No sample is valid", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded, store or log unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn health_auto_export(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    instrumented(Vendor::HealthAutoExport, async {
        let user = authenticate(&state, ip, &headers).await?;
        let body = read_body(&state, &headers, body).await?;
        let _permit = admit(&state).await?;
        let parsed = health_auto_export::parse(&body, &state.inner.ingest_limits, Utc::now())
            .map_err(push_problem)?;
        log_samples(&state, Vendor::HealthAutoExport, vec![(user, parsed)]).await
    })
    .await
}
