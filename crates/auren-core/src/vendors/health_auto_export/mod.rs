//! Health Auto Export's "REST API" automation format.
//!
//! `{"data": {"metrics": [{"name", "units", "data": [..]}], ...}}`. Points are usually
//! `{qty, date, source?}` with dates like `2024-02-06 14:30:00 -0800`; `heart_rate` points carry
//! `Min`/`Avg`/`Max`; `blood_pressure` carries `systolic`/`diastolic`; `sleep_analysis` comes
//! either aggregated per night (hours) or as stage segments. Units vary with the phone's locale, so
//! `units` is parsed for every metric. Exports overlap and are split across requests, so each
//! point's identity is (metric, source, instant[, start]): sending the same export twice adds
//! nothing, and neither does the same point under another metric alias or date spelling.

use super::{
    check_time, clip, confidence_for_source, MalformedBody, NormalisedSample, ParsedSamples,
    PushError, Rejection, SampleRejection, MAX_ECHO_CHARS,
};
use crate::ingest::IngestLimits;
use crate::model::{Metric, ReadingDetail, SleepStage};
use crate::units::normalise;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

/// HAE metric names we map. Everything else (dietary, audio exposure ...) is skipped and counted.
pub fn metric_for_name(name: &str) -> Option<Metric> {
    Some(match name {
        "heart_rate" => Metric::HeartRate,
        "resting_heart_rate" => Metric::RestingHeartRate,
        "walking_heart_rate" | "walking_heart_rate_average" => Metric::WalkingHeartRate,
        "heart_rate_variability" | "heart_rate_variability_sdnn" => Metric::HrvSdnn,
        "heart_rate_variability_rmssd" => Metric::HrvRmssd,
        "blood_oxygen_saturation" | "oxygen_saturation" => Metric::OxygenSaturation,
        "respiratory_rate" => Metric::RespiratoryRate,
        "body_temperature" => Metric::BodyTemperature,
        "apple_sleeping_wrist_temperature" => Metric::WristTemperature,
        "step_count" => Metric::Steps,
        "active_energy" => Metric::ActiveEnergy,
        "basal_energy_burned" => Metric::BasalEnergy,
        "walking_running_distance" => Metric::Distance,
        "flights_climbed" => Metric::FlightsClimbed,
        "vo2_max" => Metric::Vo2Max,
        "weight_body_mass" | "body_mass" => Metric::BodyMass,
        "blood_pressure" => Metric::BloodPressureSystolic,
        "sleep_analysis" => Metric::SleepSegment,
        "mindful_minutes" => Metric::MindfulMinutes,
        _ => return None,
    })
}

/// `yyyy-MM-dd HH:mm:ss Z`, or RFC 3339 as some versions send.
pub fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S %z")
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .map(|t| t.with_timezone(&Utc))
        .ok()
}

/// Builds a sample from (metric, value, time, detail, identity key).
type MakeSample<'a> =
    &'a dyn Fn(Metric, f64, DateTime<Utc>, Option<ReadingDetail>, &str) -> NormalisedSample;

/// Reads an export. `now` is when the request arrived: sample times are judged against it with
/// `limits`.
pub fn parse(
    body: &[u8],
    limits: &IngestLimits,
    now: DateTime<Utc>,
) -> Result<ParsedSamples, PushError> {
    let v: Value = serde_json::from_slice(body).map_err(MalformedBody::from_json)?;
    let data = v
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| MalformedBody("field data is missing or not an object".into()))?;
    let mut out = ParsedSamples::with_limits(limits);
    let Some(metrics) = data.get("metrics") else {
        // Workouts-only or state-of-mind-only exports are valid; we have nothing to take from them.
        for key in data.keys() {
            out.unsupported.push(key);
        }
        return Ok(out);
    };
    let metrics = metrics
        .as_array()
        .ok_or_else(|| MalformedBody("data.metrics is not an array".into()))?;
    // Every envelope and size check comes before any point is read.
    let mut read = Vec::with_capacity(metrics.len());
    let mut found = 0usize;
    for (i, m) in metrics.iter().enumerate() {
        let name = m
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| MalformedBody(format!("metrics[{i}].name is missing")))?;
        let points = m
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| MalformedBody(format!("metrics[{i}].data is not an array")))?;
        if points.len() > limits.max_points_per_metric {
            return Err(PushError::TooManyPoints {
                metric: clip(name, MAX_ECHO_CHARS),
                limit: limits.max_points_per_metric,
                found: points.len(),
            });
        }
        found += points.len();
        read.push((i, name, m.get("units").and_then(Value::as_str), points));
    }
    if found > limits.max_samples_per_push {
        return Err(PushError::TooManySamples {
            limit: limits.max_samples_per_push,
            found,
        });
    }
    for (i, name, units, points) in read {
        let Some(metric) = metric_for_name(name) else {
            out.unsupported.push(name);
            continue;
        };
        for (j, p) in points.iter().enumerate() {
            let result = match p.as_object() {
                Some(p) => parse_point(name, metric, units, p, limits, now),
                None => Err(("malformed_point", "data point is not an object".into())),
            };
            match result {
                Ok(samples) => out.samples.extend(samples),
                Err((reason, detail)) => out.rejected.push_with(reason, || SampleRejection {
                    at: format!("metrics[{i}].data[{j}]"),
                    sample_type: Some(clip(name, MAX_ECHO_CHARS)),
                    reason,
                    detail,
                }),
            }
        }
    }
    super::sort_by_time(&mut out);
    Ok(out)
}

fn num(p: &Map<String, Value>, key: &str) -> Result<f64, Rejection> {
    p.get(key)
        .and_then(Value::as_f64)
        .ok_or(("invalid_value", format!("{key} is missing or not a number")))
}

/// Reads a point's time and judges it; the instant, not its spelling, identifies the point.
fn time(
    p: &Map<String, Value>,
    key: &str,
    limits: &IngestLimits,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, Rejection> {
    let raw = p.get(key).and_then(Value::as_str).ok_or((
        "malformed_timestamp",
        format!("{key} is missing or not a string"),
    ))?;
    let t = parse_date(raw).ok_or((
        "malformed_timestamp",
        format!("{key} is not 'yyyy-MM-dd HH:mm:ss Z'"),
    ))?;
    check_time(limits, now, key, t)?;
    Ok(t)
}

fn parse_point(
    name: &str,
    metric: Metric,
    units: Option<&str>,
    p: &Map<String, Value>,
    limits: &IngestLimits,
    now: DateTime<Utc>,
) -> Result<Vec<NormalisedSample>, Rejection> {
    let source = p
        .get("source")
        .and_then(Value::as_str)
        .map(|s| s.chars().take(128).collect::<String>());
    let confidence = confidence_for_source(source.as_deref());
    // The metric, not HAE's name for it (`walking_heart_rate` or `walking_heart_rate_average`),
    // and the key's canonical form: the same point from two app versions is one event.
    let sample =
        |metric: Metric, value: f64, at: DateTime<Utc>, detail, key: &str| NormalisedSample {
            metric,
            value: value + 0.0,
            occurred_at: at,
            detail,
            device: source.clone(),
            confidence,
            identity: vec![
                metric.as_str().to_string(),
                source
                    .as_deref()
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_string(),
                key.to_string(),
            ],
        };
    let conv = |m: Metric, v: f64| normalise(m, v, units).map_err(|e| (e.reason(), e.to_string()));

    if metric == Metric::SleepSegment {
        return parse_sleep(p, units, limits, now, &sample);
    }
    let at = time(p, "date", limits, now)?;
    let key = at.to_rfc3339();
    match name {
        "heart_rate" => {
            let avg = conv(metric, num(p, "Avg").or_else(|_| num(p, "qty"))?)?;
            let detail = match (num(p, "Min"), num(p, "Max")) {
                (Ok(lo), Ok(hi)) => {
                    let (lo, hi) = (conv(metric, lo)?, conv(metric, hi)?);
                    if !(lo <= avg && avg <= hi) {
                        return Err((
                            "invalid_value",
                            "heart_rate Avg is not between Min and Max".into(),
                        ));
                    }
                    Some(ReadingDetail::Range { min: lo, max: hi })
                }
                _ => None,
            };
            Ok(vec![sample(metric, avg, at, detail, &key)])
        }
        "blood_pressure" => {
            let sys = conv(Metric::BloodPressureSystolic, num(p, "systolic")?)?;
            let dia = conv(Metric::BloodPressureDiastolic, num(p, "diastolic")?)?;
            if dia >= sys {
                return Err(("invalid_value", "diastolic is not below systolic".into()));
            }
            Ok(vec![
                sample(Metric::BloodPressureSystolic, sys, at, None, &key),
                sample(Metric::BloodPressureDiastolic, dia, at, None, &key),
            ])
        }
        _ => Ok(vec![sample(
            metric,
            conv(metric, num(p, "qty")?)?,
            at,
            None,
            &key,
        )]),
    }
}

fn parse_sleep(
    p: &Map<String, Value>,
    units: Option<&str>,
    limits: &IngestLimits,
    now: DateTime<Utc>,
    sample: MakeSample<'_>,
) -> Result<Vec<NormalisedSample>, Rejection> {
    let hours = |v: f64, m: Metric| {
        normalise(m, v, Some(units.unwrap_or("hr"))).map_err(|e| (e.reason(), e.to_string()))
    };
    if p.contains_key("startDate") {
        // Unaggregated: one segment per stage.
        let start = time(p, "startDate", limits, now)?;
        let end = time(p, "endDate", limits, now)?;
        if end <= start {
            return Err((
                "invalid_value",
                "sleep segment ends before it starts".into(),
            ));
        }
        let stage_name = p.get("value").and_then(Value::as_str).unwrap_or("");
        let stage = SleepStage::from_name(stage_name)
            .ok_or(("invalid_value", "value is not a sleep stage".to_string()))?;
        let minutes = hours(
            (end - start).num_seconds() as f64 / 3600.0,
            Metric::SleepSegment,
        )?;
        let detail = ReadingDetail::Sleep { stage, start, end };
        return Ok(vec![sample(
            Metric::SleepSegment,
            minutes,
            end,
            Some(detail),
            &start.to_rfc3339(),
        )]);
    }
    // Aggregated per night: `date` is a day (some versions add a time), values are hours.
    let date_raw = p
        .get("date")
        .and_then(Value::as_str)
        .ok_or(("malformed_timestamp", "date is missing".to_string()))?
        .trim();
    let day = date_raw
        .get(..10)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .ok_or(("malformed_timestamp", "date is not yyyy-MM-dd".to_string()))?;
    let end_key = ["sleepEnd", "inBedEnd"]
        .into_iter()
        .find(|k| p.get(*k).is_some_and(Value::is_string));
    let end = if let Some(k) = end_key {
        time(p, k, limits, now)?
    } else {
        let midnight = day.and_time(chrono::NaiveTime::MIN).and_utc();
        check_time(limits, now, "date", midnight)?;
        midnight
    };
    // The night, not how its date was written, identifies the summary.
    let key = day.format("%Y-%m-%d").to_string();
    let total = num(p, "totalSleep").or_else(|_| num(p, "asleep"))?;
    let mut out = vec![sample(
        Metric::SleepTotal,
        hours(total, Metric::SleepTotal)?,
        end,
        None,
        &key,
    )];
    for (k, m) in [
        ("deep", Metric::SleepDeep),
        ("rem", Metric::SleepRem),
        ("core", Metric::SleepCore),
        ("awake", Metric::SleepAwake),
        ("inBed", Metric::SleepInBed),
    ] {
        if let Some(v) = p.get(k).and_then(Value::as_f64) {
            out.push(sample(m, hours(v, m)?, end, None, &key));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2024-02-08T00:00:00Z".parse().unwrap()
    }

    fn parse_at(body: &[u8]) -> Result<ParsedSamples, PushError> {
        parse(body, &IngestLimits::default(), now())
    }

    fn parse_one(name: &str, units: &str, point: Value) -> ParsedSamples {
        let body = json!({"data": {"metrics": [{"name": name, "units": units, "data": [point]}]}});
        parse_at(body.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn table_over_mapped_metrics_and_unit_variants() {
        let d = "2024-02-06 14:30:00 -0800";
        let cases: &[(&str, &str, Value, Metric, Option<f64>)] = &[
            (
                "resting_heart_rate",
                "count/min",
                json!({"qty": 52, "date": d}),
                Metric::RestingHeartRate,
                Some(52.0),
            ),
            (
                "resting_heart_rate",
                "bpm",
                json!({"qty": 52, "date": d}),
                Metric::RestingHeartRate,
                Some(52.0),
            ),
            (
                "walking_heart_rate_average",
                "bpm",
                json!({"qty": 90, "date": d}),
                Metric::WalkingHeartRate,
                Some(90.0),
            ),
            (
                "heart_rate_variability",
                "ms",
                json!({"qty": 44, "date": d}),
                Metric::HrvSdnn,
                Some(44.0),
            ),
            (
                "blood_oxygen_saturation",
                "%",
                json!({"qty": 97, "date": d}),
                Metric::OxygenSaturation,
                Some(97.0),
            ),
            (
                "blood_oxygen_saturation",
                "%",
                json!({"qty": 0.97, "date": d}),
                Metric::OxygenSaturation,
                Some(97.0),
            ),
            (
                "respiratory_rate",
                "count/min",
                json!({"qty": 15, "date": d}),
                Metric::RespiratoryRate,
                Some(15.0),
            ),
            (
                "respiratory_rate",
                "breaths/min",
                json!({"qty": 15, "date": d}),
                Metric::RespiratoryRate,
                Some(15.0),
            ),
            (
                "body_temperature",
                "degF",
                json!({"qty": 98.6, "date": d}),
                Metric::BodyTemperature,
                Some(37.0),
            ),
            (
                "body_temperature",
                "degC",
                json!({"qty": 37.2, "date": d}),
                Metric::BodyTemperature,
                Some(37.2),
            ),
            (
                "apple_sleeping_wrist_temperature",
                "degC",
                json!({"qty": 35.0, "date": d}),
                Metric::WristTemperature,
                Some(35.0),
            ),
            (
                "step_count",
                "count",
                json!({"qty": 4000, "date": d}),
                Metric::Steps,
                Some(4000.0),
            ),
            (
                "active_energy",
                "kcal",
                json!({"qty": 320, "date": d}),
                Metric::ActiveEnergy,
                Some(320.0),
            ),
            (
                "active_energy",
                "kJ",
                json!({"qty": 836.8, "date": d}),
                Metric::ActiveEnergy,
                Some(200.0),
            ),
            (
                "basal_energy_burned",
                "kcal",
                json!({"qty": 1500, "date": d}),
                Metric::BasalEnergy,
                Some(1500.0),
            ),
            (
                "walking_running_distance",
                "mi",
                json!({"qty": 2, "date": d}),
                Metric::Distance,
                Some(3218.688),
            ),
            (
                "walking_running_distance",
                "km",
                json!({"qty": 2, "date": d}),
                Metric::Distance,
                Some(2000.0),
            ),
            (
                "flights_climbed",
                "count",
                json!({"qty": 4, "date": d}),
                Metric::FlightsClimbed,
                Some(4.0),
            ),
            (
                "vo2_max",
                "ml/(kg·min)",
                json!({"qty": 41, "date": d}),
                Metric::Vo2Max,
                Some(41.0),
            ),
            (
                "weight_body_mass",
                "lb",
                json!({"qty": 180, "date": d}),
                Metric::BodyMass,
                Some(81.646_667),
            ),
            (
                "weight_body_mass",
                "kg",
                json!({"qty": 80, "date": d}),
                Metric::BodyMass,
                Some(80.0),
            ),
            (
                "mindful_minutes",
                "min",
                json!({"qty": 12, "date": d}),
                Metric::MindfulMinutes,
                Some(12.0),
            ),
            (
                "heart_rate",
                "count/min",
                json!({"Min": 50, "Avg": 70, "Max": 120, "date": d}),
                Metric::HeartRate,
                Some(70.0),
            ),
            (
                "heart_rate",
                "bpm",
                json!({"Min": 50, "Avg": 70, "Max": 60, "date": d}),
                Metric::HeartRate,
                None,
            ),
            (
                "heart_rate",
                "bpm",
                json!({"Avg": 900, "date": d}),
                Metric::HeartRate,
                None,
            ),
            (
                "resting_heart_rate",
                "bpm",
                json!({"qty": "52", "date": d}),
                Metric::RestingHeartRate,
                None,
            ),
            (
                "resting_heart_rate",
                "bpm",
                json!({"qty": 52, "date": "06/02/2024"}),
                Metric::RestingHeartRate,
                None,
            ),
            (
                "resting_heart_rate",
                "bpm",
                json!({"qty": 52}),
                Metric::RestingHeartRate,
                None,
            ),
            (
                "body_temperature",
                "kelvin",
                json!({"qty": 310, "date": d}),
                Metric::BodyTemperature,
                None,
            ),
            (
                "blood_oxygen_saturation",
                "%",
                json!({"qty": 20, "date": d}),
                Metric::OxygenSaturation,
                None,
            ),
        ];
        for (name, units, point, metric, want) in cases {
            let p = parse_one(name, units, point.clone());
            match want {
                Some(w) => {
                    assert!(
                        p.rejected.is_empty(),
                        "{name} {units} {point}: {:?}",
                        p.rejected
                    );
                    assert_eq!(p.samples[0].metric, *metric);
                    assert!(
                        (p.samples[0].value - w).abs() < 1e-3,
                        "{name}: {}",
                        p.samples[0].value
                    );
                    assert_eq!(
                        p.samples[0].occurred_at.to_rfc3339(),
                        "2024-02-06T22:30:00+00:00"
                    );
                }
                None => {
                    assert!(p.samples.is_empty(), "{name} {point} accepted");
                    assert_eq!(p.rejected.total, 1);
                }
            }
        }
    }

    #[test]
    fn heart_rate_keeps_min_and_max() {
        let p = parse_one(
            "heart_rate",
            "bpm",
            json!({"Min": 50, "Avg": 70, "Max": 120, "date": "2024-02-06 14:30:00 -0800"}),
        );
        assert_eq!(
            p.samples[0].detail,
            Some(ReadingDetail::Range {
                min: 50.0,
                max: 120.0
            })
        );
    }

    #[test]
    fn blood_pressure_gives_two_readings() {
        let p = parse_one(
            "blood_pressure",
            "mmHg",
            json!({"systolic": 120, "diastolic": 80, "date": "2024-02-06 14:30:00 -0800"}),
        );
        let m: Vec<_> = p.samples.iter().map(|s| s.metric).collect();
        assert_eq!(
            m,
            vec![
                Metric::BloodPressureSystolic,
                Metric::BloodPressureDiastolic
            ]
        );
        assert_ne!(p.samples[0].identity, p.samples[1].identity);
    }

    #[test]
    fn both_sleep_shapes() {
        let agg = parse_one(
            "sleep_analysis",
            "hr",
            json!({
            "date": "2024-02-06", "totalSleep": 7.5, "asleep": 7.5, "core": 4, "deep": 1.5, "rem": 2,
            "awake": 0.25, "inBed": 8, "sleepStart": "2024-02-05 23:00:00 -0800",
            "sleepEnd": "2024-02-06 07:00:00 -0800", "inBedStart": "2024-02-05 22:50:00 -0800",
            "inBedEnd": "2024-02-06 07:05:00 -0800"}),
        );
        assert!(agg.rejected.is_empty(), "{:?}", agg.rejected);
        let got: Vec<_> = agg.samples.iter().map(|s| (s.metric, s.value)).collect();
        assert_eq!(
            got,
            vec![
                (Metric::SleepTotal, 450.0),
                (Metric::SleepDeep, 90.0),
                (Metric::SleepRem, 120.0),
                (Metric::SleepCore, 240.0),
                (Metric::SleepAwake, 15.0),
                (Metric::SleepInBed, 480.0)
            ]
        );
        assert_eq!(
            agg.samples[0].occurred_at.to_rfc3339(),
            "2024-02-06T15:00:00+00:00"
        );

        let seg = parse_one(
            "sleep_analysis",
            "hr",
            json!({
            "startDate": "2024-02-06 01:00:00 -0800", "endDate": "2024-02-06 01:30:00 -0800",
            "qty": 0.5, "value": "Deep", "source": "Apple Watch"}),
        );
        assert_eq!(seg.samples[0].metric, Metric::SleepSegment);
        assert_eq!(seg.samples[0].value, 30.0);
        assert!(matches!(
            seg.samples[0].detail,
            Some(ReadingDetail::Sleep {
                stage: SleepStage::AsleepDeep,
                ..
            })
        ));
        let bad = parse_one(
            "sleep_analysis",
            "hr",
            json!({
            "startDate": "2024-02-06 01:00:00 -0800", "endDate": "2024-02-06 01:30:00 -0800", "value": "Dozing"}),
        );
        assert_eq!(bad.rejected.listed[0].reason, "invalid_value");
    }

    #[test]
    fn identity_is_metric_source_date_so_overlaps_collapse() {
        let a = parse_one(
            "resting_heart_rate",
            "bpm",
            json!({"qty": 52, "date": "2024-02-06 00:00:00 -0800", "source": "Apple Watch"}),
        );
        let b = parse_one(
            "resting_heart_rate",
            "count/min",
            json!({"qty": 52, "date": "2024-02-06 00:00:00 -0800", "source": "Apple Watch"}),
        );
        assert_eq!(a.samples[0].identity, b.samples[0].identity);
        let c = parse_one(
            "resting_heart_rate",
            "bpm",
            json!({"qty": 52, "date": "2024-02-06 00:00:00 -0800", "source": "iPhone"}),
        );
        assert_ne!(a.samples[0].identity, c.samples[0].identity);
    }

    #[test]
    fn unknown_metrics_skipped_and_envelope_errors() {
        let body = json!({"data": {"metrics": [{"name": "dietary_water", "units": "mL", "data": [{"qty": 1, "date": "2024-02-06 00:00:00 -0800"}]}], "workouts": []}});
        let p = parse_at(body.to_string().as_bytes()).unwrap();
        assert_eq!(p.unsupported.total, 1);
        assert!(p.unsupported.names.contains("dietary_water"));
        assert!(parse_at(b"{}").is_err());
        assert!(parse_at(br#"{"data":{"metrics":{}}}"#).is_err());
        assert!(parse_at(br#"{"data":{"metrics":[{"data":[]}]}}"#).is_err());
        assert!(parse_at(br#"{"data":{"workouts":[]}}"#)
            .unwrap()
            .samples
            .is_empty());
    }
}
