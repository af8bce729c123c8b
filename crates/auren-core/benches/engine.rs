//! Engine throughput: events per second through baseline update and mode decision, on one
//! thread (so the figure is per core). The mix is realistic: each simulated user has 30 nights of
//! HRV, resting HR and temperature, and daytime heart rate every 10 minutes, with a stress episode.
//! Run: `cargo bench -p auren-core --bench engine`.

use auren_core::engine::{config::EngineConfig, UserState};
use auren_core::model::{
    BiometricEvent, EventId, Metric, Payload, Reading, Subject, Vendor, EVENT_SCHEMA_VERSION,
};
use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::collections::HashMap;

fn ev(user: usize, metric: Metric, value: f64, at: i64) -> BiometricEvent {
    let pseudonym = format!("u_{user:032x}");
    BiometricEvent {
        schema: EVENT_SCHEMA_VERSION,
        id: EventId::derive(&[&pseudonym, metric.as_str(), &at.to_string()]),
        subject: Subject {
            id: format!("user-{user}"),
            pseudonym,
        },
        vendor: Vendor::Healthkit,
        device: None,
        occurred_at: DateTime::<Utc>::from_timestamp(at, 0).unwrap(),
        received_at: DateTime::<Utc>::from_timestamp(at, 0).unwrap(),
        payload: Payload::Reading(Reading {
            metric,
            value,
            unit: metric.unit(),
            confidence: 0.95,
            detail: None,
        }),
    }
}

/// Interleaved events of `users` users over `days` days, in time order.
fn workload(users: usize, days: i64) -> Vec<BiometricEvent> {
    let t0 = 1_735_689_600;
    let mut out = Vec::new();
    for d in 0..days {
        for u in 0..users {
            let night = t0 + d * 86_400 + 6 * 3600 + u as i64;
            let wobble = ((u as i64 * 7 + d * 13) % 11) as f64 / 10.0 - 0.5;
            out.push(ev(u, Metric::HrvSdnn, 45.0 + 4.0 * wobble, night));
            out.push(ev(u, Metric::RestingHeartRate, 56.0 + wobble, night + 1));
            out.push(ev(
                u,
                Metric::BodyTemperature,
                36.6 + 0.1 * wobble,
                night + 2,
            ));
        }
        for k in 0..84 {
            for u in 0..users {
                let at = t0 + d * 86_400 + 8 * 3600 + k * 600 + u as i64;
                let stress = d == days - 1 && (40..46).contains(&k);
                out.push(ev(
                    u,
                    Metric::HeartRate,
                    if stress {
                        112.0
                    } else {
                        66.0 + 3.0 * ((k % 5) as f64 - 2.0)
                    },
                    at,
                ));
            }
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let cfg = EngineConfig::default();
    let events = workload(100, 30);
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.sample_size(20);
    g.bench_function(format!("apply_{}_events_100_users", events.len()), |b| {
        b.iter_batched(
            HashMap::<String, UserState>::new,
            |mut users| {
                let mut switches = 0usize;
                for e in &events {
                    let s = users.entry(e.subject.pseudonym.clone()).or_default();
                    switches +=
                        usize::from(s.apply(&cfg, &e.subject.pseudonym, e).switch.is_some());
                }
                assert!(switches >= 100, "every user enters REFLEX on the last day");
                switches
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
