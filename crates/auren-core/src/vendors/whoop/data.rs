//! WHOOP v2 data objects, as fetched after a notification, and what they become.
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

/// `GET /v2/activity/sleep/{id}`: only what leads to the recovery and dates it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Sleep {
    pub id: String,
    pub cycle_id: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(default)]
    pub nap: bool,
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
    // Outside a metric's plausible range the value is a vendor glitch: left out, as ingest would.
    out.retain(|s| {
        let (lo, hi) = s.metric.plausible_range();
        s.value.is_finite() && (lo..=hi).contains(&s.value)
    });
    out
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
}
