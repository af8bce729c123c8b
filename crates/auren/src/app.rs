//! Wiring: picks each adapter from the configuration, builds the shared state, and runs the
//! listeners until a shutdown signal, then drains in-flight work.

use crate::cache::{memory::MemoryDedup, redis::RedisDedup, Dedup};
use crate::config::{BackendArgs, ServiceArgs};
use crate::http::{self, AppState, Inner};
use crate::log::{embedded::EmbeddedLog, kafka::KafkaLog, EventLog};
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

pub async fn key_store(b: &BackendArgs) -> anyhow::Result<Arc<dyn KeyStore>> {
    Ok(match &b.postgres_url {
        Some(url) => Arc::new(
            PgStore::connect(url)
                .await
                .context("connecting to PostgreSQL")?,
        ),
        None => Arc::new(SqliteStore::open(&b.data_dir).context("opening the SQLite state store")?),
    })
}

pub async fn dedup(b: &BackendArgs) -> anyhow::Result<Arc<dyn Dedup>> {
    let ttl = Duration::from_secs(b.dedup_ttl_seconds);
    Ok(match &b.redis_url {
        Some(url) => Arc::new(
            RedisDedup::connect(url, b.dedup_ttl_seconds)
                .await
                .context("connecting to Redis")?,
        ),
        None => Arc::new(MemoryDedup::new(ttl, 1_000_000)),
    })
}

pub struct Service {
    pub state: AppState,
    kafka: Option<Arc<KafkaLog>>,
}

impl Service {
    pub async fn build(args: &ServiceArgs) -> anyhow::Result<Self> {
        let b = &args.backends;
        let secrets = args.secrets.resolve(&b.data_dir)?;
        let pseudonyms = Pseudonymizer::new(secrets.pseudonym_key.as_bytes())?;
        let dedup = dedup(b).await?;
        let keys = key_store(b).await?;
        let (log, kafka): (Arc<dyn EventLog>, _) = match &b.kafka_bootstrap_servers {
            Some(servers) => {
                let k = Arc::new(KafkaLog::new(servers, args.log_timeout(), dedup.clone())?);
                (k.clone(), Some(k))
            }
            None => (
                Arc::new(
                    EmbeddedLog::open(&b.data_dir, b.embedded_partitions)
                        .context("opening the embedded log")?,
                ),
                None,
            ),
        };
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
                admission: Semaphore::new(args.max_concurrent_events as usize),
                admission_wait: args.admission_wait(),
                log_timeout: args.log_timeout(),
                max_body_bytes: args.max_body_bytes,
                key_cache: RwLock::new(HashMap::new()),
            }),
        };
        Ok(Self { state, kafka })
    }

    /// Serves the API and metrics on the given listeners until `shutdown` resolves.
    pub async fn run(
        self,
        api: TcpListener,
        metrics: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let handle = crate::telemetry::metrics_handle();
        let metrics_app = axum::Router::new().route(
            "/metrics",
            get(move || {
                let h = handle.clone();
                async move { h.render() }
            }),
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut metrics_stop = stop_rx.clone();
        let metrics_task = tokio::spawn(async move {
            axum::serve(metrics, metrics_app)
                .with_graceful_shutdown(async move {
                    let _ = metrics_stop.changed().await;
                })
                .await
        });
        tracing::info!(addr = %api.local_addr()?, "listening for webhooks");
        axum::serve(api, http::router(self.state.clone()))
            .with_graceful_shutdown(shutdown)
            .await?;
        let _ = stop_tx.send(true);
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
