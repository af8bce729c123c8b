//! From evidence to a switch: confirmation, hysteresis, dwell, cooldown and pre-emption.
//!
//! - **Confirmation.** REFLEX backed by one reading waits for `enter_consecutive` qualifying
//!   readings of that kind (for HRV: within one night, and only for a drop twice
//!   `hrv_drop_min_sd` deep; a night that is merely low needs another signal); a second reading of the same moment (a
//!   heart rate beside an HRV, the night's resting HR, stress beside a heart rate) enters at once. One reading is one signal, whatever number of rules it
//!   trips. GUARDIAN's rules carry their own persistence (nights, not evaluations).
//! - **Exit.** Leaving needs the current mode's exit condition (below the entry thresholds by
//!   `exit_ratio`, nights recovered, readings without anomaly) to hold for `min_dwell_seconds`,
//!   or to be established by a new daily measurement.
//! - **Cooldown.** No switch within `mode_switch_cooldown_seconds` of the last one, unless to a
//!   more urgent mode. A user is never "switched" to the mode they are in.

use super::config::EngineConfig;
use super::rules::Evidence;
use super::{Mode, UserState};
use crate::model::Metric;

/// Updates the per-reading streaks after `metric` was applied (`fresh`: it is the newest of its
/// kind, so it may count).
pub(crate) fn count(
    s: &mut UserState,
    cfg: &EngineConfig,
    metric: Metric,
    fresh: bool,
    e: &Evidence,
) {
    let _ = cfg;
    let step = |streak: u8, holds: bool, this_kind: bool| match (holds, this_kind && fresh) {
        (false, _) => 0,
        (true, true) => streak.saturating_add(1),
        (true, false) => streak,
    };
    let st = &mut s.streaks;
    st.heart_rate = step(st.heart_rate, e.hr_primary, metric == Metric::HeartRate);
    st.stress = step(st.stress, e.stress_primary, metric == Metric::StressLevel);
    // Repetition confirms an HRV drop only within one night: the next night is a new story.
    if e.hrv_primary == Some(metric) && fresh && st.hrv_night != e.hrv_night {
        st.hrv = 0;
        st.hrv_night = e.hrv_night;
    }
    st.hrv = step(
        st.hrv,
        e.hrv_primary.is_some() && e.hrv_extreme,
        e.hrv_primary == Some(metric),
    );
    st.without_anomaly = if e.hypothesis.is_empty() {
        st.without_anomaly.saturating_add(1)
    } else {
        0
    };
}

/// A daily measurement (a night's HRV, resting HR, temperature, a recovery score).
pub(crate) fn is_daily(m: Metric) -> bool {
    matches!(
        m,
        Metric::HrvRmssd
            | Metric::HrvSdnn
            | Metric::RestingHeartRate
            | Metric::TemperatureDeviation
            | Metric::BodyTemperature
            | Metric::WristTemperature
            | Metric::RecoveryScore
    )
}

/// The mode to switch to now, if any. `daily`: the event is a new daily measurement, which
/// clears a mode without the dwell (it is a new day's verdict, not a momentary dip; a source of
/// nightly summaries has no later event that could complete a dwell before the next night).
pub(crate) fn decide(
    s: &mut UserState,
    cfg: &EngineConfig,
    now: i64,
    e: &Evidence,
    daily: bool,
) -> Option<Mode> {
    let need = cfg.stability.enter_consecutive.min(255) as u8;
    let st = &s.streaks;
    let confirmed = e.reflex_primary()
        && (e.corroborated
            || (e.hr_primary && st.heart_rate >= need)
            || (e.stress_primary && st.stress >= need)
            || (e.hrv_primary.is_some() && e.hrv_extreme && st.hrv >= need));
    let target = if confirmed {
        Some(Mode::Reflex)
    } else if e.guardian_qualifies {
        Some(Mode::Guardian)
    } else if !e.hypothesis.is_empty() {
        Some(Mode::Hypothesis)
    } else {
        None
    };

    let current = s.mode;
    let current_clear = match current {
        Mode::Reflex => e.reflex_clear,
        Mode::Guardian => e.guardian_clear,
        Mode::Hypothesis => st.without_anomaly >= cfg.stability.hypothesis_clear_readings,
        Mode::Pattern => true,
    };
    if current != Mode::Pattern && current_clear {
        s.exit_since.get_or_insert(now);
    } else {
        s.exit_since = None;
    }
    let cooled = s
        .mode_since
        .is_none_or(|t| now - t >= cfg.thresholds.mode_switch_cooldown_seconds as i64);
    let dwelled = s
        .exit_since
        .is_some_and(|t| daily || now - t >= cfg.stability.min_dwell_seconds as i64);
    let calm_exit_allowed = current_clear && dwelled && cooled;

    match target {
        Some(t) if t == current => None,
        Some(t) if t.urgency() > current.urgency() => Some(t),
        Some(t) => calm_exit_allowed.then_some(t),
        None => (current != Mode::Pattern && calm_exit_allowed).then_some(Mode::Pattern),
    }
}

pub(crate) fn enter(s: &mut UserState, to: Mode, now: i64, confidence: f64) {
    s.mode = to;
    s.mode_since = Some(now);
    s.confidence = confidence;
    s.exit_since = None;
    s.streaks.heart_rate = 0;
    s.streaks.stress = 0;
    s.streaks.hrv = 0;
}
