//! The cognitive mode engine: per-user baselines and a mode decided from them, with no IO.
//!
//! Modes, most urgent first: REFLEX (acute stress), GUARDIAN (low recovery), HYPOTHESIS (anomalous
//! or implausible readings), PATTERN (normal). Each event updates the user's state and is then
//! judged against the config:
//!
//! - **Evidence.** Acute signals (HRV drop against the baseline, heart rate at rest, stress) count
//!   for `acute_window_seconds`; daily ones (nightly HRV against the 60-day band, resting HR,
//!   temperature, vendor recovery) for `daily_window_hours`. A user is calibrating until a series
//!   has `calibration_days` days; until then the seed's defaults stand in for the baseline.
//! - **Artefacts.** A reading that jumps faster than physiology allows, or an HRV many times off
//!   the baseline, is kept out of the baselines and leads to HYPOTHESIS, never to REFLEX.
//! - **Stability.** A mode backed by a single signal needs `enter_consecutive` qualifying
//!   evaluations; two independent signals enter at once. Leaving needs the mode's own exit
//!   condition (below the entry thresholds by `exit_ratio`) to hold for `min_dwell_seconds`, and no
//!   switch happens within `mode_switch_cooldown_seconds` of the last one unless to a more urgent
//!   mode. A user is never "switched" to the mode they are in.
//! - **Time** is event time: the same events in the same order give the same switches, with the
//!   same deterministic ids, on any machine and any replay.

pub mod baseline;
pub mod config;

use crate::model::{BiometricEvent, EventId, Metric, Payload};
use baseline::{day_of, DailySeries};
use config::EngineConfig;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    Reflex,
    Guardian,
    Hypothesis,
    #[default]
    Pattern,
}

impl Mode {
    pub const ALL: [Mode; 4] = [
        Mode::Reflex,
        Mode::Guardian,
        Mode::Hypothesis,
        Mode::Pattern,
    ];

    /// Higher is more urgent; a more urgent mode may pre-empt a cooldown.
    pub fn urgency(self) -> u8 {
        match self {
            Mode::Reflex => 3,
            Mode::Guardian => 2,
            Mode::Hypothesis => 1,
            Mode::Pattern => 0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Reflex => "REFLEX",
            Mode::Guardian => "GUARDIAN",
            Mode::Hypothesis => "HYPOTHESIS",
            Mode::Pattern => "PATTERN",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of evidence: which rule, on which reading, against what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub rule: String,
    /// The reading the rule is about; None for rules about the absence of evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    pub threshold: f64,
}

/// A reading kept compactly: value and event time (unix seconds; u32 lasts until 2106), so a
/// user's latest values cost 8 bytes each rather than 24.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub v: f32,
    pub at: u32,
}

impl Sample {
    fn at(&self) -> i64 {
        i64::from(self.at)
    }
}

/// The latest accepted reading of each metric the engine judges.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latest {
    pub heart_rate: Option<Sample>,
    pub hrv_rmssd: Option<Sample>,
    pub hrv_sdnn: Option<Sample>,
    pub resting_heart_rate: Option<Sample>,
    pub stress_level: Option<Sample>,
    pub recovery_score: Option<Sample>,
    pub temperature_deviation: Option<Sample>,
    pub body_temperature: Option<Sample>,
    pub steps: Option<Sample>,
}

/// Readings as the agent sees them at a decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heart_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hrv_rmssd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hrv_sdnn: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resting_heart_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stress_level: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature_deviation: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_temperature: Option<f64>,
}

/// A decided switch, with everything the agent needs to act on it and explain it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeSwitch {
    /// Deterministic: the same event switching the same way always has the same id.
    pub switch_id: String,
    pub from: Mode,
    pub to: Mode,
    pub at: chrono::DateTime<chrono::Utc>,
    pub confidence: f64,
    pub reasons: Vec<Reason>,
    pub snapshot: Snapshot,
    pub calibrating: bool,
    /// The event whose evaluation switched.
    pub event_id: EventId,
}

/// Values at the last checkpoint, to tell a significant change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub heart_rate: Option<f32>,
    pub hrv: Option<f32>,
    pub stress_level: Option<f32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Streaks {
    pub reflex: u32,
    pub guardian: u32,
    pub without_anomaly: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    pub mode: Mode,
    /// Event time (unix seconds) the current mode began; None before the first switch.
    pub mode_since: Option<i64>,
    pub confidence: f64,
    /// The latest event time seen; the engine's clock never runs backwards.
    pub clock: Option<i64>,
    pub hrv_rmssd: DailySeries,
    pub hrv_sdnn: DailySeries,
    pub resting_heart_rate: DailySeries,
    pub body_temperature: DailySeries,
    pub latest: Latest,
    pub streaks: Streaks,
    /// Since when (event time) the current mode's exit condition has held.
    pub exit_since: Option<i64>,
    pub anomalies: u32,
    pub events: u64,
    /// Short hashes of recent event ids, to ignore a redelivery that got past ingest dedup.
    recent: [u32; RECENT_IDS],
    recent_next: u8,
    pub saved: Saved,
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub applied: bool,
    pub duplicate: bool,
    pub artefact: bool,
    pub switch: Option<ModeSwitch>,
    /// The change since the last checkpoint is large enough to checkpoint now.
    pub significant: bool,
}

const RECENT_IDS: usize = 8;

struct Evidence {
    reflex: Vec<Reason>,
    reflex_kinds: u8,
    reflex_primary: bool,
    reflex_clear: bool,
    guardian: Vec<Reason>,
    guardian_indicators: u32,
    guardian_qualifies: bool,
    guardian_clear: bool,
    hypothesis: Vec<Reason>,
    normal: Vec<Reason>,
}

fn fresh(s: Option<Sample>, now: i64, window: i64) -> Option<Sample> {
    s.filter(|s| s.at() <= now && now - s.at() <= window)
}

fn reason(rule: &str, metric: Metric, value: f64, baseline: Option<f64>, threshold: f64) -> Reason {
    Reason {
        rule: rule.to_string(),
        metric: Some(metric),
        value: round3(value),
        baseline: baseline.map(round3),
        threshold: round3(threshold),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Never 0, so the empty ring matches nothing.
fn id_hash(id: &EventId) -> u32 {
    u32::from_str_radix(id.as_str().get(..8).unwrap_or("1"), 16)
        .unwrap_or(1)
        .max(1)
}

impl UserState {
    fn hrv_series(&self, m: Metric) -> &DailySeries {
        if m == Metric::HrvSdnn {
            &self.hrv_sdnn
        } else {
            &self.hrv_rmssd
        }
    }

    /// HRV baseline in ms for `m` (RMSSD and SDNN each their own): the geometric mean of the short
    /// window once calibrated, else the configured default. The bool says "personal".
    pub fn hrv_baseline(&self, cfg: &EngineConfig, m: Metric) -> (f64, bool) {
        let s = self.hrv_series(m);
        let st = s.stats();
        if s.days_with_data() >= cfg.baselines.calibration_days
            && st.short_days >= cfg.baselines.min_short_window_days
        {
            (st.short_mean.exp(), true)
        } else {
            (cfg.baselines.hrv_default, false)
        }
    }

    fn calibrated(&self, cfg: &EngineConfig, s: &DailySeries) -> bool {
        s.days_with_data() >= cfg.baselines.calibration_days
    }

    /// Heart-rate baseline: the personal resting HR once calibrated, else the default.
    pub fn heart_rate_baseline(&self, cfg: &EngineConfig) -> (f64, bool) {
        if self.calibrated(cfg, &self.resting_heart_rate) {
            (self.resting_heart_rate.stats().long_mean, true)
        } else {
            (cfg.baselines.heart_rate_default, false)
        }
    }

    /// Calibrating until any HRV series (or, without HRV, resting HR) has enough days.
    pub fn calibrating(&self, cfg: &EngineConfig) -> bool {
        !(self.calibrated(cfg, &self.hrv_rmssd)
            || self.calibrated(cfg, &self.hrv_sdnn)
            || self.calibrated(cfg, &self.resting_heart_rate))
    }

    pub fn snapshot(&self) -> Snapshot {
        let v = |s: Option<Sample>| s.map(|s| round3(s.v as f64));
        let l = &self.latest;
        Snapshot {
            heart_rate: v(l.heart_rate),
            hrv_rmssd: v(l.hrv_rmssd),
            hrv_sdnn: v(l.hrv_sdnn),
            resting_heart_rate: v(l.resting_heart_rate),
            stress_level: v(l.stress_level),
            recovery_score: v(l.recovery_score),
            temperature_deviation: v(l.temperature_deviation),
            body_temperature: v(l.body_temperature),
        }
    }

    /// Records that the current values were checkpointed.
    pub fn mark_saved(&mut self) {
        let l = &self.latest;
        self.saved = Saved {
            heart_rate: l.heart_rate.map(|s| s.v),
            hrv: l.hrv_rmssd.or(l.hrv_sdnn).map(|s| s.v),
            stress_level: l.stress_level.map(|s| s.v),
        };
    }

    fn significant(&self, cfg: &EngineConfig) -> bool {
        let c = &cfg.checkpoint.significant_change;
        let l = &self.latest;
        let moved = |now: Option<f32>, then: Option<f32>, by: f64| match (now, then) {
            (Some(a), Some(b)) => (a as f64 - b as f64).abs() >= by,
            (Some(_), None) => true,
            _ => false,
        };
        moved(
            l.heart_rate.map(|s| s.v),
            self.saved.heart_rate,
            c.heart_rate,
        ) || moved(
            l.hrv_rmssd.or(l.hrv_sdnn).map(|s| s.v),
            self.saved.hrv,
            c.hrv,
        ) || moved(
            l.stress_level.map(|s| s.v),
            self.saved.stress_level,
            c.stress_level,
        )
    }

    /// Heap bytes held by this state, for the memory-per-user budget.
    pub fn heap_bytes(&self) -> usize {
        self.hrv_rmssd.heap_bytes()
            + self.hrv_sdnn.heap_bytes()
            + self.resting_heart_rate.heap_bytes()
            + self.body_temperature.heap_bytes()
    }

    fn at_rest(&self, cfg: &EngineConfig, now: i64) -> bool {
        fresh(
            self.latest.steps,
            now,
            cfg.stability.activity_window_seconds as i64,
        )
        .is_none_or(|s| (s.v as f64) < cfg.stability.active_steps)
    }

    /// Is this reading a sensor artefact? Judged before it touches any baseline.
    fn artefact(&self, cfg: &EngineConfig, metric: Metric, value: f64, at: i64) -> Option<Reason> {
        let a = &cfg.anomaly;
        match metric {
            Metric::HeartRate => {
                let prev = self.latest.heart_rate?;
                let dt = at - prev.at();
                if dt <= 0 || dt > a.hr_jump_window_seconds as i64 {
                    return None;
                }
                let per_minute = (value - prev.v as f64).abs() / (dt as f64 / 60.0).max(1.0 / 60.0);
                (per_minute > a.max_hr_jump_bpm_per_minute).then(|| {
                    reason(
                        "heart_rate_jump_artefact",
                        metric,
                        value,
                        Some(prev.v as f64),
                        a.max_hr_jump_bpm_per_minute,
                    )
                })
            }
            Metric::HrvRmssd | Metric::HrvSdnn => {
                let (b, _) = self.hrv_baseline(cfg, metric);
                let r = a.hrv_artefact_ratio;
                (value > b * r || value < b / r)
                    .then(|| reason("hrv_artefact", metric, value, Some(b), r))
            }
            _ => None,
        }
    }

    /// Takes a plausible reading into the latest values and the baselines.
    fn absorb(&mut self, cfg: &EngineConfig, metric: Metric, value: f64, at: i64) {
        let (lw, sw) = (
            cfg.baselines.long_window_days,
            cfg.baselines.short_window_days,
        );
        let day = day_of(at);
        let sample = Sample {
            v: value as f32,
            at: at.clamp(0, i64::from(u32::MAX)) as u32,
        };
        let newer = |slot: &mut Option<Sample>| {
            if slot.is_none_or(|s| s.at() <= at) {
                *slot = Some(sample);
            }
        };
        let l = &mut self.latest;
        match metric {
            Metric::HeartRate => newer(&mut l.heart_rate),
            Metric::HrvRmssd => {
                newer(&mut l.hrv_rmssd);
                self.hrv_rmssd.add(day, value.ln(), lw, sw);
            }
            Metric::HrvSdnn => {
                newer(&mut l.hrv_sdnn);
                self.hrv_sdnn.add(day, value.ln(), lw, sw);
            }
            Metric::RestingHeartRate => {
                newer(&mut l.resting_heart_rate);
                self.resting_heart_rate.add(day, value, lw, sw);
            }
            Metric::StressLevel => newer(&mut l.stress_level),
            Metric::RecoveryScore => newer(&mut l.recovery_score),
            Metric::TemperatureDeviation => newer(&mut l.temperature_deviation),
            Metric::BodyTemperature => {
                newer(&mut l.body_temperature);
                self.body_temperature.add(day, value, lw, sw);
            }
            Metric::Steps => newer(&mut l.steps),
            _ => {}
        }
    }

    fn evaluate(&self, cfg: &EngineConfig, now: i64, artefact: Option<Reason>) -> Evidence {
        let t = &cfg.thresholds;
        let acute = cfg.stability.acute_window_seconds as i64;
        let daily = cfg.stability.daily_window_hours as i64 * 3600;
        let exit = cfg.stability.exit_ratio;
        let l = &self.latest;
        let mut e = Evidence {
            reflex: vec![],
            reflex_kinds: 0,
            reflex_primary: false,
            reflex_clear: true,
            guardian: vec![],
            guardian_indicators: 0,
            guardian_qualifies: false,
            guardian_clear: true,
            hypothesis: artefact.into_iter().collect(),
            normal: vec![],
        };

        // REFLEX: acute HRV drop, per HRV kind against that kind's own baseline.
        let mut hrv_signal = false;
        for (m, s) in [
            (Metric::HrvRmssd, l.hrv_rmssd),
            (Metric::HrvSdnn, l.hrv_sdnn),
        ] {
            let Some(s) = fresh(s, now, acute) else {
                continue;
            };
            let (b, _) = self.hrv_baseline(cfg, m);
            let drop = b - s.v as f64;
            let pct = drop / b * 100.0;
            if drop > t.hrv_drop_ms {
                e.reflex
                    .push(reason("hrv_drop_ms", m, s.v as f64, Some(b), t.hrv_drop_ms));
                hrv_signal = true;
            }
            if pct > t.hrv_drop_percentage {
                e.reflex.push(reason(
                    "hrv_drop_percentage",
                    m,
                    s.v as f64,
                    Some(b),
                    t.hrv_drop_percentage,
                ));
                hrv_signal = true;
            }
            if drop >= exit * t.hrv_drop_ms || pct >= exit * t.hrv_drop_percentage {
                e.reflex_clear = false;
            } else {
                e.normal.push(reason(
                    "hrv_within_baseline",
                    m,
                    s.v as f64,
                    Some(b),
                    t.hrv_drop_ms,
                ));
            }
            // HYPOTHESIS: physiologically odd combinations with a fresh heart rate.
            if let Some(hr) = fresh(l.heart_rate, now, acute) {
                let a = &cfg.anomaly;
                if s.v as f64 > a.high_hrv_ratio * b && hr.v as f64 > a.high_hrv_heart_rate {
                    e.hypothesis.push(reason(
                        "high_hrv_with_high_heart_rate",
                        m,
                        s.v as f64,
                        Some(b),
                        a.high_hrv_ratio,
                    ));
                }
                if (s.v as f64) < a.low_hrv_ms && (hr.v as f64) < a.low_hrv_heart_rate {
                    e.hypothesis.push(reason(
                        "low_hrv_with_low_heart_rate",
                        m,
                        s.v as f64,
                        None,
                        a.low_hrv_ms,
                    ));
                }
            }
        }
        if hrv_signal {
            e.reflex_kinds += 1;
            e.reflex_primary = true;
        }

        // REFLEX: heart rate at rest; absolute threshold, or relative as corroboration only.
        if let Some(hr) = fresh(l.heart_rate, now, acute).filter(|_| self.at_rest(cfg, now)) {
            let v = hr.v as f64;
            let (b, _) = self.heart_rate_baseline(cfg);
            let mut signal = false;
            if v > t.heart_rate_elevated {
                e.reflex.push(reason(
                    "heart_rate_elevated",
                    Metric::HeartRate,
                    v,
                    Some(b),
                    t.heart_rate_elevated,
                ));
                e.reflex_primary = true;
                signal = true;
            }
            if v - b > t.heart_rate_elevation {
                e.reflex.push(reason(
                    "heart_rate_elevation",
                    Metric::HeartRate,
                    v,
                    Some(b),
                    t.heart_rate_elevation,
                ));
                signal = true;
            }
            if signal {
                e.reflex_kinds += 1;
            }
            if v >= exit * t.heart_rate_elevated {
                e.reflex_clear = false;
            } else {
                e.normal.push(reason(
                    "heart_rate_normal",
                    Metric::HeartRate,
                    v,
                    Some(b),
                    t.heart_rate_elevated,
                ));
            }
        }

        // Stress: critical is acute (REFLEX); high is a low-reserve indicator (GUARDIAN).
        if let Some(s) = fresh(l.stress_level, now, acute) {
            let v = s.v as f64;
            if v > t.stress_level_critical {
                e.reflex.push(reason(
                    "stress_level_critical",
                    Metric::StressLevel,
                    v,
                    None,
                    t.stress_level_critical,
                ));
                e.reflex_kinds += 1;
                e.reflex_primary = true;
            }
            if v >= t.stress_level_high {
                e.reflex_clear = false;
            }
        }
        if let Some(s) = fresh(l.stress_level, now, daily) {
            let v = s.v as f64;
            if v > t.stress_level_high {
                e.guardian.push(reason(
                    "stress_level_high",
                    Metric::StressLevel,
                    v,
                    None,
                    t.stress_level_high,
                ));
                e.guardian_indicators += 1;
            }
        }

        // GUARDIAN: recovery as an independent vote, never a baseline.
        let mut recovery_low = false;
        if let Some(r) = fresh(l.recovery_score, now, daily) {
            let v = r.v as f64;
            if v < t.recovery_score_low {
                e.guardian.push(reason(
                    "recovery_score_low",
                    Metric::RecoveryScore,
                    v,
                    Some(cfg.baselines.recovery_score_default),
                    t.recovery_score_low,
                ));
                recovery_low = true;
            } else if v < t.recovery_score_moderate {
                e.guardian.push(reason(
                    "recovery_below_moderate",
                    Metric::RecoveryScore,
                    v,
                    Some(cfg.baselines.recovery_score_default),
                    t.recovery_score_moderate,
                ));
                e.guardian_indicators += 1;
            }
            if v < t.recovery_score_moderate {
                e.guardian_clear = false;
            } else {
                e.normal.push(reason(
                    "recovery_normal",
                    Metric::RecoveryScore,
                    v,
                    None,
                    t.recovery_score_moderate,
                ));
            }
        }

        // GUARDIAN: HRV below the personal normal band (today, or the 7-day baseline), once per user.
        let band_sd = cfg.baselines.band_sd;
        let mut hrv_low = None;
        for (m, s) in [
            (Metric::HrvRmssd, l.hrv_rmssd),
            (Metric::HrvSdnn, l.hrv_sdnn),
        ] {
            let series = self.hrv_series(m);
            if !self.calibrated(cfg, series) {
                continue;
            }
            let st = series.stats();
            let low = st.long_mean - band_sd * st.long_sd;
            let chronic =
                st.short_days >= cfg.baselines.min_short_window_days && st.short_mean < low;
            let today = fresh(s, now, daily).filter(|s| (s.v as f64).ln() < low);
            if let Some(s) = today {
                hrv_low.get_or_insert(reason(
                    "hrv_below_normal_band",
                    m,
                    s.v as f64,
                    Some(st.long_mean.exp()),
                    low.exp(),
                ));
            } else if chronic {
                hrv_low.get_or_insert(reason(
                    "hrv_baseline_below_normal_band",
                    m,
                    st.short_mean.exp(),
                    Some(st.long_mean.exp()),
                    low.exp(),
                ));
            }
        }
        if let Some(r) = hrv_low {
            e.guardian.push(r);
            e.guardian_indicators += 1;
        }

        // GUARDIAN: resting HR over its own long mean (personal only).
        if let Some(r) = fresh(l.resting_heart_rate, now, daily) {
            if self.calibrated(cfg, &self.resting_heart_rate) {
                let b = self.resting_heart_rate.stats().long_mean;
                if r.v as f64 >= b + t.resting_hr_rise_bpm {
                    e.guardian.push(reason(
                        "resting_heart_rate_elevated",
                        Metric::RestingHeartRate,
                        r.v as f64,
                        Some(b),
                        b + t.resting_hr_rise_bpm,
                    ));
                    e.guardian_indicators += 1;
                }
            }
        }

        // GUARDIAN: temperature above the personal (or default) baseline.
        if let Some(d) = fresh(l.temperature_deviation, now, daily) {
            if d.v as f64 > t.temperature_rise_c {
                e.guardian.push(reason(
                    "temperature_deviation",
                    Metric::TemperatureDeviation,
                    d.v as f64,
                    Some(0.0),
                    t.temperature_rise_c,
                ));
                e.guardian_indicators += 1;
            }
        } else if let Some(bt) = fresh(l.body_temperature, now, daily) {
            let b = if self.calibrated(cfg, &self.body_temperature) {
                self.body_temperature.stats().long_mean
            } else {
                cfg.baselines.temperature_default_c
            };
            if bt.v as f64 > b + t.temperature_rise_c {
                e.guardian.push(reason(
                    "body_temperature_elevated",
                    Metric::BodyTemperature,
                    bt.v as f64,
                    Some(b),
                    b + t.temperature_rise_c,
                ));
                e.guardian_indicators += 1;
            }
        }

        e.guardian_qualifies = recovery_low || e.guardian_indicators >= t.guardian_min_indicators;
        if recovery_low || e.guardian_indicators > 0 {
            e.guardian_clear = false;
        }
        e
    }

    /// Applies one event. Notifications carry no values and change nothing.
    pub fn apply(
        &mut self,
        cfg: &EngineConfig,
        pseudonym: &str,
        event: &BiometricEvent,
    ) -> Outcome {
        let mut out = Outcome {
            applied: false,
            duplicate: false,
            artefact: false,
            switch: None,
            significant: false,
        };
        let Payload::Reading(r) = &event.payload else {
            return out;
        };
        let h = id_hash(&event.id);
        if self.recent.contains(&h) {
            out.duplicate = true;
            return out;
        }
        self.recent[usize::from(self.recent_next) % RECENT_IDS] = h;
        self.recent_next = ((usize::from(self.recent_next) + 1) % RECENT_IDS) as u8;

        let at = event.occurred_at.timestamp();
        let now = self.clock.map_or(at, |c| c.max(at));
        self.clock = Some(now);
        self.events += 1;
        out.applied = true;

        let artefact = self.artefact(cfg, r.metric, r.value, at);
        out.artefact = artefact.is_some();
        if artefact.is_some() {
            self.anomalies += 1;
        } else {
            self.absorb(cfg, r.metric, r.value, at);
        }
        let acute_metric = matches!(
            r.metric,
            Metric::HeartRate | Metric::HrvRmssd | Metric::HrvSdnn | Metric::StressLevel
        );
        let daily_metric = matches!(
            r.metric,
            Metric::HrvRmssd
                | Metric::HrvSdnn
                | Metric::RestingHeartRate
                | Metric::RecoveryScore
                | Metric::StressLevel
                | Metric::TemperatureDeviation
                | Metric::BodyTemperature
        );

        let e = self.evaluate(cfg, now, artefact);
        if acute_metric && !out.artefact {
            self.streaks.reflex = if e.reflex_primary {
                self.streaks.reflex + 1
            } else {
                0
            };
        }
        if daily_metric && !out.artefact {
            self.streaks.guardian = if e.guardian_qualifies {
                self.streaks.guardian + 1
            } else {
                0
            };
        }
        self.streaks.without_anomaly = if e.hypothesis.is_empty() {
            self.streaks.without_anomaly + 1
        } else {
            0
        };

        let need = cfg.stability.enter_consecutive;
        let target = if e.reflex_primary && (e.reflex_kinds >= 2 || self.streaks.reflex >= need) {
            Some(Mode::Reflex)
        } else if e.guardian_qualifies
            && (e.guardian_indicators >= 2 || self.streaks.guardian >= need)
        {
            Some(Mode::Guardian)
        } else if !e.hypothesis.is_empty() {
            Some(Mode::Hypothesis)
        } else {
            None
        };

        let current = self.mode;
        let current_clear = match current {
            Mode::Reflex => e.reflex_clear,
            Mode::Guardian => e.guardian_clear,
            Mode::Hypothesis => {
                self.streaks.without_anomaly >= cfg.stability.hypothesis_clear_readings
            }
            Mode::Pattern => true,
        };
        if current != Mode::Pattern && current_clear {
            self.exit_since.get_or_insert(now);
        } else {
            self.exit_since = None;
        }
        let cooled = self
            .mode_since
            .is_none_or(|t| now - t >= cfg.thresholds.mode_switch_cooldown_seconds as i64);
        let dwelled = self
            .exit_since
            .is_some_and(|t| now - t >= cfg.stability.min_dwell_seconds as i64);
        let calm_exit_allowed = current_clear && dwelled && cooled;

        let to = match target {
            Some(t) if t == current => None,
            Some(t) if t.urgency() > current.urgency() => Some(t),
            Some(t) => calm_exit_allowed.then_some(t),
            None => (current != Mode::Pattern && calm_exit_allowed).then_some(Mode::Pattern),
        };

        if let Some(to) = to {
            let calibrating = self.calibrating(cfg);
            let (reasons, confidence) = self.justify(cfg, to, &e, r.confidence, calibrating);
            let switch = ModeSwitch {
                switch_id: EventId::derive(&[
                    "switch",
                    pseudonym,
                    event.id.as_str(),
                    current.as_str(),
                    to.as_str(),
                ])
                .to_string(),
                from: current,
                to,
                at: event.occurred_at,
                confidence,
                reasons,
                snapshot: self.snapshot(),
                calibrating,
                event_id: event.id.clone(),
            };
            self.mode = to;
            self.mode_since = Some(now);
            self.confidence = confidence;
            self.exit_since = None;
            self.streaks.reflex = 0;
            self.streaks.guardian = 0;
            out.switch = Some(switch);
        }
        out.significant = out.switch.is_some() || self.significant(cfg);
        out
    }

    /// Reasons and a confidence in [0, 1] for switching to `to`.
    fn justify(
        &self,
        cfg: &EngineConfig,
        to: Mode,
        e: &Evidence,
        reading_confidence: f64,
        calibrating: bool,
    ) -> (Vec<Reason>, f64) {
        let calibration = if calibrating { 0.85 } else { 1.0 };
        let (reasons, base) = match to {
            Mode::Reflex => {
                // How far past its threshold each signal is, averaged; more kinds, more certainty.
                let excess: f64 =
                    e.reflex.iter().map(excess).sum::<f64>() / e.reflex.len().max(1) as f64;
                let kinds = f64::from(e.reflex_kinds.saturating_sub(1));
                (e.reflex.clone(), 0.55 + 0.15 * kinds + 0.3 * excess)
            }
            Mode::Guardian => {
                let rec = e.guardian.iter().find(|r| r.rule == "recovery_score_low");
                let base = match rec {
                    Some(r) => {
                        0.5 + 0.5
                            * ((cfg.baselines.recovery_score_default - r.value)
                                / cfg.baselines.recovery_score_default)
                    }
                    None => 0.45 + 0.15 * f64::from(e.guardian_indicators),
                };
                (e.guardian.clone(), base)
            }
            Mode::Hypothesis => (
                e.hypothesis.clone(),
                if e.hypothesis.iter().any(|r| r.rule.ends_with("artefact")) {
                    0.7
                } else {
                    0.6
                },
            ),
            Mode::Pattern => {
                // Say which exit condition held, then which fresh readings are back in band.
                let s = &cfg.stability;
                let held = Reason {
                    rule: format!("{}_exit_held", self.mode.as_str().to_ascii_lowercase()),
                    metric: None,
                    value: self
                        .exit_since
                        .map_or(0.0, |t| (self.clock.unwrap_or(t) - t) as f64),
                    baseline: None,
                    threshold: s.min_dwell_seconds as f64,
                };
                let mut reasons = vec![held];
                if self.mode == Mode::Hypothesis {
                    reasons.push(Reason {
                        rule: "readings_without_anomaly".into(),
                        metric: None,
                        value: f64::from(self.streaks.without_anomaly),
                        baseline: None,
                        threshold: f64::from(s.hypothesis_clear_readings),
                    });
                }
                let n = e.normal.len() as f64;
                reasons.extend(e.normal.iter().cloned());
                (reasons, 0.6 + 0.1 * n.min(4.0))
            }
        };
        let c = (base * calibration * reading_confidence.clamp(0.5, 1.0)).clamp(0.0, 1.0);
        (reasons, round3(c))
    }
}

/// How far a reason's value is past its threshold, as a fraction in [0, 1].
fn excess(r: &Reason) -> f64 {
    let over = match r.rule.as_str() {
        "hrv_drop_ms" => r.baseline.unwrap_or(0.0) - r.value - r.threshold,
        "hrv_drop_percentage" => {
            let b = r.baseline.unwrap_or(1.0);
            (b - r.value) / b * 100.0 - r.threshold
        }
        _ => r.value - r.threshold,
    };
    (over / r.threshold.abs().max(1e-9)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests;
