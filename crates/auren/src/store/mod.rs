//! The state store: PostgreSQL in production, SQLite under the data directory by default.
//! For ingest it holds the per-user API keys.

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use base64::Engine;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
#[error("state store unavailable: {0}")]
pub struct StoreError(pub String);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

/// A freshly issued key: shown once, stored only as its hash.
pub struct IssuedKey(pub String);

/// Prefix that makes a leaked key recognisable to secret scanners.
pub const KEY_PREFIX: &str = "auren_hk_";

pub fn new_key() -> IssuedKey {
    let bytes: [u8; 32] = rand::random();
    IssuedKey(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores the hash of `key` for `user_id`.
    async fn insert(&self, key_hash: &str, user_id: &str) -> Result<(), StoreError>;
    /// The user a key belongs to, if the key is known and not revoked.
    async fn user_for(&self, key_hash: &str) -> Result<Option<String>, StoreError>;
    async fn check(&self) -> Result<(), StoreError>;
    fn backend(&self) -> &'static str;
}

/// Issues a key for `user_id`, returning the plaintext once.
pub async fn issue_key(store: &dyn KeyStore, user_id: &str) -> Result<IssuedKey, StoreError> {
    let key = new_key();
    store.insert(&key_hash(&key.0), user_id).await?;
    Ok(key)
}
