//! HYPOTHESIS: readings that are anomalous or implausible. A sensor artefact is kept out of every
//! baseline and leads here, never to REFLEX; so do physiologically odd combinations taken at the
//! same moment.

use super::{fresh, Evidence};
use crate::engine::config::EngineConfig;
use crate::engine::{reason, Reason, Rule, UserState};
use crate::model::Metric;

/// Is this reading a sensor artefact? Judged before it touches any baseline.
pub(crate) fn artefact(
    s: &UserState,
    cfg: &EngineConfig,
    metric: Metric,
    value: f64,
    at: i64,
) -> Option<Reason> {
    let a = &cfg.anomaly;
    match metric {
        Metric::HeartRate => {
            let prev = s.latest.heart_rate?;
            let dt = at - i64::from(prev.at);
            if dt <= 0 || dt > a.hr_jump_window_seconds as i64 {
                return None;
            }
            let per_minute = (value - f64::from(prev.v)).abs() / (dt as f64 / 60.0).max(1.0 / 60.0);
            (per_minute > a.max_hr_jump_bpm_per_minute).then(|| {
                reason(
                    Rule::HeartRateJumpArtefact,
                    metric,
                    value,
                    Some(f64::from(prev.v)),
                    a.max_hr_jump_bpm_per_minute,
                )
            })
        }
        Metric::HrvRmssd | Metric::HrvSdnn => {
            let (b, _) = s.hrv_baseline(cfg, metric);
            let r = a.hrv_artefact_ratio;
            // Against a population prior only the high side is telling: a low-HRV user's own
            // values sit far under the prior and are real.
            let own = s.hrv_series(metric).stats().long_days > 0;
            (value > b * r || (own && value < b / r))
                .then(|| reason(Rule::HrvArtefact, metric, value, Some(b), r))
        }
        _ => None,
    }
}

/// Odd combinations of HRV with a heart rate taken within the acute window of it.
pub(crate) fn evaluate(s: &UserState, cfg: &EngineConfig, now: i64, e: &mut Evidence) {
    let a = &cfg.anomaly;
    let acute = cfg.stability.acute_window_seconds as i64;
    let Some(hr) = fresh(s.latest.heart_rate, now, acute) else {
        return;
    };
    for (m, latest) in [
        (Metric::HrvRmssd, s.latest.hrv_rmssd),
        (Metric::HrvSdnn, s.latest.hrv_sdnn),
    ] {
        let Some(h) = latest.filter(|h| (i64::from(h.at) - i64::from(hr.at)).abs() <= acute) else {
            continue;
        };
        let (b, _) = s.hrv_baseline(cfg, m);
        let (v, rate) = (f64::from(h.v), f64::from(hr.v));
        if v > a.high_hrv_ratio * b && rate > a.high_hrv_heart_rate {
            e.hypothesis.push(reason(
                Rule::HighHrvWithHighHeartRate,
                m,
                v,
                Some(b),
                a.high_hrv_ratio,
            ));
        }
        if v < a.low_hrv_ms && rate < a.low_hrv_heart_rate {
            e.hypothesis.push(reason(
                Rule::LowHrvWithLowHeartRate,
                m,
                v,
                None,
                a.low_hrv_ms,
            ));
        }
    }
}
