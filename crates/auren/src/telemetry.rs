//! Metrics and logs. The Prometheus recorder is process-global, installed once; its text is
//! served on its own listener (`AUREN_METRICS_ADDR`) so scraping never competes with webhooks.
//! Log lines carry pseudonyms, counts and reasons only: never a raw user id, key or body.

use crate::settings::TelemetrySettings;
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
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "auren_webhook_events_total",
        "Webhook requests by source and outcome."
    );
    describe_histogram!(
        "auren_webhook_process_duration_seconds",
        Unit::Seconds,
        "Time from request to answer, including the durable append."
    );
    describe_gauge!(
        "auren_active_webhook_tasks",
        "Webhook requests being processed now."
    );
    describe_counter!(
        "auren_ingest_samples_total",
        "HealthKit/HAE samples by outcome."
    );
    describe_counter!(
        "auren_ingest_samples_rejected_total",
        "Samples refused, by reason (unit, range, timestamp ...)."
    );
    describe_histogram!(
        "auren_log_append_seconds",
        Unit::Seconds,
        "Durable append latency."
    );
    describe_counter!(
        "auren_oura_signature_fallback_total",
        "Oura deliveries that verified only over a compact re-serialisation of the body."
    );
    describe_counter!(
        "auren_cache_errors_total",
        "Cache operations that failed (degraded, not fatal)."
    );
}

/// Installs the log subscriber once; later calls (tests) keep the first.
pub fn init_tracing(settings: &TelemetrySettings) {
    use std::io::Write;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&settings.rust_log).unwrap_or_else(|e| {
        let _ = writeln!(
            std::io::stderr(),
            "warning: RUST_LOG {:?} is not a valid filter ({e}); logging at info",
            settings.rust_log
        );
        EnvFilter::new("info")
    });
    // A log line that cannot be written (stderr on a full disk, a closed pipe) is dropped.
    // tracing's default reports such a failure with `eprintln!`, which panics when stderr
    // itself fails, and a panic on the embedded log's writer thread would stop every
    // acknowledgement: logging must never take a worker down.
    // Colour codes only for a person at a terminal, never into a file or a log collector.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if settings.log_format == "json" {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
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
