//! Vendor webhooks over real HTTP against the embedded log: signatures, handshakes, duplicates,
//! error documents, and that what was acknowledged is what is in the log.

mod common;
use common::*;

/// (name, headers, body, expected problem reason).
type RefusalCase = (
    &'static str,
    Vec<(&'static str, String)>,
    String,
    &'static str,
);
use serde_json::json;

#[tokio::test]
async fn oura_handshake_cases() {
    let app = TestApp::spawn(Options::default()).await;
    let get = |q: &str| {
        app.client
            .get(app.url(&format!("/webhooks/oura{q}")))
            .send()
    };
    let r = get(&format!(
        "?verification_token={OURA_TOKEN}&challenge=abc123"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"challenge": "abc123"})
    );
    let (s, p) = problem(
        get("?verification_token=wrong&challenge=abc123")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, p["reason"].as_str().unwrap()),
        (401, "verification_token_mismatch")
    );
    assert!(
        !p.to_string().contains("abc123"),
        "no echo on a wrong token"
    );
    let (s, p) = problem(
        get(&format!("?verification_token={OURA_TOKEN}"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, p["reason"].as_str().unwrap()),
        (400, "missing_challenge")
    );
    app.stop().await;
}

#[tokio::test]
async fn oura_signed_delivery_is_logged_and_refusals_are_problems() {
    let app = TestApp::spawn(Options::default()).await;
    let body = oura_body("oura-user-123");
    let r = app.post_oura(&body).await;
    assert_eq!(r.status(), 200);
    let ack: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ack["status"], "accepted");

    // Lower-case hex is the same signature.
    let ts = now_secs();
    let mut h = oura_headers(OURA_SECRET, &ts, &body);
    h[0].1 = h[0].1.to_lowercase();
    let r = app.post("/webhooks/oura", &h, body.clone()).await;
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "duplicate"
    );

    let other = oura_body("oura-user-123");
    let cases: Vec<RefusalCase> = vec![
        (
            "wrong secret",
            oura_headers("not-the-secret", &now_secs(), &other),
            other.clone(),
            "signature_mismatch",
        ),
        (
            "flipped byte",
            oura_headers(OURA_SECRET, &now_secs(), &other),
            other.replacen("sleep", "sleeq", 1),
            "signature_mismatch",
        ),
        (
            "stale",
            oura_headers(
                OURA_SECRET,
                &(chrono::Utc::now().timestamp() - 301).to_string(),
                &other,
            ),
            other.clone(),
            "stale_timestamp",
        ),
        (
            "stale ms",
            oura_headers(
                OURA_SECRET,
                &(chrono::Utc::now().timestamp_millis() - 301_000).to_string(),
                &other,
            ),
            other.clone(),
            "stale_timestamp",
        ),
        (
            "no signature",
            vec![("x-oura-timestamp", now_secs())],
            other.clone(),
            "missing_signature_header",
        ),
        (
            "no timestamp",
            vec![oura_headers(OURA_SECRET, &now_secs(), &other)[0].clone()],
            other.clone(),
            "missing_signature_header",
        ),
    ];
    for (name, headers, body, reason) in cases {
        let (s, p) = problem(app.post("/webhooks/oura", &headers, body).await).await;
        assert_eq!((s, p["reason"].as_str().unwrap()), (401, reason), "{name}");
    }
    // Signed but not an Oura body.
    let junk = r#"{"hello":"world"}"#;
    let (s, p) = problem(app.post_oura(junk).await).await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (400, "malformed_body"));

    let logged = app.logged_events().await;
    assert_eq!(logged.len(), 1, "only the one valid delivery is in the log");
    assert_eq!(logged[0]["id"], ack["event_id"]);
    assert_eq!(logged[0]["payload"]["type"], "notification");
    assert_eq!(logged[0]["payload"]["data_type"], "sleep");
    let m = app.metrics().await;
    assert!(
        m.contains(r#"auren_webhook_events_total{source="oura",outcome="signature_mismatch"} 2"#),
        "{m}"
    );
    assert!(m.contains("auren_webhook_process_duration_seconds_bucket"));
    assert!(m.contains("auren_active_webhook_tasks"));
    app.stop().await;
}

#[tokio::test]
async fn oura_compact_reserialisation_fallback_is_accepted_and_counted() {
    let app = TestApp::spawn(Options::default()).await;
    let compact = oura_body("oura-user-9");
    let spaced = compact.replace("\",\"", "\", \"");
    let r = app
        .post(
            "/webhooks/oura",
            &oura_headers(OURA_SECRET, &now_secs(), &compact),
            spaced,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(app
        .metrics()
        .await
        .contains("auren_oura_signature_fallback_total"));
    app.stop().await;
}

#[tokio::test]
async fn whoop_signed_delivery_duplicate_trace_and_refusals() {
    let app = TestApp::spawn(Options::default()).await;
    let trace = unique("trace");
    let body = whoop_body(&trace);
    let r = app.post_whoop(&body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "accepted"
    );
    // WHOOP redelivers with the same trace_id: 200, not logged twice.
    let r = app.post_whoop(&body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["status"],
        "duplicate"
    );

    let other = whoop_body(&unique("trace"));
    let ms = chrono::Utc::now().timestamp_millis();
    let cases: Vec<RefusalCase> = vec![
        (
            "wrong secret",
            whoop_headers("nope", &now_millis(), &other),
            other.clone(),
            "signature_mismatch",
        ),
        (
            "flipped byte",
            whoop_headers(WHOOP_SECRET, &now_millis(), &other),
            other.replacen("10129", "10128", 1),
            "signature_mismatch",
        ),
        (
            "stale",
            whoop_headers(WHOOP_SECRET, &(ms - 300_001).to_string(), &other),
            other.clone(),
            "stale_timestamp",
        ),
        (
            "future",
            whoop_headers(WHOOP_SECRET, &(ms + 310_000).to_string(), &other),
            other.clone(),
            "stale_timestamp",
        ),
        (
            "seconds not ms",
            whoop_headers(WHOOP_SECRET, &now_secs(), &other),
            other.clone(),
            "stale_timestamp",
        ),
        (
            "no signature",
            vec![("x-whoop-signature-timestamp", now_millis())],
            other.clone(),
            "missing_signature_header",
        ),
        (
            "hex not base64",
            vec![
                ("x-whoop-signature", "zz".into()),
                ("x-whoop-signature-timestamp", now_millis()),
            ],
            other.clone(),
            "malformed_signature_header",
        ),
    ];
    for (name, headers, body, reason) in cases {
        let (s, p) = problem(app.post("/webhooks/whoop", &headers, body).await).await;
        assert_eq!((s, p["reason"].as_str().unwrap()), (401, reason), "{name}");
    }
    let logged = app.logged_events().await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["payload"]["trace_id"], trace);
    assert_eq!(logged[0]["subject"]["id"], "whoop:10129");
    app.stop().await;
}

#[tokio::test]
async fn body_over_the_limit_is_413_problem() {
    let app = TestApp::spawn(Options {
        max_body_bytes: Some(512),
        ..Default::default()
    })
    .await;
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2048));
    let (s, p) = problem(app.post_whoop(&big).await).await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (413, "body_too_large"));
    assert_eq!(p["status"], 413);
    assert!(app.logged_events().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = TestApp::spawn(Options::default()).await;
    let r = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (_, r) = app.get_json("/ready", "").await;
    assert_eq!(r["status"], "ready");
    assert_eq!(r["checks"]["log"]["backend"], "embedded");
    app.stop().await;
}

#[tokio::test]
async fn missing_secrets_refuse_to_start_outside_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = service_args(&Options::default(), dir.path()).await;
    args.secrets.whoop_client_secret = None;
    let backends = |s: &auren::settings::Settings| {
        std::sync::Arc::new(auren::root::Backends::new(s.backends()))
    };
    let err = auren::app::Service::build(&args, backends(&args), false)
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("WHOOP_CLIENT_SECRET"), "{err}");
    args.secrets.dev_mode = true;
    assert!(auren::app::Service::build(&args, backends(&args), false)
        .await
        .is_ok());
    assert!(dir.path().join("dev-secrets.json").exists());
}
