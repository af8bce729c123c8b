//! Oura v2 documents, as fetched after a notification or while catching up, and what they
//! become.
//!
//! A delivery names a document (`data_type`, `object_id`); `GET /v2/usercollection/{path}/{id}`
//! returns it, and `GET /v2/usercollection/{path}?start_date&end_date&next_token` returns pages
//! of them (`{data, next_token}`). Heart rate is a time series with no documents and no webhook:
//! it only comes as a collection, by `start_datetime`/`end_datetime`.
//!
//! Parsing is lenient in what it does not use (unknown fields are ignored, fields the schema
//! marks nullable are `Option`), because Oura adds fields and types without notice; it is strict
//! about what a reading needs (an id, a parseable time), because a reading without them cannot be
//! placed or deduplicated.
//!
//! Every sample's identity is (data type, document id, document version, metric): Oura gives
//! each document `meta.version` and `meta.updated_at`, so a refetch of the same version is a
//! duplicate and a recomputed document (Oura revises a night when the ring syncs late) is a new
//! reading. Where a document has no `meta`, the value itself stands in for the version.

use crate::model::Metric;
use crate::vendors::{canonical_number, MalformedBody, NormalisedSample};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// How far Oura's values are trusted: a finger-worn PPG sensor measured at night, the same
/// weight [`crate::vendors::confidence_for_source`] gives an Oura reading that reaches us through
/// HealthKit, so one ring read two ways carries one weight.
const CONFIDENCE: f64 = 0.95;

const DEVICE: &str = "Oura";

/// How a collection is bounded in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateRange {
    /// `start_date`/`end_date` (days): the daily documents and sleep periods.
    Dates,
    /// `start_datetime`/`end_datetime` (instants): the heart-rate time series.
    DateTimes,
}

/// A data type we fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataType {
    /// The name in a webhook delivery and subscription (`daily_readiness`, `vo2_max`).
    pub webhook: &'static str,
    /// The REST collection segment, which is not always the webhook name (`vO2_max`).
    pub path: &'static str,
    pub dated_by: DateRange,
    /// The OAuth scope that grants it.
    pub scope: &'static str,
}

/// The types that give readings, and so the ones worth fetching and subscribing to.
///
/// Left out on purpose: `daily_sleep` (a score and its contributors, every one a 1-100 rating of
/// the night the `sleep` document already measures), `daily_stress` (see [`DailyStress`]: no
/// defensible instantaneous stress level), and tags, sessions, configuration and the cycle
/// types (no metric). Oura's spec does not state which scope each endpoint needs; the scopes
/// here follow its scope descriptions (`daily`: "daily summaries of sleep, activity and
/// readiness"; `spo2Daily`: "SpO2 average recorded during sleep"). VO2 max is a daily estimate,
/// so `daily` is assumed for it too.
pub const DATA_TYPES: &[DataType] = &[
    DataType {
        webhook: "sleep",
        path: "sleep",
        dated_by: DateRange::Dates,
        scope: "daily",
    },
    DataType {
        webhook: "daily_readiness",
        path: "daily_readiness",
        dated_by: DateRange::Dates,
        scope: "daily",
    },
    DataType {
        webhook: "daily_activity",
        path: "daily_activity",
        dated_by: DateRange::Dates,
        scope: "daily",
    },
    DataType {
        webhook: "daily_spo2",
        path: "daily_spo2",
        dated_by: DateRange::Dates,
        scope: "spo2Daily",
    },
    DataType {
        webhook: "workout",
        path: "workout",
        dated_by: DateRange::Dates,
        scope: "workout",
    },
    DataType {
        webhook: "vo2_max",
        path: "vO2_max",
        dated_by: DateRange::Dates,
        scope: "daily",
    },
    // Not a webhook data type in either official spec: polled, never notified.
    DataType {
        webhook: "heartrate",
        path: "heartrate",
        dated_by: DateRange::DateTimes,
        scope: "heartrate",
    },
];

/// The type a delivery's `data_type` names, if we fetch it. The REST spelling (`vO2_max`) is
/// accepted too, so a caller holding a path can look it up the same way.
pub fn data_type(webhook_name: &str) -> Option<&'static DataType> {
    DATA_TYPES
        .iter()
        .find(|t| t.webhook == webhook_name || t.path == webhook_name)
}

/// `GET /v2/usercollection/personal_info`: `id` is the `user_id` deliveries carry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PersonalInfo {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
}

/// A collection page. `next_token` is absent or null on the last page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub next_token: Option<String>,
}

/// `meta` of every document. Both fields are required by the spec; optional here so that a
/// document without them still reads (its value then identifies its version).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SleepReadiness {
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub temperature_deviation: Option<f64>,
    #[serde(default)]
    pub temperature_trend_deviation: Option<f64>,
}

/// `sleep` (PublicModifiedSleepModel): one sleep period, main sleep or not. Durations are
/// seconds; times are local with an offset.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Sleep {
    pub id: String,
    #[serde(default)]
    pub meta: Option<Meta>,
    #[serde(default)]
    pub day: Option<String>,
    pub bedtime_start: String,
    pub bedtime_end: String,
    /// `deleted`, `sleep`, `long_sleep`, `late_nap`, `rest`; unknown values are kept.
    #[serde(default, rename = "type")]
    pub sleep_type: Option<String>,
    /// RMSSD, ms.
    #[serde(default)]
    pub average_hrv: Option<f64>,
    #[serde(default)]
    pub average_heart_rate: Option<f64>,
    #[serde(default)]
    pub lowest_heart_rate: Option<f64>,
    /// Breaths per minute.
    #[serde(default)]
    pub average_breath: Option<f64>,
    #[serde(default)]
    pub total_sleep_duration: Option<f64>,
    #[serde(default)]
    pub deep_sleep_duration: Option<f64>,
    #[serde(default)]
    pub rem_sleep_duration: Option<f64>,
    #[serde(default)]
    pub light_sleep_duration: Option<f64>,
    #[serde(default)]
    pub awake_time: Option<f64>,
    #[serde(default)]
    pub time_in_bed: Option<f64>,
    #[serde(default)]
    pub readiness: Option<SleepReadiness>,
}

/// `daily_readiness`: Oura's readiness score of the day and the night's temperature deviation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailyReadiness {
    pub id: String,
    #[serde(default)]
    pub meta: Option<Meta>,
    pub day: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub temperature_deviation: Option<f64>,
    #[serde(default)]
    pub temperature_trend_deviation: Option<f64>,
}

/// `daily_sleep`: a score and its contributors only; parsed to check the body, gives nothing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailySleep {
    pub id: String,
    #[serde(default)]
    pub meta: Option<Meta>,
    pub day: String,
    #[serde(default)]
    pub score: Option<f64>,
}

/// `daily_activity`: the day runs from 04:00 to 04:00 local time; `timestamp` is its start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailyActivity {
    pub id: String,
    #[serde(default)]
    pub meta: Option<Meta>,
    pub day: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub steps: Option<f64>,
    /// kcal.
    #[serde(default)]
    pub active_calories: Option<f64>,
    #[serde(default)]
    pub total_calories: Option<f64>,
    #[serde(default)]
    pub score: Option<f64>,
}

/// `daily_stress`: seconds of the day in the top (`stress_high`) and bottom (`recovery_high`)
/// quartile of the user's own daytime data, and a verdict (`restored`, `normal`, `stressful`).
///
/// It gives no reading. [`Metric::StressLevel`] is an instantaneous level: the engine reads one
/// above 0.85 as acute stress for 15 minutes (REFLEX) and one above 0.7 as a GUARDIAN vote for
/// a day. Any fraction made of a day's quartile minutes (stress over stress plus recovery, or
/// over the waking day) is a share of a day, relative to the user's own distribution, that is
/// revised as the day goes on; it swings to 0 or 1 early in the day when both counts are small,
/// and it has no instant it belongs to (the document carries only `day`). Fed in as a level, a
/// morning with twenty stressed minutes and none recovered would read as acute stress. A day's
/// stress verdict would be a fair daily vote, but that needs a metric of its own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailyStress {
    pub id: String,
    #[serde(default)]
    pub meta: Option<Meta>,
    pub day: String,
    #[serde(default)]
    pub stress_high: Option<f64>,
    #[serde(default)]
    pub recovery_high: Option<f64>,
    #[serde(default)]
    pub day_summary: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Spo2Percentage {
    #[serde(default)]
    pub average: Option<f64>,
}

/// `daily_spo2`: the night's average SpO2 (percent), null when the ring could not measure it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DailySpo2 {
    pub id: String,
    #[serde(default)]
    pub meta: Option<Meta>,
    pub day: String,
    #[serde(default)]
    pub spo2_percentage: Option<Spo2Percentage>,
    #[serde(default)]
    pub breathing_disturbance_index: Option<f64>,
}

/// `workout`: detected or entered by the user.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Workout {
    pub id: String,
    #[serde(default)]
    pub meta: Option<Meta>,
    #[serde(default)]
    pub activity: Option<String>,
    #[serde(default)]
    pub calories: Option<f64>,
    #[serde(default)]
    pub distance: Option<f64>,
    #[serde(default)]
    pub day: Option<String>,
    pub start_datetime: String,
    pub end_datetime: String,
    #[serde(default)]
    pub intensity: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

/// `vO2_max` (webhook `vo2_max`): an estimate in ml/kg/min.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Vo2Max {
    pub id: String,
    #[serde(default)]
    pub meta: Option<Meta>,
    pub day: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub vo2_max: Option<f64>,
}

/// One row of the `heartrate` time series.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HeartRateRow {
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub timestamp_unix: Option<i64>,
    pub bpm: f64,
    /// `awake`, `workout`, `rest`, `sleep`, `live`, `session`.
    #[serde(default)]
    pub source: Option<String>,
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, MalformedBody> {
    serde_json::from_slice(body).map_err(MalformedBody::from_json)
}

fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, MalformedBody> {
    serde_json::from_value(v).map_err(MalformedBody::from_json)
}

/// Oura's times are local with an offset (`2024-03-10T07:12:45+02:00`); an instant without an
/// offset is read as UTC rather than refused.
fn instant(field: &str, s: &str) -> Result<DateTime<Utc>, MalformedBody> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|_| {
            MalformedBody(format!(
                "{field} is not a date-time: {}",
                crate::vendors::clip(s, crate::vendors::MAX_ECHO_CHARS)
            ))
        })
}

/// The instant a day-only document is dated at: the start of `day` in UTC, but never after the
/// document was last updated. East of UTC a local day starts before UTC midnight, so at a
/// morning sync the UTC midnight of "today" may still be hours ahead, and a reading dated in the
/// future would be refused at ingest.
fn day_start(day: &str, meta: Option<&Meta>) -> Result<DateTime<Utc>, MalformedBody> {
    let d = NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d").map_err(|_| {
        MalformedBody(format!(
            "day is not a date: {}",
            crate::vendors::clip(day, crate::vendors::MAX_ECHO_CHARS)
        ))
    })?;
    let start = d.and_time(chrono::NaiveTime::MIN).and_utc();
    let updated = meta
        .and_then(|m| m.updated_at.as_deref())
        .and_then(|u| instant("meta.updated_at", u).ok());
    Ok(match updated {
        Some(u) if u < start => u,
        _ => start,
    })
}

/// A daily document's own `timestamp` (the start of its day, with the user's offset), else its
/// `day`.
fn daily_instant(
    timestamp: Option<&str>,
    day: &str,
    meta: Option<&Meta>,
) -> Result<DateTime<Utc>, MalformedBody> {
    match timestamp {
        Some(t) => instant("timestamp", t),
        None => day_start(day, meta),
    }
}

/// The version part of an identity: `meta.version`, else `meta.updated_at` as a UTC instant,
/// else `None` (the caller then uses the value).
fn version(meta: Option<&Meta>) -> Option<String> {
    let m = meta?;
    if let Some(v) = m.version {
        return Some(format!("v{v}"));
    }
    let u = m.updated_at.as_deref()?;
    Some(match instant("meta.updated_at", u) {
        Ok(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        Err(_) => u.to_string(),
    })
}

/// Builds the samples of one document and drops values outside the metric's plausible range:
/// such a value is a vendor glitch or a unit mistake, and ingest would refuse it anyway.
struct Doc<'a> {
    data_type: &'a str,
    id: &'a str,
    version: Option<String>,
    out: Vec<NormalisedSample>,
}

impl<'a> Doc<'a> {
    fn new(data_type: &'a str, id: &'a str, meta: Option<&Meta>) -> Self {
        Doc {
            data_type,
            id,
            version: version(meta),
            out: Vec::new(),
        }
    }

    fn push(&mut self, metric: Metric, value: Option<f64>, at: DateTime<Utc>) {
        let Some(value) = value else { return };
        let (lo, hi) = metric.plausible_range();
        if !value.is_finite() || !(lo..=hi).contains(&value) {
            return;
        }
        let version = self
            .version
            .clone()
            .unwrap_or_else(|| canonical_number(value));
        self.out.push(NormalisedSample {
            metric,
            value,
            occurred_at: at,
            detail: None,
            device: Some(DEVICE.into()),
            confidence: CONFIDENCE,
            identity: vec![
                self.data_type.into(),
                self.id.into(),
                version,
                metric.as_str().into(),
            ],
        });
    }
}

fn minutes(seconds: Option<f64>) -> Option<f64> {
    seconds.map(|s| s / 60.0)
}

/// A sleep period's readings, dated at `bedtime_end` (the morning it describes).
///
/// Only the main sleep (`long_sleep`, over three hours, the one Oura scores the night by) gives
/// HRV, resting heart rate, breathing rate and temperature: a nap's or a rest period's averages
/// are taken in a different state, at a different time of day, and would be compared with the
/// nightly baseline as if they were a night. Naps (`sleep`, `late_nap`) still give their stage
/// totals, which are sleep the user had; a `rest` period (detected, then rejected by the user)
/// and a `deleted` one give nothing.
///
/// `average_hrv` is RMSSD (ms) and stays RMSSD. `lowest_heart_rate` is the resting heart rate:
/// Oura's own readiness "resting heart rate" is the night's lowest (from 30-second samples).
/// The temperature deviation is kept here as well as in `daily_readiness`: the engine keeps the
/// newest deviation rather than building a baseline of it, so the same night's value read
/// twice does not weigh twice, and a night whose readiness document is missing still has it.
pub fn sleep_samples(s: &Sleep) -> Result<Vec<NormalisedSample>, MalformedBody> {
    let kind = s.sleep_type.as_deref().unwrap_or("");
    if matches!(kind, "deleted" | "rest") {
        return Ok(Vec::new());
    }
    let at = instant("bedtime_end", &s.bedtime_end)?;
    let mut d = Doc::new("sleep", &s.id, s.meta.as_ref());
    if kind == "long_sleep" {
        d.push(Metric::HrvRmssd, s.average_hrv, at);
        d.push(Metric::RestingHeartRate, s.lowest_heart_rate, at);
        d.push(Metric::RespiratoryRate, s.average_breath, at);
        d.push(
            Metric::TemperatureDeviation,
            s.readiness.as_ref().and_then(|r| r.temperature_deviation),
            at,
        );
    }
    d.push(Metric::SleepTotal, minutes(s.total_sleep_duration), at);
    d.push(Metric::SleepDeep, minutes(s.deep_sleep_duration), at);
    d.push(Metric::SleepRem, minutes(s.rem_sleep_duration), at);
    // Oura's "light" sleep is N1+N2, what HealthKit calls core sleep.
    d.push(Metric::SleepCore, minutes(s.light_sleep_duration), at);
    d.push(Metric::SleepAwake, minutes(s.awake_time), at);
    d.push(Metric::SleepInBed, minutes(s.time_in_bed), at);
    Ok(d.out)
}

/// Readiness is Oura's own score: a vote, never a baseline, as the engine treats
/// [`Metric::RecoveryScore`]. Oura has no flag for its ~2 weeks of learning, so no
/// [`crate::model::ReadingDetail::VendorCalibrating`] is set.
pub fn readiness_samples(r: &DailyReadiness) -> Result<Vec<NormalisedSample>, MalformedBody> {
    let at = daily_instant(r.timestamp.as_deref(), &r.day, r.meta.as_ref())?;
    let mut d = Doc::new("daily_readiness", &r.id, r.meta.as_ref());
    d.push(Metric::RecoveryScore, r.score, at);
    d.push(Metric::TemperatureDeviation, r.temperature_deviation, at);
    Ok(d.out)
}

/// The day's steps and active calories, dated at the start of Oura's activity day (04:00 local),
/// not at the update: Oura revises the document all day, and the engine reads a step count at an
/// instant as movement around that instant, so dating each revision at its sync time would mark
/// the user as moving whenever the phone synced and hide a resting heart rate's stress. Each
/// revision is a new reading with the running total; the last one is the day's.
pub fn activity_samples(a: &DailyActivity) -> Result<Vec<NormalisedSample>, MalformedBody> {
    let at = daily_instant(a.timestamp.as_deref(), &a.day, a.meta.as_ref())?;
    let mut d = Doc::new("daily_activity", &a.id, a.meta.as_ref());
    d.push(Metric::Steps, a.steps, at);
    d.push(Metric::ActiveEnergy, a.active_calories, at);
    Ok(d.out)
}

/// The night's average SpO2, when Oura could measure it. The document has only `day`.
pub fn spo2_samples(s: &DailySpo2) -> Result<Vec<NormalisedSample>, MalformedBody> {
    let at = day_start(&s.day, s.meta.as_ref())?;
    let mut d = Doc::new("daily_spo2", &s.id, s.meta.as_ref());
    d.push(
        Metric::OxygenSaturation,
        s.spo2_percentage.as_ref().and_then(|p| p.average),
        at,
    );
    Ok(d.out)
}

/// A workout as its length in minutes from its start, which is how the engine reads
/// [`Metric::Workout`] (a span of activity): heart rate inside it is exercise, not stress.
pub fn workout_samples(w: &Workout) -> Result<Vec<NormalisedSample>, MalformedBody> {
    let start = instant("start_datetime", &w.start_datetime)?;
    let end = instant("end_datetime", &w.end_datetime)?;
    let mut d = Doc::new("workout", &w.id, w.meta.as_ref());
    let length = (end - start).num_milliseconds() as f64 / 60_000.0;
    d.push(Metric::Workout, Some(length), start);
    Ok(d.out)
}

pub fn vo2_max_samples(v: &Vo2Max) -> Result<Vec<NormalisedSample>, MalformedBody> {
    let at = daily_instant(v.timestamp.as_deref(), &v.day, v.meta.as_ref())?;
    let mut d = Doc::new("vo2_max", &v.id, v.meta.as_ref());
    d.push(Metric::Vo2Max, v.vo2_max, at);
    Ok(d.out)
}

/// One heart-rate row. The series has no document ids or versions: the instant identifies the
/// row, so a refetch of an overlapping window is a duplicate (the source is left out of the
/// identity so that a row Oura relabels, say from `awake` to `workout`, stays one reading). The
/// source is kept in `device` (`Oura (workout)`), since no reading detail fits it and it tells a
/// consumer the rate was taken during exercise.
pub fn heart_rate_sample(row: &HeartRateRow) -> Result<Option<NormalisedSample>, MalformedBody> {
    let at = match (&row.timestamp, row.timestamp_unix) {
        (Some(t), _) => instant("timestamp", t)?,
        (None, Some(ms)) => DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| MalformedBody("timestamp_unix is out of range".into()))?,
        (None, None) => return Err(MalformedBody("heart rate row has no timestamp".into())),
    };
    let (lo, hi) = Metric::HeartRate.plausible_range();
    if !row.bpm.is_finite() || !(lo..=hi).contains(&row.bpm) {
        return Ok(None);
    }
    let device = match row.source.as_deref() {
        Some(s) if !s.is_empty() => format!(
            "{DEVICE} ({})",
            crate::vendors::clip(s, crate::vendors::MAX_ECHO_CHARS)
        ),
        _ => DEVICE.to_string(),
    };
    Ok(Some(NormalisedSample {
        metric: Metric::HeartRate,
        value: row.bpm,
        occurred_at: at,
        detail: None,
        device: Some(device),
        confidence: CONFIDENCE,
        identity: vec![
            "heartrate".into(),
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            Metric::HeartRate.as_str().into(),
        ],
    }))
}

/// The readings of one document given as JSON, by its (webhook or REST) type name.
fn value_samples(data_type: &str, v: Value) -> Result<Vec<NormalisedSample>, MalformedBody> {
    match data_type {
        "sleep" => sleep_samples(&from_value(v)?),
        "daily_readiness" => readiness_samples(&from_value(v)?),
        "daily_activity" => activity_samples(&from_value(v)?),
        "daily_spo2" => spo2_samples(&from_value(v)?),
        "workout" => workout_samples(&from_value(v)?),
        "vo2_max" | "vO2_max" => vo2_max_samples(&from_value(v)?),
        "heartrate" => Ok(heart_rate_sample(&from_value(v)?)?.into_iter().collect()),
        // Read so that a wrong body is still told apart, but they give no reading.
        "daily_stress" => from_value::<DailyStress>(v).map(|_| Vec::new()),
        "daily_sleep" => from_value::<DailySleep>(v).map(|_| Vec::new()),
        // Vendors add types without notice: an unknown one is nothing to read, not an error.
        _ => Ok(Vec::new()),
    }
}

/// The readings of a single document (`GET /v2/usercollection/{type}/{id}`). Heart rate has no
/// single documents; a body given as one is read as one row. An unknown type gives nothing.
pub fn document_samples(
    data_type: &str,
    body: &[u8],
) -> Result<Vec<NormalisedSample>, MalformedBody> {
    let v: Value = parse(body)?;
    if !v.is_object() {
        return Err(MalformedBody("a document is a JSON object".into()));
    }
    value_samples(data_type, v)
}

/// The readings of a collection page, and the token of the next page. A document in the page
/// that cannot be read is skipped rather than failing the page: one odd document must not hold
/// back every other day of a backfill. A body that is not a page at all is an error.
pub fn page_samples(
    data_type: &str,
    body: &[u8],
) -> Result<(Vec<NormalisedSample>, Option<String>), MalformedBody> {
    let page: Page<Value> = parse(body)?;
    let mut out = Vec::new();
    for doc in page.data {
        if let Ok(s) = value_samples(data_type, doc) {
            out.extend(s);
        }
    }
    Ok((out, page.next_token.filter(|t| !t.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Shapes follow the schemas of Oura's OpenAPI (api-evangelist/oura-ring,
    // openapi/_original/oura-api-openapi.json); values are typical of a night.
    const SLEEP: &str = r#"{"id":"8f9a5221-639e-4a85-81cb-4065ef23f979",
      "meta":{"updated_at":"2024-03-10T06:30:00Z","version":2},
      "average_breath":14.5,"average_heart_rate":58.2,"average_hrv":42,"awake_time":2340,
      "bedtime_end":"2024-03-10T07:12:45+02:00","bedtime_start":"2024-03-09T23:05:12+02:00",
      "day":"2024-03-10","deep_sleep_duration":5400,"efficiency":88,
      "heart_rate":{"interval":300.0,"items":[60.0,null,57.0],"timestamp":"2024-03-09T23:05:12+02:00"},
      "hrv":{"interval":300.0,"items":[40.0,44.0],"timestamp":"2024-03-09T23:05:12+02:00"},
      "latency":600,"light_sleep_duration":14400,"low_battery_alert":false,"lowest_heart_rate":52,
      "movement_30_sec":"1112","period":0,
      "readiness":{"contributors":{"activity_balance":80},"score":78,"temperature_deviation":-0.21,
        "temperature_trend_deviation":0.05},
      "readiness_score_delta":2,"rem_sleep_duration":6300,"restless_periods":120,
      "sleep_phase_5_min":"4422111","time_in_bed":29253,"total_sleep_duration":26100,
      "type":"long_sleep","ring_id":"abc","sleep_algorithm_version":"v2","new_field":{"x":1}}"#;

    fn metrics(s: &[NormalisedSample]) -> Vec<(Metric, f64)> {
        s.iter().map(|s| (s.metric, s.value)).collect()
    }

    #[test]
    fn the_main_sleep_gives_rmssd_resting_rate_breathing_temperature_and_stages() {
        let s = document_samples("sleep", SLEEP.as_bytes()).unwrap();
        assert_eq!(
            metrics(&s),
            vec![
                (Metric::HrvRmssd, 42.0),
                (Metric::RestingHeartRate, 52.0),
                (Metric::RespiratoryRate, 14.5),
                (Metric::TemperatureDeviation, -0.21),
                (Metric::SleepTotal, 435.0),
                (Metric::SleepDeep, 90.0),
                (Metric::SleepRem, 105.0),
                (Metric::SleepCore, 240.0),
                (Metric::SleepAwake, 39.0),
                (Metric::SleepInBed, 29253.0 / 60.0),
            ]
        );
        let end: DateTime<Utc> = "2024-03-10T05:12:45Z".parse().unwrap();
        assert!(s.iter().all(|x| x.occurred_at == end));
        assert_eq!(
            s[0].identity,
            vec![
                "sleep",
                "8f9a5221-639e-4a85-81cb-4065ef23f979",
                "v2",
                "hrv_rmssd"
            ]
        );
        assert!(s.iter().all(|x| x.confidence == CONFIDENCE));
    }

    #[test]
    fn naps_give_stages_only_and_rest_or_deleted_nothing() {
        for kind in ["sleep", "late_nap"] {
            let body = SLEEP.replace("\"long_sleep\"", &format!("\"{kind}\""));
            let s = document_samples("sleep", body.as_bytes()).unwrap();
            assert!(
                s.iter().all(|x| x.metric.as_str().starts_with("sleep")),
                "{s:?}"
            );
            assert_eq!(s.len(), 6);
        }
        for kind in ["rest", "deleted"] {
            let body = SLEEP.replace("\"long_sleep\"", &format!("\"{kind}\""));
            assert!(document_samples("sleep", body.as_bytes())
                .unwrap()
                .is_empty());
        }
    }

    #[test]
    fn nulls_are_left_out_and_implausible_values_dropped() {
        let body = SLEEP
            .replace("\"average_hrv\":42", "\"average_hrv\":null")
            .replace("\"lowest_heart_rate\":52", "\"lowest_heart_rate\":0")
            .replace("\"readiness\":{", "\"readiness_old\":{");
        let s = document_samples("sleep", body.as_bytes()).unwrap();
        let m: Vec<Metric> = s.iter().map(|x| x.metric).collect();
        assert!(!m.contains(&Metric::HrvRmssd));
        assert!(!m.contains(&Metric::RestingHeartRate));
        assert!(!m.contains(&Metric::TemperatureDeviation));
        assert!(m.contains(&Metric::RespiratoryRate));
    }

    #[test]
    fn a_new_version_is_a_new_reading_and_a_refetch_is_not() {
        let a = document_samples("sleep", SLEEP.as_bytes()).unwrap();
        let b = document_samples("sleep", SLEEP.as_bytes()).unwrap();
        assert_eq!(a, b);
        let v3 = SLEEP.replace("\"version\":2", "\"version\":3");
        let c = document_samples("sleep", v3.as_bytes()).unwrap();
        assert_ne!(a[0].identity, c[0].identity);
        // Without meta, the value stands in for the version.
        let bare = SLEEP.replace("\"meta\":", "\"old_meta\":");
        let d = document_samples("sleep", bare.as_bytes()).unwrap();
        assert_eq!(d[0].identity[2], "42");
    }

    const READINESS: &str = r#"{"id":"rd-1","meta":{"updated_at":"2024-03-10T06:31:00Z","version":1},
      "contributors":{"activity_balance":56,"body_temperature":98,"hrv_balance":75,
        "previous_day_activity":null,"previous_night":35,"recovery_index":47,
        "resting_heart_rate":94,"sleep_balance":73,"sleep_regularity":null},
      "day":"2024-03-10","score":66,"temperature_deviation":0.35,
      "temperature_trend_deviation":0.1,"timestamp":"2024-03-10T00:00:00+02:00"}"#;

    #[test]
    fn readiness_is_a_score_and_a_temperature_deviation_dated_by_its_timestamp() {
        let s = document_samples("daily_readiness", READINESS.as_bytes()).unwrap();
        assert_eq!(
            metrics(&s),
            vec![
                (Metric::RecoveryScore, 66.0),
                (Metric::TemperatureDeviation, 0.35)
            ]
        );
        let at: DateTime<Utc> = "2024-03-09T22:00:00Z".parse().unwrap();
        assert_eq!(s[0].occurred_at, at);
        assert_eq!(s[0].detail, None);
    }

    #[test]
    fn activity_spo2_workout_and_vo2_max() {
        let activity = r#"{"id":"act-1","meta":{"updated_at":"2024-03-10T18:00:00Z","version":7},
          "active_calories":512,"average_met_minutes":1.6,"contributors":{"meet_daily_targets":60},
          "day":"2024-03-10","equivalent_walking_distance":9000,"high_activity_met_minutes":20,
          "high_activity_time":600,"inactivity_alerts":1,"low_activity_met_minutes":100,
          "low_activity_time":9000,"medium_activity_met_minutes":80,"medium_activity_time":2400,
          "met":{"interval":60,"items":[1.0],"timestamp":"2024-03-10T04:00:00+02:00"},
          "meters_to_target":1000,"non_wear_time":0,"resting_time":30000,
          "sedentary_met_minutes":10,"sedentary_time":20000,"steps":9876,"target_calories":500,
          "target_meters":10000,"timestamp":"2024-03-10T04:00:00+02:00","total_calories":2400}"#;
        let s = document_samples("daily_activity", activity.as_bytes()).unwrap();
        assert_eq!(
            metrics(&s),
            vec![(Metric::Steps, 9876.0), (Metric::ActiveEnergy, 512.0)]
        );
        assert_eq!(
            s[0].occurred_at,
            "2024-03-10T02:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );

        let spo2 = r#"{"id":"spo-1","meta":{"updated_at":"2024-03-10T06:00:00Z","version":1},
          "breathing_disturbance_index":3,"day":"2024-03-10","spo2_percentage":{"average":96.3}}"#;
        let s = document_samples("daily_spo2", spo2.as_bytes()).unwrap();
        assert_eq!(metrics(&s), vec![(Metric::OxygenSaturation, 96.3)]);
        let null = r#"{"id":"spo-2","meta":{"updated_at":"2024-03-10T06:00:00Z","version":1},
          "day":"2024-03-10","spo2_percentage":null}"#;
        assert!(document_samples("daily_spo2", null.as_bytes())
            .unwrap()
            .is_empty());
        // East of UTC, a morning sync of "today" comes before the UTC midnight of that day.
        let early = r#"{"id":"spo-3","meta":{"updated_at":"2024-03-09T22:30:00Z","version":1},
          "day":"2024-03-10","spo2_percentage":{"average":97}}"#;
        let s = document_samples("daily_spo2", early.as_bytes()).unwrap();
        assert_eq!(
            s[0].occurred_at,
            "2024-03-09T22:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );

        let workout = r#"{"id":"wo-1","meta":{"updated_at":"2024-03-10T19:00:00Z","version":1},
          "activity":"running","calories":420.5,"day":"2024-03-10","distance":8012.3,
          "end_datetime":"2024-03-10T18:45:00+01:00","intensity":"moderate","label":null,
          "source":"confirmed","start_datetime":"2024-03-10T18:00:00+01:00"}"#;
        let s = document_samples("workout", workout.as_bytes()).unwrap();
        assert_eq!(metrics(&s), vec![(Metric::Workout, 45.0)]);
        assert_eq!(
            s[0].occurred_at,
            "2024-03-10T17:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let backwards = workout.replace("18:45:00", "17:45:00");
        assert!(document_samples("workout", backwards.as_bytes())
            .unwrap()
            .is_empty());

        let vo2 = r#"{"id":"vo-1","meta":{"updated_at":"2024-03-10T06:00:00Z","version":1},
          "day":"2024-03-10","timestamp":"2024-03-10T00:00:00+00:00","vo2_max":44}"#;
        for name in ["vo2_max", "vO2_max"] {
            let s = document_samples(name, vo2.as_bytes()).unwrap();
            assert_eq!(metrics(&s), vec![(Metric::Vo2Max, 44.0)]);
        }
    }

    #[test]
    fn stress_daily_sleep_and_unknown_types_give_nothing() {
        let stress = r#"{"id":"st-1","meta":{"updated_at":"2024-03-10T20:00:00Z","version":3},
          "day":"2024-03-10","day_summary":"stressful","recovery_high":1800,"stress_high":7200}"#;
        assert!(document_samples("daily_stress", stress.as_bytes())
            .unwrap()
            .is_empty());
        assert!(document_samples("daily_stress", b"{\"id\":1}").is_err());
        let daily_sleep = r#"{"id":"ds-1","meta":{"updated_at":"2024-03-10T06:00:00Z","version":1},
          "contributors":{"deep_sleep":97},"day":"2024-03-10","score":77,
          "timestamp":"2024-03-10T00:00:00+02:00"}"#;
        assert!(document_samples("daily_sleep", daily_sleep.as_bytes())
            .unwrap()
            .is_empty());
        assert!(document_samples("blood_glucose", b"{\"anything\":1}")
            .unwrap()
            .is_empty());
        assert!(document_samples("sleep", b"[]").is_err());
        assert!(document_samples("sleep", b"not json").is_err());
        let bad_time = SLEEP.replace("2024-03-10T07:12:45+02:00", "yesterday");
        assert!(document_samples("sleep", bad_time.as_bytes()).is_err());
    }

    #[test]
    fn heart_rate_pages_and_paging() {
        let page = r#"{"data":[
            {"bpm":61,"source":"awake","timestamp":"2024-03-10T10:00:00+00:00","timestamp_unix":1710064800000},
            {"bpm":130,"source":"workout","timestamp":"2024-03-10T10:05:00+00:00","timestamp_unix":1710065100000},
            {"bpm":400,"source":"awake","timestamp":"2024-03-10T10:10:00+00:00","timestamp_unix":1710065400000},
            {"bpm":"x","source":"awake","timestamp":"2024-03-10T10:15:00+00:00"},
            {"bpm":58,"source":"rest","timestamp_unix":1710065700000}
          ],"next_token":"abc"}"#;
        let (s, next) = page_samples("heartrate", page.as_bytes()).unwrap();
        assert_eq!(next.as_deref(), Some("abc"));
        assert_eq!(
            metrics(&s),
            vec![
                (Metric::HeartRate, 61.0),
                (Metric::HeartRate, 130.0),
                (Metric::HeartRate, 58.0)
            ]
        );
        assert_eq!(s[1].device.as_deref(), Some("Oura (workout)"));
        assert_eq!(
            s[2].occurred_at,
            "2024-03-10T10:15:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(s[0].identity[1], "2024-03-10T10:00:00.000Z");

        let sleeps = format!(r#"{{"data":[{SLEEP},{{"id":"broken"}}],"next_token":null}}"#);
        let (s, next) = page_samples("sleep", sleeps.as_bytes()).unwrap();
        assert_eq!(next, None);
        assert_eq!(s.len(), 10);
        assert!(page_samples("sleep", b"{\"data\":{}}").is_err());
        assert!(page_samples("sleep", b"{}").is_err());
        let (s, next) = page_samples("sleep", b"{\"data\":[],\"next_token\":\"\"}").unwrap();
        assert!(s.is_empty() && next.is_none());
    }

    #[test]
    fn data_types_name_paths_scopes_and_ranges() {
        assert_eq!(data_type("vo2_max").unwrap().path, "vO2_max");
        assert_eq!(data_type("vO2_max").unwrap().webhook, "vo2_max");
        assert_eq!(
            data_type("heartrate").unwrap().dated_by,
            DateRange::DateTimes
        );
        assert_eq!(data_type("daily_spo2").unwrap().scope, "spo2Daily");
        assert!(data_type("daily_stress").is_none());
        assert!(data_type("tag").is_none());
        let info: PersonalInfo =
            parse(br#"{"id":"oura-user-1","age":31,"weight":70.1,"height":1.8,"biological_sex":"female","email":"a@b.c"}"#)
                .unwrap();
        assert_eq!(info.id, "oura-user-1");
    }

    fn type_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("sleep".to_string()),
            Just("daily_readiness".to_string()),
            Just("daily_activity".to_string()),
            Just("daily_spo2".to_string()),
            Just("daily_stress".to_string()),
            Just("daily_sleep".to_string()),
            Just("workout".to_string()),
            Just("vo2_max".to_string()),
            Just("heartrate".to_string()),
            "[a-z_]{0,12}",
        ]
    }

    /// JSON whose keys are the documents' own field names, with values of any type: the
    /// structured-but-wrong bodies a parser is most likely to mishandle.
    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("id"),
            Just("meta"),
            Just("version"),
            Just("updated_at"),
            Just("day"),
            Just("timestamp"),
            Just("timestamp_unix"),
            Just("bedtime_end"),
            Just("bedtime_start"),
            Just("start_datetime"),
            Just("end_datetime"),
            Just("type"),
            Just("average_hrv"),
            Just("lowest_heart_rate"),
            Just("readiness"),
            Just("temperature_deviation"),
            Just("score"),
            Just("steps"),
            Just("spo2_percentage"),
            Just("average"),
            Just("bpm"),
            Just("source"),
            Just("data"),
            Just("next_token"),
            Just("vo2_max"),
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            Just(Value::from("long_sleep")),
            Just(Value::from("2024-03-10T07:12:45+02:00")),
            Just(Value::from("2024-03-10")),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                proptest::collection::btree_map(key.clone(), inner, 0..10).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            t in type_name(),
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let _ = document_samples(&t, &body);
            let _ = page_samples(&t, &body);
        }

        #[test]
        fn never_panics_on_structured_wrong_json_and_keeps_values_plausible(
            t in type_name(),
            v in json_value(),
        ) {
            let body = serde_json::to_vec(&v).unwrap();
            let page = serde_json::to_vec(&serde_json::json!({"data": [v], "next_token": null})).unwrap();
            let mut all = document_samples(&t, &body).unwrap_or_default();
            all.extend(page_samples(&t, &page).map(|p| p.0).unwrap_or_default());
            for s in all {
                let (lo, hi) = s.metric.plausible_range();
                prop_assert!(s.value.is_finite() && s.value >= lo && s.value <= hi);
                prop_assert_eq!(s.identity.len(), if s.metric == Metric::HeartRate { 3 } else { 4 });
            }
        }
    }
}
