//! In-process dedup map with expiry and a size bound, for runs without Redis.

use super::{CacheError, CachedUser, Claim, Dedup, StateCache};
use crate::messages::{SeriesPoint, StateView};
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
struct Entry {
    done: bool,
    expires: Instant,
}

pub struct MemoryDedup {
    map: Mutex<HashMap<String, Entry>>,
    ttl: Duration,
    claim_ttl: Duration,
    capacity: usize,
}

impl MemoryDedup {
    pub fn new(ttl: Duration, claim_ttl: Duration, capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            ttl,
            claim_ttl,
            capacity,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding the lock cannot leave the map inconsistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Dedup for MemoryDedup {
    async fn claim(&self, ids: &[String]) -> Result<Vec<Claim>, CacheError> {
        let now = Instant::now();
        let mut map = self.map();
        if map.len() + ids.len() > self.capacity {
            map.retain(|_, e| e.expires > now);
            // Still full: forget the entries closest to expiry rather than grow without bound.
            if map.len() + ids.len() > self.capacity {
                let mut by_expiry: Vec<(Instant, String)> =
                    map.iter().map(|(k, e)| (e.expires, k.clone())).collect();
                by_expiry.sort();
                let excess = map.len() + ids.len() - self.capacity;
                for (_, k) in by_expiry.into_iter().take(excess) {
                    map.remove(&k);
                }
            }
        }
        Ok(ids
            .iter()
            .map(|id| match map.get(id) {
                Some(e) if e.expires > now && e.done => Claim::Done,
                Some(e) if e.expires > now => Claim::InFlight,
                _ => {
                    map.insert(
                        id.clone(),
                        Entry {
                            done: false,
                            expires: now + self.claim_ttl,
                        },
                    );
                    Claim::Claimed
                }
            })
            .collect())
    }

    async fn confirm(&self, ids: &[String]) -> Result<(), CacheError> {
        let expires = Instant::now() + self.ttl;
        let mut map = self.map();
        for id in ids {
            map.insert(
                id.clone(),
                Entry {
                    done: true,
                    expires,
                },
            );
        }
        Ok(())
    }

    async fn release(&self, ids: &[String]) -> Result<(), CacheError> {
        let mut map = self.map();
        for id in ids {
            if map.get(id).is_some_and(|e| !e.done) {
                map.remove(id);
            }
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
        assert!(d.map().len() <= 5);
    }
}
