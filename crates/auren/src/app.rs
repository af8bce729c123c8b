//! Wiring: picks each adapter from the configuration, builds the shared state, and runs the
//! listeners until a shutdown signal, then drains in-flight work.

use crate::bridge::source::{EmbeddedSource, KafkaSource, Source};
use crate::bridge::{Bridge, BridgeArgs};
use crate::cache::memory::{MemoryDedup, MemoryStateCache};
use crate::cache::redis::{RedisDedup, RedisStateCache};
use crate::cache::{Dedup, StateCache};
use crate::config::{BackendArgs, ServiceArgs};
use crate::http::{self, AppState, Inner};
use crate::log::{embedded::EmbeddedLog, kafka::KafkaLog, EventLog};
use crate::reload::ConfigHandle;
use crate::store::StateStore;
use crate::store::{postgres::PgStore, sqlite::SqliteStore, KeyStore};
use anyhow::Context;
use auren_core::pseudonym::Pseudonymizer;
use axum::routing::get;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The state store, seen through both of its roles.
#[derive(Clone)]
pub struct Stores {
    pub keys: Arc<dyn KeyStore>,
    pub state: Arc<dyn StateStore>,
}

pub async fn stores(b: &BackendArgs) -> anyhow::Result<Stores> {
    Ok(match &b.postgres_url {
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
            let s =
                Arc::new(SqliteStore::open(&b.data_dir).context("opening the SQLite state store")?);
            Stores {
                keys: s.clone(),
                state: s,
            }
        }
    })
}

pub async fn key_store(b: &BackendArgs) -> anyhow::Result<Arc<dyn KeyStore>> {
    Ok(stores(b).await?.keys)
}

pub async fn state_cache(
    b: &BackendArgs,
    bridge: &BridgeArgs,
) -> anyhow::Result<Arc<dyn StateCache>> {
    Ok(match &b.redis_url {
        Some(url) => Arc::new(
            RedisStateCache::connect(url, bridge.redis_ttl_seconds, bridge.max_timeseries_entries)
                .await
                .context("connecting to Redis")?,
        ),
        None => Arc::new(MemoryStateCache::new(
            Duration::from_secs(bridge.redis_ttl_seconds),
            bridge.max_timeseries_entries,
        )),
    })
}

/// The embedded log's commit signal, when the log is embedded.
pub type Notifier = Option<Arc<tokio::sync::Notify>>;

/// The log as a trait object, the Kafka adapter itself (for flushing at shutdown), and the
/// embedded log's commit signal.
pub type OpenedLog = (Arc<dyn EventLog>, Option<Arc<KafkaLog>>, Notifier);

/// Opens the event log the configuration names.
pub fn event_log(
    b: &BackendArgs,
    log_timeout: Duration,
    dedup: Arc<dyn Dedup>,
) -> anyhow::Result<OpenedLog> {
    Ok(match &b.kafka_bootstrap_servers {
        Some(servers) => {
            let k = Arc::new(KafkaLog::new(servers, log_timeout, dedup)?);
            (k.clone(), Some(k), None)
        }
        None => {
            let e = EmbeddedLog::open(&b.data_dir, b.embedded_partitions)
                .context("opening the embedded log")?;
            let n = e.notifier();
            (Arc::new(e), None, Some(n))
        }
    })
}

/// Builds the bridge's source from its stored offsets (called again after a restart in place).
pub type MakeSource = Box<dyn FnMut(&[(i32, i64)]) -> anyhow::Result<Box<dyn Source>> + Send>;

pub fn bridge_source(b: &BackendArgs, args: &BridgeArgs, notify: Notifier) -> MakeSource {
    let (b, args) = (b.clone(), args.clone());
    Box::new(
        move |offsets: &[(i32, i64)]| -> anyhow::Result<Box<dyn Source>> {
            Ok(match &b.kafka_bootstrap_servers {
                Some(servers) => Box::new(KafkaSource::new(
                    servers,
                    &args.group,
                    &b.events_topic,
                    offsets,
                    args.session_timeout_ms,
                )?),
                None => Box::new(EmbeddedSource::new(
                    b.data_dir.clone(),
                    b.events_topic.clone(),
                    offsets,
                    notify.clone(),
                )),
            })
        },
    )
}

pub async fn dedup(b: &BackendArgs, log_timeout: Duration) -> anyhow::Result<Arc<dyn Dedup>> {
    let claim_ttl = log_timeout + crate::cache::CLAIM_MARGIN;
    let ttl = Duration::from_secs(b.dedup_ttl_seconds);
    Ok(match &b.redis_url {
        Some(url) => Arc::new(
            RedisDedup::connect(url, b.dedup_ttl_seconds, claim_ttl)
                .await
                .context("connecting to Redis")?,
        ),
        None => Arc::new(MemoryDedup::new(ttl, claim_ttl, 1_000_000)),
    })
}

pub struct Service {
    pub state: AppState,
    kafka: Option<Arc<KafkaLog>>,
    bridge: Option<(Bridge, MakeSource)>,
}

impl Service {
    pub async fn build(args: &ServiceArgs) -> anyhow::Result<Self> {
        let b = &args.backends;
        let secrets = args.secrets.resolve(&b.data_dir)?;
        let pseudonyms = Pseudonymizer::new(secrets.pseudonym_key.as_bytes())?;
        let config = ConfigHandle::load(args.biometric_config.clone())?;
        let dedup = dedup(b, args.log_timeout()).await?;
        let stores = stores(b).await?;
        let keys = stores.keys.clone();
        let cache = state_cache(b, &args.bridge).await?;
        let (log, kafka, notify) = event_log(b, args.log_timeout(), dedup.clone())?;
        let bridge = (!args.no_bridge).then(|| {
            let bridge = Bridge::new(
                args.bridge.clone(),
                b.events_topic.clone(),
                config.clone(),
                stores.state.clone(),
                cache.clone(),
                log.clone(),
            );
            (bridge, bridge_source(b, &args.bridge, notify))
        });
        tracing::info!(
            log = log.backend(),
            store = keys.backend(),
            cache = dedup.backend(),
            "backends ready"
        );
        let state = AppState {
            inner: Arc::new(Inner {
                secrets,
                pseudonyms,
                log,
                keys,
                dedup,
                events_topic: b.events_topic.clone(),
                config,
                state_store: stores.state,
                state_cache: cache,
                admission: Semaphore::new(args.max_concurrent_events as usize),
                admission_wait: args.admission_wait(),
                log_timeout: args.log_timeout(),
                max_body_bytes: args.max_body_bytes,
                key_cache: RwLock::new(HashMap::new()),
            }),
        };
        Ok(Self {
            state,
            kafka,
            bridge,
        })
    }

    /// Serves the API and metrics on the given listeners until `shutdown` resolves.
    pub async fn run(
        mut self,
        api: TcpListener,
        metrics: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        self.state.inner.config.watch();
        let bridge_task = self.bridge.take().map(|(bridge, make)| {
            let stop = stop_rx.clone();
            tokio::spawn(async move { bridge.run(make, stop).await })
        });
        let metrics_task = tokio::spawn(serve_metrics(metrics, stop_rx.clone()));
        tracing::info!(addr = %api.local_addr()?, "listening for webhooks");
        axum::serve(api, http::router(self.state.clone()))
            .with_graceful_shutdown(shutdown)
            .await?;
        let _ = stop_tx.send(true);
        if let Some(t) = bridge_task {
            match t.await {
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "bridge stopped with an error")
                }
                Err(e) => tracing::error!(error = %e, "bridge task failed"),
                Ok(Ok(())) => {}
            }
        }
        let _ = metrics_task.await;
        if let Some(k) = &self.kafka {
            k.flush(Duration::from_secs(10));
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}

pub async fn serve(args: ServiceArgs) -> anyhow::Result<()> {
    let service = Service::build(&args).await?;
    let api = TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("binding {}", args.http_addr))?;
    let metrics = TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    service.run(api, metrics, shutdown_signal()).await
}

/// Serves /metrics on `listener` until `stop` fires.
pub async fn serve_metrics(
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let handle = crate::telemetry::metrics_handle();
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let h = handle.clone();
            async move { h.render() }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
        .await?;
    Ok(())
}

/// `auren bridge`: the bridge alone, for scale-out on Kafka (instances share the consumer group).
pub async fn run_bridge(args: crate::cli::BridgeCommand) -> anyhow::Result<()> {
    let b = &args.backends;
    let config = ConfigHandle::load(args.biometric_config.clone())?;
    config.watch();
    let log_timeout = Duration::from_millis(args.log_timeout_ms);
    let dedup = dedup(b, log_timeout).await?;
    let stores = stores(b).await?;
    let cache = state_cache(b, &args.bridge).await?;
    let (log, kafka, notify) = event_log(b, log_timeout, dedup)?;
    let bridge = Bridge::new(
        args.bridge.clone(),
        b.events_topic.clone(),
        config,
        stores.state,
        cache,
        log,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    let metrics_task = tokio::spawn(serve_metrics(metrics, stop_rx.clone()));
    let run = tokio::spawn(bridge.run(bridge_source(b, &args.bridge, notify), stop_rx));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    run.await??;
    let _ = metrics_task.await;
    if let Some(k) = kafka {
        k.flush(Duration::from_secs(10));
    }
    Ok(())
}
