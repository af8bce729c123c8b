//! SQLite state store under the data directory, for the embedded default.
//! One connection, used from the blocking pool under a mutex: SQLite serialises writers anyway,
//! and the bridge commits one batch at a time.

use super::{KeyStore, StoreError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "state.db";

pub struct SqliteStore {
    conn: std::sync::Arc<std::sync::Mutex<Connection>>,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    Ok(c)
}

impl SqliteStore {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let path: PathBuf = data_dir.join(FILE_NAME);
        let conn = open(&path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS api_keys (
                key_hash TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
                revoked_at TEXT
            );
            CREATE TABLE IF NOT EXISTS threads (
                thread_id TEXT PRIMARY KEY,
                user_pseudonym TEXT NOT NULL UNIQUE,
                user_id TEXT NOT NULL,
                mode TEXT NOT NULL DEFAULT 'PATTERN',
                latest_checkpoint_id TEXT,
                created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
                updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
            );
            CREATE TABLE IF NOT EXISTS checkpoints (
                checkpoint_id TEXT PRIMARY KEY,
                thread_id TEXT NOT NULL REFERENCES threads (thread_id),
                parent_id TEXT,
                version INTEGER NOT NULL,
                state TEXT NOT NULL,
                last_partition INTEGER,
                last_offset INTEGER,
                created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
            );
            CREATE INDEX IF NOT EXISTS checkpoints_thread ON checkpoints (thread_id, checkpoint_id DESC);
            CREATE TABLE IF NOT EXISTS mode_history (
                switch_id TEXT PRIMARY KEY,
                thread_id TEXT NOT NULL REFERENCES threads (thread_id),
                from_mode TEXT NOT NULL,
                to_mode TEXT NOT NULL,
                confidence REAL NOT NULL,
                switched_at TEXT NOT NULL,
                message TEXT NOT NULL,
                created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
                published_at TEXT
            );
            CREATE INDEX IF NOT EXISTS mode_history_thread ON mode_history (thread_id, switched_at);
            CREATE TABLE IF NOT EXISTS consumer_offsets (
                consumer_group TEXT NOT NULL,
                topic TEXT NOT NULL,
                partition INTEGER NOT NULL,
                next_offset INTEGER NOT NULL,
                PRIMARY KEY (consumer_group, topic, partition)
            );",
        )?;
        Ok(Self {
            conn: std::sync::Arc::new(std::sync::Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&conn.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(|e| StoreError(e.to_string()))?
            .map_err(StoreError::from)
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert(&self, key_hash: &str, user_id: &str) -> Result<(), StoreError> {
        let (k, u) = (key_hash.to_string(), user_id.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO api_keys (key_hash, user_id) VALUES (?1, ?2)",
                params![k, u],
            )
            .map(|_| ())
        })
        .await
    }

    async fn user_for(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        let k = key_hash.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT user_id FROM api_keys WHERE key_hash = ?1 AND revoked_at IS NULL",
                [k],
                |r| r.get(0),
            )
            .optional()
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

use super::{CommitBatch, StateStore, StoredUser};

fn json_col(text: String) -> rusqlite::Result<serde_json::Value> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn load_offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, StoreError> {
        let (g, t) = (group.to_string(), topic.to_string());
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT partition, next_offset FROM consumer_offsets
                 WHERE consumer_group = ?1 AND topic = ?2 ORDER BY partition",
            )?;
            let rows = st.query_map(params![g, t], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    async fn load_user(&self, pseudonym: &str) -> Result<Option<StoredUser>, StoreError> {
        let p = pseudonym.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT t.thread_id, t.user_id, c.checkpoint_id, c.version, c.state, c.last_partition, c.last_offset
                 FROM threads t JOIN checkpoints c ON c.checkpoint_id = t.latest_checkpoint_id
                 WHERE t.user_pseudonym = ?1",
                [p],
                |r| {
                    Ok(StoredUser {
                        thread_id: r.get(0)?,
                        user_id: r.get(1)?,
                        checkpoint_id: r.get(2)?,
                        version: r.get(3)?,
                        state: json_col(r.get(4)?)?,
                        last_position: match (r.get::<_, Option<i32>>(5)?, r.get::<_, Option<i64>>(6)?) {
                            (Some(p), Some(o)) => Some((p, o)),
                            _ => None,
                        },
                    })
                },
            )
            .optional()
        })
        .await
    }

    async fn commit(&self, b: &CommitBatch) -> Result<(), StoreError> {
        let b = b.clone();
        self.with(move |c| {
            c.execute_batch("BEGIN IMMEDIATE")?;
            let result = (|| {
                for k in &b.checkpoints {
                    c.execute(
                        "INSERT INTO threads (thread_id, user_pseudonym, user_id, mode) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (thread_id) DO UPDATE SET mode = excluded.mode,
                           updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')",
                        params![k.thread_id, k.pseudonym, k.user_id, k.mode],
                    )?;
                    c.execute(
                        "INSERT INTO checkpoints (checkpoint_id, thread_id, parent_id, version, state, last_partition, last_offset)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            k.checkpoint_id,
                            k.thread_id,
                            k.parent_id,
                            k.version,
                            k.state.to_string(),
                            k.last_position.map(|p| p.0),
                            k.last_position.map(|p| p.1)
                        ],
                    )?;
                    c.execute(
                        "UPDATE threads SET latest_checkpoint_id = ?2 WHERE thread_id = ?1",
                        params![k.thread_id, k.checkpoint_id],
                    )?;
                    if b.keep_checkpoints > 0 {
                        c.execute(
                            "DELETE FROM checkpoints WHERE thread_id = ?1 AND checkpoint_id <
                               (SELECT checkpoint_id FROM checkpoints WHERE thread_id = ?1
                                ORDER BY checkpoint_id DESC LIMIT 1 OFFSET ?2 - 1)",
                            params![k.thread_id, b.keep_checkpoints],
                        )?;
                    }
                }
                for s in &b.switches {
                    c.execute(
                        "INSERT INTO mode_history (switch_id, thread_id, from_mode, to_mode, confidence, switched_at, message)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (switch_id) DO NOTHING",
                        params![
                            s.switch_id,
                            s.thread_id,
                            s.from_mode,
                            s.to_mode,
                            s.confidence,
                            s.switched_at.to_rfc3339(),
                            s.message.to_string()
                        ],
                    )?;
                }
                for (p, o) in &b.offsets {
                    c.execute(
                        "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
                        params![b.group, b.topic, p, o],
                    )?;
                }
                Ok(())
            })();
            match result {
                Ok(()) => c.execute_batch("COMMIT"),
                Err(e) => {
                    let _ = c.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })
        .await
    }

    async fn unpublished(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT switch_id, message FROM mode_history WHERE published_at IS NULL
                 ORDER BY created_at, switched_at LIMIT ?1",
            )?;
            let rows = st.query_map([limit], |r| Ok((r.get(0)?, json_col(r.get(1)?)?)))?;
            rows.collect()
        })
        .await
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.with(move |c| {
            let mut st = c.prepare(
                "UPDATE mode_history SET published_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE switch_id = ?1",
            )?;
            for id in &ids {
                st.execute([id])?;
            }
            Ok(())
        })
        .await
    }

    async fn history(
        &self,
        pseudonym: &str,
        limit: i64,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let p = pseudonym.to_string();
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT h.message FROM mode_history h JOIN threads t ON t.thread_id = h.thread_id
                 WHERE t.user_pseudonym = ?1 ORDER BY h.switched_at DESC, h.created_at DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![p, limit], |r| json_col(r.get(0)?))?;
            rows.collect()
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        KeyStore::check(self).await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}
