#![no_main]
//! Structured Health Auto Export metrics: known or arbitrary names and units, points with any
//! of the fields HAE sends, so the fuzzer spends its time in normalisation.

#[path = "common.rs"]
mod common;

use arbitrary::Arbitrary;
use auren_core::ingest::IngestLimits;
use auren_core::model::Vendor;
use auren_core::vendors::health_auto_export;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};

const NAMES: &[&str] = &[
    "heart_rate",
    "resting_heart_rate",
    "walking_heart_rate",
    "heart_rate_variability",
    "blood_oxygen_saturation",
    "respiratory_rate",
    "body_temperature",
    "step_count",
    "active_energy",
    "walking_running_distance",
    "weight_body_mass",
    "blood_pressure",
    "sleep_analysis",
    "mindful_minutes",
    "vo2_max",
    "dietary_water",
];
const UNITS: &[&str] = &[
    "bpm",
    "count/min",
    "ms",
    "%",
    "degF",
    "degC",
    "kcal",
    "kJ",
    "mi",
    "km",
    "lb",
    "kg",
    "mmHg",
    "hr",
    "min",
    "count",
    "",
];
const FIELDS: &[&str] = &[
    "qty",
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
];
const TIMES: &[&str] = &["date", "startDate", "endDate", "sleepEnd", "inBedEnd"];
const STAGES: &[&str] = &[
    "Deep",
    "REM",
    "Core",
    "Awake",
    "In Bed",
    "Asleep",
    "Unspecified",
    "dozing",
];

#[derive(Debug, Arbitrary)]
enum Field {
    Number(u8, f64),
    Time(u8, i64),
    RawTime(u8, String),
    Day(u8, i32),
    Stage(u8),
    Source(String),
    Other(String, String),
}

#[derive(Debug, Arbitrary)]
struct Metric {
    name_index: u8,
    name: Option<String>,
    unit_index: Option<u8>,
    unit: Option<String>,
    points: Vec<Vec<Field>>,
}

fn point(fields: &[Field]) -> Value {
    let mut p = Map::new();
    for f in fields {
        let (k, v) = match f {
            Field::Number(i, x) => (FIELDS[usize::from(*i) % FIELDS.len()].to_string(), json!(x)),
            Field::Time(i, offset) => {
                let t = common::now().timestamp().saturating_add(*offset);
                let v = chrono::DateTime::from_timestamp(t, 0)
                    .map(|t| json!(t.format("%Y-%m-%d %H:%M:%S %z").to_string()))
                    .unwrap_or(json!(offset));
                (TIMES[usize::from(*i) % TIMES.len()].to_string(), v)
            }
            Field::RawTime(i, raw) => {
                (TIMES[usize::from(*i) % TIMES.len()].to_string(), json!(raw))
            }
            Field::Day(i, day) => {
                let d = chrono::NaiveDate::from_num_days_from_ce_opt(*day)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default();
                (TIMES[usize::from(*i) % TIMES.len()].to_string(), json!(d))
            }
            Field::Stage(i) => (
                "value".to_string(),
                json!(STAGES[usize::from(*i) % STAGES.len()]),
            ),
            Field::Source(s) => ("source".to_string(), json!(s)),
            Field::Other(k, v) => (k.clone(), json!(v)),
        };
        p.insert(k, v);
    }
    Value::Object(p)
}

fuzz_target!(|metrics: Vec<Metric>| {
    let mut count = 0;
    let metrics: Vec<Value> = metrics
        .iter()
        .map(|m| {
            count += m.points.len();
            let name = m.name.clone().unwrap_or_else(|| NAMES[usize::from(m.name_index) % NAMES.len()].to_string());
            let units = m.unit.clone().or(m.unit_index.map(|i| UNITS[usize::from(i) % UNITS.len()].to_string()));
            json!({"name": name, "units": units, "data": m.points.iter().map(|p| point(p)).collect::<Vec<_>>()})
        })
        .collect();
    let body = json!({"data": {"metrics": metrics}});
    let limits = IngestLimits::default();
    match health_auto_export::parse(body.to_string().as_bytes(), &limits, common::now()) {
        Ok(p) => common::check(&p, &limits, Vendor::HealthAutoExport),
        Err(e) => assert!(
            count
                > limits
                    .max_points_per_metric
                    .min(limits.max_samples_per_push),
            "{e}"
        ),
    }
});
