//! The state store: PostgreSQL in production, SQLite under the data directory by default.
//!
//! Two ports over the same database: [`KeyStore`] (per-user API keys, for ingest) and
//! [`StateStore`] (the bridge's threads, checkpoints, mode history and outbox, and consumed
//! offsets). Each dialect has its schema in `crates/auren/migrations/{postgres,sqlite}`, side by
//! side, and the statements they share in [`sql`]. [`open`] is the one place that picks the
//! backend.

mod postgres;
mod sql;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::messages::SwitchMessage;
use crate::settings::{DataSettings, StoreSettings};
use anyhow::Context;
use async_trait::async_trait;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL")]
    Postgres(#[from] sqlx::Error),
    #[error("PostgreSQL migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("SQLite")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state store file")]
    Io(#[from] std::io::Error),
    #[error("the state store's worker task failed")]
    Task(#[from] tokio::task::JoinError),
    #[error("a stored message is not valid JSON")]
    Json(#[from] serde_json::Error),
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

/// A switch in the outbox: the message and the partition key it is published under.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxSwitch {
    /// The user's pseudonym.
    pub key: String,
    pub message: SwitchMessage,
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
    /// New switches; a switch id already in the history is kept once.
    pub switches: Vec<SwitchMessage>,
}

/// The bridge's durable state: threads, checkpoints, mode history (and its outbox), offsets.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    async fn load_offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, StoreError>;
    /// The identity of the event log whose offsets this store keeps for `topic`.
    async fn log_identity(&self, topic: &str) -> Result<Option<String>, StoreError>;
    /// Records `identity` as the log of `topic`, first forgetting every group's offsets in it
    /// when `forget_offsets` (they belonged to another log). One transaction.
    async fn adopt_log(
        &self,
        topic: &str,
        identity: &str,
        forget_offsets: bool,
    ) -> Result<(), StoreError>;
    async fn load_user(&self, pseudonym: &str) -> Result<Option<StoredUser>, StoreError>;
    /// Writes checkpoints, switches (once each, by switch id) and offsets atomically.
    async fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError>;
    /// Switches committed but not yet published, oldest first.
    async fn unpublished(&self, limit: i64) -> Result<Vec<OutboxSwitch>, StoreError>;
    async fn mark_published(&self, switch_ids: &[String]) -> Result<(), StoreError>;
    /// A user's switches, newest first.
    async fn history(&self, pseudonym: &str, limit: i64) -> Result<Vec<SwitchMessage>, StoreError>;
    /// Up to `limit` switches recorded after `after_switch_id`, oldest first (history order,
    /// `mode_history.seq`): one user's (by pseudonym) or everyone's. `None` when that switch is
    /// not in the history (of that user), so a caller can tell "nothing new" from "unknown".
    async fn switches_after(
        &self,
        pseudonym: Option<&str>,
        after_switch_id: &str,
        limit: i64,
    ) -> Result<Option<Vec<SwitchMessage>>, StoreError>;
    async fn check(&self) -> Result<(), StoreError>;
    fn backend(&self) -> &'static str;
}

/// The state store, seen through both of its roles.
#[derive(Clone)]
pub struct Stores {
    pub keys: Arc<dyn KeyStore>,
    pub state: Arc<dyn StateStore>,
}

/// Opens (and migrates) the store the settings name: PostgreSQL when a URL is set, else SQLite
/// under the data directory.
pub async fn open(data: &DataSettings, settings: &StoreSettings) -> anyhow::Result<Stores> {
    Ok(match &settings.postgres_url {
        Some(url) => {
            let s = Arc::new(
                PgStore::connect(url)
                    .await
                    .context("connecting to PostgreSQL")?,
            );
            Stores {
                keys: s.clone(),
                state: s,
            }
        }
        None => {
            let s = Arc::new(
                SqliteStore::open(&data.data_dir).context("opening the SQLite state store")?,
            );
            Stores {
                keys: s.clone(),
                state: s,
            }
        }
    })
}
