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

pub use postgres::{PgOptions, PgStore};
pub use sqlite::SqliteStore;

use crate::messages::SwitchMessage;
use crate::settings::{DataSettings, StoreSettings};
use anyhow::Context;
use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("PostgreSQL")]
    Postgres(#[from] sqlx::Error),
    #[error("TLS to PostgreSQL failed (check sslmode, and the CA in sslrootcert or AUREN_POSTGRES_CA_FILE)")]
    PostgresTls(#[source] sqlx::Error),
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
    #[error("a stored time is not RFC 3339")]
    Time(#[from] chrono::ParseError),
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

/// Hex characters of a key's hash that name it in listings and revocations: enough that two
/// keys never share one in practice (64 bits), and useless to an attacker (a hash prefix of a
/// 256-bit random key).
pub const KEY_ID_LEN: usize = 16;

/// The id a key is listed and revoked by: a prefix of its hash, never the key.
pub fn key_id(key_hash: &str) -> String {
    key_hash.chars().take(KEY_ID_LEN).collect()
}

/// Whether `id` has the shape of a key id, checked before any lookup.
pub fn valid_key_id(id: &str) -> bool {
    id.len() == KEY_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A stored key as listed: never the key, nor its whole hash.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub key_id: String,
    #[serde(skip)]
    pub user_id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it was revoked; null while it is valid.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The whole hash, for the caller's own cache; never shown.
    #[serde(skip)]
    pub key_hash: String,
}

/// What a revocation found.
#[derive(Debug, Clone, PartialEq)]
pub enum Revocation {
    /// Revoked now.
    Revoked(KeyInfo),
    /// It had been revoked before; nothing changed.
    AlreadyRevoked(KeyInfo),
    NotFound,
    /// More than one key has this id: none was revoked.
    Ambiguous,
}

#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores the hash of `key` for `user_id`.
    async fn insert(&self, key_hash: &str, user_id: &str) -> Result<(), StoreError>;
    /// The user a key belongs to, if the key is known and not revoked.
    async fn user_for(&self, key_hash: &str) -> Result<Option<String>, StoreError>;
    /// A user's keys, revoked ones included, oldest first.
    async fn list(&self, user_id: &str) -> Result<Vec<KeyInfo>, StoreError>;
    /// Revokes the key whose id ([`key_id`]) is `key_id`. Revoking twice changes nothing.
    async fn revoke(&self, key_id: &str) -> Result<Revocation, StoreError>;
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
    /// Agent sinks every new switch is queued for (besides the webhook endpoints, which are
    /// matched in the store): see [`DeliveryStore`].
    pub sinks: Vec<String>,
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

/// The sink kind of outgoing Standard Webhooks; its targets are endpoint ids.
pub const WEBHOOK_SINK: &str = "webhook";

/// A switch waiting for one sink, the head of its user's queue there.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub id: i64,
    /// The sink's target within its kind (a webhook endpoint id; empty for LangGraph).
    pub target: String,
    pub pseudonym: String,
    /// Failed attempts so far.
    pub attempts: i32,
    /// When the switch was committed (and queued).
    pub queued_at: DateTime<Utc>,
    pub message: SwitchMessage,
}

/// A registered outgoing webhook endpoint. `user_ids` limits it to those users (None: all).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub user_ids: Option<Vec<String>>,
    /// The signing secret, sealed with the token key ([`crate::crypto`]).
    pub secret_sealed: String,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

/// One attempt to deliver a message to a webhook endpoint.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct WebhookAttempt {
    pub message_id: String,
    /// 1 for the first attempt of this message.
    pub attempt: i32,
    pub attempted_at: DateTime<Utc>,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<i32>,
    /// `delivered`, `failed` (retried later) or `gave_up`.
    pub outcome: String,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// The per-sink outboxes of agent deliveries and the webhook endpoints' registry.
///
/// Rows are queued by [`StateStore::commit`] in the same transaction as the switch, so a switch
/// is delivered if and only if it was committed. Each (sink, user) queue is delivered in order,
/// one at a time: only its head can be claimed, under a lease, so several processes can share a
/// sink without two delivering the same user at once (a lease that runs out while a delivery is
/// still in flight can repeat it: delivery is at least once and the receivers deduplicate by id).
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Leases up to `limit` due heads of `kind`'s queues to `owner` until `lease_until`.
    async fn claim(
        &self,
        kind: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError>;
    /// Removes a delivered (or given-up) switch from its queue.
    async fn finish(&self, id: i64) -> Result<(), StoreError>;
    /// Records a failed attempt and when to try again; releases the lease.
    async fn retry_at(
        &self,
        id: i64,
        attempts: i32,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;
    /// How many switches wait for `kind`.
    async fn backlog(&self, kind: &str) -> Result<i64, StoreError>;
    /// Registers an endpoint, limited to the users whose pseudonyms are given when it has
    /// `user_ids`.
    async fn create_endpoint(
        &self,
        e: &WebhookEndpoint,
        pseudonyms: &[String],
    ) -> Result<(), StoreError>;
    async fn endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError>;
    async fn endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError>;
    /// Deletes an endpoint with its queue and attempts; false when there was none.
    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError>;
    /// Stops deliveries to an endpoint: it takes no new switches and its queue is dropped.
    async fn disable_endpoint(&self, id: &str, reason: &str) -> Result<(), StoreError>;
    async fn record_attempt(&self, endpoint_id: &str, a: &WebhookAttempt)
        -> Result<(), StoreError>;
    /// An endpoint's attempts, newest first.
    async fn attempts(
        &self,
        endpoint_id: &str,
        limit: i64,
    ) -> Result<Vec<WebhookAttempt>, StoreError>;
}

/// A user's link to a vendor account, with its OAuth2 tokens sealed by the token key.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorConnection {
    pub vendor: String,
    pub user_id: String,
    pub vendor_user_id: String,
    pub access_sealed: String,
    pub refresh_sealed: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub scope: String,
    /// `connected`, or `revoked` (the vendor refused a refresh: the user must connect again).
    pub status: String,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Backfill and reconciliation progress; a new connection starts at the default.
    pub sync: SyncState,
}

/// Where a connection's backfill and reconciliation stand.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncState {
    /// `pending` (not started), `running` (part fetched; `done_until` says how far), `done`.
    pub backfill_status: String,
    pub backfill_from: Option<DateTime<Utc>>,
    pub backfill_done_until: Option<DateTime<Utc>>,
    /// Readings the backfill appended (duplicates the log refused included).
    pub backfill_events: i64,
    /// Data up to here has been fetched by the backfill or a reconciliation.
    pub synced_until: Option<DateTime<Utc>>,
    /// When the connection is next synced; none: at once.
    pub next_sync_at: Option<DateTime<Utc>>,
}

/// A new connection: nothing fetched, due at once.
impl Default for SyncState {
    fn default() -> Self {
        SyncState {
            backfill_status: "pending".into(),
            backfill_from: None,
            backfill_done_until: None,
            backfill_events: 0,
            synced_until: None,
            next_sync_at: None,
        }
    }
}

/// A notification kept for later (see [`ConnectionStore::park_notification`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedNotification {
    /// The notification's event id in the log.
    pub event_id: String,
    pub vendor: String,
    pub vendor_user_id: String,
    /// The logged event, as JSON (ids only: vendor notifications carry no values).
    pub body: String,
    pub reason: String,
    pub not_before: DateTime<Utc>,
    pub attempts: i32,
}

/// Users' vendor connections (issue 8) and the OAuth2 states already used.
#[async_trait]
pub trait ConnectionStore: Send + Sync + 'static {
    /// Stores a connection, replacing the user's previous one for the vendor and any other
    /// user's link to the same vendor account (one user per vendor account).
    async fn upsert_connection(&self, c: &VendorConnection) -> Result<(), StoreError>;
    async fn connection(
        &self,
        vendor: &str,
        user_id: &str,
    ) -> Result<Option<VendorConnection>, StoreError>;
    async fn connection_for_vendor_user(
        &self,
        vendor: &str,
        vendor_user_id: &str,
    ) -> Result<Option<VendorConnection>, StoreError>;
    async fn connections_of(&self, user_id: &str) -> Result<Vec<VendorConnection>, StoreError>;
    /// Takes the user's refresh lease for `owner` until `until`, unless another owner holds an
    /// unexpired one: across instances, one refresh at a time spends a rotating refresh token.
    async fn claim_refresh(
        &self,
        vendor: &str,
        user_id: &str,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Gives a refresh lease back (after a failed refresh; storing tokens releases it too).
    async fn release_refresh(
        &self,
        vendor: &str,
        user_id: &str,
        owner: &str,
    ) -> Result<(), StoreError>;
    /// Replaces the tokens after a refresh (the old refresh token is spent at the vendor) and
    /// releases the refresh lease.
    async fn store_tokens(
        &self,
        vendor: &str,
        user_id: &str,
        access_sealed: &str,
        refresh_sealed: Option<&str>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Records the connection's health: its status, last error, and last successful sync.
    async fn set_health(
        &self,
        vendor: &str,
        user_id: &str,
        status: &str,
        last_error: Option<&str>,
        synced_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// False when there was none.
    async fn delete_connection(&self, vendor: &str, user_id: &str) -> Result<bool, StoreError>;
    /// Keeps a notification that cannot be fetched yet (unknown account, score pending) until
    /// `not_before`; parking it again updates the reason, time and attempts.
    async fn park_notification(&self, p: &ParkedNotification) -> Result<(), StoreError>;
    /// Parked notifications due now whose vendor account is connected, oldest first.
    async fn due_parked(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ParkedNotification>, StoreError>;
    async fn drop_parked(&self, event_id: &str) -> Result<(), StoreError>;
    /// Marks an OAuth2 state nonce used; false when it already was (a replay).
    async fn consume_oauth_state(
        &self,
        nonce: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Takes one connected connection of `vendors` that is due for a sync (`next_sync_at`
    /// passed or never set) and not leased by another instance, leasing it to `owner` until
    /// `until`.
    async fn claim_sync(
        &self,
        vendors: &[String],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<VendorConnection>, StoreError>;
    /// Stores sync progress if `owner` still holds the lease, renewing it to `until`, or
    /// releasing it when `until` is none. False when the lease was lost.
    async fn save_sync(
        &self,
        vendor: &str,
        user_id: &str,
        owner: &str,
        sync: &SyncState,
        until: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError>;
    /// Takes one request from the vendor's budget for the fixed window of `span_seconds`
    /// starting at `window_start`; false when `limit` are already taken. Shared by every
    /// instance on the store.
    async fn take_rate(
        &self,
        vendor: &str,
        span_seconds: i64,
        window_start: DateTime<Utc>,
        limit: i64,
    ) -> Result<bool, StoreError>;
}

/// The state store, seen through each of its roles.
#[derive(Clone)]
pub struct Stores {
    pub keys: Arc<dyn KeyStore>,
    pub state: Arc<dyn StateStore>,
    pub deliveries: Arc<dyn DeliveryStore>,
    pub connections: Arc<dyn ConnectionStore>,
}

/// Opens (and migrates) the store the settings name: PostgreSQL when a URL is set, else SQLite
/// under the data directory.
pub async fn open(data: &DataSettings, settings: &StoreSettings) -> anyhow::Result<Stores> {
    Ok(match &settings.postgres_url {
        Some(url) => {
            let s = Arc::new(
                PgStore::connect_with(
                    url,
                    &PgOptions {
                        ca_file: settings.postgres_ca_file.clone(),
                        min_connections: settings.pg_pool_min_size,
                        max_connections: settings.pg_pool_max_size,
                    },
                )
                .await
                .context("connecting to PostgreSQL")?,
            );
            Stores {
                keys: s.clone(),
                state: s.clone(),
                deliveries: s.clone(),
                connections: s,
            }
        }
        None => {
            let s = Arc::new(
                SqliteStore::open(&data.data_dir).context("opening the SQLite state store")?,
            );
            Stores {
                keys: s.clone(),
                state: s.clone(),
                deliveries: s.clone(),
                connections: s,
            }
        }
    })
}
