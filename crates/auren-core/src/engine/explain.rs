//! Why a switch happened, for the agent: the reasons, and a confidence in [0, 1].

use super::config::EngineConfig;
use super::rules::Evidence;
use super::{round3, Mode, Reason, Rule, UserState};

/// Reasons and a confidence for switching to `to`.
pub(crate) fn justify(
    s: &UserState,
    cfg: &EngineConfig,
    to: Mode,
    e: &Evidence,
    reading_confidence: f64,
    calibrating: bool,
) -> (Vec<Reason>, f64) {
    let calibration = if calibrating { 0.85 } else { 1.0 };
    let (reasons, base) = match to {
        Mode::Reflex => {
            // How far past its threshold each signal is, averaged; more readings, more certainty.
            let excess: f64 =
                e.reflex.iter().map(excess).sum::<f64>() / e.reflex.len().max(1) as f64;
            let more = e.reflex_sources.len().saturating_sub(1).min(3) as f64;
            (e.reflex.clone(), 0.55 + 0.15 * more + 0.3 * excess)
        }
        Mode::Guardian => {
            let rec = e.guardian.iter().find(|r| r.rule == Rule::RecoveryScoreLow);
            let base = match rec {
                Some(r) => {
                    0.5 + 0.5
                        * ((cfg.baselines.recovery_score_default - r.value)
                            / cfg.baselines.recovery_score_default)
                }
                None => 0.45 + 0.1 * e.guardian.len().min(4) as f64,
            };
            (e.guardian.clone(), base)
        }
        Mode::Hypothesis => (
            e.hypothesis.clone(),
            if e.hypothesis
                .iter()
                .any(|r| matches!(r.rule, Rule::HrvArtefact | Rule::HeartRateJumpArtefact))
            {
                0.7
            } else {
                0.6
            },
        ),
        Mode::Pattern => {
            // Say which exit condition held, then which readings are back in band.
            let st = &cfg.stability;
            let rule = match s.mode {
                Mode::Reflex => Rule::ReflexExitHeld,
                Mode::Guardian => Rule::GuardianExitHeld,
                _ => Rule::HypothesisExitHeld,
            };
            let held = Reason {
                rule,
                metric: None,
                value: s
                    .exit_since
                    .map_or(0.0, |t| (s.clock.unwrap_or(t) - t) as f64),
                baseline: None,
                threshold: st.min_dwell_seconds as f64,
            };
            let mut reasons = vec![held];
            if s.mode == Mode::Hypothesis {
                reasons.push(Reason {
                    rule: Rule::ReadingsWithoutAnomaly,
                    metric: None,
                    value: f64::from(s.streaks.without_anomaly),
                    baseline: None,
                    threshold: f64::from(st.hypothesis_clear_readings),
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

/// How far a reason's value is past its threshold, as a fraction in [0, 1].
fn excess(r: &Reason) -> f64 {
    let over = match r.rule {
        Rule::HrvDropMs => r.baseline.unwrap_or(0.0) - r.value - r.threshold,
        Rule::HrvDropPercentage => {
            let b = r.baseline.unwrap_or(1.0);
            (b - r.value) / b * 100.0 - r.threshold
        }
        _ => r.value - r.threshold,
    };
    (over / r.threshold.abs().max(1e-9)).clamp(0.0, 1.0)
}
