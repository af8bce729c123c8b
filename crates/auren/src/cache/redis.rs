//! Redis dedup: `SET auren:dedup:<event id> p NX PX <claim ttl> GET` claims atomically and tells, in the
//! same round trip, whether the id was already done or in flight. Event ids are hashes, not PHI.
//!
//! A `rediss://` URL connects over TLS (rustls), verified against `ca_file` when given, else the
//! system's roots; `rediss://…/#insecure` skips verification (never in production).

use super::{CacheError, Claim, Dedup};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use std::path::Path;

pub struct RedisDedup {
    conn: ConnectionManager,
    ttl_seconds: u64,
    claim_ttl_ms: u64,
}

fn key(id: &str) -> String {
    format!("auren:dedup:{id}")
}

/// A reconnecting connection with short timeouts: a slow or absent Redis must degrade quickly,
/// never stall a webhook or the bridge.
async fn manager(url: &str, ca_file: Option<&Path>) -> anyhow::Result<ConnectionManager> {
    crate::tls::install_default_provider();
    let client = match ca_file {
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(crate::tls::read_ca_pem(ca)?),
            },
        )?,
        None => redis::Client::open(url)?,
    };
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(std::time::Duration::from_secs(2))
        .set_response_timeout(std::time::Duration::from_secs(2))
        .set_number_of_retries(1);
    Ok(ConnectionManager::new_with_config(client, cfg).await?)
}

impl RedisDedup {
    pub async fn connect(
        url: &str,
        ca_file: Option<&Path>,
        ttl_seconds: u64,
        claim_ttl: std::time::Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            conn: manager(url, ca_file).await?,
            ttl_seconds,
            claim_ttl_ms: claim_ttl.as_millis().max(1) as u64,
        })
    }
}

#[async_trait]
impl Dedup for RedisDedup {
    async fn claim(&self, ids: &[String]) -> Result<Vec<Claim>, CacheError> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("SET")
                .arg(key(id))
                .arg("p")
                .arg("NX")
                .arg("PX")
                .arg(self.claim_ttl_ms)
                .arg("GET");
        }
        let prev: Vec<Option<String>> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(CacheError::from)?;
        Ok(prev
            .into_iter()
            .map(|p| match p.as_deref() {
                None => Claim::Claimed,
                Some("d") => Claim::Done,
                Some(_) => Claim::InFlight,
            })
            .collect())
    }

    async fn confirm(&self, ids: &[String]) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("SET")
                .arg(key(id))
                .arg("d")
                .arg("EX")
                .arg(self.ttl_seconds)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(CacheError::from)
    }

    /// Deletes only claims still in flight: a claim that outlived its TTL may since have been
    /// taken and confirmed by another request, and that "done" must stand.
    async fn release(&self, ids: &[String]) -> Result<(), CacheError> {
        if ids.is_empty() {
            return Ok(());
        }
        let script = redis::Script::new(
            "for _, k in ipairs(KEYS) do \
               if redis.call('GET', k) == 'p' then redis.call('DEL', k) end \
             end return 0",
        );
        let mut inv = script.prepare_invoke();
        for id in ids {
            inv.key(key(id));
        }
        inv.invoke_async::<()>(&mut self.conn.clone())
            .await
            .map_err(CacheError::from)
    }

    async fn check(&self) -> Result<(), CacheError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(CacheError::from)
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

use super::{CachedUser, StateCache};
use crate::messages::{SeriesPoint, StateView};

/// `auren:state:<pseudonym>` (JSON, with TTL) and `auren:series:<pseudonym>` (a sorted set by
/// event time, capped and with the same TTL, unlike the predecessor's unbounded ZSETs).
pub struct RedisStateCache {
    conn: ConnectionManager,
    ttl_seconds: u64,
    max_points: usize,
}

impl RedisStateCache {
    pub async fn connect(
        url: &str,
        ca_file: Option<&Path>,
        ttl_seconds: u64,
        max_points: usize,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            conn: manager(url, ca_file).await?,
            ttl_seconds,
            max_points,
        })
    }
}

#[async_trait]
impl StateCache for RedisStateCache {
    async fn put(&self, users: &[CachedUser]) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        for u in users {
            let skey = format!("auren:state:{}", u.pseudonym);
            pipe.cmd("SET")
                .arg(&skey)
                .arg(to_json(&u.state))
                .arg("EX")
                .arg(self.ttl_seconds)
                .ignore();
            if !u.points.is_empty() {
                let zkey = format!("auren:series:{}", u.pseudonym);
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&zkey);
                for p in &u.points {
                    zadd.arg(p.at.timestamp_millis()).arg(to_json(p));
                }
                pipe.add_command(zadd).ignore();
                pipe.cmd("ZREMRANGEBYRANK")
                    .arg(&zkey)
                    .arg(0)
                    .arg(-(self.max_points as i64) - 1)
                    .ignore();
                pipe.cmd("EXPIRE").arg(&zkey).arg(self.ttl_seconds).ignore();
            }
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(CacheError::from)
    }

    async fn state(&self, pseudonym: &str) -> Result<Option<StateView>, CacheError> {
        let v: Option<String> = redis::cmd("GET")
            .arg(format!("auren:state:{pseudonym}"))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(CacheError::from)?;
        // An entry written by another version is a miss, not an error: the store has the truth.
        Ok(v.and_then(|s| serde_json::from_str(&s).ok()))
    }

    async fn series(&self, pseudonym: &str, limit: usize) -> Result<Vec<SeriesPoint>, CacheError> {
        let v: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("auren:series:{pseudonym}"))
            .arg(-(limit as i64))
            .arg(-1)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(CacheError::from)?;
        Ok(v.iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}

fn to_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
