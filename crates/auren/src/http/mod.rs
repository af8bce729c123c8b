//! The HTTP API: vendor webhooks, users' state, admin, health and readiness.
//!
//! Every answer carries the security headers below, and every error is
//! `application/problem+json` ([`problem`]), including the ones axum itself would make (unknown
//! path, wrong method, unreadable query or path): a last layer turns any other error body into a
//! problem document.

pub mod access;
pub mod admin_webhooks;
pub mod auth_limit;
pub mod connect;
pub mod events;
pub mod health;
pub mod keys;
pub mod openapi;
pub mod problem;
pub mod server;
pub mod users;
pub mod webhooks;

use crate::cache::Dedup;
use crate::log::EventLog;
use crate::store::KeyStore;
use auren_core::pseudonym::Pseudonymizer;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::routing::{delete, get, post};
use axum::Router;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http::set_header::SetResponseHeaderLayer;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub secrets: crate::settings::Secrets,
    pub pseudonyms: Pseudonymizer,
    pub log: Arc<dyn EventLog>,
    pub keys: Arc<dyn KeyStore>,
    pub dedup: Arc<dyn Dedup>,
    pub events_topic: String,
    pub config: Arc<crate::reload::ConfigHandle>,
    pub state_store: Arc<dyn crate::store::StateStore>,
    pub state_cache: Arc<dyn crate::cache::StateCache>,
    pub admission: Semaphore,
    pub admission_wait: Duration,
    pub log_timeout: Duration,
    pub max_body_bytes: usize,
    pub body_read_timeout: Duration,
    pub ingest_limits: auren_core::ingest::IngestLimits,
    pub auth: auth_limit::AuthLimiter,
    /// Positive key lookups, so a push does not cost a database round trip.
    pub key_cache: moka::sync::Cache<String, String>,
    pub deliveries: Arc<dyn crate::store::DeliveryStore>,
    pub webhook_allow_private: bool,
    /// Users' vendor connections (OAuth2), for `/connect/...`.
    pub connections: Arc<crate::connect::Connections>,
    /// Switches and state changes for the live event streams.
    pub live: Arc<crate::live::Hub>,
    pub sse: events::SseSettings,
}

const KEY_CACHE_MAX: u64 = 100_000;

/// The key cache: bounded, least recently used keys leave first, entries expire `ttl` after they
/// were looked up. The TTL is the bound on revocation: an instance that did not revoke a key
/// itself learns of it when its entry expires (`AUREN_KEY_CACHE_TTL_SECONDS`); zero caches
/// nothing.
pub fn key_cache(ttl: Duration) -> moka::sync::Cache<String, String> {
    let capacity = if ttl.is_zero() { 0 } else { KEY_CACHE_MAX };
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .time_to_live(ttl)
        .build()
}

impl Inner {
    pub async fn user_for_key(
        &self,
        key: &str,
    ) -> Result<Option<String>, crate::store::StoreError> {
        let hash = crate::store::key_hash(key);
        if let Some(user) = self.key_cache.get(&hash) {
            return Ok(Some(user));
        }
        let user = self.keys.user_for(&hash).await?;
        if let Some(u) = &user {
            self.key_cache.insert(hash, u.clone());
        }
        Ok(user)
    }
}

/// A header's value, when present and visible ASCII.
pub(crate) fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The token of `Authorization: Bearer <token>`, or of `X-API-Key` (Health Auto Export lets
/// users add custom headers, not always an Authorization one).
pub(crate) fn bearer_token(h: &axum::http::HeaderMap) -> Option<&str> {
    let header = |name| {
        h.get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .or_else(|| header("x-api-key"))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The client's address (the TCP peer), when the request came over a connection.
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Headers on every answer: user data is never cached by a proxy or browser, and no answer is
/// sniffed into another content type, framed or given a referrer.
fn security_headers(router: Router) -> Router {
    let headers = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ];
    headers
        .into_iter()
        .fold(router, |r, (name, value): (HeaderName, _)| {
            r.layer(SetResponseHeaderLayer::if_not_present(
                name,
                HeaderValue::from_static(value),
            ))
        })
}

pub fn router(state: AppState) -> Router {
    // Bodies are read with our own limit so that a 413 is a problem document, not plain text.
    let api = Router::new()
        .route(
            "/webhooks/oura",
            get(webhooks::oura_handshake).post(webhooks::oura),
        )
        .route("/webhooks/whoop", post(webhooks::whoop))
        .route("/webhooks/healthkit", post(webhooks::healthkit))
        .route(
            "/webhooks/health-auto-export",
            post(webhooks::health_auto_export),
        )
        .route("/users/{user_id}/state", get(users::user_state))
        .route("/users/{user_id}/modes", get(users::user_modes))
        .route("/users/{user_id}/events", get(events::user_events))
        .route("/admin/events", get(events::admin_events))
        .route("/admin/reload", post(users::reload))
        .route(
            "/admin/users/{user_id}/keys",
            post(users::issue_key).get(keys::list_keys),
        )
        .route("/admin/keys/{key_id}", delete(keys::revoke_key))
        .route(
            "/admin/webhooks",
            get(admin_webhooks::list).post(admin_webhooks::create),
        )
        .route(
            "/admin/webhooks/{id}",
            axum::routing::delete(admin_webhooks::delete),
        )
        .route(
            "/admin/webhooks/{id}/attempts",
            get(admin_webhooks::attempts),
        )
        .route(
            "/connect/{vendor}",
            get(connect::start).delete(connect::disconnect),
        )
        .route("/connect/{vendor}/callback", get(connect::callback))
        .route("/users/{user_id}/connections", get(connect::list))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/openapi.json", get(openapi::openapi_json))
        .route_layer(axum::middleware::from_fn(access::log_matched))
        .fallback(axum::handler::Handler::layer(
            problem::not_found,
            axum::middleware::from_fn(access::log_unmatched),
        ))
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::map_response(problem::ensure_problem))
        .with_state(state);
    access::request_ids(security_headers(api))
}
