//! Activity context: when was the user moving?
//!
//! Heart rate over 100 means stress only at rest. Every signal of movement the data carries (steps,
//! active energy, distance, workout records) marks a span of event time; a heart rate is "at rest"
//! when no span lies within the activity window on either side of it. Spans are kept by their own
//! event time, not by arrival, so a step count that arrives after the heart rates it explains
//! still explains them.

use super::config::Activity as Cfg;
use crate::model::Metric;
use serde::{Deserialize, Serialize};

const SPANS: usize = 4;

/// The few most recent activity spans, as (start, end) unix seconds; (0, 0) is empty. Merged when
/// they touch, so a run of a hundred step samples is one span: 32 bytes per user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    spans: [(u32, u32); SPANS],
}

impl Activity {
    /// Records `metric` at `at` if it shows movement. Returns whether it did.
    pub fn observe(&mut self, cfg: &Cfg, metric: Metric, value: f64, at: u32) -> bool {
        let end = match metric {
            Metric::Steps if value >= cfg.active_steps => at,
            Metric::ActiveEnergy if value >= cfg.active_energy_kcal => at,
            Metric::Distance if value >= cfg.active_distance_m => at,
            Metric::Workout => at.saturating_add((value.max(0.0) * 60.0) as u32),
            _ => return false,
        };
        self.mark(at, end, cfg.activity_window_seconds as u32);
        true
    }

    fn mark(&mut self, start: u32, end: u32, join: u32) {
        for s in self.spans.iter_mut().filter(|s| s.1 != 0) {
            if start <= s.1.saturating_add(join) && end.saturating_add(join) >= s.0 {
                *s = (s.0.min(start), s.1.max(end));
                return;
            }
        }
        // Replace the empty or oldest span.
        if let Some(slot) = self.spans.iter_mut().min_by_key(|s| s.1) {
            if slot.1 <= end {
                *slot = (start, end);
            }
        }
    }

    /// Was the user moving within `window` seconds of `at`, before or after?
    pub fn near(&self, at: u32, window: u32) -> bool {
        self.spans.iter().any(|&(s, e)| {
            e != 0 && at.saturating_add(window) >= s && at <= e.saturating_add(window)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_merge_and_cover_both_sides() {
        let cfg = Cfg::default();
        let mut a = Activity::default();
        let t = 1_000_000;
        assert!(!a.observe(&cfg, Metric::Steps, 20.0, t));
        for k in 0..50 {
            assert!(a.observe(&cfg, Metric::Steps, 300.0, t + k * 60));
        }
        assert_eq!(a.spans.iter().filter(|s| s.1 != 0).count(), 1);
        assert!(a.near(t - 600, 900), "before the first step sample");
        assert!(a.near(t + 49 * 60 + 800, 900), "after the last one");
        assert!(!a.near(t + 49 * 60 + 1000, 900));
        // A ride: no steps, but energy; a swim: a workout record only.
        let mut b = Activity::default();
        b.observe(&cfg, Metric::ActiveEnergy, 12.0, t);
        assert!(b.near(t + 300, 900));
        b.observe(&cfg, Metric::Workout, 45.0, t + 86_400);
        assert!(b.near(t + 86_400 + 40 * 60, 0));
    }

    #[test]
    fn a_late_older_span_never_evicts_newer_ones() {
        let cfg = Cfg::default();
        let mut a = Activity::default();
        for d in 1..=4u32 {
            a.observe(&cfg, Metric::Workout, 30.0, d * 86_400);
        }
        a.observe(&cfg, Metric::Workout, 30.0, 1_000);
        assert!(a.near(4 * 86_400 + 60, 0));
        assert!(!a.near(1_000, 0));
    }
}
