//! Metrics, logs and traces. The Prometheus recorder is process-global, installed once; its text
//! is served on its own listener (`AUREN_METRICS_ADDR`) so scraping never competes with webhooks.
//! Log lines carry pseudonyms, counts and reasons only: never a raw user id, key or body.
//!
//! Traces go to an OTLP/HTTP collector when an endpoint is configured, and nowhere otherwise.
//! Their spans use their own target, [`TRACE_TARGET`], which the log lines never show: with no
//! exporter no layer wants them, so `tracing` disables their call sites once and a span costs a
//! cached check. Span fields are bounded like metric labels (a vendor, an outcome, a count, a
//! backend): never a user id, pseudonym, key or body.

use crate::settings::{TelemetrySettings, TracesSettings};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("the metrics recorder is installed once");
            describe();
            metrics::gauge!(
                "auren_build_info",
                "version" => env!("CARGO_PKG_VERSION"),
                "revision" => env!("AUREN_GIT_REVISION"),
            )
            .set(1.0);
            process_collector().describe();
            handle
        })
        .clone()
}

/// The process's CPU, memory, file descriptors and threads, read at each scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// The text of `/metrics`: the process metrics are read now, so they are as fresh as the scrape.
pub fn render_metrics(handle: &PrometheusHandle) -> String {
    process_collector().collect();
    handle.render()
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric the service records, with its help text: one table, so a metric without HELP
/// is caught by a test rather than by an operator reading a bare `# TYPE` line.
const METRICS: &[(&str, Kind, &str)] = &[
    (
        "auren_build_info",
        Kind::Gauge,
        "Always 1; the labels name the running version and its git revision.",
    ),
    (
        "auren_webhook_events_total",
        Kind::Counter,
        "Webhook requests by source and outcome (accepted, duplicate, or the problem reason).",
    ),
    (
        "auren_webhook_process_duration_seconds",
        Kind::Histogram,
        "Time from request to answer, including the durable append.",
    ),
    (
        "auren_active_webhook_tasks",
        Kind::Gauge,
        "Webhook requests being processed now.",
    ),
    (
        "auren_ingest_samples_total",
        Kind::Counter,
        "HealthKit and Health Auto Export samples by outcome.",
    ),
    (
        "auren_ingest_samples_rejected_total",
        Kind::Counter,
        "Samples refused, by reason (unit, range, timestamp ...).",
    ),
    (
        "auren_log_append_seconds",
        Kind::Histogram,
        "Latency of a durable append to the event log, by backend.",
    ),
    (
        "auren_log_replaced_total",
        Kind::Counter,
        "Times the embedded log file was found deleted or replaced while running.",
    ),
    (
        "auren_oura_signature_fallback_total",
        Kind::Counter,
        "Oura deliveries that verified only over a compact re-serialisation of the body.",
    ),
    (
        "auren_cache_errors_total",
        Kind::Counter,
        "Cache operations that failed, by operation (degraded, not fatal).",
    ),
    (
        "auren_http_connections",
        Kind::Gauge,
        "Open connections to the API listener.",
    ),
    (
        "auren_http_connections_closed_total",
        Kind::Counter,
        "Connections the listener closed itself, by reason (timeouts, errors, failed TLS handshakes).",
    ),
    (
        "auren_vendor_connections_total",
        Kind::Counter,
        "Vendor accounts connected and disconnected (OAuth2), by vendor and outcome.",
    ),
    (
        "auren_vendor_token_refreshes_total",
        Kind::Counter,
        "Vendor token refreshes, by vendor and outcome (refreshed, or revoked when refused).",
    ),
    (
        "auren_vendor_notifications_total",
        Kind::Counter,
        "Vendor notifications the fetch worker handled, by vendor and outcome (fetched, parked, ...).",
    ),
    (
        "auren_vendor_fetched_events_total",
        Kind::Counter,
        "Readings fetched from vendors and appended to the log, by vendor.",
    ),
    (
        "auren_vendor_backfilled_events_total",
        Kind::Counter,
        "Readings of users' history fetched when they connected (backfill), by vendor.",
    ),
    (
        "auren_vendor_syncs_total",
        Kind::Counter,
        "Backfills and reconciliations of vendor connections, by vendor, kind and outcome.",
    ),
    (
        "auren_vendor_budget_exhausted_total",
        Kind::Counter,
        "Vendor requests held back because the app's shared rate budget was spent, by vendor.",
    ),
    (
        "auren_sse_clients",
        Kind::Gauge,
        "Open live event streams, by stream (user or admin).",
    ),
    (
        "auren_sse_closed_total",
        Kind::Counter,
        "Live event streams the service ended, by reason (slow client, shutdown, replay limit).",
    ),
    (
        "auren_tls_reloads_total",
        Kind::Counter,
        "Reloads of the API listener's certificate and key files, by outcome.",
    ),
    (
        "auren_auth_failures_total",
        Kind::Counter,
        "Failed authentications (verification token, user keys, admin token), by reason.",
    ),
    (
        "auren_auth_lockouts_total",
        Kind::Counter,
        "Client addresses locked out after repeated failed authentication.",
    ),
    (
        "auren_kafka_messages_processed_total",
        Kind::Counter,
        "Events the bridge read from the log, by outcome (applied, duplicate, dlq ...).",
    ),
    (
        "auren_mode_switches_total",
        Kind::Counter,
        "Cognitive mode switches, by previous and new mode.",
    ),
    (
        "auren_checkpoint_save_seconds",
        Kind::Histogram,
        "Time to commit one bridge batch: checkpoints, mode history and offsets in one transaction.",
    ),
    (
        "auren_checkpoint_unreadable_total",
        Kind::Counter,
        "Stored checkpoints that could not be read; the user started afresh.",
    ),
    (
        "auren_consumer_lag",
        Kind::Gauge,
        "Events in the log not yet consumed by the bridge, by partition.",
    ),
    (
        "auren_config_reloads_total",
        Kind::Counter,
        "Thresholds file reloads, by outcome (applied or rejected).",
    ),
    (
        "auren_bridge_restarts_total",
        Kind::Counter,
        "Bridge batches that failed and were resumed from the last durable point.",
    ),
    (
        "auren_bridge_rebalances_total",
        Kind::Counter,
        "Kafka partition assignments this bridge received.",
    ),
    (
        "auren_agent_deliveries_total",
        Kind::Counter,
        "Mode switch deliveries to agents, by sink and outcome (delivered, failed = retried later, gave_up).",
    ),
    (
        "auren_agent_delivery_lag_seconds",
        Kind::Histogram,
        "Time from a switch's commit to its delivery, by sink.",
    ),
    (
        "auren_agent_delivery_backlog",
        Kind::Gauge,
        "Switches waiting for delivery, by sink.",
    ),
    (
        "auren_webhook_endpoints_disabled_total",
        Kind::Counter,
        "Webhook endpoints disabled after their last retry failed.",
    ),
];

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => describe_counter!(name, help),
            Kind::Gauge => describe_gauge!(name, help),
            Kind::Histogram => describe_histogram!(name, Unit::Seconds, help),
        }
    }
}

/// The target of the spans exported as traces.
pub const TRACE_TARGET: &str = "auren::trace";

/// Installs the log subscriber once; later calls (tests) keep the first.
pub fn init_tracing(settings: &TelemetrySettings) {
    init(settings, None)
}

/// [`init_tracing`], exporting traces when `traces` names an endpoint (`serve`, `bridge`).
/// [`shutdown_tracing`] flushes them at exit.
pub fn init_tracing_with_traces(settings: &TelemetrySettings, traces: &TracesSettings) {
    init(settings, Some(traces))
}

fn init(settings: &TelemetrySettings, traces: Option<&TracesSettings>) {
    use std::io::Write;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, Registry};
    let filter = EnvFilter::try_new(&settings.rust_log).unwrap_or_else(|e| {
        let _ = writeln!(
            std::io::stderr(),
            "warning: RUST_LOG {:?} is not a valid filter ({e}); logging at info",
            settings.rust_log
        );
        EnvFilter::new("info")
    });
    let filter = filter.add_directive(
        format!("{TRACE_TARGET}=off")
            .parse()
            .expect("a valid directive"),
    );
    // A log line that cannot be written (stderr on a full disk, a closed pipe) is dropped.
    // tracing's default reports such a failure with `eprintln!`, which panics when stderr
    // itself fails, and a panic on the embedded log's writer thread would stop every
    // acknowledgement: logging must never take a worker down.
    // Colour codes only for a person at a terminal, never into a file or a log collector.
    let fmt = tracing_subscriber::fmt::layer()
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = if settings.log_format == "json" {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let logs = tracing_subscriber::registry().with(fmt);
    let Some(provider) = traces.and_then(otlp_provider) else {
        let _ = logs.try_init();
        return;
    };
    use opentelemetry::trace::TracerProvider;
    let spans =
        tracing_subscriber::filter::Targets::new().with_target(TRACE_TARGET, tracing::Level::TRACE);
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("auren"))
        .with_filter(spans);
    if logs.with(otel).try_init().is_ok() {
        let _ = TRACER_PROVIDER.set(provider);
        tracing::info!("exporting traces over OTLP/HTTP");
    }
}

static TRACER_PROVIDER: OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> = OnceLock::new();

/// The exporter's URL: the traces endpoint as given, else `/v1/traces` under the base endpoint
/// (as the OTLP specification reads `OTEL_EXPORTER_OTLP_ENDPOINT`); none when traces are off.
fn traces_url(t: &TracesSettings) -> Option<String> {
    if t.otel_sdk_disabled {
        return None;
    }
    fn given(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    match (given(&t.otlp_traces_endpoint), given(&t.otlp_endpoint)) {
        (Some(url), _) => Some(url.to_string()),
        (None, Some(base)) => Some(format!("{}/v1/traces", base.trim_end_matches('/'))),
        (None, None) => None,
    }
}

/// The tracer provider: a batch exporter over OTLP/HTTP with protobuf bodies (reqwest). The SDK
/// reads the other standard variables itself: `OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`,
/// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`.
/// A collector that cannot be reached costs dropped spans, never requests: export runs on the
/// processor's own thread.
fn otlp_provider(t: &TracesSettings) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry_otlp::{Protocol, WithExportConfig};
    use std::io::Write;
    let url = traces_url(t)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .build();
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            // The subscriber is not installed yet: said on stderr, and the service runs on.
            let _ = writeln!(
                std::io::stderr(),
                "warning: no traces: the OTLP exporter for {url} could not be built ({e})"
            );
            return None;
        }
    };
    let resource = opentelemetry_sdk::Resource::builder().build();
    let named = resource
        .get(&opentelemetry::Key::new("service.name"))
        .is_some_and(|n| !n.as_str().starts_with("unknown_service"));
    let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    );
    if !named {
        resource = resource.with_service_name("auren");
    }
    Some(
        opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    )
}

/// Exports the spans still queued and stops the exporter; at the end of `main`.
pub fn shutdown_tracing() {
    if let Some(provider) = TRACER_PROVIDER.get() {
        if let Err(e) = provider.shutdown() {
            tracing::warn!(error = %e, "flushing traces at exit failed");
        }
    }
}

/// An error and its sources, outermost first: `a: b: c`. Errors are typed with their sources
/// kept; this is how a log line shows the whole chain.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    /// Every metric recorded anywhere in the source has help text: a new `counter!` without an
    /// entry in [`super::METRICS`] fails here.
    #[test]
    fn every_recorded_metric_is_described() {
        let described: std::collections::BTreeSet<&str> =
            super::METRICS.iter().map(|m| m.0).collect();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut recorded = std::collections::BTreeSet::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                    for (i, _) in text.match_indices(macro_name) {
                        let rest = text[i + macro_name.len()..].trim_start();
                        let name = rest.strip_prefix('"').and_then(|r| r.split('"').next());
                        if let Some(name) = name.filter(|n| n.starts_with("auren_")) {
                            recorded.insert(name.to_string());
                        }
                    }
                }
            }
        }
        assert!(recorded.len() >= 20, "{recorded:?}");
        let missing: Vec<_> = recorded
            .iter()
            .filter(|n| !described.contains(n.as_str()))
            .collect();
        assert!(missing.is_empty(), "metrics without help text: {missing:?}");
    }
}
