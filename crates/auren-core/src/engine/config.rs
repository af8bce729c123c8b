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
    pub anomaly: Anomaly,
    pub checkpoint: Checkpoint,
    pub alerts: Alerts,
}

/// When a mode is entered. Names and defaults are the seed's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// REFLEX: HRV this many ms below the personal baseline.
    pub hrv_drop_ms: f64,
    /// REFLEX: HRV this many percent below the personal baseline.
    pub hrv_drop_percentage: f64,
    /// REFLEX: heart rate at rest above this (bpm).
    pub heart_rate_elevated: f64,
    /// Heart rate this far above the personal baseline corroborates another acute signal (bpm).
    pub heart_rate_elevation: f64,
    /// GUARDIAN indicator, and the level REFLEX's stress must fall under to exit (0-1).
    pub stress_level_high: f64,
    /// REFLEX: stress above this (0-1).
    pub stress_level_critical: f64,
    /// GUARDIAN: a vendor recovery score under this.
    pub recovery_score_low: f64,
    /// GUARDIAN exits only when recovery is back at or above this; under it is a low indicator.
    pub recovery_score_moderate: f64,
    /// No switch within this many seconds of the last one, unless to a more urgent mode.
    pub mode_switch_cooldown_seconds: u64,
    /// GUARDIAN indicator: resting HR this far above its 60-day mean (Oura's cue: 3-5 bpm).
    pub resting_hr_rise_bpm: f64,
    /// GUARDIAN indicator: temperature this far above the personal baseline (°C).
    pub temperature_rise_c: f64,
    /// GUARDIAN needs this many low indicators at once (when recovery itself is not low).
    pub guardian_min_indicators: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            hrv_drop_ms: 25.0,
            hrv_drop_percentage: 30.0,
            heart_rate_elevated: 100.0,
            heart_rate_elevation: 20.0,
            stress_level_high: 0.7,
            stress_level_critical: 0.85,
            recovery_score_low: 40.0,
            recovery_score_moderate: 60.0,
            mode_switch_cooldown_seconds: 300,
            resting_hr_rise_bpm: 3.0,
            temperature_rise_c: 0.5,
            guardian_min_indicators: 2,
        }
    }
}

/// Personal baselines: HRV on ln(ms), a short window against a long normal band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Baselines {
    /// HRV baseline (ms) while a user is calibrating.
    pub hrv_default: f64,
    /// Heart-rate baseline (bpm) while a user is calibrating.
    pub heart_rate_default: f64,
    /// Recovery-score baseline while a user is calibrating.
    pub recovery_score_default: f64,
    /// Days of data before the personal baseline replaces the defaults.
    pub calibration_days: u32,
    /// The baseline: mean of the last this-many days.
    pub short_window_days: u32,
    /// The normal band comes from this many days.
    pub long_window_days: u32,
    /// Band half-width in standard deviations (0.5 = the smallest worthwhile change).
    pub band_sd: f64,
    /// Valid days the short window needs before it counts.
    pub min_short_window_days: u32,
    /// Body temperature baseline (°C) while a user is calibrating.
    pub temperature_default_c: f64,
}

impl Default for Baselines {
    fn default() -> Self {
        Self {
            hrv_default: 60.0,
            heart_rate_default: 70.0,
            recovery_score_default: 75.0,
            calibration_days: 14,
            short_window_days: 7,
            long_window_days: 60,
            band_sd: 0.5,
            min_short_window_days: 3,
            temperature_default_c: 36.8,
        }
    }
}

/// Hysteresis: how a mode is entered and left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stability {
    /// A mode backed by one signal is entered after this many consecutive qualifying evaluations;
    /// two independent signals in one evaluation are enough at once.
    pub enter_consecutive: u32,
    /// REFLEX exits only when every acute signal is under this fraction of its threshold.
    pub exit_ratio: f64,
    /// The exit condition must hold this long (event time) before leaving for a calmer mode.
    pub min_dwell_seconds: u64,
    /// An acute reading (heart rate, HRV sample, stress) counts for this long.
    pub acute_window_seconds: u64,
    /// A daily reading (nightly HRV, resting HR, recovery, temperature) counts for this long.
    pub daily_window_hours: u64,
    /// Steps within this window mean the user is not at rest.
    pub activity_window_seconds: u64,
    /// At least this many steps in the activity window mean "active".
    pub active_steps: f64,
    /// HYPOTHESIS exits after this many consecutive evaluations without an anomaly.
    pub hypothesis_clear_readings: u32,
}

impl Default for Stability {
    fn default() -> Self {
        Self {
            enter_consecutive: 2,
            exit_ratio: 0.9,
            min_dwell_seconds: 600,
            acute_window_seconds: 900,
            daily_window_hours: 36,
            activity_window_seconds: 900,
            active_steps: 100.0,
            hypothesis_clear_readings: 3,
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

fn check(ok: bool, key: &'static str, problem: impl FnOnce() -> String) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key,
            problem: problem(),
        })
    }
}

fn positive(v: f64, key: &'static str) -> Result<(), ConfigError> {
    check(v.is_finite() && v > 0.0, key, || {
        format!("must be a positive number, is {v}")
    })
}

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
        let t = &self.thresholds;
        positive(t.hrv_drop_ms, "thresholds.hrv_drop_ms")?;
        check(
            t.hrv_drop_percentage > 0.0 && t.hrv_drop_percentage < 100.0,
            "thresholds.hrv_drop_percentage",
            || format!("must be in (0, 100), is {}", t.hrv_drop_percentage),
        )?;
        check(
            t.heart_rate_elevated > 30.0 && t.heart_rate_elevated < 250.0,
            "thresholds.heart_rate_elevated",
            || {
                format!(
                    "must be a heart rate in (30, 250) bpm, is {}",
                    t.heart_rate_elevated
                )
            },
        )?;
        positive(t.heart_rate_elevation, "thresholds.heart_rate_elevation")?;
        check(
            t.stress_level_high > 0.0 && t.stress_level_high < 1.0,
            "thresholds.stress_level_high",
            || format!("must be in (0, 1), is {}", t.stress_level_high),
        )?;
        check(
            t.stress_level_critical > t.stress_level_high && t.stress_level_critical <= 1.0,
            "thresholds.stress_level_critical",
            || {
                format!(
                    "must be above stress_level_high ({}) and at most 1, is {}",
                    t.stress_level_high, t.stress_level_critical
                )
            },
        )?;
        check(
            t.recovery_score_low > 0.0 && t.recovery_score_low < 100.0,
            "thresholds.recovery_score_low",
            || format!("must be in (0, 100), is {}", t.recovery_score_low),
        )?;
        check(
            t.recovery_score_moderate > t.recovery_score_low && t.recovery_score_moderate <= 100.0,
            "thresholds.recovery_score_moderate",
            || {
                format!(
                    "must be above recovery_score_low ({}) and at most 100, is {}",
                    t.recovery_score_low, t.recovery_score_moderate
                )
            },
        )?;
        check(
            t.mode_switch_cooldown_seconds <= 86_400,
            "thresholds.mode_switch_cooldown_seconds",
            || "must be at most a day".into(),
        )?;
        positive(t.resting_hr_rise_bpm, "thresholds.resting_hr_rise_bpm")?;
        positive(t.temperature_rise_c, "thresholds.temperature_rise_c")?;
        check(
            t.guardian_min_indicators >= 1,
            "thresholds.guardian_min_indicators",
            || "must be at least 1".into(),
        )?;

        let b = &self.baselines;
        check(
            b.hrv_default >= 1.0 && b.hrv_default <= 500.0,
            "baselines.hrv_default",
            || format!("must be an HRV in [1, 500] ms, is {}", b.hrv_default),
        )?;
        check(
            b.heart_rate_default >= 20.0 && b.heart_rate_default <= 150.0,
            "baselines.heart_rate_default",
            || {
                format!(
                    "must be a heart rate in [20, 150] bpm, is {}",
                    b.heart_rate_default
                )
            },
        )?;
        check(
            (0.0..=100.0).contains(&b.recovery_score_default),
            "baselines.recovery_score_default",
            || format!("must be in [0, 100], is {}", b.recovery_score_default),
        )?;
        check(
            b.short_window_days >= 1,
            "baselines.short_window_days",
            || "must be at least 1".into(),
        )?;
        check(
            b.long_window_days > b.short_window_days && b.long_window_days <= 366,
            "baselines.long_window_days",
            || {
                format!(
                    "must be above short_window_days ({}) and at most 366, is {}",
                    b.short_window_days, b.long_window_days
                )
            },
        )?;
        check(
            b.calibration_days >= 2 && b.calibration_days <= b.long_window_days,
            "baselines.calibration_days",
            || {
                format!(
                    "must be in [2, long_window_days], is {}",
                    b.calibration_days
                )
            },
        )?;
        positive(b.band_sd, "baselines.band_sd")?;
        check(
            b.min_short_window_days >= 1 && b.min_short_window_days <= b.short_window_days,
            "baselines.min_short_window_days",
            || {
                format!(
                    "must be in [1, short_window_days], is {}",
                    b.min_short_window_days
                )
            },
        )?;

        check(
            (34.0..=39.0).contains(&b.temperature_default_c),
            "baselines.temperature_default_c",
            || {
                format!(
                    "must be a body temperature in [34, 39] °C, is {}",
                    b.temperature_default_c
                )
            },
        )?;

        let s = &self.stability;
        check(
            s.enter_consecutive >= 1,
            "stability.enter_consecutive",
            || "must be at least 1".into(),
        )?;
        check(
            s.exit_ratio > 0.0 && s.exit_ratio < 1.0,
            "stability.exit_ratio",
            || {
                format!(
                    "must be in (0, 1) so that exit thresholds sit below entry ones, is {}",
                    s.exit_ratio
                )
            },
        )?;
        check(
            s.acute_window_seconds >= 1,
            "stability.acute_window_seconds",
            || "must be at least 1".into(),
        )?;
        check(
            s.daily_window_hours >= 1,
            "stability.daily_window_hours",
            || "must be at least 1".into(),
        )?;
        check(s.active_steps >= 0.0, "stability.active_steps", || {
            "must not be negative".into()
        })?;
        check(
            s.hypothesis_clear_readings >= 1,
            "stability.hypothesis_clear_readings",
            || "must be at least 1".into(),
        )?;

        let a = &self.anomaly;
        positive(
            a.max_hr_jump_bpm_per_minute,
            "anomaly.max_hr_jump_bpm_per_minute",
        )?;
        check(
            a.hrv_artefact_ratio > 1.0,
            "anomaly.hrv_artefact_ratio",
            || "must be above 1".into(),
        )?;
        check(a.high_hrv_ratio > 1.0, "anomaly.high_hrv_ratio", || {
            "must be above 1".into()
        })?;
        positive(a.high_hrv_heart_rate, "anomaly.high_hrv_heart_rate")?;
        positive(a.low_hrv_ms, "anomaly.low_hrv_ms")?;
        positive(a.low_hrv_heart_rate, "anomaly.low_hrv_heart_rate")?;

        let c = &self.checkpoint;
        check(
            c.checkpoint_interval_seconds >= 1,
            "checkpoint.checkpoint_interval_seconds",
            || "must be at least 1".into(),
        )?;
        positive(
            c.significant_change.hrv,
            "checkpoint.significant_change.hrv",
        )?;
        positive(
            c.significant_change.heart_rate,
            "checkpoint.significant_change.heart_rate",
        )?;
        positive(
            c.significant_change.stress_level,
            "checkpoint.significant_change.stress_level",
        )?;

        let al = &self.alerts;
        check(
            al.error_rate_threshold > 0.0 && al.error_rate_threshold <= 1.0,
            "alerts.error_rate_threshold",
            || "must be in (0, 1]".into(),
        )?;
        positive(
            al.checkpoint_latency_threshold,
            "alerts.checkpoint_latency_threshold",
        )?;
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
            ("thresholds: [1, 2]\n", "not valid YAML"),
            ("thresholds:\n  hrv_drop_ms: twenty\n", "not valid YAML"),
        ];
        for (text, needle) in bad {
            let e = EngineConfig::from_yaml(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?} gave {e}");
        }
    }
}
