//! HealthKit and Health Auto Export pushes over real HTTP: per-user keys, per-sample outcomes,
//! idempotency, and the 400/401/403/413/422 documents.

mod common;
use common::*;
use serde_json::json;

fn bearer(key: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {key}"))]
}

#[tokio::test]
async fn keys_bind_pushes_to_their_user() {
    let app = TestApp::spawn(Options::default()).await;
    let user = unique("user");
    let key = app.issue_key(&user).await;
    let push = |u: &str| {
        json!({"user_id": u, "samples": [{"type":"heartRate","value":72,"timestamp":"2025-01-27T10:30:00Z","source":"Apple Watch"}]}).to_string()
    };

    let (s, p) = problem(app.post("/webhooks/healthkit", &[], push(&user)).await).await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (401, "missing_api_key"));
    let (s, p) = problem(
        app.post(
            "/webhooks/healthkit",
            &bearer("auren_hk_guess"),
            push(&user),
        )
        .await,
    )
    .await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (401, "invalid_api_key"));
    let (s, p) = problem(
        app.post("/webhooks/healthkit", &bearer(&key), push("someone_else"))
            .await,
    )
    .await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (403, "user_mismatch"));
    // A batch with one foreign push writes nothing at all.
    let batch = format!("[{},{}]", push(&user), push("someone_else"));
    let (s, _) = problem(app.post("/webhooks/healthkit", &bearer(&key), batch).await).await;
    assert_eq!(s, 403);
    assert!(app.logged_events().await.is_empty());

    let r = app
        .post(
            "/webhooks/healthkit",
            &[("x-api-key", key.clone())],
            push(&user),
        )
        .await;
    assert_eq!(r.status(), 200);
    let logged = app.logged_events().await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["subject"]["id"], user);
    app.stop().await;
}

#[tokio::test]
async fn every_mapped_type_over_http_with_partial_acceptance() {
    let app = TestApp::spawn(Options::default()).await;
    let user = unique("user");
    let key = app.issue_key(&user).await;
    let ts = "2025-01-27T10:30:00Z";
    let samples = json!([
        {"type":"heartRate","value":72,"timestamp":ts,"source":"Apple Watch"},
        {"type":"restingHeartRate","value":55,"unit":"count/min","timestamp":ts,"source":"Apple Watch"},
        {"type":"walkingHeartRateAverage","value":95,"timestamp":ts,"source":"Apple Watch"},
        {"type":"heartRateVariabilitySDNN","value":48,"unit":"ms","timestamp":ts,"source":"Apple Watch"},
        {"type":"oxygenSaturation","value":0.97,"timestamp":ts,"source":"Apple Watch"},
        {"type":"respiratoryRate","value":14,"timestamp":ts,"source":"Apple Watch"},
        {"type":"bodyTemperature","value":98.6,"unit":"degF","timestamp":ts,"source":"iPhone"},
        {"type":"appleSleepingWristTemperature","value":35.2,"unit":"degC","timestamp":ts,"source":"Apple Watch"},
        {"type":"stepCount","value":1200,"timestamp":ts,"source":"iPhone"},
        {"type":"activeEnergyBurned","value":250,"unit":"kcal","timestamp":ts,"source":"Apple Watch"},
        {"type":"basalEnergyBurned","value":1600,"unit":"kcal","timestamp":ts,"source":"Apple Watch"},
        {"type":"distanceWalkingRunning","value":1.2,"unit":"km","timestamp":ts,"source":"iPhone"},
        {"type":"flightsClimbed","value":3,"timestamp":ts,"source":"iPhone"},
        {"type":"vo2Max","value":42,"timestamp":ts,"source":"Apple Watch"},
        {"type":"bodyMass","value":154,"unit":"lb","timestamp":ts,"source":"Health"},
        {"type":"bloodPressureSystolic","value":118,"unit":"mmHg","timestamp":ts,"source":"Omron"},
        {"type":"bloodPressureDiastolic","value":76,"unit":"mmHg","timestamp":ts,"source":"Omron"},
        {"type":"sleepAnalysis","value":4,"timestamp":"2025-01-27T01:00:00Z","end_timestamp":"2025-01-27T01:45:00Z","source":"Apple Watch"},
        {"type":"mindfulSession","value":10,"unit":"min","timestamp":ts,"source":"iPhone"},
        {"type":"heartRate","value":72,"timestamp":"not a time","source":"Apple Watch"},
        {"type":"heartRate","value":900,"timestamp":ts,"source":"Apple Watch"},
        {"type":"dietaryWater","value":1,"timestamp":ts}
    ]);
    let body = json!({"user_id": user, "samples": samples}).to_string();
    let r = app
        .post("/webhooks/healthkit", &bearer(&key), body.clone())
        .await;
    assert_eq!(r.status(), 200);
    let ack: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ack["accepted"], 19);
    assert_eq!(ack["rejected"].as_array().unwrap().len(), 2);
    assert_eq!(ack["rejected"][0]["reason"], "malformed_timestamp");
    assert_eq!(ack["rejected"][1]["reason"], "out_of_range");
    assert_eq!(ack["unsupported"], json!(["dietaryWater"]));

    let logged = app.logged_events().await;
    assert_eq!(logged.len(), 19);
    let by_metric = |m: &str| {
        logged
            .iter()
            .find(|e| e["payload"]["metric"] == m)
            .unwrap_or_else(|| panic!("{m}"))
            .clone()
    };
    assert_eq!(by_metric("hrv_sdnn")["payload"]["unit"], "ms");
    assert!(
        logged.iter().all(|e| e["payload"]["metric"] != "hrv_rmssd"),
        "SDNN never becomes RMSSD"
    );
    assert_eq!(by_metric("oxygen_saturation")["payload"]["value"], 97.0);
    assert!(
        (by_metric("body_temperature")["payload"]["value"]
            .as_f64()
            .unwrap()
            - 37.0)
            .abs()
            < 1e-9
    );
    assert_eq!(
        by_metric("sleep_segment")["payload"]["detail"]["stage"],
        "asleepDeep"
    );
    // No sample was stamped with "now": every occurred_at comes from the request.
    assert!(logged
        .iter()
        .all(|e| e["occurred_at"].as_str().unwrap().starts_with("2025-01-27")));

    // The same push again is recognised sample by sample.
    let again: serde_json::Value = app
        .post("/webhooks/healthkit", &bearer(&key), body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(19))
    );
    assert_eq!(app.logged_events().await.len(), 19);
    let m = app.metrics().await;
    assert!(m.contains(r#"auren_ingest_samples_rejected_total{source="healthkit",reason="malformed_timestamp"}"#), "{m}");
    app.stop().await;
}

#[tokio::test]
async fn all_invalid_is_422_malformed_is_400_too_many_is_413() {
    let app = TestApp::spawn(Options::default()).await;
    let user = unique("user");
    let key = app.issue_key(&user).await;
    let bad = json!({"user_id": user, "samples": [{"type":"heartRate","value":-1,"timestamp":"2025-01-27T10:30:00Z"}]}).to_string();
    let (s, p) = problem(app.post("/webhooks/healthkit", &bearer(&key), bad).await).await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (422, "invalid_samples"));
    assert_eq!(p["rejected"][0]["reason"], "out_of_range");
    assert_eq!(p["rejected"][0]["at"], "samples[0]");

    let (s, p) = problem(
        app.post("/webhooks/healthkit", &bearer(&key), "{not json")
            .await,
    )
    .await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (400, "malformed_body"));

    let push = json!({"user_id": user, "samples": []});
    let many = serde_json::Value::Array(vec![push; 101]).to_string();
    let (s, p) = problem(app.post("/webhooks/healthkit", &bearer(&key), many).await).await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (413, "too_many_pushes"));
    assert!(app.logged_events().await.is_empty());
    let m = app.metrics().await;
    assert!(m.contains(r#"outcome="invalid_samples""#));
    app.stop().await;
}

#[tokio::test]
async fn batch_of_pushes() {
    let app = TestApp::spawn(Options::default()).await;
    let user = unique("user");
    let key = app.issue_key(&user).await;
    let pushes: Vec<_> = (0..100)
        .map(|i| json!({"user_id": user, "samples": [{"type":"heartRate","value":60 + (i % 40),"timestamp":format!("2025-01-27T10:{:02}:{:02}Z", i / 60, i % 60),"source":"Apple Watch"}]}))
        .collect();
    let r = app
        .post(
            "/webhooks/healthkit",
            &bearer(&key),
            json!({"pushes": pushes}).to_string(),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["accepted"],
        100
    );
    assert_eq!(app.logged_events().await.len(), 100);
    app.stop().await;
}

fn hae_export(user_source: &str) -> String {
    json!({"data": {"metrics": [
        {"name": "heart_rate", "units": "count/min", "data": [
            {"date": "2024-02-06 14:30:00 -0800", "Min": 55, "Avg": 68, "Max": 110, "source": user_source},
            {"date": "2024-02-06 14:31:00 -0800", "Min": 60, "Avg": 65, "Max": 70, "source": user_source}]},
        {"name": "heart_rate_variability", "units": "ms", "data": [{"date": "2024-02-06 03:00:00 -0800", "qty": 44, "source": user_source}]},
        {"name": "blood_oxygen_saturation", "units": "%", "data": [{"date": "2024-02-06 03:00:00 -0800", "qty": 0.96, "source": user_source}]},
        {"name": "body_temperature", "units": "degF", "data": [{"date": "2024-02-06 03:00:00 -0800", "qty": 98.6}]},
        {"name": "sleep_analysis", "units": "hr", "data": [{"date": "2024-02-06", "totalSleep": 7.5, "deep": 1.5, "rem": 2, "core": 4,
            "sleepStart": "2024-02-05 23:00:00 -0800", "sleepEnd": "2024-02-06 07:00:00 -0800"}]},
        {"name": "dietary_water", "units": "mL", "data": [{"date": "2024-02-06 03:00:00 -0800", "qty": 250}]},
        {"name": "resting_heart_rate", "units": "bpm", "data": [{"date": "bad date", "qty": 50}]}
    ]}})
    .to_string()
}

#[tokio::test]
async fn health_auto_export_is_normalised_and_idempotent() {
    let app = TestApp::spawn(Options::default()).await;
    let user = unique("user");
    let key = app.issue_key(&user).await;
    let r = app
        .post(
            "/webhooks/health-auto-export",
            &bearer(&key),
            hae_export("Apple Watch"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let ack: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ack["accepted"], 9, "{ack}");
    assert_eq!(ack["rejected"][0]["reason"], "malformed_timestamp");
    assert_eq!(ack["unsupported"], json!(["dietary_water"]));
    // An overlapping export re-sends the same points: nothing new is logged.
    let again: serde_json::Value = app
        .post(
            "/webhooks/health-auto-export",
            &bearer(&key),
            hae_export("Apple Watch"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"], 9);
    let logged = app.logged_events().await;
    assert_eq!(logged.len(), 9);
    let hr = logged
        .iter()
        .find(|e| e["payload"]["metric"] == "heart_rate")
        .unwrap();
    assert_eq!(
        hr["payload"]["detail"],
        json!({"kind": "range", "min": 55.0, "max": 110.0})
    );
    let spo2 = logged
        .iter()
        .find(|e| e["payload"]["metric"] == "oxygen_saturation")
        .unwrap();
    assert_eq!(spo2["payload"]["value"], 96.0);
    assert!(logged.iter().any(|e| e["payload"]["metric"] == "hrv_sdnn"));
    assert!(logged.iter().all(|e| e["vendor"] == "health_auto_export"));
    let (s, p) = problem(
        app.post(
            "/webhooks/health-auto-export",
            &bearer(&key),
            r#"{"metrics":[]}"#,
        )
        .await,
    )
    .await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (400, "malformed_body"));
    app.stop().await;
}
