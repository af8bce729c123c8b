//! The labelled scenario library: realistic multi-week data for many kinds of users, each with the
//! mode a sports scientist expects in each time window, generated deterministically (a fixed seed
//! per scenario, no wall clock). `docs/physiology.md` gives the physiology behind every label and
//! every noise level; `cargo run -p auren-core --example scenarios -- DIR` writes the library as
//! JSON-lines files that `auren replay` reads.
//!
//! Noise is physiological, not tuned to any method: nightly ln HRV varies day to day with a CV of
//! 5-8 % of its ln value (Plews et al.), with some carry-over between nights (AR(1), φ = 0.3);
//! resting HR ±2-3 bpm, anti-correlated with HRV (r = −0.4); temperature ±0.1-0.15 °C; Apple's
//! SDNN spot readings add ±12 % within a night. Days have walks with heart rates over 100.

pub mod generate;
pub mod reference;
pub mod score;

use crate::engine::Mode;
use crate::model::BiometricEvent;
use serde::Serialize;

/// Expected mode over `[from, to)` (unix seconds); `None` marks a transition window that is not
/// scored (the hours around an onset or a recovery, where either mode is defensible).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Label {
    pub from: i64,
    pub to: i64,
    pub mode: Option<Mode>,
    /// Key of the justification in docs/physiology.md.
    pub why: &'static str,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: &'static str,
    pub start: i64,
    pub end: i64,
    /// In delivery order (the order the bridge would consume them).
    pub events: Vec<BiometricEvent>,
    /// Non-overlapping; time not covered by a label is PATTERN.
    pub labels: Vec<Label>,
}

impl Scenario {
    /// The expected mode at `t`: None when `t` is in an unscored window.
    pub fn expected(&self, t: i64) -> Option<Mode> {
        match self.labels.iter().find(|l| l.from <= t && t < l.to) {
            Some(l) => l.mode,
            None => Some(Mode::Pattern),
        }
    }
}

pub use generate::library;
