//! What a webhook with a wrong signature costs, per vendor: an attacker can send these as fast
//! as the network allows, so a refusal must cost no more than hashing the body once.
//! Run: `cargo bench -p auren-core --bench signature`.

use auren_core::vendors::{oura, whoop};
use chrono::DateTime;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

const OURA_BODY: &str = r#"{"event_type":"create","data_type":"sleep","object_id":"8f9a5221-639e-4a85-81cb-4065ef23f979","event_time":"2024-01-01T08:00:00+00:00","user_id":"oura-user-123"}"#;
const WHOOP_BODY: &str = r#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"e369c784-5100-49e8-8098-75d35c47b31b"}"#;
/// A well-formed MAC of the wrong body: passes every check but the last.
const WRONG_HEX: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
const WRONG_B64: &str = "ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=";

/// A valid JSON object of about `size` bytes, compact or spaced.
fn big_body(size: usize, spaced: bool) -> String {
    let sep = if spaced { ", " } else { "," };
    let items: Vec<String> = (0..size / 8)
        .map(|i| format!("{}", i % 1_000_000))
        .collect();
    format!(
        r#"{{"event_type":"create","data_type":"sleep","object_id":"x","user_id":"u","padding":[{}]}}"#,
        items.join(sep)
    )
}

fn bench(c: &mut Criterion) {
    let now = DateTime::from_timestamp(1_700_000_010, 0).unwrap();
    let oura_spaced = OURA_BODY
        .replace("\",\"", "\", \"")
        .replace("\":\"", "\": \"");
    let big_compact = big_body(1 << 20, false);
    let big_spaced = big_body(1 << 20, true);
    let cases: Vec<(&str, &[u8])> = vec![
        ("small_compact", OURA_BODY.as_bytes()),
        ("small_spaced", oura_spaced.as_bytes()),
        ("1mib_compact", big_compact.as_bytes()),
        ("1mib_spaced", big_spaced.as_bytes()),
    ];
    let mut g = c.benchmark_group("wrong_signature");
    for (name, body) in &cases {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("oura/{name}"), |b| {
            b.iter(|| {
                let r = oura::verify(
                    b"oura_test_client_secret",
                    Some(WRONG_HEX),
                    Some("1700000000"),
                    black_box(body),
                    now,
                );
                assert!(r.is_err());
            })
        });
    }
    let whoop_now = DateTime::from_timestamp(1_748_241_250, 0).unwrap();
    for (name, body) in [
        ("small_compact", WHOOP_BODY.as_bytes()),
        ("1mib_compact", big_compact.as_bytes()),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("whoop/{name}"), |b| {
            b.iter(|| {
                let r = whoop::verify(
                    b"whoop_test_client_secret",
                    Some(WRONG_B64),
                    Some("1748241241000"),
                    black_box(body),
                    whoop_now,
                );
                assert!(r.is_err());
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
