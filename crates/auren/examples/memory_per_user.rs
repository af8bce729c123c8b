//! Memory per tracked user, as the bridge holds users: a map from the pseudonym to the bridge's
//! per-user record (engine state with its baselines, user id, positions). Each user gets 90 days
//! of nightly HRV (both kinds), resting HR, temperature and heart rate, more than the 60-day window
//! holds, so every ring is full. Reports the growth of resident memory divided by the users.
//! Run: `cargo run --release -p auren --example memory_per_user -- 100000`.

use auren::bridge::Tracked;
use auren_core::engine::config::EngineConfig;
use auren_core::model::{
    BiometricEvent, EventId, Metric, Payload, Reading, Subject, Vendor, EVENT_SCHEMA_VERSION,
};
use auren_core::pseudonym::Pseudonymizer;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let cfg = EngineConfig::default();
    let p = Pseudonymizer::new(b"memory-benchmark-key").unwrap();
    let t0 = 1_735_689_600i64;
    let before = rss_bytes();
    let mut users: HashMap<String, Tracked> = HashMap::new();
    for u in 0..n {
        let user_id = format!("user-{u:08}");
        let pseudonym = p.pseudonym(&user_id);
        let t = users
            .entry(pseudonym.clone())
            .or_insert_with(|| Tracked::fresh(&user_id));
        for d in 0..90i64 {
            let at = t0 + d * 86_400 + 6 * 3600;
            for (m, v) in [
                (Metric::HrvSdnn, 45.0),
                (Metric::HrvRmssd, 50.0),
                (Metric::RestingHeartRate, 56.0),
                (Metric::BodyTemperature, 36.6),
                (Metric::HeartRate, 66.0),
            ] {
                let e = BiometricEvent {
                    schema: EVENT_SCHEMA_VERSION,
                    id: EventId::derive(&[&pseudonym, m.as_str(), &d.to_string()]),
                    subject: Subject {
                        id: user_id.clone(),
                        pseudonym: pseudonym.clone(),
                    },
                    vendor: Vendor::Healthkit,
                    device: None,
                    occurred_at: DateTime::<Utc>::from_timestamp(at, 0).unwrap(),
                    received_at: DateTime::<Utc>::from_timestamp(at, 0).unwrap(),
                    payload: Payload::Reading(Reading {
                        metric: m,
                        value: v + (d % 5) as f64,
                        unit: m.unit(),
                        confidence: 0.9,
                        detail: None,
                    }),
                };
                t.state.apply(&cfg, &pseudonym, &e);
            }
        }
    }
    let after = rss_bytes();
    let per_user = after.saturating_sub(before) as f64 / n as f64;
    println!(
        "users={n} rss_growth_bytes={} per_user_bytes={per_user:.0} (record {} B inline + {} B baseline rings + key and user id strings + map slot)",
        after - before,
        std::mem::size_of::<Tracked>(),
        users.values().next().unwrap().state.heap_bytes(),
    );
}
