//! The user state as the API and the cache show it.

use auren_core::engine::config::EngineConfig;
use auren_core::engine::UserState;
use auren_core::model::Metric;
use serde_json::{json, Value};

pub fn state_view(cfg: &EngineConfig, pseudonym: &str, thread_id: &str, s: &UserState) -> Value {
    let at = |t: Option<i64>| t.and_then(|t| chrono::DateTime::from_timestamp(t, 0));
    let hrv = |m: Metric, series: &auren_core::engine::baseline::DailySeries| {
        let (baseline, personal) = s.hrv_baseline(cfg, m);
        let st = series.stats();
        let band = (st.long_days >= 2).then(|| {
            let (lo, hi) = (
                st.long_mean - cfg.baselines.band_sd * st.long_sd,
                st.long_mean + cfg.baselines.band_sd * st.long_sd,
            );
            [round(lo.exp()), round(hi.exp())]
        });
        json!({
            "baseline_ms": round(baseline),
            "personal": personal,
            "days": series.days_with_data(),
            "required_days": cfg.baselines.calibration_days,
            "normal_band_ms": band,
        })
    };
    let (hr_baseline, hr_personal) = s.heart_rate_baseline(cfg);
    json!({
        "user_pseudonym": pseudonym,
        "thread_id": thread_id,
        "mode": s.mode,
        "confidence": s.confidence,
        "mode_since": at(s.mode_since),
        "calibrating": s.calibrating(cfg),
        "baselines": {
            "hrv_rmssd": hrv(Metric::HrvRmssd, &s.hrv_rmssd),
            "hrv_sdnn": hrv(Metric::HrvSdnn, &s.hrv_sdnn),
            "resting_heart_rate": {
                "baseline_bpm": round(s.resting_heart_rate.stats().long_mean),
                "days": s.resting_heart_rate.days_with_data(),
            },
            "heart_rate": {"baseline_bpm": round(hr_baseline), "personal": hr_personal},
        },
        "latest": s.snapshot(),
        "events": s.events,
        "anomalies": s.anomalies,
        "as_of": at(s.clock),
    })
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
