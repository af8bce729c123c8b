//! SQLite state store under the data directory, for the embedded default.
//! Calls are short and rare (key lookups are cached by the caller), so they run on the blocking
//! pool with a connection per call rather than a pool of their own.

use super::{KeyStore, StoreError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "state.db";

pub struct SqliteStore {
    path: PathBuf,
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
        let path = data_dir.join(FILE_NAME);
        open(&path)?.execute_batch(
            "CREATE TABLE IF NOT EXISTS api_keys (
                key_hash TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
                revoked_at TEXT
            );",
        )?;
        Ok(Self { path })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || f(&open(&path)?))
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
