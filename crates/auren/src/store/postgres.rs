//! PostgreSQL state store. Its schema is `crates/auren/migrations/postgres`, applied at start.
//!
//! TLS is sqlx's (rustls): `sslmode` in the URL is honoured as libpq does (`disable`, `allow`,
//! `prefer` (the default), `require`, `verify-ca`, `verify-full`), with the CA from the URL's
//! `sslrootcert`, else [`PgOptions::ca_file`], else the Mozilla roots built in; a client
//! certificate comes from `sslcert` / `sslkey`.

use super::{
    sql, CommitBatch, DeliveryStore, KeyInfo, KeyStore, OutboxSwitch, PendingDelivery, Revocation,
    StateStore, StoreError, StoredUser, WebhookAttempt, WebhookEndpoint,
};
use crate::messages::SwitchMessage;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::Row;
use std::path::PathBuf;
use std::time::Duration;

mod connections;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    pool: PgPool,
}

/// How to connect besides the URL.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// CA file for `verify-ca` / `verify-full`, used when the URL names no `sslrootcert`.
    pub ca_file: Option<PathBuf>,
    pub min_connections: u32,
    pub max_connections: u32,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            ca_file: None,
            min_connections: 0,
            max_connections: 10,
        }
    }
}

/// The URL with `sslrootcert` added from `ca_file` when it names none, so every connection
/// (the database check and creation included) verifies against the same CA.
fn with_ca(url: &str, ca_file: Option<&std::path::Path>) -> String {
    let Some(ca) = ca_file else {
        return url.to_string();
    };
    match url::Url::parse(url) {
        Ok(mut u) if !u.query_pairs().any(|(k, _)| k == "sslrootcert") => {
            u.query_pairs_mut()
                .append_pair("sslrootcert", &ca.to_string_lossy());
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl PgStore {
    /// Connects with the default pool, creating the database when needed (see [`Self::connect_with`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &PgOptions::default()).await
    }

    /// Connects, creating the database when it does not exist yet (the role may; when it may
    /// not, the error names the database), and applies the migrations.
    pub async fn connect_with(url: &str, o: &PgOptions) -> Result<Self, StoreError> {
        use sqlx::migrate::MigrateDatabase;
        let url = with_ca(url, o.ca_file.as_deref());
        let url = url.as_str();
        match sqlx::Postgres::database_exists(url).await {
            Ok(false) => {
                sqlx::Postgres::create_database(url).await?;
                tracing::info!("created the PostgreSQL database named in POSTGRES_URL");
            }
            // The server refused our TLS (or the CA did not verify it): the pool below would
            // fail the same way; say so now, with the cause.
            Err(e) if tls_error(&e) => return Err(StoreError::PostgresTls(e)),
            // Any other failure (the role may not read pg_database, ...): the pool says more.
            _ => {}
        }
        // PostgreSQL's NOTICEs (`relation ... already exists, skipping` on every start) are not
        // worth a log line.
        let options = url
            .parse::<sqlx::postgres::PgConnectOptions>()?
            .options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .min_connections(o.min_connections.min(o.max_connections))
            .max_connections(o.max_connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(|e| match tls_error(&e) {
                true => StoreError::PostgresTls(e),
                false => StoreError::Postgres(e),
            })?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Whether a connection failed in TLS: the server does not offer it, or its certificate did not
/// verify against the CA.
fn tls_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert(&self, key_hash: &str, user_id: &str) -> Result<(), StoreError> {
        sqlx::query(sql::INSERT_KEY)
            .bind(key_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn user_for(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(sql::USER_FOR_KEY)
            .bind(key_hash)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn list(&self, user_id: &str) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(sql::LIST_KEYS)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_info).collect()
    }

    async fn revoke(&self, key_id: &str) -> Result<Revocation, StoreError> {
        let rows = sqlx::query(sql::KEYS_BY_ID)
            .bind(key_id)
            .fetch_all(&self.pool)
            .await?;
        let mut found = match rows.as_slice() {
            [] => return Ok(Revocation::NotFound),
            [row] => key_info(row)?,
            _ => return Ok(Revocation::Ambiguous),
        };
        if found.revoked_at.is_some() {
            return Ok(Revocation::AlreadyRevoked(found));
        }
        let revoked: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(sql::REVOKE_KEY)
            .bind(&found.key_hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match revoked {
            Some(at) => {
                found.revoked_at = Some(at);
                Revocation::Revoked(found)
            }
            // Another revocation came first.
            None => match self.revoke(key_id).await? {
                Revocation::Revoked(k) => Revocation::AlreadyRevoked(k),
                other => other,
            },
        })
    }

    async fn check(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

fn key_info(r: &sqlx::postgres::PgRow) -> Result<KeyInfo, StoreError> {
    let key_hash: String = r.try_get(0)?;
    Ok(KeyInfo {
        key_id: super::key_id(&key_hash),
        user_id: r.try_get(1)?,
        created_at: r.try_get(2)?,
        revoked_at: r.try_get(3)?,
        key_hash,
    })
}

#[async_trait]
impl StateStore for PgStore {
    async fn load_offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, StoreError> {
        let rows = sqlx::query(sql::LOAD_OFFSETS)
            .bind(group)
            .bind(topic)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn log_identity(&self, topic: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(sql::LOAD_LOG_IDENTITY)
            .bind(topic)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn adopt_log(
        &self,
        topic: &str,
        identity: &str,
        forget_offsets: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if forget_offsets {
            sqlx::query(sql::FORGET_OFFSETS)
                .bind(topic)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(sql::SET_LOG_IDENTITY)
            .bind(topic)
            .bind(identity)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_user(&self, pseudonym: &str) -> Result<Option<StoredUser>, StoreError> {
        let row = sqlx::query(sql::LOAD_USER)
            .bind(pseudonym)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| StoredUser {
            thread_id: r.get(0),
            user_id: r.get(1),
            checkpoint_id: r.get(2),
            version: r.get(3),
            state: r.get(4),
            last_position: match (r.get::<Option<i32>, _>(5), r.get::<Option<i64>, _>(6)) {
                (Some(p), Some(o)) => Some((p, o)),
                _ => None,
            },
        }))
    }

    async fn commit(&self, b: &CommitBatch) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for c in &b.checkpoints {
            sqlx::query(sql::UPSERT_THREAD)
                .bind(&c.thread_id)
                .bind(&c.pseudonym)
                .bind(&c.user_id)
                .bind(&c.mode)
                .execute(&mut *tx)
                .await?;
            sqlx::query(sql::INSERT_CHECKPOINT)
                .bind(&c.checkpoint_id)
                .bind(&c.thread_id)
                .bind(&c.parent_id)
                .bind(c.version)
                .bind(&c.state)
                .bind(c.last_position.map(|p| p.0))
                .bind(c.last_position.map(|p| p.1))
                .execute(&mut *tx)
                .await?;
            sqlx::query(sql::SET_LATEST_CHECKPOINT)
                .bind(&c.checkpoint_id)
                .bind(&c.thread_id)
                .execute(&mut *tx)
                .await?;
            if b.keep_checkpoints > 0 {
                sqlx::query(sql::PRUNE_CHECKPOINTS)
                    .bind(&c.thread_id)
                    .bind(b.keep_checkpoints)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for s in &b.switches {
            let new = sqlx::query(sql::INSERT_SWITCH)
                .bind(&s.switch_id)
                .bind(&s.thread_id)
                .bind(s.from_mode.as_str())
                .bind(s.to_mode.as_str())
                .bind(s.confidence)
                .bind(s.at)
                .bind(Json(s))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
            // A switch already in the history was queued when it was first committed.
            if new {
                for sink in &b.sinks {
                    sqlx::query(sql::QUEUE_DELIVERY)
                        .bind(sink)
                        .bind(&s.user_pseudonym)
                        .bind(&s.switch_id)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(sql::QUEUE_WEBHOOKS)
                    .bind(&s.user_pseudonym)
                    .bind(&s.switch_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (p, o) in &b.offsets {
            sqlx::query(sql::UPSERT_OFFSET)
                .bind(&b.group)
                .bind(&b.topic)
                .bind(p)
                .bind(o)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn unpublished(&self, limit: i64) -> Result<Vec<OutboxSwitch>, StoreError> {
        let rows = sqlx::query(sql::UNPUBLISHED)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxSwitch {
                    key: r.try_get(0)?,
                    message: r.try_get::<Json<SwitchMessage>, _>(1)?.0,
                })
            })
            .collect()
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        sqlx::query("UPDATE mode_history SET published_at = now() WHERE switch_id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn history(&self, pseudonym: &str, limit: i64) -> Result<Vec<SwitchMessage>, StoreError> {
        let rows = sqlx::query(sql::HISTORY)
            .bind(pseudonym)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<Json<SwitchMessage>, _>(0)?.0))
            .collect()
    }

    async fn switches_after(
        &self,
        pseudonym: Option<&str>,
        after_switch_id: &str,
        limit: i64,
    ) -> Result<Option<Vec<SwitchMessage>>, StoreError> {
        let thread = pseudonym.map(crate::messages::thread_id);
        let seq: Option<i64> = match &thread {
            Some(t) => {
                sqlx::query_scalar(sql::SWITCH_SEQ_OF_THREAD)
                    .bind(after_switch_id)
                    .bind(t)
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_scalar(sql::SWITCH_SEQ)
                    .bind(after_switch_id)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        let Some(seq) = seq else {
            return Ok(None);
        };
        let rows = match &thread {
            Some(t) => {
                sqlx::query(sql::THREAD_SWITCHES_AFTER)
                    .bind(t)
                    .bind(seq)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(sql::SWITCHES_AFTER)
                    .bind(seq)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| Ok(r.try_get::<Json<SwitchMessage>, _>(0)?.0))
            .collect::<Result<Vec<_>, StoreError>>()
            .map(Some)
    }

    async fn check(&self) -> Result<(), StoreError> {
        KeyStore::check(self).await
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}

fn endpoint_row(r: &sqlx::postgres::PgRow) -> Result<WebhookEndpoint, StoreError> {
    let events: String = r.try_get(2)?;
    let users: Option<String> = r.try_get(3)?;
    Ok(WebhookEndpoint {
        id: r.try_get(0)?,
        url: r.try_get(1)?,
        events: serde_json::from_str(&events)?,
        user_ids: users.map(|u| serde_json::from_str(&u)).transpose()?,
        secret_sealed: r.try_get(4)?,
        created_at: r.try_get(5)?,
        disabled_at: r.try_get(6)?,
        disabled_reason: r.try_get(7)?,
    })
}

#[async_trait]
impl DeliveryStore for PgStore {
    async fn claim(
        &self,
        kind: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let claim = sql::CLAIM_DELIVERIES.replace("{lock}", "FOR UPDATE SKIP LOCKED");
        let ids: Vec<i64> = sqlx::query_scalar(&claim)
            .bind(owner)
            .bind(lease_until)
            .bind(kind)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let r = sqlx::query(sql::LOAD_DELIVERY)
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
            out.push(PendingDelivery {
                id,
                target: r.try_get(0)?,
                pseudonym: r.try_get(1)?,
                attempts: r.try_get(2)?,
                queued_at: r.try_get(3)?,
                message: r.try_get::<Json<SwitchMessage>, _>(4)?.0,
            });
        }
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    async fn finish(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query(sql::FINISH_DELIVERY)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn retry_at(
        &self,
        id: i64,
        attempts: i32,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::RETRY_DELIVERY)
            .bind(attempts)
            .bind(at)
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn backlog(&self, kind: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(sql::DELIVERY_BACKLOG)
            .bind(kind)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn create_endpoint(
        &self,
        e: &WebhookEndpoint,
        pseudonyms: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::INSERT_ENDPOINT)
            .bind(&e.id)
            .bind(&e.url)
            .bind(serde_json::to_string(&e.events)?)
            .bind(e.user_ids.as_ref().map(serde_json::to_string).transpose()?)
            .bind(&e.secret_sealed)
            .bind(e.created_at)
            .execute(&mut *tx)
            .await?;
        for p in pseudonyms {
            sqlx::query(sql::INSERT_ENDPOINT_USER)
                .bind(&e.id)
                .bind(p)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let q = format!("{} ORDER BY created_at, id", sql::SELECT_ENDPOINTS);
        let rows = sqlx::query(&q).fetch_all(&self.pool).await?;
        rows.iter().map(endpoint_row).collect()
    }

    async fn endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        let q = format!("{} WHERE id = $1", sql::SELECT_ENDPOINTS);
        let row = sqlx::query(&q).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(endpoint_row).transpose()
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut deleted = 0;
        for q in sql::DELETE_ENDPOINT {
            deleted = sqlx::query(q)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn disable_endpoint(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::DISABLE_ENDPOINT[0])
            .bind(reason)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(sql::DISABLE_ENDPOINT[1])
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_attempt(
        &self,
        endpoint_id: &str,
        a: &WebhookAttempt,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::INSERT_ATTEMPT)
            .bind(endpoint_id)
            .bind(&a.message_id)
            .bind(a.attempt)
            .bind(a.attempted_at)
            .bind(a.status)
            .bind(&a.outcome)
            .bind(&a.error)
            .bind(a.duration_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn attempts(
        &self,
        endpoint_id: &str,
        limit: i64,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        let rows = sqlx::query(sql::SELECT_ATTEMPTS)
            .bind(endpoint_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(WebhookAttempt {
                    message_id: r.try_get(0)?,
                    attempt: r.try_get(1)?,
                    attempted_at: r.try_get(2)?,
                    status: r.try_get(3)?,
                    outcome: r.try_get(4)?,
                    error: r.try_get(5)?,
                    duration_ms: r.try_get(6)?,
                })
            })
            .collect()
    }
}
