//! The cache: Redis in production, an in-process map by default.
//!
//! At ingest it deduplicates events in front of Kafka (Kafka itself cannot refuse a duplicate),
//! with a two-step claim: an id is first claimed as "in flight" for a short time, and only marked
//! "done" once the broker confirmed it. A failed write releases the claim so the vendor's retry
//! goes through, and a concurrent duplicate is told to retry rather than acknowledged before the
//! first copy is durable.
//! A cache outage degrades deduplication (the bridge still recognises redeliveries by event id);
//! it never refuses a webhook.

pub mod memory;
pub mod redis;

use crate::messages::{SeriesPoint, StateView};
use crate::settings::{CacheSettings, LogSettings};
use anyhow::Context;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This caller owns the id now and must confirm or release it.
    Claimed,
    /// The event was already written.
    Done,
    /// Another request is writing it right now.
    InFlight,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Redis")]
    Redis(#[from] ::redis::RedisError),
}

/// How long an in-flight claim outlives the append it guards, should its owner die before
/// confirming or releasing it: long enough to cover a slow delivery, short enough that the
/// vendor's retry after a crash is not refused for long.
pub const CLAIM_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

#[async_trait]
pub trait Dedup: Send + Sync + 'static {
    async fn claim(&self, ids: &[String]) -> Result<Vec<Claim>, CacheError>;
    async fn confirm(&self, ids: &[String]) -> Result<(), CacheError>;
    async fn release(&self, ids: &[String]) -> Result<(), CacheError>;
    async fn check(&self) -> Result<(), CacheError>;
    fn backend(&self) -> &'static str;
}

/// What the bridge caches for one user after a batch: the latest state view and new readings.
#[derive(Debug, Clone)]
pub struct CachedUser {
    pub pseudonym: String,
    pub state: StateView,
    /// New readings, oldest first.
    pub points: Vec<SeriesPoint>,
}

/// Latest state per user (with a TTL) and a capped time series of readings. A failure here is
/// counted and logged by the caller; it never stops the bridge.
#[async_trait]
pub trait StateCache: Send + Sync + 'static {
    async fn put(&self, users: &[CachedUser]) -> Result<(), CacheError>;
    async fn state(&self, pseudonym: &str) -> Result<Option<StateView>, CacheError>;
    /// The newest `limit` points, oldest first.
    async fn series(&self, pseudonym: &str, limit: usize) -> Result<Vec<SeriesPoint>, CacheError>;
    fn backend(&self) -> &'static str;
}

/// Opens the dedup cache the settings name: Redis when a URL is set, else in-process. An
/// in-flight claim lives as long as the log may take to confirm, plus [`CLAIM_MARGIN`].
pub async fn open_dedup(
    cache: &CacheSettings,
    log: &LogSettings,
) -> anyhow::Result<Arc<dyn Dedup>> {
    let claim_ttl = log.log_timeout() + CLAIM_MARGIN;
    let ttl = Duration::from_secs(cache.dedup_ttl_seconds);
    Ok(match &cache.redis_url {
        Some(url) => Arc::new(
            redis::RedisDedup::connect(
                url,
                cache.redis_ca_file.as_deref(),
                cache.dedup_ttl_seconds,
                claim_ttl,
            )
            .await
            .context("connecting to Redis")?,
        ),
        None => Arc::new(memory::MemoryDedup::new(ttl, claim_ttl, 1_000_000)),
    })
}

/// Opens the state cache the settings name: Redis when a URL is set, else in-process.
pub async fn open_state_cache(cache: &CacheSettings) -> anyhow::Result<Arc<dyn StateCache>> {
    Ok(match &cache.redis_url {
        Some(url) => Arc::new(
            redis::RedisStateCache::connect(
                url,
                cache.redis_ca_file.as_deref(),
                cache.redis_ttl_seconds,
                cache.max_timeseries_entries,
            )
            .await
            .context("connecting to Redis")?,
        ),
        None => Arc::new(memory::MemoryStateCache::new(
            Duration::from_secs(cache.redis_ttl_seconds),
            cache.max_timeseries_entries,
        )),
    })
}
