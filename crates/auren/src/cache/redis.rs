//! Redis dedup: `SET auren:dedup:<event id> p NX EX 30 GET` claims atomically and tells, in the
//! same round trip, whether the id was already done or in flight. Event ids are hashes, not PHI.

use super::{CacheError, Claim, Dedup, CLAIM_TTL_SECONDS};
use async_trait::async_trait;
use redis::aio::ConnectionManager;

pub struct RedisDedup {
    conn: ConnectionManager,
    ttl_seconds: u64,
}

fn key(id: &str) -> String {
    format!("auren:dedup:{id}")
}

fn err(e: redis::RedisError) -> CacheError {
    CacheError(e.to_string())
}

impl RedisDedup {
    pub async fn connect(url: &str, ttl_seconds: u64) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(std::time::Duration::from_secs(2))
            .set_response_timeout(std::time::Duration::from_secs(2))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_with_config(client, cfg).await?;
        Ok(Self { conn, ttl_seconds })
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
                .arg("EX")
                .arg(CLAIM_TTL_SECONDS)
                .arg("GET");
        }
        let prev: Vec<Option<String>> = pipe
            .query_async(&mut self.conn.clone())
            .await
            .map_err(err)?;
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
            .map_err(err)
    }

    async fn release(&self, ids: &[String]) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("DEL").arg(key(id)).ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(err)
    }

    async fn check(&self) -> Result<(), CacheError> {
        redis::cmd("PING")
            .query_async::<String>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(err)
    }

    fn backend(&self) -> &'static str {
        "redis"
    }
}
