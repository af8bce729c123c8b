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

/// A user's durable bridge state, as last checkpointed.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub thread_id: String,
    pub user_id: String,
    pub checkpoint_id: String,
    pub version: i64,
    pub state: serde_json::Value,
    /// Position of the last event this state includes: events at or before it are not re-applied.
    pub last_position: Option<(i32, i64)>,
}

#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub checkpoint_id: String,
    pub parent_id: Option<String>,
    pub thread_id: String,
    pub pseudonym: String,
    pub user_id: String,
    pub mode: String,
    pub version: i64,
    pub state: serde_json::Value,
    pub last_position: Option<(i32, i64)>,
}

#[derive(Debug, Clone)]
pub struct SwitchRow {
    pub switch_id: String,
    pub thread_id: String,
    pub from_mode: String,
    pub to_mode: String,
    pub confidence: f64,
    pub switched_at: chrono::DateTime<chrono::Utc>,
    /// The message published for the agent.
    pub message: serde_json::Value,
}

/// Everything one bridge batch makes durable, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    /// Checkpoints kept per thread; older ones of the threads written here are deleted.
    pub keep_checkpoints: i64,
    pub group: String,
    pub topic: String,
    pub offsets: Vec<(i32, i64)>,
    pub checkpoints: Vec<CheckpointRow>,
    pub switches: Vec<SwitchRow>,
}

/// The bridge's durable state: threads, checkpoints, mode history (and its outbox), offsets.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    async fn load_offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, StoreError>;
    async fn load_user(&self, pseudonym: &str) -> Result<Option<StoredUser>, StoreError>;
    /// Writes checkpoints, switches (once each, by switch id) and offsets atomically.
    async fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError>;
    /// Switches committed but not yet published, oldest first.
    async fn unpublished(&self, limit: i64)
        -> Result<Vec<(String, serde_json::Value)>, StoreError>;
    async fn mark_published(&self, switch_ids: &[String]) -> Result<(), StoreError>;
    /// A user's switches, newest first.
    async fn history(
        &self,
        pseudonym: &str,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError>;
    async fn check(&self) -> Result<(), StoreError>;
    fn backend(&self) -> &'static str;
}

/// The stable thread id of a user: derived from the keyed pseudonym, so it survives restarts
/// and never exposes the raw id.
pub fn thread_id(pseudonym: &str) -> String {
    format!("thr_{}", pseudonym.trim_start_matches("u_"))
}
