//! The HTTP API: vendor webhooks, health and readiness.

pub mod health;
pub mod problem;
pub mod users;
pub mod webhooks;

use crate::cache::Dedup;
use crate::log::EventLog;
use crate::store::KeyStore;
use auren_core::pseudonym::Pseudonymizer;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

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
    /// Positive key lookups, so a push does not cost a database round trip.
    pub key_cache: RwLock<HashMap<String, (String, Instant)>>,
}

/// How long a key lookup is trusted before the store is asked again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(60);
const KEY_CACHE_MAX: usize = 100_000;

impl Inner {
    pub async fn user_for_key(
        &self,
        key: &str,
    ) -> Result<Option<String>, crate::store::StoreError> {
        let hash = crate::store::key_hash(key);
        if let Some((user, at)) = self
            .key_cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
        {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(Some(user.clone()));
            }
        }
        let user = self.keys.user_for(&hash).await?;
        if let Some(u) = &user {
            let mut cache = self.key_cache.write().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= KEY_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (u.clone(), Instant::now()));
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
}

pub fn router(state: AppState) -> Router {
    // Bodies are read with our own limit so that a 413 is a problem document, not plain text.
    Router::new()
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
        .route("/admin/reload", post(users::reload))
        .route("/admin/users/{user_id}/keys", post(users::issue_key))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
