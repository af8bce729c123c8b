//! GUARDIAN: low reserve. Entered on persistent evidence, a clear single signal, or the illness
//! pattern, never on one noisy night:
//!
//! - **Persistent HRV** (HRV4Training, Plews et al.): the 7-night rolling mean of ln HRV under the
//!   60-night mean by `guardian_band_sd` SDs, with at least `guardian_min_low_nights` of the last 7
//!   nights under the normal band, tonight included.
//! - **Several nights**: `guardian_min_indicators` low indicators (HRV under the band, resting HR up
//!   `resting_hr_rise_bpm`, temperature up `temperature_rise_c`, recovery under moderate, stress
//!   high) on each of `guardian_indicator_nights` consecutive nights. The luteal phase (wrist
//!   temperature about +0.3 °C, resting HR about +2 bpm, HRV a little lower) gives one such night
//!   now and then, rarely three in a row.
//! - **Clear single signals**: vendor recovery under `recovery_score_low`; resting HR or
//!   temperature far over baseline.
//! - **Illness**: resting HR and temperature up together for `illness_nights` nights running.
//!
//! It exits once `guardian_exit_nights` consecutive nights are back to normal, whatever the
//! 7-night mean (which lags a week) still says.

use super::{fresh, set, Evidence};
use crate::engine::baseline::night_of;
use crate::engine::config::EngineConfig;
use crate::engine::{reason, Reason, Rule, UserState};
use crate::model::Metric;

/// Sets the flags of the reading's night from the reading (the night's mean so far).
pub(crate) fn flag_night(
    s: &mut UserState,
    cfg: &EngineConfig,
    metric: Metric,
    value: f64,
    at: u32,
) {
    let t = &cfg.thresholds;
    let b = &cfg.baselines;
    let night = night_of(i64::from(at));
    let tonight = |series: &crate::engine::baseline::DailySeries, v: f64| match series.current() {
        Some((n, mean)) if n == night => mean,
        _ => v,
    };
    // (field updates) computed before borrowing the nights mutably.
    let mut hrv = None;
    let mut rhr = None;
    let mut temp = None;
    match metric {
        Metric::HrvRmssd | Metric::HrvSdnn => {
            let series = s.hrv_series(metric);
            if s.has_band(cfg, series) {
                let st = series.stats();
                let z = (tonight(series, value.ln()) - st.long_mean) / UserState::ln_sd(series);
                hrv = Some((z < -b.band_sd, z >= -b.recovered_sd));
            } else {
                hrv = Some((false, true));
            }
        }
        Metric::RestingHeartRate => {
            if let Some(base) = s.resting_hr_baseline(cfg) {
                let v = tonight(&s.resting_heart_rate, value);
                rhr = Some((
                    v >= base + t.resting_hr_rise_bpm,
                    v >= base + t.guardian_large_rhr_rise_bpm,
                ));
            }
        }
        Metric::TemperatureDeviation => temp = Some(value),
        Metric::BodyTemperature => {
            let series = &s.body_temperature;
            let base = if s.calibrated(cfg, series) {
                series.stats().long_mean
            } else {
                b.temperature_default_c
            };
            temp = Some(tonight(series, value) - base);
        }
        Metric::WristTemperature => {
            let series = &s.wrist_temperature;
            if series.stats().long_days >= b.min_short_window_days {
                temp = Some(tonight(series, value) - series.stats().long_mean);
            }
        }
        _ => return,
    }
    let n = &mut s.nights;
    let Some(bit) = n.bit(night) else {
        return;
    };
    n.seen |= bit;
    n.last_at = n.last_at.max(at);
    if let Some((low, ok)) = hrv {
        n.hrv_seen |= bit;
        set(&mut n.hrv_low, bit, low);
        set(&mut n.hrv_ok, bit, ok);
    }
    if let Some((high, large)) = rhr {
        set(&mut n.rhr_high, bit, high);
        if large {
            n.large |= bit;
        }
    }
    if let Some(d) = temp {
        set(&mut n.temp_high, bit, d > t.temperature_rise_c);
        if d >= t.guardian_large_temperature_rise_c {
            n.large |= bit;
        }
    }
}

fn count(bits: &[u8], bit: u8) -> u32 {
    bits.iter().filter(|f| *f & bit != 0).count() as u32
}

pub(crate) fn evaluate(s: &UserState, cfg: &EngineConfig, now: i64, e: &mut Evidence) {
    let t = &cfg.thresholds;
    let b = &cfg.baselines;
    let daily = cfg.stability.daily_window_hours as i64 * 3600;
    let l = &s.latest;
    let mut qualifies = false;
    let mut clear = true;
    let mut today_extra = 0;

    // Vendor recovery: an independent vote, never a baseline, and only once the vendor has one.
    if let Some(r) = fresh(l.recovery_score, now, daily).filter(|_| !s.flags.vendor_calibrating) {
        let v = f64::from(r.v);
        let base = Some(b.recovery_score_default);
        if v < t.recovery_score_low {
            e.guardian.push(reason(
                Rule::RecoveryScoreLow,
                Metric::RecoveryScore,
                v,
                base,
                t.recovery_score_low,
            ));
            qualifies = true;
        } else if v < t.recovery_score_moderate {
            e.guardian.push(reason(
                Rule::RecoveryBelowModerate,
                Metric::RecoveryScore,
                v,
                base,
                t.recovery_score_moderate,
            ));
            today_extra += 1;
        }
        // Hysteresis: back over the red line by the exit ratio. Requiring "moderate" would hold
        // a user whose recovery is usually yellow in GUARDIAN for days.
        if v < t.recovery_score_low / cfg.stability.exit_ratio {
            clear = false;
        } else {
            e.normal.push(reason(
                Rule::RecoveryNormal,
                Metric::RecoveryScore,
                v,
                None,
                t.recovery_score_low / cfg.stability.exit_ratio,
            ));
        }
    }
    if let Some(st) = fresh(l.stress_level, now, daily) {
        let v = f64::from(st.v);
        if v > t.stress_level_high {
            e.guardian.push(reason(
                Rule::StressLevelHigh,
                Metric::StressLevel,
                v,
                None,
                t.stress_level_high,
            ));
            today_extra += 1;
        }
    }

    let n = &s.nights;
    if n.current(now, daily) {
        let flags = [n.hrv_low, n.rhr_high, n.temp_high];
        today_reasons(s, cfg, e);

        let k = t.illness_nights.min(8);
        let mask = ((1u16 << k) - 1) as u8;
        if n.rhr_high & n.temp_high & mask == mask {
            e.guardian.push(Reason {
                rule: Rule::IllnessPattern,
                metric: None,
                value: f64::from(k),
                baseline: None,
                threshold: f64::from(t.illness_nights),
            });
            qualifies = true;
        }
        if n.large & 1 != 0 {
            qualifies |= large_reason(s, cfg, e);
        }
        for m in [Metric::HrvRmssd, Metric::HrvSdnn] {
            let series = s.hrv_series(m);
            let low_nights = (n.hrv_low & 0x7f).count_ones();
            if !s.has_band(cfg, series)
                || n.hrv_low & 1 == 0
                || low_nights < t.guardian_min_low_nights
                || series.current().map(|c| c.0) != Some(n.night)
            {
                continue;
            }
            let st = series.stats();
            let sd = UserState::ln_sd(series);
            let (b7, days) = series.recent(b.short_window_days);
            let (before, before_days) = series.before_current(b.short_window_days);
            let low = st.long_mean - b.guardian_band_sd * sd;
            // Persistent, not one crash: the nights before tonight were already under the band.
            let underway = before_days > 0 && before < st.long_mean - b.band_sd * sd;
            if days >= b.min_short_window_days && b7 < low && underway {
                e.guardian.push(reason(
                    Rule::HrvBaselineBelowNormalBand,
                    m,
                    b7.exp(),
                    Some(st.long_mean.exp()),
                    low.exp(),
                ));
                qualifies = true;
            }
        }
        let nights = t.guardian_indicator_nights.min(8);
        let persist = (0..nights).all(|i| {
            let bit = 1u8 << i;
            let extra = if i == 0 { today_extra } else { 0 };
            count(&flags, bit) + extra >= t.guardian_min_indicators
        });
        if persist {
            e.guardian.push(Reason {
                rule: Rule::LowIndicatorsPersist,
                metric: None,
                value: f64::from(nights),
                baseline: None,
                threshold: f64::from(t.guardian_min_indicators),
            });
            qualifies = true;
        }

        // Exit: the newest `guardian_exit_nights` nights with data are all back to normal.
        let mut checked = 0;
        let mut recovered = true;
        for i in 0..8u8 {
            let bit = 1u8 << i;
            if checked >= t.guardian_exit_nights || n.seen & bit == 0 {
                continue;
            }
            checked += 1;
            let hrv_fine = n.hrv_seen & bit == 0 || n.hrv_ok & bit != 0;
            recovered &= hrv_fine && n.rhr_high & bit == 0 && n.temp_high & bit == 0;
        }
        if recovered {
            e.normal.push(Reason {
                rule: Rule::NightsRecovered,
                metric: None,
                value: f64::from(checked),
                baseline: None,
                threshold: f64::from(t.guardian_exit_nights),
            });
        } else {
            clear = false;
        }
    }
    if qualifies {
        clear = false;
    }
    e.guardian_qualifies = qualifies;
    e.guardian_clear = clear;
}

/// The night's own indicators, as reasons for an agent to read.
fn today_reasons(s: &UserState, cfg: &EngineConfig, e: &mut Evidence) {
    let t = &cfg.thresholds;
    let b = &cfg.baselines;
    let n = &s.nights;
    let l = &s.latest;
    if n.hrv_low & 1 != 0 {
        for (m, latest) in [
            (Metric::HrvRmssd, l.hrv_rmssd),
            (Metric::HrvSdnn, l.hrv_sdnn),
        ] {
            let series = s.hrv_series(m);
            if let (Some(h), true) = (latest, s.has_band(cfg, series)) {
                if night_of(i64::from(h.at)) == n.night {
                    let st = series.stats();
                    e.guardian.push(reason(
                        Rule::HrvBelowNormalBand,
                        m,
                        f64::from(h.v),
                        Some(st.long_mean.exp()),
                        (st.long_mean - b.band_sd * UserState::ln_sd(series)).exp(),
                    ));
                }
            }
        }
    }
    if n.rhr_high & 1 != 0 {
        if let (Some(r), Some(base)) = (l.resting_heart_rate, s.resting_hr_baseline(cfg)) {
            e.guardian.push(reason(
                Rule::RestingHeartRateElevated,
                Metric::RestingHeartRate,
                f64::from(r.v),
                Some(base),
                base + t.resting_hr_rise_bpm,
            ));
        }
    }
    if n.temp_high & 1 != 0 {
        if let Some(r) = temperature_reason(s, cfg, t.temperature_rise_c) {
            e.guardian.push(r);
        }
    }
}

/// The temperature reading of the newest night, judged against `rise` over its baseline.
fn temperature_reason(s: &UserState, cfg: &EngineConfig, rise: f64) -> Option<Reason> {
    let l = &s.latest;
    let night = s.nights.night;
    let on_night =
        |x: Option<crate::engine::Sample>| x.filter(|x| night_of(i64::from(x.at)) == night);
    if let Some(d) = on_night(l.temperature_deviation) {
        let v = f64::from(d.v);
        return (v > rise).then(|| {
            reason(
                Rule::TemperatureDeviation,
                Metric::TemperatureDeviation,
                v,
                Some(0.0),
                rise,
            )
        });
    }
    if let Some(w) = on_night(l.wrist_temperature) {
        let base = s.wrist_temperature.stats().long_mean;
        let v = f64::from(w.v);
        return (v > base + rise).then(|| {
            reason(
                Rule::WristTemperatureElevated,
                Metric::WristTemperature,
                v,
                Some(base),
                base + rise,
            )
        });
    }
    let bt = on_night(l.body_temperature)?;
    let base = if s.calibrated(cfg, &s.body_temperature) {
        s.body_temperature.stats().long_mean
    } else {
        cfg.baselines.temperature_default_c
    };
    let v = f64::from(bt.v);
    (v > base + rise).then(|| {
        reason(
            Rule::BodyTemperatureElevated,
            Metric::BodyTemperature,
            v,
            Some(base),
            base + rise,
        )
    })
}

fn large_reason(s: &UserState, cfg: &EngineConfig, e: &mut Evidence) -> bool {
    let t = &cfg.thresholds;
    let l = &s.latest;
    if let (Some(r), Some(base)) = (l.resting_heart_rate, s.resting_hr_baseline(cfg)) {
        let v = f64::from(r.v);
        if night_of(i64::from(r.at)) == s.nights.night && v >= base + t.guardian_large_rhr_rise_bpm
        {
            e.guardian.push(reason(
                Rule::LargeRestingHeartRateRise,
                Metric::RestingHeartRate,
                v,
                Some(base),
                base + t.guardian_large_rhr_rise_bpm,
            ));
            return true;
        }
    }
    if let Some(mut r) = temperature_reason(s, cfg, t.guardian_large_temperature_rise_c) {
        r.rule = Rule::LargeTemperatureRise;
        e.guardian.push(r);
        return true;
    }
    false
}
