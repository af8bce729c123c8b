//! Rate limits on failed authentication, per client address.
//!
//! The Oura verification token, user keys and the admin token are all guessable by brute force
//! if nothing slows a guesser down. Each failure counts against the client's address in a GCRA
//! limiter (`governor`); past the quota the address is locked out until the limiter would allow
//! another attempt, and during a lockout every authenticated request from it gets 429 with
//! `Retry-After`, right or wrong, so a guesser learns nothing from the answers. Successful
//! requests never count: a vendor sending thousands of signed webhooks a second is unaffected.
//!
//! The address is the TCP peer. Behind a proxy every client shares the proxy's address; the
//! limit then protects the secrets but one guesser can lock the proxy out, so deploy behind a
//! proxy only with its own limits in front.

use super::problem::Problem;
use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// Addresses remembered at most; the oldest lockouts go first beyond it.
const MAX_TRACKED: u64 = 100_000;

pub struct AuthLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    locked: moka::sync::Cache<IpAddr, Instant>,
}

impl AuthLimiter {
    pub fn new(failures_per_minute: u32) -> Self {
        let n = NonZeroU32::new(failures_per_minute.max(1)).expect("at least one");
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)),
            clock: DefaultClock::default(),
            locked: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }
    }

    /// 429 while `ip` is locked out.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Problem> {
        let Some(ip) = ip else { return Ok(()) };
        match self.locked.get(&ip) {
            Some(until) if until > Instant::now() => Err(too_many(until - Instant::now())),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `ip`: `problem` when under the quota, else 429.
    pub fn failed(&self, ip: Option<IpAddr>, problem: Problem) -> Problem {
        let Some(ip) = ip else { return problem };
        metrics::counter!("auren_auth_failures_total", "reason" => problem.reason).increment(1);
        if self.limiter.len() > MAX_TRACKED as usize {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&ip) {
            Ok(()) => problem,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                self.locked.insert(ip, Instant::now() + wait);
                metrics::counter!("auren_auth_lockouts_total").increment(1);
                tracing::warn!(
                    reason = problem.reason,
                    "repeated failed authentication from one address; locked out"
                );
                too_many(wait)
            }
        }
    }
}

fn too_many(wait: Duration) -> Problem {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Problem {
        retry_after_seconds: Some(secs.max(1)),
        ..Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failed_attempts",
            "too many failed authentication attempts from this address; retry later",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_past_the_quota_lock_the_address_out_and_others_stay_free() {
        let l = AuthLimiter::new(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let wrong = || Problem::unauthorized("invalid_api_key", "no");
        for _ in 0..3 {
            assert_eq!(l.check(Some(a)).map_err(|p| p.status), Ok(()));
            assert_eq!(l.failed(Some(a), wrong()).status, StatusCode::UNAUTHORIZED);
        }
        let p = l.failed(Some(a), wrong());
        assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS);
        let retry = p.retry_after_seconds.unwrap();
        assert!((1..=20).contains(&retry), "one attempt per 20 s: {retry}");
        assert_eq!(
            l.check(Some(a)).unwrap_err().status,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert!(l.check(Some(b)).is_ok(), "another address is not affected");
        assert!(l.check(None).is_ok());
    }
}
