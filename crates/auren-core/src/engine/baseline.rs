//! Incremental per-user baselines.
//!
//! One [`DailySeries`] per metric kind keeps one value per night (the night's mean) for the long
//! window in a ring, plus the running sum of the current night. The long-window mean and SD and the
//! short-window mean are recomputed only when a night is completed (or a late one is filled in), so
//! an event costs O(1) and no query. Baselines are built from completed nights only: a reading is
//! never part of the baseline it is judged against (the predecessor included the current reading
//! in its own baseline).
//!
//! Values are kept as u16 fixed-point (0.0001 ln-ms, 0.0025 bpm, 0.0004 °C): far finer than any
//! sensor, and half the memory of f32, which keeps a user's state within its 2 KiB budget.

use serde::{Deserialize, Serialize};

/// The night a reading belongs to: days since the epoch, counted noon to noon UTC, so a reading at
/// 23:00 and one at 06:00 fall on the same night (the day the user wakes up).
pub fn night_of(unix_seconds: i64) -> i32 {
    (unix_seconds + 43_200).div_euclid(86_400) as i32
}

/// Kept for callers that bucket by calendar day.
pub fn day_of(unix_seconds: i64) -> i32 {
    unix_seconds.div_euclid(86_400) as i32
}

/// What a series holds, which fixes its fixed-point scale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// ln(ms), 0 to 6.5.
    #[default]
    LnHrv,
    /// bpm, 0 to 163.
    HeartRate,
    /// °C, 20 to 46.
    Temperature,
}

const MISSING: u16 = u16::MAX;

impl Kind {
    fn scale(self) -> (f64, f64) {
        match self {
            Kind::LnHrv => (0.0, 10_000.0),
            Kind::HeartRate => (0.0, 400.0),
            Kind::Temperature => (20.0, 2_500.0),
        }
    }
    fn encode(self, v: f64) -> u16 {
        let (off, scale) = self.scale();
        if v.is_finite() {
            ((v - off) * scale)
                .round()
                .clamp(0.0, f64::from(MISSING - 1)) as u16
        } else {
            MISSING
        }
    }
    fn decode(self, q: u16) -> Option<f64> {
        let (off, scale) = self.scale();
        (q != MISSING).then(|| f64::from(q) / scale + off)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub long_mean: f64,
    pub long_sd: f64,
    pub long_days: u32,
    pub short_mean: f64,
    pub short_days: u32,
}

/// The stats as stored: f32 is ample for means of fixed-point values and saves 16 bytes a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Packed {
    long_mean: f32,
    long_sd: f32,
    short_mean: f32,
    long_days: u16,
    short_days: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DailySeries {
    kind: Kind,
    /// The current, incomplete night (see [`night_of`]); None when empty.
    day: Option<i32>,
    sum: f32,
    n: u16,
    /// Completed nights, oldest first, the newest being the night before `day`.
    days: Vec<u16>,
    stats: Packed,
}

impl DailySeries {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// Adds a value observed on night `day`. Nights arriving late (before the current one) update
    /// their slot if it is still inside the window; older ones are dropped.
    pub fn add(&mut self, day: i32, value: f64, long_window: u32, short_window: u32) {
        match self.day {
            None => {
                self.day = Some(day);
                self.sum = value as f32;
                self.n = 1;
            }
            Some(cur) if day == cur => {
                self.sum += value as f32;
                self.n = self.n.saturating_add(1);
            }
            Some(cur) if day > cur => {
                let gap = (day - cur) as usize;
                let mean = f64::from(self.sum) / f64::from(self.n.max(1));
                self.push_completed(self.kind.encode(mean), long_window as usize);
                for _ in 1..gap.min(long_window as usize + 1) {
                    self.push_completed(MISSING, long_window as usize);
                }
                self.day = Some(day);
                self.sum = value as f32;
                self.n = 1;
                self.refresh(short_window);
            }
            Some(cur) => {
                let back = (cur - day) as usize; // 1 = the newest completed night
                if back <= self.days.len() {
                    let i = self.days.len() - back;
                    let merged = match self.kind.decode(self.days[i]) {
                        None => value,
                        Some(old) => (old + value) / 2.0,
                    };
                    self.days[i] = self.kind.encode(merged);
                    self.refresh(short_window);
                }
            }
        }
    }

    fn push_completed(&mut self, v: u16, long_window: usize) {
        if self.days.capacity() < long_window {
            // Exactly the window: a doubling Vec would hold 64 slots for a 60-night window.
            self.days.reserve_exact(long_window - self.days.len());
        }
        if self.days.len() >= long_window {
            let excess = self.days.len() + 1 - long_window;
            self.days.drain(..excess);
        }
        self.days.push(v);
    }

    fn refresh(&mut self, short_window: u32) {
        let kind = self.kind;
        let (mut n, mut sum, mut sq) = (0u32, 0.0f64, 0.0f64);
        for v in self.days.iter().filter_map(|q| kind.decode(*q)) {
            n += 1;
            sum += v;
            sq += v * v;
        }
        let mean = if n > 0 { sum / f64::from(n) } else { 0.0 };
        let var = if n > 1 {
            ((sq - f64::from(n) * mean * mean) / f64::from(n - 1)).max(0.0)
        } else {
            0.0
        };
        let start = self.days.len().saturating_sub(short_window as usize);
        let (mut sn, mut ssum) = (0u32, 0.0f64);
        for v in self.days[start..].iter().filter_map(|q| kind.decode(*q)) {
            sn += 1;
            ssum += v;
        }
        self.stats = Packed {
            long_mean: mean as f32,
            long_sd: var.sqrt() as f32,
            short_mean: if sn > 0 {
                (ssum / f64::from(sn)) as f32
            } else {
                0.0
            },
            long_days: n as u16,
            short_days: sn as u16,
        };
    }

    pub fn stats(&self) -> Stats {
        let p = self.stats;
        Stats {
            long_mean: f64::from(p.long_mean),
            long_sd: f64::from(p.long_sd),
            long_days: u32::from(p.long_days),
            short_mean: f64::from(p.short_mean),
            short_days: u32::from(p.short_days),
        }
    }

    /// Nights with data, the current one included.
    pub fn days_with_data(&self) -> u32 {
        self.stats().long_days + u32::from(self.n > 0)
    }

    /// The current night and its mean so far.
    pub fn current(&self) -> Option<(i32, f64)> {
        self.day
            .filter(|_| self.n > 0)
            .map(|d| (d, f64::from(self.sum) / f64::from(self.n)))
    }

    /// Mean and count over the last `window` nights counting the current one: the rolling
    /// baseline of HRV4Training and Plews et al., in which today's value takes part.
    pub fn recent(&self, window: u32) -> (f64, u32) {
        let Some((_, today)) = self.current() else {
            return (0.0, 0);
        };
        let take = (window as usize).saturating_sub(1);
        let start = self.days.len().saturating_sub(take);
        let (mut n, mut sum) = (1u32, today);
        for v in self.days[start..]
            .iter()
            .filter_map(|q| self.kind.decode(*q))
        {
            n += 1;
            sum += v;
        }
        (sum / f64::from(n), n)
    }

    /// Mean and count over the `window − 1` completed nights before the current one.
    pub fn before_current(&self, window: u32) -> (f64, u32) {
        let take = (window as usize).saturating_sub(1);
        let start = self.days.len().saturating_sub(take);
        let (mut n, mut sum) = (0u32, 0.0);
        for v in self.days[start..]
            .iter()
            .filter_map(|q| self.kind.decode(*q))
        {
            n += 1;
            sum += v;
        }
        (if n > 0 { sum / f64::from(n) } else { 0.0 }, n)
    }

    /// Heap bytes held, for the memory-per-user budget.
    pub fn heap_bytes(&self) -> usize {
        self.days.capacity() * std::mem::size_of::<u16>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s() -> DailySeries {
        DailySeries::new(Kind::HeartRate)
    }

    #[test]
    fn completed_days_only_and_window_bounds() {
        let mut s = s();
        for d in 0..10 {
            s.add(d, d as f64, 5, 3);
            s.add(d, d as f64 + 1.0, 5, 3); // two readings a night: the night's mean is d + 0.5
        }
        // Nights 4..=8 completed and kept (window 5); night 9 is current and not in the stats.
        let st = s.stats();
        assert_eq!(st.long_days, 5);
        assert!((st.long_mean - 6.5).abs() < 1e-3);
        assert!((st.short_mean - 7.5).abs() < 1e-3);
        assert_eq!(st.short_days, 3);
        assert_eq!(s.days_with_data(), 6);
        let (m, n) = s.recent(3);
        assert_eq!(n, 3);
        assert!((m - 8.5).abs() < 1e-3, "{m}");
    }

    #[test]
    fn gaps_are_missing_days_not_zeros() {
        let mut s = s();
        s.add(0, 10.0, 60, 7);
        s.add(5, 20.0, 60, 7);
        s.add(6, 30.0, 60, 7);
        let st = s.stats();
        assert_eq!(st.long_days, 2);
        assert!((st.long_mean - 15.0).abs() < 1e-3);
        // A huge gap never grows the ring past the window.
        s.add(10_000, 1.0, 60, 7);
        assert!(s.days.len() <= 60);
    }

    #[test]
    fn late_day_fills_its_slot() {
        let mut s = s();
        s.add(0, 10.0, 60, 7);
        s.add(2, 30.0, 60, 7);
        s.add(1, 20.0, 60, 7);
        assert_eq!(s.stats().long_days, 2);
        assert!((s.stats().long_mean - 15.0).abs() < 1e-3);
        assert_eq!(s.days_with_data(), 3);
    }

    #[test]
    fn nights_run_noon_to_noon() {
        let midnight = 20_000 * 86_400;
        assert_eq!(night_of(midnight - 3600), night_of(midnight + 6 * 3600));
        assert_ne!(
            night_of(midnight + 13 * 3600),
            night_of(midnight + 6 * 3600)
        );
    }

    proptest! {
        /// The incremental stats equal a direct computation over the same completed nights.
        #[test]
        fn incremental_equals_batch(values in proptest::collection::vec((0i32..3, 1.0f64..6.0), 1..200)) {
            let mut s = DailySeries::new(Kind::LnHrv);
            let mut day = 0;
            let mut per_day: Vec<Vec<f64>> = vec![vec![]];
            for (step, v) in values {
                if step > 0 { day += step; per_day.resize(day as usize + 1, vec![]); }
                s.add(day, v, 60, 7);
                per_day[day as usize].push(v);
            }
            let completed: Vec<Option<f64>> = per_day[..day as usize].iter()
                .map(|d| (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)).collect();
            let window = &completed[completed.len().saturating_sub(60)..];
            let vals: Vec<f64> = window.iter().flatten().copied().collect();
            prop_assert_eq!(s.stats().long_days as usize, vals.len());
            if !vals.is_empty() {
                let m = vals.iter().sum::<f64>() / vals.len() as f64;
                prop_assert!((s.stats().long_mean - m).abs() < 1e-3);
            }
        }
    }
}
