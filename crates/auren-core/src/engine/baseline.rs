//! Incremental per-user baselines.
//!
//! One [`DailySeries`] per metric kind keeps one value per day (the day's mean) for the long
//! window in a ring, plus the running sum of the current day. The long-window mean and SD and the
//! short-window mean are recomputed only when a day is completed, so an event costs O(1) and no
//! query. Baselines are built from completed days only: a reading is never part of the baseline
//! it is judged against (the predecessor included the current reading in its own baseline).

use serde::{Deserialize, Serialize};

pub fn day_of(unix_seconds: i64) -> i32 {
    unix_seconds.div_euclid(86_400) as i32
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub long_mean: f64,
    pub long_sd: f64,
    pub long_days: u32,
    pub short_mean: f64,
    pub short_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailySeries {
    /// Day (days since the epoch) of the current, incomplete day; None when empty.
    day: Option<i32>,
    sum: f64,
    n: u32,
    /// Completed days, oldest first, the newest being the day before `day`. NaN = no data.
    days: Vec<f32>,
    stats: Stats,
}

impl Default for DailySeries {
    fn default() -> Self {
        Self {
            day: None,
            sum: 0.0,
            n: 0,
            days: Vec::new(),
            stats: Stats::default(),
        }
    }
}

impl DailySeries {
    /// Adds a value observed on `day`. Days arriving late (before the current one) update their
    /// slot if it is still inside the window; older ones are dropped.
    pub fn add(&mut self, day: i32, value: f64, long_window: u32, short_window: u32) {
        match self.day {
            None => {
                self.day = Some(day);
                self.sum = value;
                self.n = 1;
            }
            Some(cur) if day == cur => {
                self.sum += value;
                self.n += 1;
            }
            Some(cur) if day > cur => {
                let gap = (day - cur) as usize;
                self.push_completed((self.sum / self.n as f64) as f32, long_window as usize);
                for _ in 1..gap.min(long_window as usize + 1) {
                    self.push_completed(f32::NAN, long_window as usize);
                }
                self.day = Some(day);
                self.sum = value;
                self.n = 1;
                self.refresh(short_window);
            }
            Some(cur) => {
                let back = (cur - day) as usize; // 1 = the newest completed day
                if back <= self.days.len() {
                    let i = self.days.len() - back;
                    let slot = &mut self.days[i];
                    *slot = if slot.is_nan() {
                        value as f32
                    } else {
                        ((*slot as f64 + value) / 2.0) as f32
                    };
                    self.refresh(short_window);
                }
            }
        }
    }

    fn push_completed(&mut self, v: f32, long_window: usize) {
        if self.days.capacity() < long_window {
            // Exactly the window: a doubling Vec would hold 64 slots for a 60-day window.
            self.days.reserve_exact(long_window - self.days.len());
        }
        if self.days.len() >= long_window {
            let excess = self.days.len() + 1 - long_window;
            self.days.drain(..excess);
        }
        self.days.push(v);
    }

    fn refresh(&mut self, short_window: u32) {
        let valid = |xs: &[f32]| {
            xs.iter()
                .filter(|x| !x.is_nan())
                .map(|x| *x as f64)
                .collect::<Vec<_>>()
        };
        let long = valid(&self.days);
        let start = self.days.len().saturating_sub(short_window as usize);
        let short = valid(&self.days[start..]);
        let mean = |xs: &[f64]| {
            if xs.is_empty() {
                0.0
            } else {
                xs.iter().sum::<f64>() / xs.len() as f64
            }
        };
        let long_mean = mean(&long);
        let var = if long.len() > 1 {
            long.iter().map(|x| (x - long_mean).powi(2)).sum::<f64>() / (long.len() - 1) as f64
        } else {
            0.0
        };
        self.stats = Stats {
            long_mean,
            long_sd: var.sqrt(),
            long_days: long.len() as u32,
            short_mean: mean(&short),
            short_days: short.len() as u32,
        };
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Days with data, the current one included.
    pub fn days_with_data(&self) -> u32 {
        self.stats.long_days + u32::from(self.n > 0)
    }

    /// Heap bytes held, for the memory-per-user budget.
    pub fn heap_bytes(&self) -> usize {
        self.days.capacity() * std::mem::size_of::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn completed_days_only_and_window_bounds() {
        let mut s = DailySeries::default();
        for d in 0..10 {
            s.add(d, d as f64, 5, 3);
            s.add(d, d as f64 + 1.0, 5, 3); // two readings a day: the day's mean is d + 0.5
        }
        // Days 4..=8 completed and kept (window 5); day 9 is current and not in the stats.
        let st = s.stats();
        assert_eq!(st.long_days, 5);
        assert!((st.long_mean - 6.5).abs() < 1e-9);
        assert!((st.short_mean - 7.5).abs() < 1e-9);
        assert_eq!(st.short_days, 3);
        assert_eq!(s.days_with_data(), 6);
    }

    #[test]
    fn gaps_are_missing_days_not_zeros() {
        let mut s = DailySeries::default();
        s.add(0, 10.0, 60, 7);
        s.add(5, 20.0, 60, 7);
        s.add(6, 30.0, 60, 7);
        let st = s.stats();
        assert_eq!(st.long_days, 2);
        assert!((st.long_mean - 15.0).abs() < 1e-9);
        // A huge gap never grows the ring past the window.
        s.add(10_000, 1.0, 60, 7);
        assert!(s.days.len() <= 60);
    }

    #[test]
    fn late_day_fills_its_slot() {
        let mut s = DailySeries::default();
        s.add(0, 10.0, 60, 7);
        s.add(2, 30.0, 60, 7);
        s.add(1, 20.0, 60, 7);
        // Days 0 and 1 are complete; day 2 is the current day and not yet in the stats.
        assert_eq!(s.stats().long_days, 2);
        assert!((s.stats().long_mean - 15.0).abs() < 1e-9);
        assert_eq!(s.days_with_data(), 3);
    }

    proptest! {
        /// The incremental stats equal a direct computation over the same completed days.
        #[test]
        fn incremental_equals_batch(values in proptest::collection::vec((0i32..3, 1.0f64..100.0), 1..200)) {
            let mut s = DailySeries::default();
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
            let vals: Vec<f64> = window.iter().flatten().map(|x| *x as f32 as f64).collect();
            prop_assert_eq!(s.stats().long_days as usize, vals.len());
            if !vals.is_empty() {
                let m = vals.iter().sum::<f64>() / vals.len() as f64;
                prop_assert!((s.stats().long_mean - m).abs() < 1e-6);
            }
        }
    }
}
