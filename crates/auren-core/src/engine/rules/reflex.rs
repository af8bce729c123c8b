//! REFLEX: acute stress. The seed's rules (HRV more than 25 ms or 30 % under the personal baseline,
//! heart rate over 100 at rest, stress over 0.85), with what keeps them from firing on noise:
//!
//! - An HRV drop counts against the user's own baseline only when it is also outside their own
//!   day-to-day noise (`hrv_drop_min_sd`); during calibration it needs another reading to
//!   corroborate it. With fever the same night it is illness (GUARDIAN's), not acute stress.
//! - Heart rate counts only at rest: no activity signal within the activity window either side.
//! - Corroboration must be about the same moment: resting HR of the same night, or a heart rate
//!   within the acute window of the HRV reading.

use super::{fresh, Evidence};
use crate::engine::baseline::night_of;
use crate::engine::config::EngineConfig;
use crate::engine::{reason, Rule, UserState};
use crate::model::Metric;

pub(crate) fn evaluate(s: &UserState, cfg: &EngineConfig, now: i64, e: &mut Evidence) {
    let t = &cfg.thresholds;
    let acute = cfg.stability.acute_window_seconds as i64;
    let daily = cfg.stability.daily_window_hours as i64 * 3600;
    let exit = cfg.stability.exit_ratio;
    let l = &s.latest;

    // Heart rate at rest: > 100 is a primary signal; 20 over the baseline corroborates only.
    let window = cfg.activity.activity_window_seconds as u32;
    let hr_rest = fresh(l.heart_rate, now, acute).filter(|h| !s.activity.near(h.at, window));
    let (hr_base, _) = s.heart_rate_baseline(cfg);
    let mut hr_elevated_over_base = None;
    if let Some(hr) = hr_rest {
        let v = f64::from(hr.v);
        if v > t.heart_rate_elevated {
            e.reflex.push(reason(
                Rule::HeartRateElevated,
                Metric::HeartRate,
                v,
                Some(hr_base),
                t.heart_rate_elevated,
            ));
            e.hr_primary = true;
            e.source((Metric::HeartRate, hr.at));
        }
        if v - hr_base > t.heart_rate_elevation {
            hr_elevated_over_base = Some(hr);
            if e.hr_primary {
                e.reflex.push(reason(
                    Rule::HeartRateElevation,
                    Metric::HeartRate,
                    v,
                    Some(hr_base),
                    t.heart_rate_elevation,
                ));
            }
        }
        if v >= exit * t.heart_rate_elevated {
            e.reflex_clear = false;
        } else {
            e.normal.push(reason(
                Rule::HeartRateNormal,
                Metric::HeartRate,
                v,
                Some(hr_base),
                t.heart_rate_elevated,
            ));
        }
    }

    // Stress: critical is acute.
    if let Some(st) = fresh(l.stress_level, now, acute) {
        let v = f64::from(st.v);
        if v > t.stress_level_critical {
            e.reflex.push(reason(
                Rule::StressLevelCritical,
                Metric::StressLevel,
                v,
                None,
                t.stress_level_critical,
            ));
            e.stress_primary = true;
            e.source((Metric::StressLevel, st.at));
        }
        if v >= t.stress_level_high {
            e.reflex_clear = false;
        }
    }

    // Heart rate and stress at the same moment back each other.
    if let (Some(hr), Some(st)) = (hr_rest, fresh(l.stress_level, now, acute)) {
        let close = (i64::from(hr.at) - i64::from(st.at)).abs() <= acute;
        if close
            && ((e.hr_primary && f64::from(st.v) > t.stress_level_high)
                || (e.stress_primary && hr_elevated_over_base.is_some()))
        {
            e.corroborated = true;
            e.source((Metric::HeartRate, hr.at));
        }
    }

    // HRV drop, per kind against that kind's own baseline, valid until the next reading.
    for (m, latest) in [
        (Metric::HrvRmssd, l.hrv_rmssd),
        (Metric::HrvSdnn, l.hrv_sdnn),
    ] {
        let Some(h) = fresh(latest, now, daily) else {
            continue;
        };
        let series = s.hrv_series(m);
        let (b_ln, personal) = s.hrv_baseline_ln(cfg, m);
        let b = b_ln.exp();
        let night = night_of(i64::from(h.at));
        // The night's HRV is the mean of its readings so far: Apple's spot readings scatter ±12 %
        // within a night, and one of three low is not a low night.
        let v = match series.current() {
            Some((n, mean)) if n == night => mean.exp(),
            _ => f64::from(h.v),
        };
        let drop = b - v;
        let pct = drop / b * 100.0;
        // Outside the user's own noise, once they have a band; a prior has no noise to compare.
        let z = s
            .has_band(cfg, series)
            .then(|| (v.ln() - series.stats().long_mean) / UserState::ln_sd(series));
        let beyond_noise = |k: f64| z.is_none_or(|z| z <= -k * t.hrv_drop_min_sd);
        let feverish = s.nights.get(s.nights.temp_high, night);
        let by_ms = drop > t.hrv_drop_ms;
        let by_pct = pct > t.hrv_drop_percentage;
        if (by_ms || by_pct) && beyond_noise(1.0) && !feverish {
            if by_ms {
                e.reflex
                    .push(reason(Rule::HrvDropMs, m, v, Some(b), t.hrv_drop_ms));
            }
            if by_pct {
                e.reflex.push(reason(
                    Rule::HrvDropPercentage,
                    m,
                    v,
                    Some(b),
                    t.hrv_drop_percentage,
                ));
            }
            e.hrv_primary = Some(m);
            e.hrv_personal = personal;
            e.hrv_extreme = beyond_noise(2.0) && z.is_some();
            e.hrv_night = night;
            e.source((m, h.at));
            corroborate(s, cfg, e, h.at, night, hr_elevated_over_base);
        }
        // A new night's reading holds REFLEX only if it could have entered it on its own: against
        // a prior (calibrating) that takes corroboration, so the REFLEX is that night's.
        let still_low = (drop >= exit * t.hrv_drop_ms || pct >= exit * t.hrv_drop_percentage)
            && beyond_noise(exit)
            && !feverish
            && (personal || s.streaks.hrv_night == night);
        if still_low {
            e.reflex_clear = false;
        } else {
            e.normal.push(reason(
                Rule::HrvWithinBaseline,
                m,
                v,
                Some(b),
                t.hrv_drop_percentage,
            ));
        }
    }
}

/// Readings about the same night or moment as an HRV drop at `at`.
fn corroborate(
    s: &UserState,
    cfg: &EngineConfig,
    e: &mut Evidence,
    at: u32,
    night: i32,
    hr: Option<crate::engine::Sample>,
) {
    let t = &cfg.thresholds;
    if let (Some(r), Some(b)) = (s.latest.resting_heart_rate, s.resting_hr_baseline(cfg)) {
        let v = f64::from(r.v);
        if night_of(i64::from(r.at)) == night && v >= b + t.reflex_resting_hr_rise_bpm {
            e.reflex.push(reason(
                Rule::RestingHeartRateElevated,
                Metric::RestingHeartRate,
                v,
                Some(b),
                b + t.reflex_resting_hr_rise_bpm,
            ));
            e.source((Metric::RestingHeartRate, r.at));
            e.corroborated = true;
        }
    }
    if let Some(h) = hr {
        let acute = cfg.stability.acute_window_seconds as i64;
        if (i64::from(h.at) - i64::from(at)).abs() <= acute {
            if !e.hr_primary {
                let (b, _) = s.heart_rate_baseline(cfg);
                e.reflex.push(reason(
                    Rule::HeartRateElevation,
                    Metric::HeartRate,
                    f64::from(h.v),
                    Some(b),
                    t.heart_rate_elevation,
                ));
            }
            e.source((Metric::HeartRate, h.at));
            e.corroborated = true;
        }
    }
}
