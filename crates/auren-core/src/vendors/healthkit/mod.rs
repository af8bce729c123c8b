//! Apple HealthKit pushes from our iOS companion app.
//!
//! HealthKit has no webhooks: the app pushes `{user_id, samples:[{type, value, timestamp, unit?,
//! source}]}`, or a batch of up to [`MAX_PUSHES`] such pushes (a JSON array, or `{"pushes":[..]}`),
//! authenticated by a per-user API key. Each sample is read on its own: one bad sample is refused
//! with a reason and never takes the valid ones down with it, and a sample whose time cannot be
//! read, or is not believable under the [`IngestLimits`], is refused, never stamped with "now".

pub use super::PushError;
use super::{
    canonical_number, check_time, clip, confidence_for_source, MalformedBody, NormalisedSample,
    ParsedSamples, Rejection, SampleRejection, MAX_ECHO_CHARS,
};
use crate::ingest::IngestLimits;
use crate::model::{Metric, ReadingDetail, SleepStage};
use crate::units::normalise;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub const MAX_PUSHES: usize = 100;

/// The HealthKit identifiers we map, without Apple's `HKQuantityTypeIdentifier` prefix.
/// `heartRateVariabilitySDNN` maps to SDNN and only SDNN; RMSSD (iOS 27+) has its own metric.
pub const TYPES: &[(&str, Metric)] = &[
    ("heartRate", Metric::HeartRate),
    ("restingHeartRate", Metric::RestingHeartRate),
    ("walkingHeartRateAverage", Metric::WalkingHeartRate),
    ("heartRateVariabilitySDNN", Metric::HrvSdnn),
    ("heartRateVariabilityRMSSD", Metric::HrvRmssd),
    ("oxygenSaturation", Metric::OxygenSaturation),
    ("respiratoryRate", Metric::RespiratoryRate),
    ("bodyTemperature", Metric::BodyTemperature),
    ("appleSleepingWristTemperature", Metric::WristTemperature),
    ("stepCount", Metric::Steps),
    ("activeEnergyBurned", Metric::ActiveEnergy),
    ("basalEnergyBurned", Metric::BasalEnergy),
    ("distanceWalkingRunning", Metric::Distance),
    ("flightsClimbed", Metric::FlightsClimbed),
    ("vo2Max", Metric::Vo2Max),
    ("bodyMass", Metric::BodyMass),
    ("bloodPressureSystolic", Metric::BloodPressureSystolic),
    ("bloodPressureDiastolic", Metric::BloodPressureDiastolic),
    ("sleepAnalysis", Metric::SleepSegment),
    ("mindfulSession", Metric::MindfulMinutes),
    // A workout record: value is its duration in minutes, timestamp its start.
    ("workout", Metric::Workout),
];

pub fn metric_for_type(t: &str) -> Option<Metric> {
    let bare = t
        .strip_prefix("HKQuantityTypeIdentifier")
        .or_else(|| t.strip_prefix("HKCategoryTypeIdentifier"))
        .unwrap_or(t);
    TYPES
        .iter()
        .find_map(|(name, m)| (name.eq_ignore_ascii_case(bare)).then_some(*m))
}

/// One user's samples from a push.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub user_id: String,
    pub parsed: ParsedSamples,
}

/// Reads a single push or a batch. `now` is when the request arrived: sample times are judged
/// against it with `limits`.
pub fn parse(
    body: &[u8],
    limits: &IngestLimits,
    now: DateTime<Utc>,
) -> Result<Vec<Push>, PushError> {
    let v: Value = serde_json::from_slice(body).map_err(MalformedBody::from_json)?;
    let pushes: Vec<&Value> = match &v {
        Value::Array(items) => items.iter().collect(),
        Value::Object(o) if o.contains_key("pushes") => match o.get("pushes") {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => return Err(MalformedBody("field pushes is not an array".into()).into()),
        },
        Value::Object(_) => vec![&v],
        _ => return Err(MalformedBody("body is neither a push nor a batch".into()).into()),
    };
    if pushes.is_empty() {
        return Err(MalformedBody("batch is empty".into()).into());
    }
    if pushes.len() > MAX_PUSHES {
        return Err(PushError::TooManyPushes {
            limit: MAX_PUSHES,
            found: pushes.len(),
        });
    }
    let found: usize = pushes
        .iter()
        .filter_map(|p| p.get("samples").and_then(Value::as_array))
        .map(Vec::len)
        .sum();
    if found > limits.max_samples_per_push {
        return Err(PushError::TooManySamples {
            limit: limits.max_samples_per_push,
            found,
        });
    }
    let batch = pushes.len() > 1 || v.is_array() || v.get("pushes").is_some();
    pushes
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let prefix = if batch {
                format!("pushes[{i}].")
            } else {
                String::new()
            };
            parse_push(p, &prefix, limits, now).map_err(PushError::from)
        })
        .collect()
}

fn parse_push(
    p: &Value,
    prefix: &str,
    limits: &IngestLimits,
    now: DateTime<Utc>,
) -> Result<Push, MalformedBody> {
    let user_id = p
        .get("user_id")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| MalformedBody(format!("{prefix}user_id is missing or not a string")))?;
    crate::model::validate_user_id(user_id)
        .map_err(|e| MalformedBody(format!("{prefix}user_id: {e}")))?;
    let samples = p
        .get("samples")
        .and_then(Value::as_array)
        .ok_or_else(|| MalformedBody(format!("{prefix}samples is missing or not an array")))?;
    let mut parsed = ParsedSamples::with_limits(limits);
    for (j, s) in samples.iter().enumerate() {
        let sample_type = s.get("type").and_then(Value::as_str);
        match parse_sample(s, limits, now) {
            Ok(Some(sample)) => parsed.samples.push(sample),
            Ok(None) => parsed.unsupported.push(sample_type.unwrap_or("")),
            Err((reason, detail)) => parsed.rejected.push_with(reason, || SampleRejection {
                at: format!("{prefix}samples[{j}]"),
                sample_type: sample_type.map(|t| clip(t, MAX_ECHO_CHARS)),
                reason,
                detail,
            }),
        }
    }
    super::sort_by_time(&mut parsed);
    Ok(Push {
        user_id: user_id.to_string(),
        parsed,
    })
}

/// Parses an RFC 3339 time; offsets are kept, then converted to UTC.
pub fn parse_time(field: &str, v: Option<&Value>) -> Result<DateTime<Utc>, Rejection> {
    let s = v.and_then(Value::as_str).ok_or((
        "malformed_timestamp",
        format!("{field} is missing or not a string"),
    ))?;
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            (
                "malformed_timestamp",
                format!("{field} is not an RFC 3339 date-time"),
            )
        })
}

fn parse_sample(
    s: &Value,
    limits: &IngestLimits,
    now: DateTime<Utc>,
) -> Result<Option<NormalisedSample>, Rejection> {
    let t = s.get("type").and_then(Value::as_str).ok_or((
        "missing_type",
        "type is missing or not a string".to_string(),
    ))?;
    let Some(metric) = metric_for_type(t) else {
        return Ok(None);
    };
    let start = parse_time(
        "timestamp",
        s.get("timestamp").or_else(|| s.get("startDate")),
    )?;
    check_time(limits, now, "timestamp", start)?;
    let source = s
        .get("source")
        .and_then(Value::as_str)
        .map(|x| x.chars().take(128).collect::<String>());
    let unit = s.get("unit").and_then(Value::as_str);
    let raw_value = s.get("value");
    let (value, detail, occurred_at, value_key) = if metric == Metric::SleepSegment {
        let stage = match raw_value {
            Some(Value::Number(n)) => n.as_i64().and_then(SleepStage::from_raw),
            Some(Value::String(name)) => SleepStage::from_name(name),
            _ => None,
        }
        .ok_or((
            "invalid_value",
            "sleepAnalysis value is not a sleep stage".to_string(),
        ))?;
        let end = parse_time(
            "end_timestamp",
            s.get("end_timestamp").or_else(|| s.get("endDate")),
        )?;
        check_time(limits, now, "end_timestamp", end)?;
        if end <= start {
            return Err((
                "invalid_value",
                "sleep segment ends before it starts".into(),
            ));
        }
        let minutes = (end - start).num_seconds() as f64 / 60.0;
        let minutes = normalise(metric, minutes, None).map_err(|e| (e.reason(), e.to_string()))?;
        (
            minutes,
            Some(ReadingDetail::Sleep { stage, start, end }),
            end,
            format!("{stage:?}"),
        )
    } else {
        let v = raw_value.and_then(Value::as_f64).ok_or((
            "invalid_value",
            "value is missing or not a number".to_string(),
        ))?;
        let v = normalise(metric, v, unit).map_err(|e| (e.reason(), e.to_string()))?;
        // The canonical value, not its spelling: 71 and 71.0, or 0.97 and 97 %, are one reading.
        (v + 0.0, None, start, canonical_number(v))
    };
    Ok(Some(NormalisedSample {
        metric,
        value,
        occurred_at,
        detail,
        confidence: confidence_for_source(source.as_deref()),
        // The metric, not the type's spelling: `heartRate`, `HeartRate` and
        // `HKQuantityTypeIdentifierHeartRate` are one type.
        identity: vec![
            metric.as_str().to_string(),
            start.to_rfc3339(),
            value_key,
            source
                .as_deref()
                .map(str::trim)
                .unwrap_or_default()
                .to_string(),
        ],
        device: source,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2025-01-28T00:00:00Z".parse().unwrap()
    }

    fn parse_at(body: &[u8]) -> Result<Vec<Push>, PushError> {
        parse(body, &IngestLimits::default(), now())
    }

    fn one(sample: Value) -> ParsedSamples {
        let body = json!({"user_id": "u1", "samples": [sample]});
        let mut pushes = parse_at(body.to_string().as_bytes()).unwrap();
        pushes.remove(0).parsed
    }

    /// (type, value, unit, expected metric, expected canonical value or None for a refusal).
    type Case = (
        &'static str,
        Value,
        Option<&'static str>,
        Metric,
        Option<f64>,
    );

    /// Every mapped type, its unit variants, and a value outside its range.
    #[test]
    fn table_over_every_mapped_type() {
        let ts = "2025-01-27T10:30:00Z";
        let cases: &[Case] = &[
            ("heartRate", json!(72), None, Metric::HeartRate, Some(72.0)),
            (
                "heartRate",
                json!(72),
                Some("count/min"),
                Metric::HeartRate,
                Some(72.0),
            ),
            ("heartRate", json!(400), None, Metric::HeartRate, None),
            (
                "restingHeartRate",
                json!(55),
                Some("bpm"),
                Metric::RestingHeartRate,
                Some(55.0),
            ),
            (
                "restingHeartRate",
                json!(5),
                None,
                Metric::RestingHeartRate,
                None,
            ),
            (
                "walkingHeartRateAverage",
                json!(95),
                None,
                Metric::WalkingHeartRate,
                Some(95.0),
            ),
            (
                "heartRateVariabilitySDNN",
                json!(48.5),
                Some("ms"),
                Metric::HrvSdnn,
                Some(48.5),
            ),
            (
                "HKQuantityTypeIdentifierHeartRateVariabilitySDNN",
                json!(0.05),
                Some("s"),
                Metric::HrvSdnn,
                Some(50.0),
            ),
            (
                "heartRateVariabilitySDNN",
                json!(0),
                Some("ms"),
                Metric::HrvSdnn,
                None,
            ),
            (
                "heartRateVariabilityRMSSD",
                json!(40),
                Some("ms"),
                Metric::HrvRmssd,
                Some(40.0),
            ),
            (
                "oxygenSaturation",
                json!(0.97),
                None,
                Metric::OxygenSaturation,
                Some(97.0),
            ),
            (
                "oxygenSaturation",
                json!(96),
                Some("%"),
                Metric::OxygenSaturation,
                Some(96.0),
            ),
            (
                "oxygenSaturation",
                json!(30),
                Some("%"),
                Metric::OxygenSaturation,
                None,
            ),
            (
                "respiratoryRate",
                json!(14),
                Some("breaths/min"),
                Metric::RespiratoryRate,
                Some(14.0),
            ),
            (
                "respiratoryRate",
                json!(200),
                None,
                Metric::RespiratoryRate,
                None,
            ),
            (
                "bodyTemperature",
                json!(98.6),
                Some("degF"),
                Metric::BodyTemperature,
                Some(37.0),
            ),
            (
                "bodyTemperature",
                json!(36.8),
                Some("degC"),
                Metric::BodyTemperature,
                Some(36.8),
            ),
            (
                "bodyTemperature",
                json!(98.6),
                None,
                Metric::BodyTemperature,
                None,
            ),
            (
                "appleSleepingWristTemperature",
                json!(35.1),
                Some("degC"),
                Metric::WristTemperature,
                Some(35.1),
            ),
            (
                "stepCount",
                json!(1200),
                Some("count"),
                Metric::Steps,
                Some(1200.0),
            ),
            ("stepCount", json!(-5), None, Metric::Steps, None),
            (
                "activeEnergyBurned",
                json!(418.4),
                Some("kJ"),
                Metric::ActiveEnergy,
                Some(100.0),
            ),
            (
                "activeEnergyBurned",
                json!(250),
                Some("Cal"),
                Metric::ActiveEnergy,
                Some(250.0),
            ),
            (
                "basalEnergyBurned",
                json!(1600),
                Some("kcal"),
                Metric::BasalEnergy,
                Some(1600.0),
            ),
            (
                "distanceWalkingRunning",
                json!(1.5),
                Some("km"),
                Metric::Distance,
                Some(1500.0),
            ),
            (
                "distanceWalkingRunning",
                json!(1),
                Some("mi"),
                Metric::Distance,
                Some(1609.344),
            ),
            (
                "flightsClimbed",
                json!(3),
                None,
                Metric::FlightsClimbed,
                Some(3.0),
            ),
            (
                "vo2Max",
                json!(42),
                Some("ml/(kg*min)"),
                Metric::Vo2Max,
                Some(42.0),
            ),
            ("vo2Max", json!(0.5), None, Metric::Vo2Max, None),
            (
                "bodyMass",
                json!(154),
                Some("lb"),
                Metric::BodyMass,
                Some(69.853_225),
            ),
            (
                "bodyMass",
                json!(70),
                Some("kg"),
                Metric::BodyMass,
                Some(70.0),
            ),
            (
                "bloodPressureSystolic",
                json!(118),
                Some("mmHg"),
                Metric::BloodPressureSystolic,
                Some(118.0),
            ),
            (
                "bloodPressureDiastolic",
                json!(76),
                Some("mmHg"),
                Metric::BloodPressureDiastolic,
                Some(76.0),
            ),
            (
                "bloodPressureDiastolic",
                json!(500),
                None,
                Metric::BloodPressureDiastolic,
                None,
            ),
            (
                "mindfulSession",
                json!(10),
                Some("min"),
                Metric::MindfulMinutes,
                Some(10.0),
            ),
            (
                "workout",
                json!(45),
                Some("min"),
                Metric::Workout,
                Some(45.0),
            ),
            (
                "heartRate",
                json!(72),
                Some("furlongs"),
                Metric::HeartRate,
                None,
            ),
        ];
        for (t, v, u, metric, want) in cases {
            let mut s = json!({"type": t, "value": v, "timestamp": ts, "source": "Apple Watch"});
            if let Some(u) = u {
                s["unit"] = json!(u);
            }
            let p = one(s);
            match want {
                Some(w) => {
                    assert!(p.rejected.is_empty(), "{t} {v} {u:?}: {:?}", p.rejected);
                    assert_eq!(p.samples.len(), 1, "{t}");
                    assert_eq!(p.samples[0].metric, *metric, "{t}");
                    assert!(
                        (p.samples[0].value - w).abs() < 1e-3,
                        "{t}: {}",
                        p.samples[0].value
                    );
                    assert_eq!(p.samples[0].confidence, 0.95);
                }
                None => {
                    assert!(p.samples.is_empty(), "{t} {v} {u:?} was accepted");
                    assert_eq!(p.rejected.total, 1, "{t}");
                }
            }
        }
        // Every entry of the mapping table is covered above (sleep has its own test).
        for (name, _) in TYPES.iter().filter(|(n, _)| *n != "sleepAnalysis") {
            assert!(
                cases.iter().any(|c| c.0.ends_with(name)
                    || c.0 == *name
                    || c.0
                        .eq_ignore_ascii_case(&format!("HKQuantityTypeIdentifier{name}"))),
                "{name} untested"
            );
        }
    }

    #[test]
    fn sdnn_stays_sdnn() {
        let p = one(
            json!({"type":"heartRateVariabilitySDNN","value":45,"timestamp":"2025-01-27T03:00:00Z","source":"Apple Watch"}),
        );
        assert_eq!(p.samples[0].metric, Metric::HrvSdnn);
        assert_ne!(p.samples[0].metric, Metric::HrvRmssd);
    }

    #[test]
    fn sleep_segments_by_raw_value_or_name() {
        let p = one(
            json!({"type":"sleepAnalysis","value":4,"timestamp":"2025-01-27T01:00:00Z","end_timestamp":"2025-01-27T01:45:00Z","source":"Apple Watch"}),
        );
        assert_eq!(p.samples[0].value, 45.0);
        assert!(matches!(
            p.samples[0].detail,
            Some(ReadingDetail::Sleep {
                stage: SleepStage::AsleepDeep,
                ..
            })
        ));
        let p = one(
            json!({"type":"sleepAnalysis","value":"asleepREM","timestamp":"2025-01-27T01:00:00Z","endDate":"2025-01-27T01:20:00Z"}),
        );
        assert!(matches!(
            p.samples[0].detail,
            Some(ReadingDetail::Sleep {
                stage: SleepStage::AsleepRem,
                ..
            })
        ));
        let p = one(
            json!({"type":"sleepAnalysis","value":9,"timestamp":"2025-01-27T01:00:00Z","end_timestamp":"2025-01-27T01:20:00Z"}),
        );
        assert_eq!(p.rejected.listed[0].reason, "invalid_value");
        let p = one(json!({"type":"sleepAnalysis","value":3,"timestamp":"2025-01-27T01:00:00Z"}));
        assert_eq!(p.rejected.listed[0].reason, "malformed_timestamp");
    }

    #[test]
    fn malformed_timestamp_is_refused_never_replaced_by_now() {
        for ts in [
            json!("yesterday"),
            json!(12345),
            json!(null),
            json!("2025-13-01T00:00:00Z"),
        ] {
            let p = one(json!({"type":"heartRate","value":70,"timestamp":ts}));
            assert!(p.samples.is_empty());
            assert_eq!(p.rejected.listed[0].reason, "malformed_timestamp");
        }
    }

    #[test]
    fn valid_samples_survive_a_bad_neighbour_and_unknown_types_are_skipped() {
        let body = json!({"user_id":"u1","samples":[
            {"type":"heartRate","value":70,"timestamp":"2025-01-27T10:30:00Z"},
            {"type":"heartRate","value":"fast","timestamp":"2025-01-27T10:31:00Z"},
            {"type":"dietaryWater","value":1,"timestamp":"2025-01-27T10:31:00Z"}
        ]});
        let p = parse_at(body.to_string().as_bytes())
            .unwrap()
            .remove(0)
            .parsed;
        assert_eq!(p.samples.len(), 1);
        assert_eq!(p.rejected.total, 1);
        assert_eq!(p.rejected.listed[0].at, "samples[1]");
        assert_eq!(p.unsupported.total, 1);
        assert!(p.unsupported.names.contains("dietaryWater"));
    }

    #[test]
    fn batches_and_limits() {
        let push = json!({"user_id":"u1","samples":[{"type":"heartRate","value":70,"timestamp":"2025-01-27T10:30:00Z"}]});
        let arr = Value::Array(vec![push.clone(); 3]);
        assert_eq!(parse_at(arr.to_string().as_bytes()).unwrap().len(), 3);
        let obj = json!({"pushes": [push.clone(), push.clone()]});
        assert_eq!(parse_at(obj.to_string().as_bytes()).unwrap().len(), 2);
        let big = Value::Array(vec![push; MAX_PUSHES + 1]);
        assert_eq!(
            parse_at(big.to_string().as_bytes()),
            Err(PushError::TooManyPushes {
                limit: MAX_PUSHES,
                found: 101
            })
        );
        assert!(matches!(parse_at(b"[]"), Err(PushError::Malformed(_))));
        assert!(matches!(
            parse_at(b"{\"samples\":[]}"),
            Err(PushError::Malformed(_))
        ));
        assert!(matches!(parse_at(b"nope"), Err(PushError::Malformed(_))));
    }

    #[test]
    fn identity_is_stable_and_content_based() {
        let s = json!({"type":"heartRate","value":70,"timestamp":"2025-01-27T10:30:00+01:00","source":"Apple Watch"});
        let a = one(s.clone());
        let b = one(s);
        assert_eq!(a.samples[0].identity, b.samples[0].identity);
        let c = one(
            json!({"type":"heartRate","value":71,"timestamp":"2025-01-27T10:30:00+01:00","source":"Apple Watch"}),
        );
        assert_ne!(a.samples[0].identity, c.samples[0].identity);
        assert_eq!(
            a.samples[0].occurred_at.to_rfc3339(),
            "2025-01-27T09:30:00+00:00"
        );
    }
}
