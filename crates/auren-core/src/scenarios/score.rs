//! Figures for a method on the library: agreement with the labels, REFLEX on normal days, flaps.

use super::reference::{Method, Switch};
use super::Scenario;
use crate::engine::config::EngineConfig;
use crate::engine::Mode;
use serde::Serialize;

/// Modes are compared every this many seconds of scenario time.
pub const STEP: i64 = 900;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub method: String,
    /// Scored instants where the method's mode is the label's.
    pub agree: u64,
    pub scored: u64,
    /// Days whose scored instants are all PATTERN (and at least 90 % of the day is scored).
    pub normal_days: u64,
    /// Normal days on which the method was in REFLEX at any instant or switched to it.
    pub reflex_normal_days: u64,
    /// Switches within the cooldown of the previous one that are not escalations.
    pub flaps: u64,
    /// Per scenario: (name, agreement).
    pub per_scenario: Vec<(String, f64)>,
}

impl Figures {
    pub fn agreement(&self) -> f64 {
        self.agree as f64 / self.scored.max(1) as f64
    }
    pub fn false_reflex_rate(&self) -> f64 {
        self.reflex_normal_days as f64 / self.normal_days.max(1) as f64
    }
}

fn mode_at(timeline: &[Switch], t: i64) -> Mode {
    let i = timeline.partition_point(|s| s.clock <= t);
    if i == 0 {
        Mode::Pattern
    } else {
        timeline[i - 1].to
    }
}

pub fn score(method: &dyn Method, cfg: &EngineConfig, library: &[Scenario]) -> Figures {
    let mut f = Figures {
        method: method.name().to_string(),
        ..Figures::default()
    };
    let cooldown = cfg.thresholds.mode_switch_cooldown_seconds as i64;
    for sc in library {
        let mut timeline = method.run(cfg, &sc.events);
        // The clock never runs backwards, but make the lookup safe for any method.
        timeline.sort_by_key(|s| s.clock);
        for w in timeline.windows(2) {
            if w[1].clock - w[0].clock < cooldown && w[1].to.urgency() <= w[1].from.urgency() {
                f.flaps += 1;
            }
        }
        let (mut agree, mut scored) = (0u64, 0u64);
        let mut day = sc.start;
        while day < sc.end {
            let (mut all_pattern, mut n_scored, mut n, mut reflex) = (true, 0, 0, false);
            let mut t = day;
            while t < day + 86_400 {
                n += 1;
                let got = mode_at(&timeline, t);
                reflex |= got == Mode::Reflex;
                if let Some(want) = sc.expected(t) {
                    n_scored += 1;
                    all_pattern &= want == Mode::Pattern;
                    scored += 1;
                    agree += u64::from(got == want);
                }
                t += STEP;
            }
            reflex |= timeline
                .iter()
                .any(|s| s.to == Mode::Reflex && s.clock >= day && s.clock < day + 86_400);
            if all_pattern && n_scored * 10 >= n * 9 {
                f.normal_days += 1;
                f.reflex_normal_days += u64::from(reflex);
            }
            day += 86_400;
        }
        f.agree += agree;
        f.scored += scored;
        f.per_scenario
            .push((sc.name.clone(), agree as f64 / scored.max(1) as f64));
    }
    f
}
