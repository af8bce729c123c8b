//! Listing and revoking users' push keys (admin token).
//!
//! A key is named by its id, a prefix of its hash ([`crate::store::key_id`]), so a listing never
//! shows anything that authenticates. Revocation is in the store, shared by every instance; the
//! instance that revokes forgets the key at once, the others when their cached lookup expires
//! (`AUREN_KEY_CACHE_TTL_SECONDS`, see [`super::key_cache`]).

use super::problem::Problem;
use super::users::{require_admin, valid_user_id};
use super::{AppState, ClientAddr};
use crate::store::{KeyInfo, Revocation};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Serialize;

/// `GET /admin/users/{id}/keys`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    user_id: String,
    /// Oldest first, revoked ones included.
    keys: Vec<KeyInfo>,
}

/// `DELETE /admin/keys/{key_id}`: the key as it now stands.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RevokedKey {
    #[serde(flatten)]
    key: KeyInfo,
    user_id: String,
    /// False when it had been revoked before this request.
    revoked_now: bool,
}

#[utoipa::path(get, path = "/admin/users/{user_id}/keys", tag = "admin",
    params(("user_id" = String, Path, description = "The user's own id (1-256 printable characters, no / or \\, not . or ..)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's keys (ids, never the keys), oldest first", body = KeyList),
        (status = 400, description = "Invalid user id", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn list_keys(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(user_id): Path<String>,
) -> Result<Json<KeyList>, Problem> {
    valid_user_id(&user_id)?;
    require_admin(&state, ip, &headers).await?;
    let keys = state.inner.keys.list(&user_id).await?;
    Ok(Json(KeyList { user_id, keys }))
}

#[utoipa::path(delete, path = "/admin/keys/{key_id}", tag = "admin",
    params(("key_id" = String, Path, pattern = "^[0-9a-f]{16}$", description = "The key's id as listed: the first 16 hex characters of its SHA-256")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked (now, or before: revoking is idempotent). This instance refuses the key at once, the others within AUREN_KEY_CACHE_TTL_SECONDS", body = RevokedKey),
        (status = 400, description = "Not a key id", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No key has this id", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "More than one key has this id; none was revoked", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "Store unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn revoke_key(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    Path(key_id): Path<String>,
) -> Result<Json<RevokedKey>, Problem> {
    if !crate::store::valid_key_id(&key_id) {
        return Err(Problem::bad_request(
            "invalid_key_id",
            format!(
                "a key id is {} lower-case hex characters, as `auren keys list` and GET /admin/users/{{id}}/keys show it",
                crate::store::KEY_ID_LEN
            ),
        ));
    }
    require_admin(&state, ip, &headers).await?;
    let (key, revoked_now) = match state.inner.keys.revoke(&key_id).await? {
        Revocation::Revoked(k) => (k, true),
        Revocation::AlreadyRevoked(k) => (k, false),
        Revocation::NotFound => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "unknown_key",
                "no key has this id",
            ))
        }
        Revocation::Ambiguous => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "ambiguous_key_id",
                "more than one key has this id; none was revoked",
            ))
        }
    };
    state.inner.key_cache.invalidate(&key.key_hash);
    if revoked_now {
        tracing::info!(key_id = %key.key_id, "key revoked");
    }
    Ok(Json(RevokedKey {
        user_id: key.user_id.clone(),
        key,
        revoked_now,
    }))
}
