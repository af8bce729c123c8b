//! The engine and two reference methods, run on the same events, each giving a mode timeline.
//!
//! - [`SeedLiteral`]: the seed's rules as its README states them and its code applied them:
//!   the baseline is the plain 7-day average of the metric including the current reading, with
//!   the defaults (60 ms, 70 bpm) when there is none; HRV more than 25 ms or 30 % under it, any
//!   heart rate over 100 (no at-rest check) or stress over 0.85 is REFLEX; recovery under 40 is
//!   GUARDIAN; a reading back in range returns to PATTERN. RMSSD and SDNN are both "hrv", resting
//!   HR is "heart_rate", as the seed's handlers mapped them. Its 300 s cooldown is applied as a
//!   block (kinder than the predecessor's confidence penalty) and it never switches to its own mode.
//! - [`Hrv4Training`]: HRV4Training / Plews: per night ln HRV; the normal range is the mean ± 0.5 SD
//!   of up to 60 previous nights (at least 14); the baseline is the 7-night rolling mean including
//!   tonight (at least 3). Baseline under the range: GUARDIAN. Baseline under the range and
//!   tonight under the mean − 1.5 SD (the seed spec's acute threshold): REFLEX. Otherwise PATTERN.
//!   Decided at each HRV reading; it sees nothing else.

use crate::engine::config::EngineConfig;
use crate::engine::{Mode, UserState};
use crate::model::{BiometricEvent, Metric};
use std::collections::{BTreeMap, VecDeque};

/// A switch on a method's timeline, at the method's clock (the latest event time it has seen).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Switch {
    pub clock: i64,
    pub from: Mode,
    pub to: Mode,
}

pub trait Method {
    fn name(&self) -> &'static str;
    fn run(&self, cfg: &EngineConfig, events: &[BiometricEvent]) -> Vec<Switch>;
}

pub struct Engine;

impl Method for Engine {
    fn name(&self) -> &'static str {
        "engine"
    }
    fn run(&self, cfg: &EngineConfig, events: &[BiometricEvent]) -> Vec<Switch> {
        let mut users: BTreeMap<&str, UserState> = BTreeMap::new();
        let mut out = vec![];
        for e in events {
            let s = users.entry(e.subject.pseudonym.as_str()).or_default();
            if let Some(sw) = s.apply(cfg, &e.subject.pseudonym, e).switch {
                out.push(Switch {
                    clock: s.clock.unwrap_or_default(),
                    from: sw.from,
                    to: sw.to,
                });
            }
        }
        out
    }
}

/// Shared by the references: switch unless to the same mode or, within the cooldown, to a calmer one.
struct Switcher {
    mode: Mode,
    since: Option<i64>,
    cooldown: i64,
    out: Vec<Switch>,
}

impl Switcher {
    fn new(cfg: &EngineConfig) -> Self {
        Self {
            mode: Mode::Pattern,
            since: None,
            cooldown: cfg.thresholds.mode_switch_cooldown_seconds as i64,
            out: vec![],
        }
    }
    fn to(&mut self, to: Mode, clock: i64) {
        if to == self.mode {
            return;
        }
        let cooled = self.since.is_none_or(|t| clock - t >= self.cooldown);
        if cooled || to.urgency() > self.mode.urgency() {
            self.out.push(Switch {
                clock,
                from: self.mode,
                to,
            });
            self.mode = to;
            self.since = Some(clock);
        }
    }
}

/// A metric's readings of the last 7 days, (time, value), and their sum.
type Window = (VecDeque<(i64, f64)>, f64);

pub struct SeedLiteral;

impl Method for SeedLiteral {
    fn name(&self) -> &'static str {
        "seed_literal"
    }
    fn run(&self, cfg: &EngineConfig, events: &[BiometricEvent]) -> Vec<Switch> {
        let t = &cfg.thresholds;
        let b = &cfg.baselines;
        let mut sw = Switcher::new(cfg);
        let mut clock = i64::MIN;
        // Per metric name, the readings of the last 7 days and their sum.
        let mut seen: BTreeMap<&'static str, Window> = BTreeMap::new();
        for e in events {
            let Some(r) = e.reading() else { continue };
            let at = e.occurred_at.timestamp();
            clock = clock.max(at);
            let name = match r.metric {
                Metric::HrvRmssd | Metric::HrvSdnn => "hrv",
                Metric::HeartRate | Metric::RestingHeartRate => "heart_rate",
                Metric::StressLevel => "stress_level",
                Metric::RecoveryScore => "recovery_score",
                _ => continue,
            };
            let (q, sum) = seen.entry(name).or_default();
            q.push_back((at, r.value));
            *sum += r.value;
            while q.front().is_some_and(|x| x.0 <= clock - 7 * 86_400) {
                if let Some((_, v)) = q.pop_front() {
                    *sum -= v;
                }
            }
            let avg = |default: f64| {
                if q.is_empty() {
                    default
                } else {
                    *sum / q.len() as f64
                }
            };
            let v = r.value;
            let mode = match name {
                "hrv" => {
                    let base = avg(b.hrv_default);
                    let drop = (base - v).max(0.0);
                    if drop > t.hrv_drop_ms || drop / base * 100.0 > t.hrv_drop_percentage {
                        Mode::Reflex
                    } else {
                        Mode::Pattern
                    }
                }
                "heart_rate" => {
                    if v > t.heart_rate_elevated {
                        Mode::Reflex
                    } else {
                        Mode::Pattern
                    }
                }
                "stress_level" => {
                    if v > t.stress_level_critical {
                        Mode::Reflex
                    } else {
                        Mode::Pattern
                    }
                }
                _ => {
                    if v < t.recovery_score_low {
                        Mode::Guardian
                    } else {
                        Mode::Pattern
                    }
                }
            };
            sw.to(mode, clock);
        }
        sw.out
    }
}

pub struct Hrv4Training;

impl Method for Hrv4Training {
    fn name(&self) -> &'static str {
        "hrv4training"
    }
    fn run(&self, cfg: &EngineConfig, events: &[BiometricEvent]) -> Vec<Switch> {
        let mut sw = Switcher::new(cfg);
        let mut clock = i64::MIN;
        // Night (noon to noon) -> (sum of ln, n).
        let mut nights: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
        for e in events {
            let Some(r) = e.reading() else { continue };
            let at = e.occurred_at.timestamp();
            clock = clock.max(at);
            if !matches!(r.metric, Metric::HrvRmssd | Metric::HrvSdnn) {
                continue;
            }
            let night = (at + 43_200).div_euclid(86_400);
            let slot = nights.entry(night).or_insert((0.0, 0));
            slot.0 += r.value.ln();
            slot.1 += 1;
            let mean = |(s, n): (f64, u32)| s / f64::from(n);
            let before: Vec<f64> = nights
                .range(night - 60..night)
                .map(|(_, v)| mean(*v))
                .collect();
            let week: Vec<f64> = nights
                .range(night - 6..=night)
                .map(|(_, v)| mean(*v))
                .collect();
            if before.len() < 14 || week.len() < 3 {
                sw.to(Mode::Pattern, clock);
                continue;
            }
            let mu = before.iter().sum::<f64>() / before.len() as f64;
            let sd = (before.iter().map(|x| (x - mu).powi(2)).sum::<f64>()
                / (before.len() - 1) as f64)
                .sqrt();
            let b7 = week.iter().sum::<f64>() / week.len() as f64;
            let today = mean(nights[&night]);
            let mode = if b7 < mu - 0.5 * sd && today < mu - 1.5 * sd {
                Mode::Reflex
            } else if b7 < mu - 0.5 * sd {
                Mode::Guardian
            } else {
                Mode::Pattern
            };
            sw.to(mode, clock);
        }
        sw.out
    }
}
