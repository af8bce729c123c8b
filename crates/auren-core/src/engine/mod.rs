//! The cognitive mode engine: per-user baselines and a mode decided from them, with no IO.
//!
//! Modes, most urgent first: REFLEX (acute stress), GUARDIAN (low reserve), HYPOTHESIS (anomalous
//! or implausible readings), PATTERN (normal). Each event updates the user's state and is then
//! judged against the config. The parts, one file each:
//!
//! - [`baseline`]: nightly series (ln HRV per kind, resting HR, temperatures) with a 7-night
//!   baseline and a 60-night normal band; [`activity`]: when the user was moving.
//! - [`rules`]: what each mode's evidence is ([`rules::reflex`], [`rules::guardian`],
//!   [`rules::hypothesis`]).
//! - `decision`: hysteresis, dwell, cooldown and pre-emption; `explain`: reasons and confidence.
//! - [`replay`]: a file of events through the engine offline, for scenarios and `auren replay`.
//!
//! **Evidence lifetimes.** Daily measurements (nightly HRV, resting HR, temperature, recovery)
//! stand until the next reading of their kind, at most `daily_window_hours`: a night's verdict is
//! still there when the user wakes. Acute ones (heart rate at rest, stress) last
//! `acute_window_seconds`.
//!
//! **Calibration.** HRV is compared with a baseline that starts at a per-kind prior (RMSSD and
//! SDNN differ) and shrinks towards the user's own mean night by night. Until `calibration_days`
//! nights (or at once for a backfilled user, see [`UserState::mark_backfilled`]) an HRV drop needs
//! another signal to corroborate it: a population default alone never makes a REFLEX.
//!
//! **Time** is event time: the same events in the same order give the same switches, with the
//! same deterministic ids, on any machine and any replay. No event can carry a user's clock past
//! what later data can follow (see `stability.max_future_seconds`).

pub mod activity;
pub mod baseline;
pub mod config;
mod decision;
mod explain;
pub mod replay;
pub mod rules;

use crate::model::{BiometricEvent, EventId, Metric, Payload, ReadingDetail};
use activity::Activity;
use baseline::{night_of, DailySeries, Kind};
use config::EngineConfig;
use rules::Nights;
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

/// Every rule a reason can name. Serialised as the snake_case strings the wire has always carried,
/// so agents reading `reasons[].rule` see no change; an enum makes a misspelt rule a compile error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    // REFLEX
    HrvDropMs,
    HrvDropPercentage,
    HeartRateElevated,
    HeartRateElevation,
    StressLevelCritical,
    // GUARDIAN
    StressLevelHigh,
    RecoveryScoreLow,
    RecoveryBelowModerate,
    HrvBelowNormalBand,
    HrvBaselineBelowNormalBand,
    RestingHeartRateElevated,
    TemperatureDeviation,
    BodyTemperatureElevated,
    WristTemperatureElevated,
    IllnessPattern,
    LargeRestingHeartRateRise,
    LargeTemperatureRise,
    LowIndicatorsPersist,
    // HYPOTHESIS
    HeartRateJumpArtefact,
    HrvArtefact,
    HighHrvWithHighHeartRate,
    LowHrvWithLowHeartRate,
    // back to PATTERN
    HrvWithinBaseline,
    HeartRateNormal,
    RecoveryNormal,
    NightsRecovered,
    ReflexExitHeld,
    GuardianExitHeld,
    HypothesisExitHeld,
    ReadingsWithoutAnomaly,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        use Rule::*;
        match self {
            HrvDropMs => "hrv_drop_ms",
            HrvDropPercentage => "hrv_drop_percentage",
            HeartRateElevated => "heart_rate_elevated",
            HeartRateElevation => "heart_rate_elevation",
            StressLevelCritical => "stress_level_critical",
            StressLevelHigh => "stress_level_high",
            RecoveryScoreLow => "recovery_score_low",
            RecoveryBelowModerate => "recovery_below_moderate",
            HrvBelowNormalBand => "hrv_below_normal_band",
            HrvBaselineBelowNormalBand => "hrv_baseline_below_normal_band",
            RestingHeartRateElevated => "resting_heart_rate_elevated",
            TemperatureDeviation => "temperature_deviation",
            BodyTemperatureElevated => "body_temperature_elevated",
            WristTemperatureElevated => "wrist_temperature_elevated",
            IllnessPattern => "illness_pattern",
            LargeRestingHeartRateRise => "large_resting_heart_rate_rise",
            LargeTemperatureRise => "large_temperature_rise",
            LowIndicatorsPersist => "low_indicators_persist",
            HeartRateJumpArtefact => "heart_rate_jump_artefact",
            HrvArtefact => "hrv_artefact",
            HighHrvWithHighHeartRate => "high_hrv_with_high_heart_rate",
            LowHrvWithLowHeartRate => "low_hrv_with_low_heart_rate",
            HrvWithinBaseline => "hrv_within_baseline",
            HeartRateNormal => "heart_rate_normal",
            RecoveryNormal => "recovery_normal",
            NightsRecovered => "nights_recovered",
            ReflexExitHeld => "reflex_exit_held",
            GuardianExitHeld => "guardian_exit_held",
            HypothesisExitHeld => "hypothesis_exit_held",
            ReadingsWithoutAnomaly => "readings_without_anomaly",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of evidence: which rule, on which reading, against what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub rule: Rule,
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
#[serde(default)]
pub struct Latest {
    pub heart_rate: Option<Sample>,
    pub hrv_rmssd: Option<Sample>,
    pub hrv_sdnn: Option<Sample>,
    pub resting_heart_rate: Option<Sample>,
    pub stress_level: Option<Sample>,
    pub recovery_score: Option<Sample>,
    pub temperature_deviation: Option<Sample>,
    pub body_temperature: Option<Sample>,
    pub wrist_temperature: Option<Sample>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrist_temperature: Option<f64>,
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

/// Consecutive qualifying readings, per kind of acute evidence. Counted per reading, never per
/// evaluation: evidence that stands all day would otherwise "confirm" itself on every event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Streaks {
    pub heart_rate: u8,
    pub stress: u8,
    pub hrv: u8,
    /// The night the HRV streak is about.
    pub hrv_night: i32,
    pub without_anomaly: u32,
}

/// Per-user facts that do not come from readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Flags {
    /// History was loaded from a vendor: the user's baselines are personal from the first day.
    pub backfilled: bool,
    /// The vendor's latest score said its own baseline is still calibrating.
    pub vendor_calibrating: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    pub wrist_temperature: DailySeries,
    pub latest: Latest,
    pub activity: Activity,
    pub nights: Nights,
    pub streaks: Streaks,
    pub flags: Flags,
    /// When the user's vendor history was fetched (the backfill marker's receipt, Unix
    /// seconds): readings dated well before it are their past (see [`UserState::apply`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_until: Option<i64>,
    /// Since when (event time) the current mode's exit condition has held.
    pub exit_since: Option<i64>,
    pub anomalies: u32,
    pub events: u64,
    /// Short hashes of recent event ids, to ignore a redelivery that got past ingest dedup.
    recent: [u32; RECENT_IDS],
    recent_next: u8,
    pub saved: Saved,
}

impl Default for UserState {
    fn default() -> Self {
        Self {
            mode: Mode::Pattern,
            mode_since: None,
            confidence: 0.0,
            clock: None,
            hrv_rmssd: DailySeries::new(Kind::LnHrv),
            hrv_sdnn: DailySeries::new(Kind::LnHrv),
            resting_heart_rate: DailySeries::new(Kind::HeartRate),
            body_temperature: DailySeries::new(Kind::Temperature),
            wrist_temperature: DailySeries::new(Kind::Temperature),
            latest: Latest::default(),
            activity: Activity::default(),
            nights: Nights::default(),
            streaks: Streaks::default(),
            flags: Flags::default(),
            history_until: None,
            exit_since: None,
            anomalies: 0,
            events: 0,
            recent: [0; RECENT_IDS],
            recent_next: 0,
            saved: Saved::default(),
        }
    }
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub applied: bool,
    pub duplicate: bool,
    pub artefact: bool,
    /// The event's time cannot be real (beyond 2106, or far after its own receipt): ignored.
    pub refused: bool,
    pub switch: Option<ModeSwitch>,
    /// The change since the last checkpoint is large enough to checkpoint now.
    pub significant: bool,
}

const RECENT_IDS: usize = 8;

/// The narrowest band HRV is judged on, in ln units (5 %): about the typical error of a nightly
/// HRV measurement. A user whose nights happen to be very alike must not have every ordinary
/// night called "low".
pub const MIN_LN_SD: f64 = 0.05;

pub(crate) fn reason(
    rule: Rule,
    metric: Metric,
    value: f64,
    baseline: Option<f64>,
    threshold: f64,
) -> Reason {
    Reason {
        rule,
        metric: Some(metric),
        value: round3(value),
        baseline: baseline.map(round3),
        threshold: round3(threshold),
    }
}

pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Never 0, so the empty ring matches nothing.
fn id_hash(id: &EventId) -> u32 {
    u32::from_str_radix(id.as_str().get(..8).unwrap_or("1"), 16)
        .unwrap_or(1)
        .max(1)
}

impl UserState {
    pub(crate) fn hrv_series(&self, m: Metric) -> &DailySeries {
        if m == Metric::HrvSdnn {
            &self.hrv_sdnn
        } else {
            &self.hrv_rmssd
        }
    }

    /// Marks the user as backfilled: their history came from the vendor, so their baselines are
    /// personal from the first day and HRV needs no calibration period. Call before (or while)
    /// feeding the history.
    pub fn mark_backfilled(&mut self) {
        self.flags.backfilled = true;
    }

    /// Has series `s` enough nights to be the user's own (calibration over, or backfilled)?
    pub(crate) fn calibrated(&self, cfg: &EngineConfig, s: &DailySeries) -> bool {
        let days = s.days_with_data();
        days >= cfg.baselines.calibration_days
            || (self.flags.backfilled && days >= cfg.baselines.min_short_window_days)
    }

    /// Does `s` have a usable personal mean and SD (a normal band)?
    pub(crate) fn has_band(&self, cfg: &EngineConfig, s: &DailySeries) -> bool {
        self.calibrated(cfg, s) && s.stats().long_days >= 2
    }

    /// The personal day-to-day SD of ln HRV, never under [`MIN_LN_SD`].
    pub(crate) fn ln_sd(s: &DailySeries) -> f64 {
        s.stats().long_sd.max(MIN_LN_SD)
    }

    /// HRV baseline in ln(ms) for `m`, and whether it is the user's own. Calibrated: the mean of
    /// the last `short_window_days` completed nights (the seed's 7-day baseline). Before that the
    /// per-kind prior, shrunk towards the user's completed nights as they come:
    /// (k·ln prior + n·mean) / (k + n).
    pub fn hrv_baseline_ln(&self, cfg: &EngineConfig, m: Metric) -> (f64, bool) {
        let b = &cfg.baselines;
        let s = self.hrv_series(m);
        let st = s.stats();
        if self.calibrated(cfg, s) && st.short_days >= b.min_short_window_days {
            return (st.short_mean, true);
        }
        let prior = if m == Metric::HrvSdnn {
            b.hrv_sdnn_default
        } else {
            b.hrv_default
        }
        .ln();
        let k = if self.flags.backfilled {
            0.0
        } else {
            b.prior_weight_days
        };
        let n = f64::from(st.long_days);
        if n + k <= 0.0 {
            return (prior, false);
        }
        ((k * prior + n * st.long_mean) / (k + n), false)
    }

    /// HRV baseline in ms for `m` (RMSSD and SDNN each their own). The bool says "personal".
    pub fn hrv_baseline(&self, cfg: &EngineConfig, m: Metric) -> (f64, bool) {
        let (ln, personal) = self.hrv_baseline_ln(cfg, m);
        (ln.exp(), personal)
    }

    /// Resting HR baseline once a few nights exist: corroboration needs the user's own level.
    pub fn resting_hr_baseline(&self, cfg: &EngineConfig) -> Option<f64> {
        let st = self.resting_heart_rate.stats();
        (st.long_days >= cfg.baselines.min_short_window_days).then_some(st.long_mean)
    }

    /// Heart-rate baseline: the personal resting HR once it exists, else the default.
    pub fn heart_rate_baseline(&self, cfg: &EngineConfig) -> (f64, bool) {
        match self.resting_hr_baseline(cfg) {
            Some(b) => (b, true),
            None => (cfg.baselines.heart_rate_default, false),
        }
    }

    /// Calibrating until an HRV series (or, without HRV, resting HR) is the user's own, and while
    /// the vendor says it is calibrating.
    pub fn calibrating(&self, cfg: &EngineConfig) -> bool {
        self.flags.vendor_calibrating
            || !(self.calibrated(cfg, &self.hrv_rmssd)
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
            wrist_temperature: v(l.wrist_temperature),
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
            + self.wrist_temperature.heap_bytes()
    }

    /// Takes a plausible reading into the latest values, the baselines and the night's flags.
    /// Returns whether it is the newest reading of its kind (only those count for streaks: a
    /// late or repeated reading must not confirm anything).
    fn absorb(&mut self, cfg: &EngineConfig, metric: Metric, value: f64, at: u32) -> bool {
        let (lw, sw) = (
            cfg.baselines.long_window_days,
            cfg.baselines.short_window_days,
        );
        let night = night_of(i64::from(at));
        let sample = Sample {
            v: value as f32,
            at,
        };
        let newer = |slot: &mut Option<Sample>| match slot {
            Some(s) if s.at >= at => false,
            _ => {
                *slot = Some(sample);
                true
            }
        };
        let l = &mut self.latest;
        let fresh = match metric {
            Metric::HeartRate => newer(&mut l.heart_rate),
            Metric::HrvRmssd => {
                let f = newer(&mut l.hrv_rmssd);
                self.hrv_rmssd.add(night, value.ln(), lw, sw);
                f
            }
            Metric::HrvSdnn => {
                let f = newer(&mut l.hrv_sdnn);
                self.hrv_sdnn.add(night, value.ln(), lw, sw);
                f
            }
            Metric::RestingHeartRate => {
                let f = newer(&mut l.resting_heart_rate);
                self.resting_heart_rate.add(night, value, lw, sw);
                f
            }
            Metric::StressLevel => newer(&mut l.stress_level),
            Metric::RecoveryScore => newer(&mut l.recovery_score),
            Metric::TemperatureDeviation => newer(&mut l.temperature_deviation),
            Metric::BodyTemperature => {
                let f = newer(&mut l.body_temperature);
                self.body_temperature.add(night, value, lw, sw);
                f
            }
            Metric::WristTemperature => {
                let f = newer(&mut l.wrist_temperature);
                self.wrist_temperature.add(night, value, lw, sw);
                f
            }
            m => {
                self.activity.observe(&cfg.activity, m, value, at);
                false
            }
        };
        rules::guardian::flag_night(self, cfg, metric, value, at);
        fresh
    }

    /// Applies one event. Notifications and deletions carry no values and change nothing; a
    /// backfill marker only marks the user (their history follows).
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
            refused: false,
            switch: None,
            significant: false,
        };
        let r = match &event.payload {
            Payload::Reading(r) => r,
            Payload::Backfill(_) => {
                self.mark_backfilled();
                let fetched = event.received_at.timestamp();
                self.history_until = Some(self.history_until.map_or(fetched, |h| h.max(fetched)));
                return out;
            }
            Payload::Notification(_) | Payload::Deletion(_) => return out,
        };
        let at = event.occurred_at.timestamp();
        let received = event.received_at.timestamp();
        let future = cfg.stability.max_future_seconds as i64;
        // A time we cannot store, or far after the event's own receipt, is a broken device clock
        // (a "year 9999" sample): taking it would park the user's clock where no later reading can
        // follow. Refused before it touches anything.
        if !(0..=i64::from(u32::MAX)).contains(&at) || at > received.saturating_add(future) {
            out.refused = true;
            return out;
        }
        let h = id_hash(&event.id);
        if self.recent.contains(&h) {
            out.duplicate = true;
            return out;
        }
        self.recent[usize::from(self.recent_next) % RECENT_IDS] = h;
        self.recent_next = ((usize::from(self.recent_next) + 1) % RECENT_IDS) as u8;

        // A clock already beyond this event's receipt can only come from such a sample accepted
        // before this guard existed: start again from this event's time.
        if self
            .clock
            .is_some_and(|c| c > received.saturating_add(future))
        {
            self.clock = Some(at);
            self.mode_since = self.mode_since.map(|t| t.min(at));
            self.exit_since = None;
            let bad = |x: &mut Option<Sample>| {
                if x.is_some_and(|x| x.at() > received.saturating_add(future)) {
                    *x = None;
                }
            };
            let l = &mut self.latest;
            for x in [
                &mut l.heart_rate,
                &mut l.hrv_rmssd,
                &mut l.hrv_sdnn,
                &mut l.resting_heart_rate,
                &mut l.stress_level,
                &mut l.recovery_score,
                &mut l.temperature_deviation,
                &mut l.body_temperature,
                &mut l.wrist_temperature,
            ] {
                bad(x);
            }
        }
        let now = self.clock.map_or(at, |c| c.max(at));
        self.clock = Some(now);
        self.events += 1;
        out.applied = true;

        match &r.detail {
            Some(ReadingDetail::VendorCalibrating) => self.flags.vendor_calibrating = true,
            _ if r.metric == Metric::RecoveryScore => self.flags.vendor_calibrating = false,
            _ => {}
        }

        let artefact = rules::hypothesis::artefact(self, cfg, r.metric, r.value, at);
        out.artefact = artefact.is_some();
        let fresh = if artefact.is_some() {
            self.anomalies += 1;
            false
        } else {
            self.absorb(cfg, r.metric, r.value, at as u32)
        };

        // A backfilled reading dated before its daily window could reach the time the history
        // was fetched is the user's past: it builds their baselines and latest values, but it
        // cannot say what mode they are in now, and sixty days of old switches would reach the
        // agent as if they were news. The last day of the history still decides, so the user
        // starts in the mode their last night puts them in.
        let window = (cfg.stability.daily_window_hours * 3600) as i64;
        if self.history_until.is_some_and(|h| at < h - window) {
            out.significant = self.significant(cfg);
            return out;
        }
        let e = rules::evaluate(self, cfg, now, artefact);
        decision::count(self, cfg, r.metric, fresh, &e);
        let daily = fresh && decision::is_daily(r.metric);
        if let Some(to) = decision::decide(self, cfg, now, &e, daily) {
            let current = self.mode;
            let calibrating = self.calibrating(cfg);
            let (reasons, confidence) =
                explain::justify(self, cfg, to, &e, r.confidence, calibrating);
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
            decision::enter(self, to, now, confidence);
            out.switch = Some(switch);
        }
        out.significant = out.switch.is_some() || self.significant(cfg);
        out
    }
}

#[cfg(test)]
mod tests;
