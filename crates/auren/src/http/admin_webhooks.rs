//! `/admin/webhooks`: registering the endpoints that receive switches as Standard Webhooks
//! ([`crate::delivery::webhooks`]). The signing secret is shown once, at registration, and kept
//! sealed with `AUREN_TOKEN_KEY`; user filters are stored as pseudonyms for the fan-out, and as
//! given for the listing.

use super::openapi::ProblemDoc;
use super::problem::{ApiQuery, Problem};
use super::users::{require_admin, valid_user_id};
use super::{AppState, ClientAddr};
use crate::delivery::webhooks::{check_url, new_secret, UrlError, EVENT_TYPES};
use crate::store::{WebhookAttempt, WebhookEndpoint};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Users one endpoint can be limited to.
const MAX_USER_IDS: usize = 1000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where deliveries are POSTed (http or https).
    pub url: String,
    /// Event types to receive; `mode.switched` is the only one so far.
    pub events: Vec<String>,
    /// Only these users' switches; left out: every user's.
    #[serde(default)]
    pub user_ids: Option<Vec<String>>,
}

/// A registered endpoint, without its secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub user_ids: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    /// Set when the endpoint failed for the whole retry schedule.
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// A new endpoint, with its signing secret (shown this once).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub endpoint: WebhookView,
    /// `whsec_…`: verify deliveries with any Standard Webhooks library.
    pub secret: String,
}

impl From<WebhookEndpoint> for WebhookView {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            id: e.id,
            url: e.url,
            events: e.events,
            user_ids: e.user_ids,
            created_at: e.created_at,
            disabled_at: e.disabled_at,
            disabled_reason: e.disabled_reason,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct AttemptsQuery {
    /// Newest first; 1-1000 (default 100).
    pub limit: Option<i64>,
}

fn invalid(reason: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, reason, detail)
}

#[utoipa::path(post, path = "/admin/webhooks", tag = "admin",
    request_body = NewWebhook,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Registered; the secret is shown this once", body = CreatedWebhook),
        (status = 400, description = "Not JSON of this shape, or an invalid user id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "No AUREN_TOKEN_KEY to seal the secret with", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "URL refused (form, or a private address) or unknown event type", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    require_admin(&state, ip, &headers).await?;
    let req: NewWebhook = serde_json::from_slice(&body).map_err(|e| {
        // serde's message names the field and position, never the value.
        Problem::bad_request(
            "invalid_body",
            format!("expected {{url, events, user_ids?}}: {e}"),
        )
    })?;
    let inner = &state.inner;
    let key = inner.secrets.token_key.as_deref().ok_or_else(|| {
        Problem::new(
            StatusCode::CONFLICT,
            "no_token_key",
            "AUREN_TOKEN_KEY is not set: the signing secret could not be stored encrypted",
        )
    })?;
    let key = crate::crypto::TokenKey::parse(key)
        .map_err(|e| Problem::new(StatusCode::CONFLICT, "no_token_key", e.to_string()))?;
    if req.events.is_empty() {
        return Err(invalid(
            "unknown_event_type",
            "name at least one event type",
        ));
    }
    let mut events: Vec<String> = Vec::new();
    for e in &req.events {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(invalid(
                "unknown_event_type",
                format!("known event types: {}", EVENT_TYPES.join(", ")),
            ));
        }
        if !events.contains(e) {
            events.push(e.clone());
        }
    }
    if req.url.len() > 2048 {
        return Err(invalid(
            "invalid_url",
            "the URL is longer than 2048 characters",
        ));
    }
    let url = check_url(&req.url, inner.webhook_allow_private)
        .await
        .map_err(|e| match e {
            UrlError::Private => invalid("private_address", e.to_string()),
            _ => invalid("invalid_url", e.to_string()),
        })?;
    let mut pseudonyms = Vec::new();
    if let Some(users) = &req.user_ids {
        if users.is_empty() || users.len() > MAX_USER_IDS {
            return Err(Problem::bad_request(
                "invalid_user_id",
                format!("user_ids lists 1 to {MAX_USER_IDS} users (leave it out for all)"),
            ));
        }
        for u in users {
            valid_user_id(u)?;
            pseudonyms.push(inner.pseudonyms.pseudonym(u));
        }
    }
    let secret = new_secret();
    let endpoint = WebhookEndpoint {
        id: format!("wh_{}", uuid::Uuid::now_v7().simple()),
        url: url.to_string(),
        events,
        user_ids: req.user_ids,
        secret_sealed: key.seal(secret.as_bytes()),
        created_at: Utc::now(),
        disabled_at: None,
        disabled_reason: None,
    };
    inner
        .deliveries
        .create_endpoint(&endpoint, &pseudonyms)
        .await?;
    tracing::info!(endpoint = %endpoint.id, "webhook endpoint registered");
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            endpoint: endpoint.into(),
            secret,
        }),
    )
        .into_response())
}

#[utoipa::path(get, path = "/admin/webhooks", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every endpoint, oldest first, without secrets", body = Vec<WebhookView>),
        (status = 401, description = "Token missing", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
) -> Result<Json<Vec<WebhookView>>, Problem> {
    require_admin(&state, ip, &headers).await?;
    let all = state.inner.deliveries.endpoints().await?;
    Ok(Json(all.into_iter().map(WebhookView::from).collect()))
}

fn no_endpoint() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "unknown_webhook",
        "no webhook endpoint has this id",
    )
}

#[utoipa::path(delete, path = "/admin/webhooks/{id}", tag = "admin",
    params(("id" = String, Path, description = "The endpoint's id (`wh_…`)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted, with its pending deliveries and attempts"),
        (status = 401, description = "Token missing", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    require_admin(&state, ip, &headers).await?;
    match state.inner.deliveries.delete_endpoint(&id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(no_endpoint()),
    }
}

#[utoipa::path(get, path = "/admin/webhooks/{id}/attempts", tag = "admin",
    params(("id" = String, Path, description = "The endpoint's id (`wh_…`)"), AttemptsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The endpoint's delivery attempts, newest first", body = Vec<WebhookAttempt>),
        (status = 400, description = "Invalid query", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn attempts(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<AttemptsQuery>,
) -> Result<Json<Vec<WebhookAttempt>>, Problem> {
    require_admin(&state, ip, &headers).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request(
            "invalid_query",
            "limit must be between 1 and 1000",
        ));
    }
    let store = &state.inner.deliveries;
    if store.endpoint(&id).await?.is_none() {
        return Err(no_endpoint());
    }
    Ok(Json(store.attempts(&id, limit).await?))
}
