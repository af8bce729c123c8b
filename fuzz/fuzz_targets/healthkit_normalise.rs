#![no_main]
//! Structured HealthKit samples: a known or arbitrary type, any number, unit and times, so the
//! fuzzer spends its time in normalisation rather than in JSON syntax.

#[path = "common.rs"]
mod common;

use arbitrary::Arbitrary;
use auren_core::ingest::IngestLimits;
use auren_core::model::Vendor;
use auren_core::vendors::healthkit;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

#[derive(Debug, Arbitrary)]
enum Num {
    F(f64),
    I(i64),
    Text(String),
    Stage(u8),
}

#[derive(Debug, Arbitrary)]
struct Sample {
    type_index: u8,
    type_name: Option<String>,
    prefixed: bool,
    value: Num,
    unit: Option<String>,
    known_unit: Option<u8>,
    start_offset_seconds: i64,
    end_offset_seconds: Option<i64>,
    raw_time: Option<String>,
    source: Option<String>,
}

const UNITS: &[&str] = &[
    "bpm",
    "count/min",
    "count/s",
    "ms",
    "s",
    "%",
    "degF",
    "degC",
    "kcal",
    "kJ",
    "Cal",
    "cal",
    "km",
    "mi",
    "lb",
    "kg",
    "ml/(kg·min)",
    "mmHg",
    "min",
    "hr",
    "count",
    "",
];

fn time(offset: i64) -> Value {
    let t = common::now().timestamp().saturating_add(offset);
    match chrono::DateTime::from_timestamp(t, 0) {
        Some(t) => json!(t.to_rfc3339()),
        None => json!(offset),
    }
}

fn sample(s: &Sample) -> Value {
    let types = healthkit::TYPES;
    let mut t = match &s.type_name {
        Some(n) => n.clone(),
        None => types[usize::from(s.type_index) % types.len()].0.to_string(),
    };
    if s.prefixed {
        t = format!("HKQuantityTypeIdentifier{t}");
    }
    let value = match &s.value {
        Num::F(f) => json!(f),
        Num::I(i) => json!(i),
        Num::Text(x) => json!(x),
        Num::Stage(n) => json!(n % 7),
    };
    let mut v = json!({"type": t, "value": value, "source": s.source});
    v["timestamp"] = match &s.raw_time {
        Some(raw) => json!(raw),
        None => time(s.start_offset_seconds),
    };
    if let Some(end) = s.end_offset_seconds {
        v["end_timestamp"] = time(end);
    }
    match (&s.unit, s.known_unit) {
        (Some(u), _) => v["unit"] = json!(u),
        (None, Some(k)) => v["unit"] = json!(UNITS[usize::from(k) % UNITS.len()]),
        _ => {}
    }
    v
}

fuzz_target!(|samples: Vec<Sample>| {
    let body =
        json!({"user_id": "fuzz-user", "samples": samples.iter().map(sample).collect::<Vec<_>>()});
    let limits = IngestLimits::default();
    let pushes = healthkit::parse(body.to_string().as_bytes(), &limits, common::now())
        .expect("a well-formed push is never refused as a whole");
    common::check(&pushes[0].parsed, &limits, Vendor::Healthkit);
    let p = &pushes[0].parsed;
    assert_eq!(
        p.samples.len() + p.rejected.total + p.unsupported.total,
        samples.len()
    );
});
