//! The typed messages that leave the bridge: what the agent, the operator and the API see.
//!
//! Each is a struct with serde, so its JSON is written in one place (and documented in the
//! README) instead of being assembled field by field where it is sent:
//! - [`SwitchMessage`] on `cognitive-mode-switches` and in the mode history,
//! - [`DeadLetter`] on `biometric-events.dlq`,
//! - [`StateView`] in the cache and behind `GET /users/{id}/state`,
//! - [`SeriesPoint`] in the cached time series.

use auren_core::engine::baseline::DailySeries;
use auren_core::engine::config::EngineConfig;
use auren_core::engine::{Mode, ModeSwitch, Reason, Snapshot, UserState};
use auren_core::model::{EventId, Metric};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of [`SwitchMessage`] and [`DeadLetter`]; raised on an incompatible change.
pub const MESSAGE_SCHEMA: u32 = 1;

/// A mode switch, as published for the agent (key: the user's pseudonym).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SwitchMessage {
    pub schema: u32,
    pub switch_id: String,
    pub thread_id: String,
    pub user_id: String,
    pub user_pseudonym: String,
    #[schema(value_type = ModeDoc)]
    pub from_mode: Mode,
    #[schema(value_type = ModeDoc)]
    pub to_mode: Mode,
    pub at: DateTime<Utc>,
    pub confidence: f64,
    #[schema(value_type = Vec<ReasonDoc>)]
    pub reasons: Vec<Reason>,
    #[schema(value_type = SnapshotDoc)]
    pub snapshot: Snapshot,
    pub calibrating: bool,
    #[schema(value_type = String)]
    pub event_id: EventId,
}

impl SwitchMessage {
    pub fn new(pseudonym: &str, user_id: &str, s: &ModeSwitch) -> Self {
        Self {
            schema: MESSAGE_SCHEMA,
            switch_id: s.switch_id.clone(),
            thread_id: thread_id(pseudonym),
            user_id: user_id.to_string(),
            user_pseudonym: pseudonym.to_string(),
            from_mode: s.from,
            to_mode: s.to,
            at: s.at,
            confidence: s.confidence,
            reasons: s.reasons.clone(),
            snapshot: s.snapshot.clone(),
            calibrating: s.calibrating,
            event_id: s.event_id.clone(),
        }
    }
}

/// The stable thread id of a user: derived from the keyed pseudonym, so it survives restarts
/// and never exposes the raw id.
pub fn thread_id(pseudonym: &str) -> String {
    format!("thr_{}", pseudonym.trim_start_matches("u_"))
}

/// An event the bridge could not read, with why and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub schema: u32,
    pub error: String,
    pub failed_at: DateTime<Utc>,
    pub source: LogPosition,
    pub original: Original,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The record's bytes as they were: text when they are UTF-8 (readable in the DLQ), else
/// base64 under a `base64` key. Both forms replay to the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Original {
    Text(String),
    Bytes { base64: String },
}

impl Original {
    pub fn of(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) => Original::Text(s.to_string()),
            Err(_) => Original::Bytes {
                base64: base64::engine::general_purpose::STANDARD.encode(bytes),
            },
        }
    }

    /// The original bytes; fails only on a `base64` value that is not base64.
    pub fn to_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match self {
            Original::Text(s) => Ok(s.as_bytes().to_vec()),
            Original::Bytes { base64 } => base64::engine::general_purpose::STANDARD.decode(base64),
        }
    }
}

/// One reading in a user's cached time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    #[schema(value_type = String)]
    pub metric: Metric,
    pub value: f64,
    pub at: DateTime<Utc>,
    pub artefact: bool,
}

/// A user's state as the cache holds it and the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateView {
    pub user_pseudonym: String,
    pub thread_id: String,
    #[schema(value_type = ModeDoc)]
    pub mode: Mode,
    pub confidence: f64,
    pub mode_since: Option<DateTime<Utc>>,
    pub calibrating: bool,
    pub baselines: Baselines,
    #[schema(value_type = SnapshotDoc)]
    pub latest: Snapshot,
    pub events: u64,
    pub anomalies: u32,
    pub as_of: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Baselines {
    pub hrv_rmssd: HrvBaseline,
    pub hrv_sdnn: HrvBaseline,
    pub resting_heart_rate: RestingHeartRateBaseline,
    pub heart_rate: HeartRateBaseline,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HrvBaseline {
    pub baseline_ms: f64,
    /// False while the seed's default stands in for the user's own baseline.
    pub personal: bool,
    pub days: u32,
    pub required_days: u32,
    /// The 60-day mean ± the configured SDs, once there are two days.
    pub normal_band_ms: Option<[f64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestingHeartRateBaseline {
    /// The user's own level (60-night mean); null until `required_days` nights have one. There
    /// is no default: the rules that compare a resting HR with its baseline wait for this one.
    pub baseline_bpm: Option<f64>,
    pub days: u32,
    /// Nights with a resting HR before the baseline counts (states cached before this field
    /// was added read as 0).
    #[serde(default)]
    pub required_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartRateBaseline {
    pub baseline_bpm: f64,
    pub personal: bool,
}

impl StateView {
    /// The view of `s` under the thresholds in force.
    pub fn of(cfg: &EngineConfig, pseudonym: &str, thread_id: &str, s: &UserState) -> Self {
        let at = |t: Option<i64>| t.and_then(|t| chrono::DateTime::from_timestamp(t, 0));
        let hrv = |m: Metric, series: &DailySeries| {
            let (baseline, personal) = s.hrv_baseline(cfg, m);
            let st = series.stats();
            let band = (st.long_days >= 2).then(|| {
                let (lo, hi) = (
                    st.long_mean - cfg.baselines.band_sd * st.long_sd,
                    st.long_mean + cfg.baselines.band_sd * st.long_sd,
                );
                [round(lo.exp()), round(hi.exp())]
            });
            HrvBaseline {
                baseline_ms: round(baseline),
                personal,
                days: series.days_with_data(),
                required_days: cfg.baselines.calibration_days,
                normal_band_ms: band,
            }
        };
        let (hr_baseline, hr_personal) = s.heart_rate_baseline(cfg);
        StateView {
            user_pseudonym: pseudonym.to_string(),
            thread_id: thread_id.to_string(),
            mode: s.mode,
            confidence: s.confidence,
            mode_since: at(s.mode_since),
            calibrating: s.calibrating(cfg),
            baselines: Baselines {
                hrv_rmssd: hrv(Metric::HrvRmssd, &s.hrv_rmssd),
                hrv_sdnn: hrv(Metric::HrvSdnn, &s.hrv_sdnn),
                resting_heart_rate: RestingHeartRateBaseline {
                    baseline_bpm: s.resting_hr_baseline(cfg).map(round),
                    days: s.resting_heart_rate.days_with_data(),
                    required_days: cfg.baselines.min_short_window_days,
                },
                heart_rate: HeartRateBaseline {
                    baseline_bpm: round(hr_baseline),
                    personal: hr_personal,
                },
            },
            latest: s.snapshot(),
            events: s.events,
            anomalies: s.anomalies,
            as_of: at(s.clock),
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn originals_round_trip_text_and_binary() {
        for bytes in [
            b"{\"a\":1}".to_vec(),
            vec![0xff, 0x00, 0xfe, b'x'],
            Vec::new(),
        ] {
            let o = Original::of(&bytes);
            let json = serde_json::to_string(&o).unwrap();
            let back: Original = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_bytes().unwrap(), bytes, "{json}");
        }
        assert!(matches!(Original::of(&[0xff]), Original::Bytes { .. }));
        assert!(matches!(Original::of(b"ok"), Original::Text(_)));
    }
}

// Mirrors of the pure core's JSON, for the API description (`/openapi.json`).

/// A cognitive mode.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum ModeDoc {
    REFLEX,
    GUARDIAN,
    PATTERN,
    HYPOTHESIS,
}

/// The readings at a decision; only those known are present.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SnapshotDoc {
    #[schema(nullable = false)]
    pub heart_rate: Option<f64>,
    #[schema(nullable = false)]
    pub hrv_rmssd: Option<f64>,
    #[schema(nullable = false)]
    pub hrv_sdnn: Option<f64>,
    #[schema(nullable = false)]
    pub resting_heart_rate: Option<f64>,
    #[schema(nullable = false)]
    pub stress_level: Option<f64>,
    #[schema(nullable = false)]
    pub recovery_score: Option<f64>,
    #[schema(nullable = false)]
    pub temperature_deviation: Option<f64>,
    #[schema(nullable = false)]
    pub body_temperature: Option<f64>,
    #[schema(nullable = false)]
    pub wrist_temperature: Option<f64>,
}

/// One piece of evidence for a switch.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ReasonDoc {
    pub rule: String,
    #[schema(nullable = false)]
    pub metric: Option<String>,
    pub value: f64,
    #[schema(nullable = false)]
    pub baseline: Option<f64>,
    pub threshold: f64,
}
