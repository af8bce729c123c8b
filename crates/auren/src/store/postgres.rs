//! PostgreSQL state store. Its schema is `crates/auren/migrations/postgres`, applied at start.

use super::{sql, CommitBatch, KeyStore, OutboxSwitch, StateStore, StoreError, StoredUser};
use crate::messages::SwitchMessage;
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::Row;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects, creating the database when it does not exist yet (the role may; when it may
    /// not, the error names the database), and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        use sqlx::migrate::MigrateDatabase;
        if !sqlx::Postgres::database_exists(url).await.unwrap_or(true) {
            sqlx::Postgres::create_database(url).await?;
            tracing::info!("created the PostgreSQL database named in POSTGRES_URL");
        }
        // PostgreSQL's NOTICEs (`relation ... already exists, skipping` on every start) are not
        // worth a log line.
        let options = url
            .parse::<sqlx::postgres::PgConnectOptions>()?
            .options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
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

    async fn check(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
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
            sqlx::query(sql::INSERT_SWITCH)
                .bind(&s.switch_id)
                .bind(&s.thread_id)
                .bind(s.from_mode.as_str())
                .bind(s.to_mode.as_str())
                .bind(s.confidence)
                .bind(s.at)
                .bind(Json(s))
                .execute(&mut *tx)
                .await?;
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
