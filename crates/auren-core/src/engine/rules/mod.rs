//! What counts as evidence for each mode, judged on the state after the current event.

pub mod guardian;
pub mod hypothesis;
pub mod reflex;

use super::config::EngineConfig;
use super::{Reason, Sample, UserState};
use crate::model::Metric;
use serde::{Deserialize, Serialize};

/// Per-night flags for the last 8 nights, bit 0 being `night` (the newest night with a nightly
/// reading), bit i the night i nights before. Persistence ("two nights running", "3 of the last
/// 7") is then a mask, in 12 bytes per user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Nights {
    pub night: i32,
    /// Event time of the newest nightly reading, for the daily validity.
    pub last_at: u32,
    /// Nights with any nightly reading.
    pub seen: u8,
    pub hrv_seen: u8,
    /// HRV under the normal band (mean − band_sd·SD).
    pub hrv_low: u8,
    /// HRV no more than `recovered_sd` under the mean.
    pub hrv_ok: u8,
    pub rhr_high: u8,
    pub temp_high: u8,
    /// Resting HR or temperature far over baseline: a clear single signal.
    pub large: u8,
}

impl Nights {
    /// Makes `night` addressable; returns its bit, or None when it is older than 8 nights.
    pub(crate) fn bit(&mut self, night: i32) -> Option<u8> {
        if self.seen == 0 || night > self.night {
            let shift = if self.seen == 0 {
                8
            } else {
                (night - self.night).min(8)
            };
            for f in [
                &mut self.seen,
                &mut self.hrv_seen,
                &mut self.hrv_low,
                &mut self.hrv_ok,
                &mut self.rhr_high,
                &mut self.temp_high,
                &mut self.large,
            ] {
                *f = if shift >= 8 { 0 } else { *f << shift };
            }
            self.night = night;
        }
        let back = self.night - night;
        (0..8).contains(&back).then(|| 1u8 << back)
    }

    /// Is `field`'s flag set for `night`?
    pub(crate) fn get(&self, field: u8, night: i32) -> bool {
        let back = i64::from(self.night) - i64::from(night);
        self.seen != 0 && (0..8).contains(&back) && field & (1u8 << back) != 0
    }

    /// The flags still stand (the newest nightly reading is within the daily validity).
    pub(crate) fn current(&self, now: i64, daily: i64) -> bool {
        self.seen != 0 && now - i64::from(self.last_at) <= daily
    }
}

pub(crate) fn set(field: &mut u8, bit: u8, on: bool) {
    if on {
        *field |= bit;
    } else {
        *field &= !bit;
    }
}

/// One reading, as the unit of independent evidence.
pub(crate) type Source = (Metric, u32);

#[derive(Debug, Default)]
pub(crate) struct Evidence {
    pub reflex: Vec<Reason>,
    /// Distinct readings behind the REFLEX evidence (one reading is one signal).
    pub reflex_sources: Vec<Source>,
    /// Which primary signals hold: heart rate at rest, stress, an HRV drop (of this kind).
    pub hr_primary: bool,
    pub stress_primary: bool,
    pub hrv_primary: Option<Metric>,
    /// The HRV drop is against the user's own baseline (may confirm itself by repetition).
    pub hrv_personal: bool,
    /// The HRV drop is extreme for this user (twice `hrv_drop_min_sd`): only then may repeated
    /// readings of one night confirm it without another signal.
    pub hrv_extreme: bool,
    /// Night of the HRV reading behind `hrv_primary`.
    pub hrv_night: i32,
    /// Another reading of the same moment backs a primary signal.
    pub corroborated: bool,
    pub reflex_clear: bool,
    pub guardian: Vec<Reason>,
    pub guardian_qualifies: bool,
    pub guardian_clear: bool,
    pub hypothesis: Vec<Reason>,
    pub normal: Vec<Reason>,
}

impl Evidence {
    pub fn reflex_primary(&self) -> bool {
        self.hr_primary || self.stress_primary || self.hrv_primary.is_some()
    }

    pub(crate) fn source(&mut self, s: Source) {
        if !self.reflex_sources.contains(&s) {
            self.reflex_sources.push(s);
        }
    }
}

/// A sample no older than `window` seconds (and not from after `now`).
pub(crate) fn fresh(s: Option<Sample>, now: i64, window: i64) -> Option<Sample> {
    s.filter(|s| s.at() <= now && now - s.at() <= window)
}

pub(crate) fn evaluate(
    s: &UserState,
    cfg: &EngineConfig,
    now: i64,
    artefact: Option<Reason>,
) -> Evidence {
    let mut e = Evidence {
        reflex_clear: true,
        guardian_clear: true,
        hypothesis: artefact.into_iter().collect(),
        ..Evidence::default()
    };
    reflex::evaluate(s, cfg, now, &mut e);
    guardian::evaluate(s, cfg, now, &mut e);
    hypothesis::evaluate(s, cfg, now, &mut e);
    e
}
