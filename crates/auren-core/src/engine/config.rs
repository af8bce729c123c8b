//! The thresholds YAML (`BIOMETRIC_CONFIG`, `config/biometric_thresholds.yaml`).
//!
//! Every key of the seed's file exists here with the seed's value as default, every key is
//! validated, and every key is read by the engine or the bridge (the predecessor hard-coded half of
//! its thresholds, so a reload changed only some decisions). Unknown keys are refused: a typo must
//! not silently leave a default in force. A file that fails validation is rejected whole and the
//! config in force stays.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    pub thresholds: Thresholds,
    pub baselines: Baselines,
    pub stability: Stability,
    pub activity: Activity,
    pub anomaly: Anomaly,
    pub checkpoint: Checkpoint,
    pub alerts: Alerts,
}

/// When a mode is entered. The seed's names and defaults, and what physiology adds to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// REFLEX: HRV this many ms below the personal baseline.
    pub hrv_drop_ms: f64,
    /// REFLEX: HRV this many percent below the personal baseline.
    pub hrv_drop_percentage: f64,
    /// Once calibrated, an HRV drop also has to be this many of the user's own day-to-day SDs
    /// under the 60-day mean: 25 ms is noise for an athlete at 120 ms and a collapse at 30 ms.
    pub hrv_drop_min_sd: f64,
    /// REFLEX: heart rate at rest above this (bpm).
    pub heart_rate_elevated: f64,
    /// Heart rate this far above the personal baseline corroborates another acute signal (bpm).
    pub heart_rate_elevation: f64,
    /// Resting HR this far over its baseline corroborates an HRV crash of the same night: the
    /// only corroboration a source of nightly summaries can give.
    pub reflex_resting_hr_rise_bpm: f64,
    /// GUARDIAN indicator, and the level REFLEX's stress must fall under to exit (0-1).
    pub stress_level_high: f64,
    /// REFLEX: stress above this (0-1).
    pub stress_level_critical: f64,
    /// GUARDIAN: a vendor recovery score under this (a clear single signal).
    pub recovery_score_low: f64,
    /// Under this, recovery is a low indicator (GUARDIAN when it persists with others).
    pub recovery_score_moderate: f64,
    /// No switch within this many seconds of the last one, unless to a more urgent mode.
    pub mode_switch_cooldown_seconds: u64,
    /// GUARDIAN indicator: resting HR this far above its 60-day mean (Oura's cue: 3-5 bpm).
    pub resting_hr_rise_bpm: f64,
    /// GUARDIAN indicator: temperature this far above the personal baseline (°C).
    pub temperature_rise_c: f64,
    /// GUARDIAN needs this many low indicators on each of `guardian_indicator_nights` nights.
    pub guardian_min_indicators: u32,
    /// Consecutive nights the indicators must persist: one bad night is everyday noise.
    pub guardian_indicator_nights: u32,
    /// GUARDIAN at once: resting HR this far above its mean (a clear single signal).
    pub guardian_large_rhr_rise_bpm: f64,
    /// GUARDIAN at once: temperature this far above baseline (°C).
    pub guardian_large_temperature_rise_c: f64,
    /// Illness: resting HR and temperature up together on this many consecutive nights.
    pub illness_nights: u32,
    /// Persistent HRV: this many of the last 7 nights under the normal band, the latest included.
    pub guardian_min_low_nights: u32,
    /// GUARDIAN exits after this many consecutive recovered nights.
    pub guardian_exit_nights: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            hrv_drop_ms: 25.0,
            hrv_drop_percentage: 30.0,
            hrv_drop_min_sd: 1.5,
            heart_rate_elevated: 100.0,
            heart_rate_elevation: 20.0,
            reflex_resting_hr_rise_bpm: 5.0,
            stress_level_high: 0.7,
            stress_level_critical: 0.85,
            recovery_score_low: 40.0,
            recovery_score_moderate: 60.0,
            mode_switch_cooldown_seconds: 300,
            resting_hr_rise_bpm: 3.0,
            temperature_rise_c: 0.5,
            guardian_min_indicators: 2,
            guardian_indicator_nights: 3,
            guardian_large_rhr_rise_bpm: 10.0,
            guardian_large_temperature_rise_c: 1.0,
            illness_nights: 2,
            guardian_min_low_nights: 4,
            guardian_exit_nights: 2,
        }
    }
}

/// Personal baselines: HRV on ln(ms), a short window against a long normal band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baselines {
    /// The seed's HRV default, used as the prior for RMSSD (WHOOP, Oura).
    pub hrv_default: f64,
    /// The prior for SDNN (Apple): SDNN runs lower than RMSSD for the same person.
    pub hrv_sdnn_default: f64,
    /// The prior counts as this many nights: after n nights of data the baseline is
    /// (k·prior + n·personal mean) / (k + n) in ln space, so the user's own nights win fast.
    pub prior_weight_days: f64,
    /// Heart-rate baseline (bpm) while a user has no resting HR of their own.
    pub heart_rate_default: f64,
    /// Recovery-score baseline, for confidence only.
    pub recovery_score_default: f64,
    /// Nights of data before a user is no longer calibrating (needs a 60-day band to be had).
    pub calibration_days: u32,
    /// The baseline: mean of the last this-many nights.
    pub short_window_days: u32,
    /// The normal band comes from this many nights.
    pub long_window_days: u32,
    /// Band half-width in SDs (0.5 = the smallest worthwhile change): a night under it is "low".
    pub band_sd: f64,
    /// GUARDIAN from HRV when the 7-night mean is this many SDs under the 60-night mean. Wider than
    /// `band_sd`: with everyday noise a 7-night mean is under the 0.5 SD band on ~9 % of days.
    pub guardian_band_sd: f64,
    /// A night counts as recovered when HRV is no more than this many SDs under the mean.
    pub recovered_sd: f64,
    /// Valid nights the short window needs before it counts.
    pub min_short_window_days: u32,
    /// Body temperature baseline (°C) while a user is calibrating.
    pub temperature_default_c: f64,
}

impl Default for Baselines {
    fn default() -> Self {
        Self {
            hrv_default: 60.0,
            hrv_sdnn_default: 40.0,
            prior_weight_days: 2.0,
            heart_rate_default: 70.0,
            recovery_score_default: 75.0,
            calibration_days: 14,
            short_window_days: 7,
            long_window_days: 60,
            band_sd: 0.5,
            guardian_band_sd: 1.0,
            recovered_sd: 1.0,
            min_short_window_days: 3,
            temperature_default_c: 36.8,
        }
    }
}

/// Hysteresis: how a mode is entered and left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stability {
    /// A mode backed by one signal is entered after this many qualifying readings of it; two
    /// independent readings at once are enough. One reading is one signal, whatever rules it trips.
    pub enter_consecutive: u32,
    /// REFLEX exits only when every acute signal is under this fraction of its threshold.
    pub exit_ratio: f64,
    /// The exit condition must hold this long (event time) before leaving for a calmer mode.
    pub min_dwell_seconds: u64,
    /// An acute reading (heart rate, stress) counts for this long.
    pub acute_window_seconds: u64,
    /// A daily reading (nightly HRV, resting HR, recovery, temperature) counts until the next one
    /// of its kind, and at most this long, so the agent meets the user in the night's mode.
    pub daily_window_hours: u64,
    /// HYPOTHESIS exits after this many consecutive evaluations without an anomaly.
    pub hypothesis_clear_readings: u32,
    /// An event this far after its own receipt time cannot be real; it is refused so that it can
    /// never carry the user's clock past the data that follows.
    pub max_future_seconds: u64,
}

impl Default for Stability {
    fn default() -> Self {
        Self {
            enter_consecutive: 2,
            exit_ratio: 0.9,
            min_dwell_seconds: 600,
            acute_window_seconds: 900,
            daily_window_hours: 30,
            hypothesis_clear_readings: 3,
            max_future_seconds: 86_400,
        }
    }
}

/// What marks the user as moving: heart rate near such a reading is exercise, not stress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Activity {
    /// A heart rate within this many seconds (either side) of activity is not "at rest".
    pub activity_window_seconds: u64,
    /// A step sample of at least this many steps is activity.
    pub active_steps: f64,
    /// An active-energy sample of at least this many kcal is activity (a ride has no steps).
    pub active_energy_kcal: f64,
    /// A distance sample of at least this many metres is activity.
    pub active_distance_m: f64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            activity_window_seconds: 900,
            active_steps: 100.0,
            active_energy_kcal: 8.0,
            active_distance_m: 150.0,
        }
    }
}

/// What counts as a sensor artefact or an anomalous reading (leads to HYPOTHESIS, never REFLEX).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Anomaly {
    /// Heart rate changing faster than this between readings minutes apart is an artefact.
    pub max_hr_jump_bpm_per_minute: f64,
    /// Only readings this close to the previous one are checked for jumps (seconds).
    pub hr_jump_window_seconds: u64,
    /// HRV more than this factor above or below the baseline is an artefact.
    pub hrv_artefact_ratio: f64,
    /// HRV above this factor of baseline together with heart rate above `high_hrv_heart_rate`.
    pub high_hrv_ratio: f64,
    pub high_hrv_heart_rate: f64,
    /// HRV under this (ms) together with heart rate under `low_hrv_heart_rate`.
    pub low_hrv_ms: f64,
    pub low_hrv_heart_rate: f64,
}

impl Default for Anomaly {
    fn default() -> Self {
        Self {
            max_hr_jump_bpm_per_minute: 40.0,
            hr_jump_window_seconds: 300,
            hrv_artefact_ratio: 4.0,
            high_hrv_ratio: 1.5,
            high_hrv_heart_rate: 90.0,
            low_hrv_ms: 20.0,
            low_hrv_heart_rate: 50.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checkpoint {
    /// Dirty state is checkpointed at least this often.
    pub checkpoint_interval_seconds: u64,
    /// A change this large since the last checkpoint is written at once.
    pub significant_change: SignificantChange,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Self {
            checkpoint_interval_seconds: 30,
            significant_change: SignificantChange::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignificantChange {
    pub hrv: f64,
    pub heart_rate: f64,
    pub stress_level: f64,
}

impl Default for SignificantChange {
    fn default() -> Self {
        Self {
            hrv: 5.0,
            heart_rate: 10.0,
            stress_level: 0.1,
        }
    }
}

/// Operational alert levels, logged and exported by the bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// Fraction of consumed events sent to the DLQ over a minute that is logged as an alert.
    pub error_rate_threshold: f64,
    /// Consumer lag (messages) logged as an alert.
    pub consumer_lag_threshold: u64,
    /// Checkpoint save time (seconds) logged as an alert.
    pub checkpoint_latency_threshold: f64,
}

impl Default for Alerts {
    fn default() -> Self {
        Self {
            error_rate_threshold: 0.1,
            consumer_lag_threshold: 1000,
            checkpoint_latency_threshold: 5.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("the thresholds file is not valid YAML for this schema: {0}")]
    Parse(String),
    #[error("{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

type Get = fn(&EngineConfig) -> f64;

/// One row of the validation table: `key` must lie between `lo` and `hi` (each a constant or
/// another key, open or closed), so cross-key rules (critical above high) are rows too.
struct Range {
    key: &'static str,
    get: Get,
    lo: Get,
    lo_open: bool,
    hi: Get,
    hi_open: bool,
}

/// `range!("key", |c| value, gt|ge low, lt|le high)`.
macro_rules! range {
    ($key:literal, |$c:ident| $v:expr, $lo_op:ident $lo:expr, $hi_op:ident $hi:expr) => {
        Range {
            key: $key,
            get: |$c| $v as f64,
            #[allow(unused_variables)]
            lo: |$c| $lo as f64,
            lo_open: matches!(stringify!($lo_op).as_bytes(), b"gt"),
            #[allow(unused_variables)]
            hi: |$c| $hi as f64,
            hi_open: matches!(stringify!($hi_op).as_bytes(), b"lt"),
        }
    };
}

const INF: f64 = f64::INFINITY;

#[rustfmt::skip]
const RANGES: &[Range] = &[
    range!("thresholds.hrv_drop_ms", |c| c.thresholds.hrv_drop_ms, gt 0, lt INF),
    range!("thresholds.hrv_drop_percentage", |c| c.thresholds.hrv_drop_percentage, gt 0, lt 100),
    range!("thresholds.hrv_drop_min_sd", |c| c.thresholds.hrv_drop_min_sd, ge 0, le 10),
    range!("thresholds.heart_rate_elevated", |c| c.thresholds.heart_rate_elevated, gt 30, lt 250),
    range!("thresholds.heart_rate_elevation", |c| c.thresholds.heart_rate_elevation, gt 0, lt INF),
    range!("thresholds.reflex_resting_hr_rise_bpm", |c| c.thresholds.reflex_resting_hr_rise_bpm, gt 0, le 60),
    range!("thresholds.stress_level_high", |c| c.thresholds.stress_level_high, gt 0, lt 1),
    range!("thresholds.stress_level_critical", |c| c.thresholds.stress_level_critical, gt c.thresholds.stress_level_high, le 1),
    range!("thresholds.recovery_score_low", |c| c.thresholds.recovery_score_low, gt 0, lt 100),
    range!("thresholds.recovery_score_moderate", |c| c.thresholds.recovery_score_moderate, gt c.thresholds.recovery_score_low, le 100),
    range!("thresholds.mode_switch_cooldown_seconds", |c| c.thresholds.mode_switch_cooldown_seconds, ge 0, le 86_400),
    range!("thresholds.resting_hr_rise_bpm", |c| c.thresholds.resting_hr_rise_bpm, gt 0, lt INF),
    range!("thresholds.temperature_rise_c", |c| c.thresholds.temperature_rise_c, gt 0, lt INF),
    range!("thresholds.guardian_min_indicators", |c| c.thresholds.guardian_min_indicators, ge 1, le 3),
    range!("thresholds.guardian_indicator_nights", |c| c.thresholds.guardian_indicator_nights, ge 1, le 7),
    range!("thresholds.guardian_large_rhr_rise_bpm", |c| c.thresholds.guardian_large_rhr_rise_bpm, gt c.thresholds.resting_hr_rise_bpm, le 60),
    range!("thresholds.guardian_large_temperature_rise_c", |c| c.thresholds.guardian_large_temperature_rise_c, gt c.thresholds.temperature_rise_c, le 5),
    range!("thresholds.illness_nights", |c| c.thresholds.illness_nights, ge 1, le 7),
    range!("thresholds.guardian_min_low_nights", |c| c.thresholds.guardian_min_low_nights, ge 1, le 7),
    range!("thresholds.guardian_exit_nights", |c| c.thresholds.guardian_exit_nights, ge 1, le 7),
    range!("baselines.hrv_default", |c| c.baselines.hrv_default, ge 1, le 500),
    range!("baselines.hrv_sdnn_default", |c| c.baselines.hrv_sdnn_default, ge 1, le 500),
    range!("baselines.prior_weight_days", |c| c.baselines.prior_weight_days, ge 0, le 60),
    range!("baselines.heart_rate_default", |c| c.baselines.heart_rate_default, ge 20, le 150),
    range!("baselines.recovery_score_default", |c| c.baselines.recovery_score_default, ge 0, le 100),
    range!("baselines.short_window_days", |c| c.baselines.short_window_days, ge 1, le 60),
    range!("baselines.long_window_days", |c| c.baselines.long_window_days, gt c.baselines.short_window_days, le 366),
    range!("baselines.calibration_days", |c| c.baselines.calibration_days, ge 2, le c.baselines.long_window_days),
    range!("baselines.band_sd", |c| c.baselines.band_sd, gt 0, le 5),
    range!("baselines.guardian_band_sd", |c| c.baselines.guardian_band_sd, gt 0, le 5),
    range!("baselines.recovered_sd", |c| c.baselines.recovered_sd, gt 0, le 5),
    range!("baselines.min_short_window_days", |c| c.baselines.min_short_window_days, ge 1, le c.baselines.short_window_days),
    range!("baselines.temperature_default_c", |c| c.baselines.temperature_default_c, ge 34, le 39),
    range!("stability.enter_consecutive", |c| c.stability.enter_consecutive, ge 1, le 100),
    range!("stability.exit_ratio", |c| c.stability.exit_ratio, gt 0, lt 1),
    range!("stability.acute_window_seconds", |c| c.stability.acute_window_seconds, ge 1, lt INF),
    range!("stability.daily_window_hours", |c| c.stability.daily_window_hours, ge 1, le 168),
    range!("stability.hypothesis_clear_readings", |c| c.stability.hypothesis_clear_readings, ge 1, lt INF),
    range!("stability.max_future_seconds", |c| c.stability.max_future_seconds, ge 0, le 31_622_400),
    range!("activity.activity_window_seconds", |c| c.activity.activity_window_seconds, ge 0, le 86_400),
    range!("activity.active_steps", |c| c.activity.active_steps, ge 0, lt INF),
    range!("activity.active_energy_kcal", |c| c.activity.active_energy_kcal, ge 0, lt INF),
    range!("activity.active_distance_m", |c| c.activity.active_distance_m, ge 0, lt INF),
    range!("anomaly.max_hr_jump_bpm_per_minute", |c| c.anomaly.max_hr_jump_bpm_per_minute, gt 0, lt INF),
    range!("anomaly.hrv_artefact_ratio", |c| c.anomaly.hrv_artefact_ratio, gt 1, lt INF),
    range!("anomaly.high_hrv_ratio", |c| c.anomaly.high_hrv_ratio, gt 1, lt INF),
    range!("anomaly.high_hrv_heart_rate", |c| c.anomaly.high_hrv_heart_rate, gt 0, lt INF),
    range!("anomaly.low_hrv_ms", |c| c.anomaly.low_hrv_ms, gt 0, lt INF),
    range!("anomaly.low_hrv_heart_rate", |c| c.anomaly.low_hrv_heart_rate, gt 0, lt INF),
    range!("checkpoint.checkpoint_interval_seconds", |c| c.checkpoint.checkpoint_interval_seconds, ge 1, lt INF),
    range!("checkpoint.significant_change.hrv", |c| c.checkpoint.significant_change.hrv, gt 0, lt INF),
    range!("checkpoint.significant_change.heart_rate", |c| c.checkpoint.significant_change.heart_rate, gt 0, lt INF),
    range!("checkpoint.significant_change.stress_level", |c| c.checkpoint.significant_change.stress_level, gt 0, lt INF),
    range!("alerts.error_rate_threshold", |c| c.alerts.error_rate_threshold, gt 0, le 1),
    range!("alerts.checkpoint_latency_threshold", |c| c.alerts.checkpoint_latency_threshold, gt 0, lt INF),
];

impl EngineConfig {
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let cfg: EngineConfig = if text.trim().is_empty() {
            EngineConfig::default()
        } else {
            serde_norway::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for r in RANGES {
            let (v, lo, hi) = ((r.get)(self), (r.lo)(self), (r.hi)(self));
            let above = if r.lo_open { v > lo } else { v >= lo };
            let below = if r.hi_open { v < hi } else { v <= hi };
            if !(v.is_finite() && above && below) {
                return Err(ConfigError::Invalid {
                    key: r.key,
                    problem: format!(
                        "must be in {}{lo}, {hi}{}, is {v}",
                        if r.lo_open { '(' } else { '[' },
                        if r.hi_open { ')' } else { ']' },
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "thresholds:\n  hrv_drop_ms: 25\n  hrv_drop_percentage: 30\n  heart_rate_elevated: 100\n  stress_level_critical: 0.85\n  mode_switch_cooldown_seconds: 300\n\nbaselines:\n  hrv_default: 60\n  heart_rate_default: 70\n";

    #[test]
    fn the_seed_file_is_the_default() {
        assert_eq!(
            EngineConfig::from_yaml(SEED).unwrap(),
            EngineConfig::default()
        );
        assert_eq!(
            EngineConfig::from_yaml("").unwrap(),
            EngineConfig::default()
        );
    }

    #[test]
    fn the_shipped_file_is_valid_and_matches_defaults() {
        let text = include_str!("../../../../config/biometric_thresholds.yaml");
        assert_eq!(
            EngineConfig::from_yaml(text).unwrap(),
            EngineConfig::default()
        );
    }

    #[test]
    fn every_table_row_names_a_real_key_of_the_shipped_file() {
        let text = include_str!("../../../../config/biometric_thresholds.yaml");
        let yaml: serde_norway::Value = serde_norway::from_str(text).unwrap();
        for r in RANGES {
            let mut v = &yaml;
            for part in r.key.split('.') {
                v = &v[part];
            }
            assert!(!v.is_null(), "{} is not in the shipped file", r.key);
        }
    }

    #[test]
    fn refuses_typos_and_bad_values() {
        let bad = [
            ("thresholds:\n  hrv_drop_msx: 25\n", "unknown field"),
            ("thresholds:\n  hrv_drop_ms: -1\n", "thresholds.hrv_drop_ms"),
            (
                "thresholds:\n  hrv_drop_percentage: 130\n",
                "hrv_drop_percentage",
            ),
            (
                "thresholds:\n  stress_level_critical: 0.5\n",
                "stress_level_critical",
            ),
            (
                "thresholds:\n  recovery_score_moderate: 30\n",
                "recovery_score_moderate",
            ),
            ("baselines:\n  long_window_days: 5\n", "long_window_days"),
            ("baselines:\n  calibration_days: 90\n", "calibration_days"),
            ("stability:\n  exit_ratio: 1.2\n", "exit_ratio"),
            ("stability:\n  exit_ratio: .nan\n", "exit_ratio"),
            ("activity:\n  active_steps: -3\n", "active_steps"),
            ("thresholds: [1, 2]\n", "not valid YAML"),
            ("thresholds:\n  hrv_drop_ms: twenty\n", "not valid YAML"),
        ];
        for (text, needle) in bad {
            let e = EngineConfig::from_yaml(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?} gave {e}");
        }
        // The bound of a cross-key row follows the other key.
        assert!(EngineConfig::from_yaml(
            "thresholds:\n  stress_level_high: 0.4\n  stress_level_critical: 0.5\n"
        )
        .is_ok());
    }
}
