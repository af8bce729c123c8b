//! OpenTelemetry traces: a running `auren serve` with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an
//! OTLP/HTTP receiver in this test (axum on 127.0.0.1, bodies decoded with `opentelemetry-proto`)
//! exports the spans of signed webhooks (webhook → log append) and of the bridge (batch → store
//! commit → publish), flushed at shutdown, with no user id, key, pseudonym or body in them.
//! Without an endpoint, the spans' call sites are disabled.

mod common;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Received {
    name: String,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    trace_id: Vec<u8>,
    attributes: BTreeMap<String, String>,
    service: String,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// An OTLP/HTTP trace receiver: every span of every export request, decoded.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
                let mut got = store.lock().unwrap();
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .map(|a| text(&a.value))
                        .unwrap_or_default();
                    for s in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                        got.push(Received {
                            name: s.name,
                            span_id: s.span_id,
                            parent: s.parent_span_id,
                            trace_id: s.trace_id,
                            attributes: s
                                .attributes
                                .iter()
                                .map(|a| (a.key.clone(), text(&a.value)))
                                .collect(),
                            service: service.clone(),
                        });
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), spans)
}

#[tokio::test]
async fn spans_of_webhooks_and_the_bridge_reach_an_otlp_receiver_and_are_flushed_at_exit() {
    let (endpoint, spans) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = service_args(&Options::default(), dir.path()).await;
    let api = free_port();
    settings.http.http_addr = format!("127.0.0.1:{api}").parse().unwrap();
    settings.metrics.metrics_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    settings.traces.otlp_endpoint = Some(endpoint);
    let mut child = auren_command(&settings)
        .arg("serve")
        // Nothing is exported on the batch schedule within this test: what arrives was flushed
        // at exit.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api}");
    eventually(30, "the service to answer /health", || async {
        client.get(format!("{base}/health")).send().await.ok()
    })
    .await;

    // A signed WHOOP notification, and a HealthKit stress episode that makes a mode switch (so
    // the bridge commits and publishes).
    let trace = unique("trace");
    let body = whoop_body(&trace);
    let mut req = client
        .post(format!("{base}/webhooks/whoop"))
        .body(body.clone());
    for (k, v) in whoop_headers(WHOOP_SECRET, &now_millis(), &body) {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    let user = unique("traced-user");
    let key: serde_json::Value = client
        .post(format!("{base}/admin/users/{user}/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    let samples: Vec<_> = stress_episode(chrono::Utc::now() - chrono::Duration::hours(1), 5)
        .into_iter()
        .map(|(t, v, ts)| serde_json::json!({"type": t, "value": v, "timestamp": ts, "source": "Apple Watch"}))
        .collect();
    let push = serde_json::json!({"user_id": user, "samples": samples}).to_string();
    let r = client
        .post(format!("{base}/webhooks/healthkit"))
        .bearer_auth(&key)
        .body(push.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(30, "the bridge to record the switch", || async {
        let modes: serde_json::Value = client
            .get(format!("{base}/users/{user}/modes"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (!modes["modes"].as_array()?.is_empty()).then_some(())
    })
    .await;
    assert!(
        spans.lock().unwrap().is_empty(),
        "spans arrived before the batch schedule or the exit"
    );

    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let exited = eventually(40, "the service to exit", || {
        let done = child.try_wait().unwrap();
        async move { done }
    })
    .await;
    assert!(exited.success(), "{exited:?}");
    let spans = spans.lock().unwrap().clone();
    let named =
        |name: &str| -> Vec<&Received> { spans.iter().filter(|s| s.name == name).collect() };

    // The webhooks, each with its log append inside it.
    let webhooks = named("webhook");
    let by_source = |source: &str| {
        webhooks
            .iter()
            .find(|s| s.attributes.get("source").map(String::as_str) == Some(source))
            .unwrap_or_else(|| panic!("no webhook span of {source}: {spans:#?}"))
    };
    for source in ["whoop", "healthkit"] {
        let w = by_source(source);
        assert_eq!(w.attributes["outcome"], "accepted", "{w:?}");
        assert_eq!(w.attributes["http.response.status_code"], "200", "{w:?}");
        assert!(w.parent.is_empty(), "a webhook starts its trace: {w:?}");
        let append = named("log.append")
            .into_iter()
            .find(|a| a.parent == w.span_id)
            .unwrap_or_else(|| panic!("no log.append under the {source} webhook: {spans:#?}"));
        assert_eq!(append.trace_id, w.trace_id);
        assert_eq!(append.attributes["backend"], "embedded");
    }
    assert_eq!(by_source("healthkit").service, "auren");

    // The bridge: a batch, its store commit and the publication of the switch.
    let batches = named("bridge.batch");
    assert!(!batches.is_empty(), "{spans:#?}");
    let commit = named("store.commit")
        .into_iter()
        .find(|c| c.attributes.get("switches").map(String::as_str) == Some("1"))
        .unwrap_or_else(|| panic!("no store.commit of the switch: {spans:#?}"));
    let batch = batches
        .iter()
        .find(|b| b.span_id == commit.parent)
        .unwrap_or_else(|| panic!("the commit is not inside a bridge.batch: {spans:#?}"));
    let publish = named("log.publish")
        .into_iter()
        .find(|p| p.parent == batch.span_id)
        .unwrap_or_else(|| panic!("no log.publish in the switch's batch: {spans:#?}"));
    assert_eq!(publish.attributes["switches"], "1");
    assert_eq!(commit.attributes["backend"], "sqlite");

    // Nothing identifying or from a body in any span.
    let pseudonym = auren_core::pseudonym::Pseudonymizer::new(PSEUDONYM_KEY.as_bytes())
        .unwrap()
        .pseudonym(&user);
    for s in &spans {
        for (k, v) in &s.attributes {
            for secret in [
                user.as_str(),
                key.as_str(),
                pseudonym.as_str(),
                trace.as_str(),
            ] {
                assert!(!v.contains(secret), "{}: {k}={v}", s.name);
            }
            assert!(!v.contains("heartRate"), "{}: {k}={v}", s.name);
            // WHOOP's user id, where a number could not hold it by chance.
            assert!(
                v.parse::<f64>().is_ok() || !v.contains("10129"),
                "{}: {k}={v}",
                s.name
            );
        }
    }
    for s in &spans {
        println!("{} {:?}", s.name, s.attributes);
    }
}

/// No endpoint: no layer wants the trace spans, so their call sites are off whatever the log
/// filter says.
#[test]
fn without_an_endpoint_trace_spans_are_disabled() {
    let mut telemetry: auren::settings::TelemetrySettings = auren::settings::defaults();
    telemetry.rust_log = "auren=trace".into();
    let traces: auren::settings::TracesSettings = auren::settings::defaults();
    auren::telemetry::init_tracing_with_traces(&telemetry, &traces);
    assert!(tracing::enabled!(target: "auren::bridge", tracing::Level::TRACE));
    assert!(!tracing::span_enabled!(
        target: auren::telemetry::TRACE_TARGET,
        tracing::Level::ERROR
    ));
}
