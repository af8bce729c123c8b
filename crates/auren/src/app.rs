//! The long-running commands: `auren serve` (ingest, and the bridge unless disabled) and
//! `auren bridge` (the bridge alone). Both take their backends from the composition root
//! ([`Backends`]), run every piece under one [`Shutdown`], and drain before they exit.

use crate::bridge::Bridge;
use crate::delivery::Deliveries;
use crate::http::{self, AppState, Inner};
use crate::reload::ConfigHandle;
use crate::root::Backends;
use crate::settings::{BridgeSettings, LogSettings, Settings};
use crate::shutdown::Shutdown;
use anyhow::Context;
use auren_core::pseudonym::Pseudonymizer;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long the workers get to finish in-flight work after the shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Service {
    pub state: AppState,
    /// The fetch-after-notify worker, run beside the bridge.
    vendor_workers: Option<(crate::connect::fetch::Fetcher, crate::connect::sync::Syncer)>,
    bridge: Option<(Bridge, Deliveries)>,
    backends: Arc<Backends>,
    http: crate::settings::HttpSettings,
    /// The API listener's certificate, when it serves HTTPS.
    tls: Option<Arc<crate::tls::ReloadingCert>>,
}

/// The bridge over the root's backends, once its stored offsets are known to belong to the log.
async fn bridge(
    backends: &Backends,
    settings: &BridgeSettings,
    topics: &LogSettings,
    config: Arc<ConfigHandle>,
    deliveries: &Deliveries,
) -> anyhow::Result<Bridge> {
    crate::bridge::check_log_position(
        backends.state_store().await?.as_ref(),
        backends.log().await?.as_ref(),
        &settings.group,
        &topics.events_topic,
    )
    .await?;
    Ok(Bridge::new(
        settings.clone(),
        topics.clone(),
        config,
        backends.state_store().await?,
        backends.state_cache().await?,
        backends.log().await?,
    )
    .with_delivery(deliveries.queued_kinds(), deliveries.waker()))
}

/// The delivery loops of a bridge process.
async fn deliveries(
    backends: &Backends,
    settings: &BridgeSettings,
    token_key: Option<&str>,
) -> anyhow::Result<Deliveries> {
    Deliveries::new(
        &settings.delivery,
        token_key,
        backends.stores().await?.deliveries,
    )
}

impl Service {
    /// Opens everything `serve` needs and fails fast on what does not answer (a second process
    /// on the same embedded log is refused here).
    pub async fn build(
        settings: &Settings,
        backends: Arc<Backends>,
        with_bridge: bool,
    ) -> anyhow::Result<Self> {
        let secrets = settings.secrets.resolve(&settings.data.data_dir)?;
        let tls = match settings.http.tls_files()? {
            Some((cert, key)) => Some(
                crate::tls::ReloadingCert::load(cert, key)
                    .context("loading the API listener's TLS certificate")?,
            ),
            None => None,
        };
        let pseudonyms = Pseudonymizer::new(secrets.pseudonym_key.as_bytes())?;
        let config = ConfigHandle::load(settings.bridge.thresholds.biometric_config.clone())?;
        let log = writable_log(&backends).await?;
        let bridge = match with_bridge {
            true => {
                let d =
                    deliveries(&backends, &settings.bridge, secrets.token_key.as_deref()).await?;
                let b = bridge(
                    &backends,
                    &settings.bridge,
                    &settings.log,
                    config.clone(),
                    &d,
                )
                .await?;
                Some((b, d))
            }
            false => None,
        };
        let connections = Arc::new(crate::connect::Connections::new(
            &settings.vendors,
            settings.http.http_addr,
            &secrets,
            backends.stores().await?.connections,
        )?);
        // The vendor workers run in every `serve` (bridge or not) once a vendor is configured:
        // they share the fetch consumer group and the connections' sync leases.
        let vendor_workers = match connections.configured().next() {
            Some(_) => Some((
                crate::connect::fetch::Fetcher {
                    connections: connections.clone(),
                    log: log.clone(),
                    offsets: backends.state_store().await?,
                    pseudonyms: pseudonyms.clone(),
                    topic: settings.log.events_topic.clone(),
                    dlq_topic: settings.log.dlq_topic.clone(),
                    group: settings.vendors.fetch_group.clone(),
                    pending_retry: Duration::from_secs(
                        settings.vendors.pending_score_retry_seconds,
                    ),
                    max_rounds: settings.vendors.fetch_max_rounds as i32,
                },
                crate::connect::sync::Syncer {
                    connections: connections.clone(),
                    log: log.clone(),
                    pseudonyms: pseudonyms.clone(),
                    topic: settings.log.events_topic.clone(),
                },
            )),
            None => None,
        };
        let state = AppState {
            inner: Arc::new(Inner {
                secrets,
                pseudonyms,
                log,
                keys: backends.keys().await?,
                dedup: backends.dedup().await?,
                events_topic: settings.log.events_topic.clone(),
                config,
                state_store: backends.state_store().await?,
                state_cache: backends.state_cache().await?,
                admission: Semaphore::new(settings.ingest.max_concurrent_events as usize),
                admission_wait: settings.ingest.admission_wait(),
                log_timeout: settings.log.log_timeout(),
                max_body_bytes: settings.ingest.max_body_bytes,
                body_read_timeout: settings.http.body_read_timeout(),
                ingest_limits: settings.ingest.limits(),
                auth: http::auth_limit::AuthLimiter::new(settings.http.auth_failures_per_minute),
                key_cache: http::key_cache(settings.ingest.key_cache_ttl()),
                deliveries: backends.stores().await?.deliveries,
                webhook_allow_private: settings.bridge.delivery.webhook_allow_private,
                connections,
                live: crate::live::Hub::new(
                    backends.log().await?,
                    backends.state_store().await?,
                    backends.state_cache().await?,
                    &settings.log.switches_topic,
                ),
                sse: http::events::SseSettings::of(&settings.http),
            }),
        };
        tracing::info!(backends = %backends.describe(), "backends ready");
        Ok(Self {
            state,
            vendor_workers,
            bridge,
            backends,
            http: settings.http.clone(),
            tls,
        })
    }

    /// Serves the API and metrics on the given listeners until `shutdown` fires, then drains.
    pub async fn run(
        self,
        api: TcpListener,
        metrics: TcpListener,
        shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        self.state.inner.config.watch(&shutdown);
        self.state.inner.live.start(&shutdown);
        if let Some((bridge, deliveries)) = self.bridge {
            deliveries.spawn(&shutdown);
            shutdown.spawn("bridge", bridge.run(shutdown.clone()));
        }
        if let Some((fetcher, syncer)) = self.vendor_workers {
            shutdown.spawn("vendor-fetch", fetcher.run(shutdown.clone()));
            shutdown.spawn("vendor-sync", syncer.run(shutdown.clone()));
        }
        shutdown.spawn("metrics", serve_metrics(metrics, shutdown.clone()));
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %api.local_addr()?, scheme, "listening for webhooks");
        let served = http::server::serve(
            api,
            http::router(self.state.clone()),
            &self.http,
            self.tls,
            shutdown.clone(),
        )
        .await;
        if !shutdown.drain(DRAIN_TIMEOUT).await {
            tracing::warn!("some workers did not stop within the drain timeout");
        }
        self.backends.close().await;
        tracing::info!("stopped");
        served.context("serving the API")
    }
}

/// The log, checked to take writes now: a broker that does not answer, or an embedded log that
/// another process writes, is refused at start rather than at the first webhook.
async fn writable_log(backends: &Backends) -> anyhow::Result<Arc<dyn crate::log::EventLog>> {
    let log = backends.log().await?;
    log.check()
        .await
        .with_context(|| format!("the {} event log cannot take writes", log.backend()))?;
    Ok(log)
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// `auren serve`: ingest, plus the bridge unless `no_bridge`.
pub async fn serve(settings: Settings, no_bridge: bool) -> anyhow::Result<()> {
    let backends = Arc::new(Backends::new(settings.backends()));
    let service = Service::build(&settings, backends, !no_bridge).await?;
    let api = bind(settings.http.http_addr).await?;
    let metrics = bind(settings.metrics.metrics_addr).await?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    service.run(api, metrics, shutdown).await
}

/// Serves /metrics on `listener` until shutdown.
pub async fn serve_metrics(listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let handle = crate::telemetry::metrics_handle();
    tracing::info!(addr = %listener.local_addr()?, "serving metrics");
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let h = handle.clone();
            async move { crate::telemetry::render_metrics(&h) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    Ok(())
}

/// `auren bridge`: the bridge alone, for scale-out on Kafka (instances share the consumer group).
pub async fn run_bridge(
    backends: Backends,
    settings: &BridgeSettings,
    token_key: Option<&str>,
    metrics_addr: SocketAddr,
) -> anyhow::Result<()> {
    let config = ConfigHandle::load(settings.thresholds.biometric_config.clone())?;
    writable_log(&backends).await?;
    let topics = backends.settings().log.clone();
    if let Some(k) = token_key {
        crate::crypto::TokenKey::parse(k)?;
    }
    let deliveries = deliveries(&backends, settings, token_key).await?;
    let bridge = bridge(&backends, settings, &topics, config.clone(), &deliveries).await?;
    let metrics = bind(metrics_addr).await?;
    let shutdown = Shutdown::new();
    shutdown.on_signals();
    config.watch(&shutdown);
    shutdown.spawn("metrics", serve_metrics(metrics, shutdown.clone()));
    deliveries.spawn(&shutdown);
    shutdown.spawn("bridge", bridge.run(shutdown.clone()));
    shutdown.wait().await;
    if !shutdown.drain(DRAIN_TIMEOUT).await {
        tracing::warn!("the bridge did not stop within the drain timeout");
    }
    backends.close().await;
    Ok(())
}
