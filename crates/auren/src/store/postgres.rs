//! PostgreSQL state store. Migrations live in `crates/auren/migrations` and run at start.

use super::{KeyStore, StoreError};
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct PgStore {
    pub pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert(&self, key_hash: &str, user_id: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_keys (key_hash, user_id) VALUES ($1, $2)")
            .bind(key_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn user_for(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
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

use super::{CommitBatch, StateStore, StoredUser};
use sqlx::Row;

#[async_trait]
impl StateStore for PgStore {
    async fn load_offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT partition, next_offset FROM consumer_offsets
             WHERE consumer_group = $1 AND topic = $2 ORDER BY partition",
        )
        .bind(group)
        .bind(topic)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn load_user(&self, pseudonym: &str) -> Result<Option<StoredUser>, StoreError> {
        let row = sqlx::query(
            "SELECT t.thread_id, t.user_id, c.checkpoint_id, c.version, c.state, c.last_partition, c.last_offset
             FROM threads t JOIN checkpoints c ON c.checkpoint_id = t.latest_checkpoint_id
             WHERE t.user_pseudonym = $1",
        )
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
            sqlx::query(
                "INSERT INTO threads (thread_id, user_pseudonym, user_id, mode)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (thread_id) DO UPDATE SET mode = EXCLUDED.mode, updated_at = now()",
            )
            .bind(&c.thread_id)
            .bind(&c.pseudonym)
            .bind(&c.user_id)
            .bind(&c.mode)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO checkpoints (checkpoint_id, thread_id, parent_id, version, state, last_partition, last_offset)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&c.checkpoint_id)
            .bind(&c.thread_id)
            .bind(&c.parent_id)
            .bind(c.version)
            .bind(&c.state)
            .bind(c.last_position.map(|p| p.0))
            .bind(c.last_position.map(|p| p.1))
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE threads SET latest_checkpoint_id = $2 WHERE thread_id = $1")
                .bind(&c.thread_id)
                .bind(&c.checkpoint_id)
                .execute(&mut *tx)
                .await?;
            if b.keep_checkpoints > 0 {
                // UUIDv7 ids sort by time, so the newest `keep` are the largest ids.
                sqlx::query(
                    "DELETE FROM checkpoints WHERE thread_id = $1 AND checkpoint_id <
                       (SELECT checkpoint_id FROM checkpoints WHERE thread_id = $1
                        ORDER BY checkpoint_id DESC OFFSET $2 - 1 LIMIT 1)",
                )
                .bind(&c.thread_id)
                .bind(b.keep_checkpoints)
                .execute(&mut *tx)
                .await?;
            }
        }
        for s in &b.switches {
            sqlx::query(
                "INSERT INTO mode_history (switch_id, thread_id, from_mode, to_mode, confidence, switched_at, message)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (switch_id) DO NOTHING",
            )
            .bind(&s.switch_id)
            .bind(&s.thread_id)
            .bind(&s.from_mode)
            .bind(&s.to_mode)
            .bind(s.confidence)
            .bind(s.switched_at)
            .bind(&s.message)
            .execute(&mut *tx)
            .await?;
        }
        for (p, o) in &b.offsets {
            sqlx::query(
                "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (consumer_group, topic, partition)
                 DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
            )
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

    async fn unpublished(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let rows = sqlx::query(
            "SELECT switch_id, message FROM mode_history WHERE published_at IS NULL
             ORDER BY created_at, switched_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        sqlx::query("UPDATE mode_history SET published_at = now() WHERE switch_id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn history(
        &self,
        pseudonym: &str,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.message FROM mode_history h JOIN threads t ON t.thread_id = h.thread_id
             WHERE t.user_pseudonym = $1 ORDER BY h.switched_at DESC, h.created_at DESC LIMIT $2",
        )
        .bind(pseudonym)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn check(&self) -> Result<(), StoreError> {
        KeyStore::check(self).await
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }
}
