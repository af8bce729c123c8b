//! Per-user state and mode history, and the admin endpoints.
//!
//! A user's data is readable with the admin token or with that user's own API key. Paths carry
//! the raw user id (the caller knows it); everything inside is looked up by its pseudonym.

use super::problem::{ApiQuery, Problem};
use super::{bearer_token, AppState, ClientAddr};
use crate::messages::{SeriesPoint, StateView};
use auren_core::signature::constant_time_eq;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::IpAddr;

fn is_admin(state: &AppState, token: &str) -> bool {
    state
        .inner
        .secrets
        .admin_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()))
}

/// A user id from a path, checked before anything is looked up.
pub(crate) fn valid_user_id(id: &str) -> Result<(), Problem> {
    auren_core::model::validate_user_id(id)
        .map_err(|e| Problem::bad_request("invalid_user_id", e.to_string()))
}

pub(crate) async fn require_admin(
    state: &AppState,
    ip: Option<IpAddr>,
    h: &HeaderMap,
) -> Result<(), Problem> {
    state.inner.auth.check(ip)?;
    match bearer_token(h) {
        Some(t) if is_admin(state, t) => Ok(()),
        Some(_) => Err(state.inner.auth.failed(
            ip,
            Problem::new(
                StatusCode::FORBIDDEN,
                "not_admin",
                "this endpoint needs the admin token",
            ),
        )),
        None => Err(Problem::unauthorized(
            "missing_token",
            "send the admin token as Authorization: Bearer <token>",
        )),
    }
}

/// The admin token, or the key of `user_id` itself.
pub(crate) async fn require_user_or_admin(
    state: &AppState,
    ip: Option<IpAddr>,
    h: &HeaderMap,
    user_id: &str,
) -> Result<(), Problem> {
    valid_user_id(user_id)?;
    state.inner.auth.check(ip)?;
    let token = bearer_token(h).ok_or_else(|| {
        Problem::unauthorized(
            "missing_token",
            "send the admin token or the user's key as Authorization: Bearer <token>",
        )
    })?;
    if is_admin(state, token) {
        return Ok(());
    }
    match state.inner.user_for_key(token).await {
        Ok(Some(u)) if u == user_id => Ok(()),
        Ok(Some(_)) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "user_mismatch",
            "this key may only read its own user's data",
        )),
        Ok(None) => Err(state.inner.auth.failed(
            ip,
            Problem::unauthorized(
                "invalid_api_key",
                "the token is neither the admin token nor a known key",
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/users/{user_id}/state", tag = "users",
    params(("user_id" = String, Path, description = "The user's own id (1-256 printable characters, no / or \\, not . or ..)")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The user's state", body = StateResponse),
        (status = 400, description = "Invalid user id or query", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A key of another user", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No state for this user yet", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn user_state(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Response, Problem> {
    require_user_or_admin(&state, ip, &headers, &user_id).await?;
    let pseudonym = state.inner.pseudonyms.pseudonym(&user_id);
    let cached = match state.inner.state_cache.state(&pseudonym).await {
        Ok(v) => v,
        Err(e) => {
            metrics::counter!("auren_cache_errors_total", "op" => "state_get").increment(1);
            tracing::warn!(error = %e, "cache read failed; reading the store");
            None
        }
    };
    let (view, source) = match cached {
        Some(v) => (v, "cache"),
        None => {
            let stored = state
                .inner
                .state_store
                .load_user(&pseudonym)
                .await?
                .ok_or_else(unknown_user)?;
            let s: auren_core::engine::UserState =
                serde_json::from_value(stored.state).map_err(|_| {
                    Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "state_unreadable",
                        "the stored state could not be read",
                    )
                })?;
            let cfg = state.inner.config.current();
            (
                StateView::of(&cfg, &pseudonym, &stored.thread_id, &s),
                "checkpoint",
            )
        }
    };
    let recent_readings = state
        .inner
        .state_cache
        .series(&pseudonym, 20)
        .await
        .unwrap_or_default();
    Ok(Json(StateResponse {
        view,
        user_id,
        source,
        recent_readings,
    })
    .into_response())
}

fn unknown_user() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "unknown_user",
        "no state for this user yet",
    )
}

/// Whether the bridge has state for the user: cached, or checkpointed.
async fn known_user(state: &AppState, pseudonym: &str) -> Result<bool, Problem> {
    if let Ok(Some(_)) = state.inner.state_cache.state(pseudonym).await {
        return Ok(true);
    }
    Ok(state
        .inner
        .state_store
        .load_user(pseudonym)
        .await?
        .is_some())
}

/// `GET /users/{id}/state`: the state view, whose it is, where it was read from, and the
/// newest cached readings.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct StateResponse {
    #[serde(flatten)]
    view: StateView,
    user_id: String,
    /// `cache` or `checkpoint`.
    source: &'static str,
    recent_readings: Vec<SeriesPoint>,
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<i64>,
}

/// Entries a history answer holds at most.
const MAX_HISTORY: i64 = 1000;

#[utoipa::path(get, path = "/users/{user_id}/modes", tag = "users",
    params(
        ("user_id" = String, Path, description = "The user's own id (1-256 printable characters, no / or \\, not . or ..)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Entries at most (default 100)"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The newest switches first", body = crate::http::openapi::HistoryAnswer),
        (status = 400, description = "Invalid user id or query", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A key of another user", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No state for this user yet (as for its state)", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn user_modes(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Response, Problem> {
    require_user_or_admin(&state, ip, &headers, &user_id).await?;
    let pseudonym = state.inner.pseudonyms.pseudonym(&user_id);
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_HISTORY).contains(&limit) {
        return Err(Problem::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {MAX_HISTORY}"),
        ));
    }
    let modes = state.inner.state_store.history(&pseudonym, limit).await?;
    // No switch yet: a user the bridge knows has an empty history, one it never saw is 404,
    // as for the state.
    if modes.is_empty() && !known_user(&state, &pseudonym).await? {
        return Err(unknown_user());
    }
    Ok(Json(json!({"user_id": user_id, "modes": modes})).into_response())
}

#[utoipa::path(post, path = "/admin/reload", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The thresholds file re-read and applied", body = crate::http::openapi::ReloadAnswer),
        (status = 401, description = "Token missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "No thresholds file is configured: nothing to reload", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The file is invalid; the config in force stays", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn reload(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    require_admin(&state, ip, &headers).await?;
    if !state.inner.config.has_file() {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no_config_file",
            "no BIOMETRIC_CONFIG file is configured: the built-in thresholds are in force and there is nothing to reload",
        ));
    }
    match state.inner.config.reload("api") {
        Ok(cfg) => Ok(Json(json!({"status": "applied", "config": *cfg})).into_response()),
        Err(e) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            format!("rejected; the config in force stays: {e}"),
        )),
    }
}

#[utoipa::path(post, path = "/admin/users/{user_id}/keys", tag = "admin",
    params(("user_id" = String, Path, description = "The user's own id (1-256 printable characters, no / or \\, not . or ..)")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "A new key for the user, shown once", body = crate::http::openapi::KeyAnswer),
        (status = 400, description = "Invalid user id", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn issue_key(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Response, Problem> {
    valid_user_id(&user_id)?;
    require_admin(&state, ip, &headers).await?;
    let key = crate::store::issue_key(state.inner.keys.as_ref(), &user_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user_id": user_id, "key": key.0})),
    )
        .into_response())
}
