//! In-process dedup map with expiry and a size bound, for runs without Redis: a `moka` cache
//! whose entries each live as long as their state allows (a claim until the log should have
//! confirmed it, a confirmed id for the dedup TTL).

use super::{CacheError, CachedUser, Claim, Dedup, StateCache};
use crate::messages::{SeriesPoint, StateView};
use async_trait::async_trait;
use moka::ops::compute::Op;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per-entry lifetimes: the value is whether the id is confirmed (`true`) or only claimed.
struct Lifetimes {
    ttl: Duration,
    claim_ttl: Duration,
}

impl Lifetimes {
    fn of(&self, done: bool) -> Option<Duration> {
        Some(if done { self.ttl } else { self.claim_ttl })
    }
}

impl moka::Expiry<String, bool> for Lifetimes {
    fn expire_after_create(&self, _: &String, done: &bool, _: Instant) -> Option<Duration> {
        self.of(*done)
    }
    fn expire_after_update(
        &self,
        _: &String,
        done: &bool,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.of(*done)
    }
}

pub struct MemoryDedup {
    ids: moka::sync::Cache<String, bool>,
}

impl MemoryDedup {
    /// Beyond `capacity` ids, the least likely to be asked again are forgotten first (a
    /// forgotten id costs a duplicate in the log, which the bridge recognises).
    pub fn new(ttl: Duration, claim_ttl: Duration, capacity: usize) -> Self {
        Self {
            ids: moka::sync::Cache::builder()
                .max_capacity(capacity as u64)
                .expire_after(Lifetimes { ttl, claim_ttl })
                .build(),
        }
    }
}

#[async_trait]
impl Dedup for MemoryDedup {
    async fn claim(&self, ids: &[String]) -> Result<Vec<Claim>, CacheError> {
        // Each id is claimed atomically: of two requests racing for it, one inserts it.
        Ok(ids
            .iter()
            .map(|id| {
                let entry = self.ids.entry(id.clone()).or_insert(false);
                match (entry.is_fresh(), entry.into_value()) {
                    (true, _) => Claim::Claimed,
                    (false, true) => Claim::Done,
                    (false, false) => Claim::InFlight,
                }
            })
            .collect())
    }

    async fn confirm(&self, ids: &[String]) -> Result<(), CacheError> {
        for id in ids {
            self.ids.insert(id.clone(), true);
        }
        Ok(())
    }

    async fn release(&self, ids: &[String]) -> Result<(), CacheError> {
        for id in ids {
            self.ids.entry(id.clone()).and_compute_with(|e| match e {
                Some(e) if !*e.value() => Op::Remove,
                _ => Op::Nop,
            });
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), CacheError> {
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// In-process stand-in for Redis in the embedded default: same TTL and series cap semantics.
/// A user's cached state, series, and expiry.
type CachedEntry = (Option<StateView>, VecDeque<SeriesPoint>, Instant);

pub struct MemoryStateCache {
    users: Mutex<HashMap<String, CachedEntry>>,
    ttl: Duration,
    max_points: usize,
}

impl MemoryStateCache {
    pub fn new(ttl: Duration, max_points: usize) -> Self {
        Self {
            users: Mutex::new(HashMap::new()),
            ttl,
            max_points,
        }
    }
}

#[async_trait]
impl StateCache for MemoryStateCache {
    async fn put(&self, users: &[CachedUser]) -> Result<(), CacheError> {
        let now = Instant::now();
        let mut map = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, v| v.2 > now);
        }
        for u in users {
            let entry = map
                .entry(u.pseudonym.clone())
                .or_insert_with(|| (None, VecDeque::new(), now));
            entry.0 = Some(u.state.clone());
            entry.1.extend(u.points.iter().cloned());
            while entry.1.len() > self.max_points {
                entry.1.pop_front();
            }
            entry.2 = now + self.ttl;
        }
        Ok(())
    }

    async fn state(&self, pseudonym: &str) -> Result<Option<StateView>, CacheError> {
        let map = self.users.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map
            .get(pseudonym)
            .filter(|v| v.2 > Instant::now())
            .and_then(|v| v.0.clone()))
    }

    async fn series(&self, pseudonym: &str, limit: usize) -> Result<Vec<SeriesPoint>, CacheError> {
        let map = self.users.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map
            .get(pseudonym)
            .filter(|v| v.2 > Instant::now())
            .map(|v| {
                let skip = v.1.len().saturating_sub(limit);
                v.1.iter().skip(skip).cloned().collect()
            })
            .unwrap_or_default())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn claim_confirm_release() {
        let d = MemoryDedup::new(Duration::from_secs(60), Duration::from_secs(5), 10);
        let ids = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            d.claim(&ids).await.unwrap(),
            vec![Claim::Claimed, Claim::Claimed]
        );
        assert_eq!(
            d.claim(&ids).await.unwrap(),
            vec![Claim::InFlight, Claim::InFlight]
        );
        d.confirm(&ids[..1]).await.unwrap();
        d.release(&ids[1..]).await.unwrap();
        assert_eq!(
            d.claim(&ids).await.unwrap(),
            vec![Claim::Done, Claim::Claimed]
        );
    }

    #[tokio::test]
    async fn stays_within_capacity() {
        let d = MemoryDedup::new(Duration::from_secs(60), Duration::from_secs(5), 5);
        for i in 0..50 {
            d.claim(&[i.to_string()]).await.unwrap();
        }
        d.ids.run_pending_tasks();
        assert!(d.ids.entry_count() <= 5, "{}", d.ids.entry_count());
    }

    #[tokio::test]
    async fn a_claim_expires_sooner_than_a_confirmed_id() {
        let d = MemoryDedup::new(Duration::from_secs(60), Duration::from_millis(50), 100);
        let (a, b) = (vec!["a".to_string()], vec!["b".to_string()]);
        d.claim(&a).await.unwrap();
        d.claim(&b).await.unwrap();
        d.confirm(&b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        // The unconfirmed claim lapsed (its request died): the id may be claimed again.
        assert_eq!(d.claim(&a).await.unwrap(), vec![Claim::Claimed]);
        assert_eq!(d.claim(&b).await.unwrap(), vec![Claim::Done]);
        // Releasing a confirmed id changes nothing.
        d.release(&b).await.unwrap();
        assert_eq!(d.claim(&b).await.unwrap(), vec![Claim::Done]);
    }

    #[tokio::test]
    async fn racing_claims_of_one_id_give_it_to_one() {
        let d = std::sync::Arc::new(MemoryDedup::new(
            Duration::from_secs(60),
            Duration::from_secs(5),
            1000,
        ));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let d = d.clone();
                tokio::spawn(async move { d.claim(&["x".to_string()]).await.unwrap()[0] })
            })
            .collect();
        let mut claimed = 0;
        for t in tasks {
            claimed += (t.await.unwrap() == Claim::Claimed) as usize;
        }
        assert_eq!(claimed, 1);
    }
}
