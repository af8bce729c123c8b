//! WHOOP v2 data objects, as fetched after a notification, and what they become: a recovery
//! (score, RMSSD, resting heart rate, SpO2), a sleep (breathing rate, stage totals) and a
//! workout (its span). Cycles are read but give nothing (see [`Cycle`]).
//!
//! A `recovery.updated` notification names the recovery's sleep, not the recovery: the sleep
//! gives its `cycle_id`, and the cycle its recovery. Nothing is emitted until the vendor has
//! scored the object (`score_state == SCORED`): a pending score has no values, and an
//! unscorable one never will.

use crate::model::{Metric, ReadingDetail};
use crate::vendors::{MalformedBody, NormalisedSample};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// How far WHOOP's scores are trusted as readings: a wrist sensor, the vendor's own algorithm.
const CONFIDENCE: f64 = 0.9;

/// `GET /v2/user/profile/basic`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Profile {
    pub user_id: i64,
}

/// `GET /v2/activity/sleep/{id}`: what leads to the recovery and dates it, and the sleep's own
/// score. Everything beyond the ids and times is optional so that an odd score never stops the
/// sleep from leading to its recovery.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Sleep {
    pub id: String,
    pub cycle_id: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default)]
    pub nap: bool,
    /// Required by the spec; optional here for the reason above (the identity then falls back to
    /// `end`).
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub score_state: Option<ScoreState>,
    #[serde(default)]
    pub score: Option<SleepScore>,
}

/// `Sleep.score.stage_summary`: milliseconds per stage.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StageSummary {
    #[serde(default)]
    pub total_in_bed_time_milli: Option<f64>,
    #[serde(default)]
    pub total_awake_time_milli: Option<f64>,
    #[serde(default)]
    pub total_no_data_time_milli: Option<f64>,
    #[serde(default)]
    pub total_light_sleep_time_milli: Option<f64>,
    #[serde(default)]
    pub total_slow_wave_sleep_time_milli: Option<f64>,
    #[serde(default)]
    pub total_rem_sleep_time_milli: Option<f64>,
    #[serde(default)]
    pub sleep_cycle_count: Option<f64>,
    #[serde(default)]
    pub disturbance_count: Option<f64>,
}

/// `Sleep.score`, present only when the sleep is SCORED.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SleepScore {
    #[serde(default)]
    pub stage_summary: Option<StageSummary>,
    /// Breaths per minute.
    #[serde(default)]
    pub respiratory_rate: Option<f64>,
    #[serde(default)]
    pub sleep_performance_percentage: Option<f64>,
    #[serde(default)]
    pub sleep_consistency_percentage: Option<f64>,
    #[serde(default)]
    pub sleep_efficiency_percentage: Option<f64>,
}

/// `Workout.score`, present only when the workout is SCORED.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WorkoutScore {
    /// WHOOP's 0-21 cardiovascular load.
    #[serde(default)]
    pub strain: Option<f64>,
    #[serde(default)]
    pub average_heart_rate: Option<f64>,
    #[serde(default)]
    pub max_heart_rate: Option<f64>,
    #[serde(default)]
    pub kilojoule: Option<f64>,
    #[serde(default)]
    pub percent_recorded: Option<f64>,
    #[serde(default)]
    pub distance_meter: Option<f64>,
}

/// `GET /v2/activity/workout/{id}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Workout {
    pub id: String,
    #[serde(default)]
    pub user_id: Option<i64>,
    pub updated_at: DateTime<Utc>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default)]
    pub sport_name: Option<String>,
    pub score_state: ScoreState,
    #[serde(default)]
    pub score: Option<WorkoutScore>,
}

/// `Cycle.score`: the day's strain and energy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CycleScore {
    #[serde(default)]
    pub strain: Option<f64>,
    #[serde(default)]
    pub kilojoule: Option<f64>,
    #[serde(default)]
    pub average_heart_rate: Option<f64>,
    #[serde(default)]
    pub max_heart_rate: Option<f64>,
}

/// `GET /v2/cycle/{id}` and `/v2/cycle` (a physiological day, from waking to waking). It gives no
/// reading: strain is WHOOP's own 0-21 load with no metric of ours, and `kilojoule` is total
/// expenditure (basal included), not active energy. It is here for catching up (a cycle leads
/// to its recovery and sleep).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Cycle {
    pub id: i64,
    #[serde(default)]
    pub user_id: Option<i64>,
    pub updated_at: DateTime<Utc>,
    pub start: DateTime<Utc>,
    /// Absent while the user is in this cycle.
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    pub score_state: ScoreState,
    #[serde(default)]
    pub score: Option<CycleScore>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScoreState {
    Scored,
    PendingScore,
    Unscorable,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecoveryScore {
    #[serde(default)]
    pub user_calibrating: bool,
    pub recovery_score: f64,
    pub resting_heart_rate: f64,
    pub hrv_rmssd_milli: f64,
    #[serde(default)]
    pub spo2_percentage: Option<f64>,
    #[serde(default)]
    pub skin_temp_celsius: Option<f64>,
}

/// `GET /v2/cycle/{cycleId}/recovery`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Recovery {
    pub cycle_id: i64,
    pub sleep_id: String,
    pub user_id: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub score_state: ScoreState,
    #[serde(default)]
    pub score: Option<RecoveryScore>,
}

/// A collection page (`records`, `next_token`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Page<T> {
    pub records: Vec<T>,
    #[serde(default)]
    pub next_token: Option<String>,
}

pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, MalformedBody> {
    serde_json::from_slice(body).map_err(MalformedBody::from_json)
}

/// The readings of a recovery, dated at the end of its sleep (the morning it describes). Empty
/// until WHOOP has scored it. The identity holds the cycle and `updated_at`, so a refetch of the
/// same version is a duplicate and a rescored recovery is a new reading.
pub fn recovery_samples(r: &Recovery, sleep: &Sleep) -> Vec<NormalisedSample> {
    let Some(score) = r
        .score
        .as_ref()
        .filter(|_| r.score_state == ScoreState::Scored)
    else {
        return Vec::new();
    };
    let at = sleep.end;
    let version = r
        .updated_at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let sample = |metric: Metric, value: f64, detail: Option<ReadingDetail>| NormalisedSample {
        metric,
        value,
        occurred_at: at,
        detail,
        device: Some("WHOOP".into()),
        confidence: CONFIDENCE,
        identity: vec![
            "recovery".into(),
            r.cycle_id.to_string(),
            version.clone(),
            metric.as_str().into(),
        ],
    };
    let mut out = vec![
        sample(
            Metric::RecoveryScore,
            score.recovery_score,
            score
                .user_calibrating
                .then_some(ReadingDetail::VendorCalibrating),
        ),
        sample(Metric::HrvRmssd, score.hrv_rmssd_milli, None),
        sample(Metric::RestingHeartRate, score.resting_heart_rate, None),
    ];
    if let Some(spo2) = score.spo2_percentage {
        out.push(sample(Metric::OxygenSaturation, spo2, None));
    }
    plausible(out)
}

fn instant_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Keeps the values a metric can take: outside its plausible range a value is a vendor glitch,
/// left out as ingest would.
fn plausible(mut out: Vec<NormalisedSample>) -> Vec<NormalisedSample> {
    out.retain(|s| {
        let (lo, hi) = s.metric.plausible_range();
        s.value.is_finite() && (lo..=hi).contains(&s.value)
    });
    out
}

/// A sleep's own readings, dated at its end: breathing rate and stage totals (minutes).
///
/// Only a scored night: a pending sleep has no score yet, and a nap's breathing rate and stages
/// are not a night's, so they would be compared with nightly values as if they were one.
/// WHOOP's light sleep is N1+N2 (HealthKit's core sleep), slow-wave sleep is deep sleep, and the
/// total asleep is light + slow wave + REM (in bed less awake and no-data time). The identity
/// holds `updated_at`, so a rescored sleep is new and a refetch is not.
pub fn sleep_samples(sleep: &Sleep) -> Vec<NormalisedSample> {
    let Some(score) = sleep
        .score
        .as_ref()
        .filter(|_| sleep.score_state == Some(ScoreState::Scored) && !sleep.nap)
    else {
        return Vec::new();
    };
    let at = sleep.end;
    let version = instant_text(sleep.updated_at.unwrap_or(sleep.end));
    let sample = |metric: Metric, value: f64| NormalisedSample {
        metric,
        value,
        occurred_at: at,
        detail: None,
        device: Some("WHOOP".into()),
        confidence: CONFIDENCE,
        identity: vec![
            "sleep".into(),
            sleep.id.clone(),
            version.clone(),
            metric.as_str().into(),
        ],
    };
    let mut out = Vec::new();
    if let Some(r) = score.respiratory_rate {
        out.push(sample(Metric::RespiratoryRate, r));
    }
    if let Some(st) = &score.stage_summary {
        let min = |ms: Option<f64>| ms.map(|v| v / 60_000.0);
        let light = st.total_light_sleep_time_milli;
        let deep = st.total_slow_wave_sleep_time_milli;
        let rem = st.total_rem_sleep_time_milli;
        if let (Some(l), Some(d), Some(r)) = (light, deep, rem) {
            out.push(sample(Metric::SleepTotal, (l + d + r) / 60_000.0));
        }
        for (metric, v) in [
            (Metric::SleepDeep, deep),
            (Metric::SleepRem, rem),
            (Metric::SleepCore, light),
            (Metric::SleepAwake, st.total_awake_time_milli),
            (Metric::SleepInBed, st.total_in_bed_time_milli),
        ] {
            if let Some(v) = min(v) {
                out.push(sample(metric, v));
            }
        }
    }
    plausible(out)
}

/// A scored workout as its length in minutes from its start, which is how the engine reads
/// [`Metric::Workout`] (a span of activity, so a heart rate inside it is exercise, not stress).
/// Only once SCORED, like every WHOOP value: a pending workout may still be adjusted, and an
/// early span would make two readings of one workout.
pub fn workout_samples(w: &Workout) -> Vec<NormalisedSample> {
    if w.score_state != ScoreState::Scored {
        return Vec::new();
    }
    let minutes = (w.end - w.start).num_milliseconds() as f64 / 60_000.0;
    plausible(vec![NormalisedSample {
        metric: Metric::Workout,
        value: minutes,
        occurred_at: w.start,
        detail: None,
        device: Some("WHOOP".into()),
        confidence: CONFIDENCE,
        identity: vec![
            "workout".into(),
            w.id.clone(),
            instant_text(w.updated_at),
            Metric::Workout.as_str().into(),
        ],
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLEEP: &str = r#"{"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","cycle_id":93845,"v1_id":null,
      "user_id":10129,"created_at":"2022-04-24T11:25:44.774Z","updated_at":"2022-04-24T14:25:44.774Z",
      "start":"2022-04-24T02:25:44.774Z","end":"2022-04-24T10:25:44.774Z","timezone_offset":"-05:00",
      "nap":false,"score_state":"SCORED","score":{"respiratory_rate":16.1}}"#;

    fn recovery(state: &str, score: &str) -> Recovery {
        parse(
            format!(
                r#"{{"cycle_id":93845,"sleep_id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","user_id":10129,
                "created_at":"2022-04-24T11:25:44.774Z","updated_at":"2022-04-24T14:25:44.774Z",
                "score_state":"{state}"{score}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    const SCORE: &str = r#","score":{"user_calibrating":false,"recovery_score":30,
        "resting_heart_rate":64,"hrv_rmssd_milli":31.813562,"spo2_percentage":95.6875,
        "skin_temp_celsius":33.7}"#;

    #[test]
    fn a_scored_recovery_gives_score_rmssd_and_resting_heart_rate() {
        let sleep: Sleep = parse(SLEEP.as_bytes()).unwrap();
        let s = recovery_samples(&recovery("SCORED", SCORE), &sleep);
        let got: Vec<(Metric, f64)> = s.iter().map(|s| (s.metric, s.value)).collect();
        assert_eq!(
            got,
            vec![
                (Metric::RecoveryScore, 30.0),
                (Metric::HrvRmssd, 31.813562),
                (Metric::RestingHeartRate, 64.0),
                (Metric::OxygenSaturation, 95.6875)
            ]
        );
        assert!(s.iter().all(|s| s.occurred_at == sleep.end));
        assert_eq!(s[0].detail, None);
    }

    #[test]
    fn nothing_until_scored_and_calibrating_is_carried() {
        let sleep: Sleep = parse(SLEEP.as_bytes()).unwrap();
        assert!(recovery_samples(&recovery("PENDING_SCORE", ""), &sleep).is_empty());
        assert!(recovery_samples(&recovery("UNSCORABLE", ""), &sleep).is_empty());
        let cal = SCORE.replace("\"user_calibrating\":false", "\"user_calibrating\":true");
        let s = recovery_samples(&recovery("SCORED", &cal), &sleep);
        assert_eq!(s[0].detail, Some(ReadingDetail::VendorCalibrating));
    }

    #[test]
    fn a_rescored_recovery_is_a_new_reading_and_a_refetch_is_not() {
        let sleep: Sleep = parse(SLEEP.as_bytes()).unwrap();
        let a = recovery_samples(&recovery("SCORED", SCORE), &sleep);
        let b = recovery_samples(&recovery("SCORED", SCORE), &sleep);
        assert_eq!(a[0].identity, b[0].identity);
        let mut r = recovery("SCORED", SCORE);
        r.updated_at += chrono::Duration::minutes(5);
        assert_ne!(recovery_samples(&r, &sleep)[0].identity, a[0].identity);
    }

    // The OpenAPI's own examples (api-evangelist/whoop-co, whoop-api-openapi.yml).
    const SCORED_SLEEP: &str = r#"{"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","cycle_id":93845,
      "v1_id":93845,"user_id":10129,"created_at":"2022-04-24T11:25:44.774Z",
      "updated_at":"2022-04-24T14:25:44.774Z","start":"2022-04-24T02:25:44.774Z",
      "end":"2022-04-24T10:25:44.774Z","timezone_offset":"-05:00","nap":false,
      "score_state":"SCORED","score":{"stage_summary":{"total_in_bed_time_milli":30272735,
        "total_awake_time_milli":1403507,"total_no_data_time_milli":0,
        "total_light_sleep_time_milli":14905851,"total_slow_wave_sleep_time_milli":6630370,
        "total_rem_sleep_time_milli":5879573,"sleep_cycle_count":3,"disturbance_count":12},
        "sleep_needed":{"baseline_milli":27395716,"need_from_sleep_debt_milli":352230,
        "need_from_recent_strain_milli":208595,"need_from_recent_nap_milli":-12312},
        "respiratory_rate":16.11328125,"sleep_performance_percentage":98.0,
        "sleep_consistency_percentage":90.0,"sleep_efficiency_percentage":91.69533848}}"#;

    #[test]
    fn a_scored_night_gives_breathing_rate_and_stage_minutes() {
        let sleep: Sleep = parse(SCORED_SLEEP.as_bytes()).unwrap();
        let s = sleep_samples(&sleep);
        let got: Vec<(Metric, f64)> = s.iter().map(|s| (s.metric, s.value)).collect();
        let m = |ms: f64| ms / 60_000.0;
        assert_eq!(
            got,
            vec![
                (Metric::RespiratoryRate, 16.11328125),
                (Metric::SleepTotal, m(14905851.0 + 6630370.0 + 5879573.0)),
                (Metric::SleepDeep, m(6630370.0)),
                (Metric::SleepRem, m(5879573.0)),
                (Metric::SleepCore, m(14905851.0)),
                (Metric::SleepAwake, m(1403507.0)),
                (Metric::SleepInBed, m(30272735.0)),
            ]
        );
        assert!(s.iter().all(|x| x.occurred_at == sleep.end));
        assert_eq!(
            s[0].identity,
            vec![
                "sleep",
                "ecfc6a15-4661-442f-a9a4-f160dd7afae8",
                "2022-04-24T14:25:44.774Z",
                "respiratory_rate"
            ]
        );
        let mut later = sleep.clone();
        later.updated_at = later.updated_at.map(|t| t + chrono::Duration::minutes(1));
        assert_ne!(sleep_samples(&later)[0].identity, s[0].identity);
    }

    #[test]
    fn naps_and_unscored_sleeps_give_nothing_and_still_lead_to_the_recovery() {
        let nap = SCORED_SLEEP.replace("\"nap\":false", "\"nap\":true");
        assert!(sleep_samples(&parse(nap.as_bytes()).unwrap()).is_empty());
        let pending = SCORED_SLEEP.replace("\"SCORED\"", "\"PENDING_SCORE\"");
        assert!(sleep_samples(&parse(pending.as_bytes()).unwrap()).is_empty());
        // The recovery path's minimal sleep (no score at all) still reads.
        let bare: Sleep = parse(SLEEP.as_bytes()).unwrap();
        assert_eq!(bare.cycle_id, 93845);
        let odd = r#"{"id":"x","cycle_id":1,"start":"2022-04-24T02:25:44.774Z",
          "end":"2022-04-24T10:25:44.774Z","score":{"stage_summary":null}}"#;
        let odd: Sleep = parse(odd.as_bytes()).unwrap();
        assert!(sleep_samples(&odd).is_empty());
    }

    const WORKOUT: &str = r#"{"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","v1_id":1043,
      "user_id":9012,"created_at":"2022-04-24T11:25:44.774Z",
      "updated_at":"2022-04-24T14:25:44.774Z","start":"2022-04-24T02:25:44.774Z",
      "end":"2022-04-24T03:10:44.774Z","timezone_offset":"-05:00","sport_name":"running",
      "score_state":"SCORED","score":{"strain":8.2463,"average_heart_rate":123,
        "max_heart_rate":146,"kilojoule":1569.34033203125,"percent_recorded":100.0,
        "distance_meter":1772.77035916,"altitude_gain_meter":46.64384460449,
        "altitude_change_meter":-0.781372010707855,"zone_durations":{"zone_zero_milli":300000,
        "zone_one_milli":600000,"zone_two_milli":900000,"zone_three_milli":900000,
        "zone_four_milli":600000,"zone_five_milli":300000}},"sport_id":1}"#;

    #[test]
    fn a_scored_workout_is_its_span_in_minutes() {
        let w: Workout = parse(WORKOUT.as_bytes()).unwrap();
        let s = workout_samples(&w);
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].metric, s[0].value), (Metric::Workout, 45.0));
        assert_eq!(s[0].occurred_at, w.start);
        assert_eq!(s[0].identity[0], "workout");
        let pending = WORKOUT.replace("\"SCORED\"", "\"PENDING_SCORE\"");
        assert!(workout_samples(&parse(pending.as_bytes()).unwrap()).is_empty());
        let backwards = WORKOUT.replace("03:10:44", "01:10:44");
        assert!(workout_samples(&parse(backwards.as_bytes()).unwrap()).is_empty());
        let cycle: Cycle = parse(
            br#"{"id":93845,"user_id":10129,"created_at":"2022-04-24T11:25:44.774Z",
            "updated_at":"2022-04-24T14:25:44.774Z","start":"2022-04-24T02:25:44.774Z",
            "timezone_offset":"-05:00","score_state":"SCORED","score":{"strain":5.2951527,
            "kilojoule":8288.297,"average_heart_rate":68,"max_heart_rate":141}}"#,
        )
        .unwrap();
        assert_eq!(cycle.end, None);
    }
}
