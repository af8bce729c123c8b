//! What a hostile or broken client can make the parsers do: every answer stays small, every
//! implausible time is refused with its own reason, and no input panics. Property tests here
//! run on stable CI; the cargo-fuzz targets in `fuzz/` search the same space deeper.

use auren_core::ingest::{self, IngestLimits};
use auren_core::model::Vendor;
use auren_core::pseudonym::Pseudonymizer;
use auren_core::vendors::{
    health_auto_export as hae, healthkit, oura, whoop, ParsedSamples, PushError,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

fn now() -> DateTime<Utc> {
    "2025-01-28T00:00:00Z".parse().unwrap()
}

/// The part of an answer that depends on refused and skipped samples, as the service sends it.
fn answer_size(parsed: &ParsedSamples) -> usize {
    serde_json::to_vec(&json!({
        "rejected": parsed.rejected.listed,
        "rejected_total": parsed.rejected.total,
        "unsupported": parsed.unsupported.names,
        "unsupported_total": parsed.unsupported.total,
    }))
    .unwrap()
    .len()
}

/// Worst case of [`answer_size`] under the default limits: 100 listed refusals and 20 names,
/// each field cut to 64 characters, even when every character needs a 6-byte JSON escape.
const MAX_ANSWER_BYTES: usize = 100 * 1024;

#[test]
fn half_a_million_invalid_samples_in_one_mebibyte_are_refused_in_a_sentence() {
    let zeros = vec!["0"; 500_000].join(",");
    let body = format!(r#"{{"user_id":"u1","samples":[{zeros}]}}"#);
    assert!(body.len() <= 1 << 20, "{}", body.len());
    let e = healthkit::parse(body.as_bytes(), &IngestLimits::default(), now()).unwrap_err();
    assert_eq!(
        e,
        PushError::TooManySamples {
            limit: 20_000,
            found: 500_000
        }
    );
    assert_eq!(e.reason(), "too_many_samples");
    assert!(e.to_string().len() < 100, "{e}");

    let body = format!(r#"{{"data":{{"metrics":[{{"name":"heart_rate","data":[{zeros}]}}]}}}}"#);
    let e = hae::parse(body.as_bytes(), &IngestLimits::default(), now()).unwrap_err();
    assert_eq!(e.reason(), "too_many_points");
    assert!(e.to_string().len() < 100, "{e}");

    // Spread over many small metrics, the total still counts.
    let metrics = vec![r#"{"name":"heart_rate","data":[0,0,0,0,0]}"#; 5_000].join(",");
    let body = format!(r#"{{"data":{{"metrics":[{metrics}]}}}}"#);
    let e = hae::parse(body.as_bytes(), &IngestLimits::default(), now()).unwrap_err();
    assert_eq!(e.reason(), "too_many_samples");
}

/// A push at the sample cap where every sample is refused with a long, escaped, echoed field.
fn worst_healthkit_push(samples: usize, filler: usize) -> String {
    let long: String = "\u{1}é".repeat(filler);
    let items: Vec<Value> = (0..samples)
        .map(|i| match i % 3 {
            0 => json!({"type": "heartRate", "value": 70, "unit": long, "timestamp": "2025-01-27T10:30:00Z"}),
            1 => json!({"type": format!("{long}{i}"), "value": 70, "timestamp": "2025-01-27T10:30:00Z"}),
            _ => json!({"type": "heartRate", "value": long, "timestamp": long}),
        })
        .collect();
    json!({"user_id": "u1", "samples": items}).to_string()
}

#[test]
fn refusals_are_listed_up_to_a_limit_and_counted_in_full() {
    let limits = IngestLimits::default();
    let small = worst_healthkit_push(limits.max_samples_per_push, 3);
    let large = worst_healthkit_push(limits.max_samples_per_push, 60);
    assert!(
        large.len() > 4 * small.len(),
        "{} {}",
        large.len(),
        small.len()
    );
    let mut sizes = Vec::new();
    for body in [&small, &large] {
        let pushes = healthkit::parse(body.as_bytes(), &limits, now()).unwrap();
        let p = &pushes[0].parsed;
        assert!(p.samples.is_empty());
        assert_eq!(p.rejected.listed.len(), limits.max_rejections_listed);
        assert_eq!(
            p.rejected.total + p.unsupported.total,
            limits.max_samples_per_push
        );
        assert_eq!(
            p.rejected.by_reason.values().sum::<usize>(),
            p.rejected.total
        );
        assert_eq!(p.rejected.by_reason["unknown_unit"], 6_667);
        assert!(p.unsupported.names.len() <= limits.max_unsupported_listed);
        for r in &p.rejected.listed {
            assert!(r.detail.chars().count() <= 150, "{}", r.detail);
            assert!(r.sample_type.as_deref().unwrap_or("").chars().count() <= 65);
        }
        let size = answer_size(p);
        assert!(size <= MAX_ANSWER_BYTES, "{size}");
        sizes.push(size);
    }
    // Twenty times longer echoed fields, and the answer grows only up to the cut.
    assert!(sizes[1] < 2 * sizes[0], "{sizes:?}");
}

#[test]
fn health_auto_export_refusals_are_bounded_too() {
    let limits = IngestLimits::default();
    let long = "\u{1}".repeat(100_000);
    let points: Vec<Value> = (0..limits.max_points_per_metric)
        .map(|_| json!({"qty": 70, "date": "2025-01-27 10:30:00 +0000"}))
        .collect();
    let body = json!({"data": {"metrics": [
        {"name": "heart_rate", "units": long, "data": points},
        {"name": long, "units": "x", "data": []},
    ]}})
    .to_string();
    let p = hae::parse(body.as_bytes(), &limits, now()).unwrap();
    assert_eq!(p.rejected.total, limits.max_points_per_metric);
    assert_eq!(p.rejected.listed.len(), limits.max_rejections_listed);
    assert_eq!(p.unsupported.total, 1);
    assert!(answer_size(&p) <= MAX_ANSWER_BYTES, "{}", answer_size(&p));
}

#[test]
fn merged_answers_of_a_batch_keep_the_limit() {
    let limits = IngestLimits::default();
    let push = worst_healthkit_push(150, 5);
    let batch = format!("[{}]", vec![push.as_str(); 100].join(","));
    let pushes = healthkit::parse(batch.as_bytes(), &limits, now()).unwrap();
    let mut all = ParsedSamples::default();
    for p in pushes {
        all.rejected.merge(p.parsed.rejected);
        all.unsupported.merge(p.parsed.unsupported);
    }
    assert_eq!(all.rejected.total + all.unsupported.total, 15_000);
    assert_eq!(all.rejected.listed.len(), limits.max_rejections_listed);
    assert_eq!(all.rejected.listed[0].at, "pushes[0].samples[0]");
    assert!(answer_size(&all) <= MAX_ANSWER_BYTES);
}

#[test]
fn a_malformed_body_is_never_echoed_at_length() {
    let long = "x".repeat(1_000_000);
    let body = format!(r#"{{"user_id":"{long}","id":1,"type":"a","trace_id":"t"}}"#);
    let e = whoop::parse_delivery(body.as_bytes()).unwrap_err();
    assert!(e.0.len() < 300, "{}", e.0.len());
    assert!(e.0.contains("line 1 column"), "{}", e.0);
    let body = format!(r#"{{"event_type":{long}}}"#);
    assert!(oura::parse_delivery(body.as_bytes()).unwrap_err().0.len() < 300);
    let body = format!(r#"{{"data":{{"metrics":"{long}"}}}}"#);
    let e = hae::parse(body.as_bytes(), &IngestLimits::default(), now()).unwrap_err();
    assert!(e.to_string().len() < 300);
}

#[test]
fn implausible_times_are_refused_with_their_own_reasons() {
    let limits = IngestLimits::default();
    let cases = [
        ("9999-01-01T00:00:00Z", "timestamp_in_future"),
        ("2025-01-28T00:05:01Z", "timestamp_in_future"),
        ("1900-01-01T00:00:00Z", "timestamp_too_old"),
        ("0000-01-01T00:00:00Z", "timestamp_too_old"),
        ("2019-01-01T00:00:00Z", "timestamp_too_old"),
    ];
    for (ts, reason) in cases {
        let body = json!({"user_id": "u1", "samples": [
            {"type": "heartRate", "value": 70, "timestamp": ts},
            {"type": "sleepAnalysis", "value": 3, "timestamp": "2025-01-27T01:00:00Z", "end_timestamp": ts},
        ]});
        let p = &healthkit::parse(body.to_string().as_bytes(), &limits, now()).unwrap()[0].parsed;
        assert!(p.samples.is_empty(), "{ts}");
        let reasons: Vec<_> = p.rejected.listed.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, vec![reason, reason], "{ts}");

        let hae_date = DateTime::parse_from_rfc3339(ts)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S %z")
            .to_string();
        let body = json!({"data": {"metrics": [
            {"name": "resting_heart_rate", "units": "bpm", "data": [{"qty": 50, "date": hae_date}]},
            {"name": "sleep_analysis", "units": "hr", "data": [
                {"startDate": "2025-01-27 01:00:00 +0000", "endDate": hae_date, "value": "Deep"},
                {"date": "2025-01-27", "totalSleep": 7, "sleepEnd": hae_date}]},
        ]}});
        let p = hae::parse(body.to_string().as_bytes(), &limits, now()).unwrap();
        assert!(p.samples.is_empty(), "{ts}: {:?}", p.samples);
        let reasons: Vec<_> = p.rejected.listed.iter().map(|r| r.reason).collect();
        assert_eq!(reasons, vec![reason, reason, reason], "{ts}");
    }
    // The limits are the caller's: a wider window takes what the default refuses.
    let wide = IngestLimits {
        max_age: chrono::TimeDelta::days(365 * 100),
        ..limits
    };
    let body = json!({"user_id": "u1", "samples": [{"type": "heartRate", "value": 70, "timestamp": "1990-01-01T00:00:00Z"}]});
    let p = &healthkit::parse(body.to_string().as_bytes(), &wide, now()).unwrap()[0].parsed;
    assert_eq!(p.samples.len(), 1);
    // The day of an aggregated night with no end time is judged too.
    let body = json!({"data": {"metrics": [{"name": "sleep_analysis", "units": "hr", "data": [
        {"date": "9999-01-01", "totalSleep": 7}]}]}});
    let p = hae::parse(body.to_string().as_bytes(), &limits, now()).unwrap();
    assert_eq!(p.rejected.listed[0].reason, "timestamp_in_future");
}

fn pseudonyms() -> Pseudonymizer {
    Pseudonymizer::new(b"property-test-pseudonym-key").unwrap()
}

/// Everything the parsers promise about what they accept, whatever they were given.
fn check_invariants(p: &ParsedSamples, limits: &IngestLimits, vendor: Vendor) {
    assert!(p.rejected.listed.len() <= limits.max_rejections_listed);
    assert!(p.rejected.listed.len() <= p.rejected.total);
    assert_eq!(
        p.rejected.by_reason.values().sum::<usize>(),
        p.rejected.total
    );
    assert!(p.unsupported.names.len() <= limits.max_unsupported_listed);
    assert!(answer_size(p) <= MAX_ANSWER_BYTES);
    for s in &p.samples {
        let (lo, hi) = s.metric.plausible_range();
        assert!(
            s.value.is_finite() && s.value >= lo && s.value <= hi,
            "{s:?}"
        );
        assert!(limits.check_time(s.occurred_at, now()).is_ok(), "{s:?}");
        let e = ingest::sample_event(vendor, "u1", s, &pseudonyms(), now());
        assert_eq!(e.id.as_str().len(), 32);
        serde_json::to_vec(&e).unwrap();
    }
}

fn run_all_parsers(bytes: &[u8]) {
    let limits = IngestLimits::default();
    if let Ok(pushes) = healthkit::parse(bytes, &limits, now()) {
        for p in &pushes {
            check_invariants(&p.parsed, &limits, Vendor::Healthkit);
        }
    }
    if let Ok(p) = hae::parse(bytes, &limits, now()) {
        check_invariants(&p, &limits, Vendor::HealthAutoExport);
    }
    if let Ok(d) = oura::parse_delivery(bytes) {
        ingest::oura_notification(&d, &pseudonyms(), now());
    }
    if let Ok(d) = whoop::parse_delivery(bytes) {
        ingest::whoop_notification(&d, &pseudonyms(), now(), now());
    }
}

/// JSON of any shape, with the scalars the parsers look for more often than chance would give.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(-0.0)),
        Just(json!(u64::MAX)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "heartRate",
            "HKQuantityTypeIdentifierHeartRate",
            "sleepAnalysis",
            "stepCount",
            "oxygenSaturation",
            "bodyTemperature",
            "degF",
            "%",
            "count/min",
            "s",
            "Cal",
            "2025-01-27T10:30:00Z",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "2025-01-27 10:30:00 -0800",
            "2025-01-27",
            "+275760-01-01 00:00:00 +0000",
            "heart_rate",
            "blood_pressure",
            "sleep_analysis",
            "Deep",
            "In Bed",
            "asleepREM",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "type",
                    "value",
                    "unit",
                    "timestamp",
                    "startDate",
                    "endDate",
                    "end_timestamp",
                    "source",
                    "qty",
                    "date",
                    "Min",
                    "Avg",
                    "Max",
                    "systolic",
                    "diastolic",
                    "totalSleep",
                    "asleep",
                    "deep",
                    "rem",
                    "core",
                    "awake",
                    "inBed",
                    "sleepEnd",
                    "inBedEnd",
                    "name",
                    "units",
                    "data",
                    "metrics",
                    "samples",
                    "user_id",
                    "pushes",
                    "id",
                    "trace_id",
                    "event_type",
                    "data_type",
                    "object_id",
                    "event_time",
                ])
                .prop_map(str::to_string),
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        run_all_parsers(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        run_all_parsers(v.to_string().as_bytes());
    }

    /// Right envelopes with wrong insides: each sample or point is arbitrary.
    #[test]
    fn structured_but_wrong_json_never_panics(
        samples in prop::collection::vec(any_json(), 0..16),
        name in prop::sample::select(vec![
            "heart_rate", "blood_pressure", "sleep_analysis", "step_count",
            "blood_oxygen_saturation", "body_temperature", "walking_heart_rate", "x",
        ]),
        units in any_json(),
    ) {
        let hk = json!({"user_id": "u1", "samples": samples});
        run_all_parsers(hk.to_string().as_bytes());
        let batch = json!({"pushes": [hk.clone(), hk]});
        run_all_parsers(batch.to_string().as_bytes());
        let body = json!({"data": {"metrics": [{"name": name, "units": units, "data": samples}]}});
        run_all_parsers(body.to_string().as_bytes());
    }

    #[test]
    fn signature_checks_never_panic(
        secret in prop::collection::vec(any::<u8>(), 0..40),
        signature in prop::option::of(".{0,80}"),
        timestamp in prop::option::of(prop_oneof![".{0,24}", any::<i64>().prop_map(|n| n.to_string())]),
        body in prop::collection::vec(any::<u8>(), 0..256),
        now_ms in any::<i64>(),
    ) {
        let now = DateTime::from_timestamp_millis(now_ms).unwrap_or_else(now);
        let (sig, ts) = (signature.as_deref(), timestamp.as_deref());
        let _ = oura::verify(&secret, sig, ts, &body, now);
        let _ = whoop::verify(&secret, sig, ts, &body, now);
        if let Some(ts) = ts {
            let _ = whoop::signed_at(ts);
        }
    }
}
