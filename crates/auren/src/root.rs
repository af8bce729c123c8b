//! The composition root: the one place that turns settings into open backends.
//!
//! [`Backends`] opens each port at most once, on first use, and hands out shared handles: the
//! event log, the state and key stores, the dedup cache and the state cache. Every command takes
//! one `Backends` and asks only for what it uses (`keys create` never connects to Kafka), and the
//! tests build theirs the same way. Which adapter stands behind each port is decided inside
//! `log/`, `store/` and `cache/`, never here or by a caller.

use crate::cache::{self, Dedup, StateCache};
use crate::log::{self, EventLog};
use crate::settings::BackendSettings;
use crate::store::{self, KeyStore, StateStore, Stores};
use std::sync::Arc;
use tokio::sync::OnceCell;

pub struct Backends {
    settings: BackendSettings,
    dedup: OnceCell<Arc<dyn Dedup>>,
    log: OnceCell<Arc<dyn EventLog>>,
    stores: OnceCell<Stores>,
    cache: OnceCell<Arc<dyn StateCache>>,
}

impl Backends {
    pub fn new(settings: BackendSettings) -> Self {
        Self {
            settings,
            dedup: OnceCell::new(),
            log: OnceCell::new(),
            stores: OnceCell::new(),
            cache: OnceCell::new(),
        }
    }

    pub fn settings(&self) -> &BackendSettings {
        &self.settings
    }

    pub async fn dedup(&self) -> anyhow::Result<Arc<dyn Dedup>> {
        let s = &self.settings;
        self.dedup
            .get_or_try_init(|| cache::open_dedup(&s.cache, &s.log))
            .await
            .cloned()
    }

    pub async fn log(&self) -> anyhow::Result<Arc<dyn EventLog>> {
        let s = &self.settings;
        self.log
            .get_or_try_init(|| async { log::open(&s.data, &s.log, self.dedup().await?) })
            .await
            .cloned()
    }

    pub async fn stores(&self) -> anyhow::Result<Stores> {
        let s = &self.settings;
        self.stores
            .get_or_try_init(|| store::open(&s.data, &s.store))
            .await
            .cloned()
    }

    pub async fn keys(&self) -> anyhow::Result<Arc<dyn KeyStore>> {
        Ok(self.stores().await?.keys)
    }

    pub async fn state_store(&self) -> anyhow::Result<Arc<dyn StateStore>> {
        Ok(self.stores().await?.state)
    }

    pub async fn state_cache(&self) -> anyhow::Result<Arc<dyn StateCache>> {
        self.cache
            .get_or_try_init(|| cache::open_state_cache(&self.settings.cache))
            .await
            .cloned()
    }

    /// Names the backend behind each port opened so far, for the start-up log line.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = self.log.get() {
            parts.push(format!("log={}", l.backend()));
        }
        if let Some(s) = self.stores.get() {
            parts.push(format!("store={}", s.keys.backend()));
        }
        if let Some(d) = self.dedup.get() {
            parts.push(format!("cache={}", d.backend()));
        }
        parts.join(" ")
    }

    /// Makes everything appended durable and stops writing (the log is the one port that
    /// buffers); called once the workers have drained.
    pub async fn close(&self) {
        if let Some(l) = self.log.get() {
            l.close().await;
        }
    }
}
