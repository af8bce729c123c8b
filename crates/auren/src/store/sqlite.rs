//! SQLite state store under the data directory, for the embedded default. Its schema is
//! `crates/auren/migrations/sqlite`, the twin of the PostgreSQL one, applied at open and tracked
//! in `PRAGMA user_version`.
//!
//! One connection, used from the blocking pool under a mutex: SQLite serialises writers anyway,
//! and the bridge commits one batch at a time.

use super::{
    sql, CommitBatch, DeliveryStore, KeyInfo, KeyStore, OutboxSwitch, PendingDelivery, Revocation,
    StateStore, StoreError, StoredUser, WebhookAttempt, WebhookEndpoint,
};
use crate::messages::SwitchMessage;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::functions::FunctionFlags;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

mod connections;

pub const FILE_NAME: &str = "state.db";

/// The migrations, in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: [&str; 7] = [
    include_str!("../../migrations/sqlite/20261126000001_api_keys.sql"),
    include_str!("../../migrations/sqlite/20261126000002_bridge_state.sql"),
    include_str!("../../migrations/sqlite/20261202000001_log_identity.sql"),
    include_str!("../../migrations/sqlite/20261203000001_history_seq.sql"),
    include_str!("../../migrations/sqlite/20261203000002_delivery.sql"),
    include_str!("../../migrations/sqlite/20261203000040_vendor_connections.sql"),
    include_str!("../../migrations/sqlite/20261203000050_vendor_sync.sql"),
];

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    // The shared statements say `now()`, as in PostgreSQL.
    c.create_scalar_function("now", 0, FunctionFlags::SQLITE_UTF8, |_| {
        Ok(chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string())
    })?;
    Ok(c)
}

/// Applies the migrations not yet applied, each in its own transaction.
pub fn migrate(c: &mut Connection) -> rusqlite::Result<()> {
    let applied: usize = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if applied == 0 {
        upgrade_unversioned(c)?;
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = c.transaction()?;
        tx.execute_batch(m)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Stores made before the migrations were versioned created their tables inline, without
/// `consumer_offsets.updated_at`; the migrations' `IF NOT EXISTS` would keep that table as it
/// was, so the column is added first.
fn upgrade_unversioned(c: &Connection) -> rusqlite::Result<()> {
    let has_table: bool = c
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'consumer_offsets'",
            [],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if !has_table {
        return Ok(());
    }
    let has_column: bool = c
        .query_row(
            "SELECT 1 FROM pragma_table_info('consumer_offsets') WHERE name = 'updated_at'",
            [],
            |_| Ok(true),
        )
        .optional()?
        .unwrap_or(false);
    if !has_column {
        c.execute_batch(
            "ALTER TABLE consumer_offsets ADD COLUMN updated_at TEXT NOT NULL DEFAULT ''",
        )?;
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let mut conn = connect(&data_dir.join(FILE_NAME))?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || f(&mut conn.lock().unwrap_or_else(|e| e.into_inner())))
            .await?
    }
}

/// Times as the schema's defaults and `now()` write them, so that text comparison is time order.
fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn parse_ts(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
}

fn endpoint_row(r: &rusqlite::Row) -> rusqlite::Result<(WebhookEndpoint, String, Option<String>)> {
    Ok((
        WebhookEndpoint {
            id: r.get(0)?,
            url: r.get(1)?,
            events: Vec::new(),
            user_ids: None,
            secret_sealed: r.get(4)?,
            created_at: parse_ts(&r.get::<_, String>(5)?)?,
            disabled_at: r
                .get::<_, Option<String>>(6)?
                .as_deref()
                .map(parse_ts)
                .transpose()?,
            disabled_reason: r.get(7)?,
        },
        r.get(2)?,
        r.get(3)?,
    ))
}

fn endpoint_json(
    (mut e, events, users): (WebhookEndpoint, String, Option<String>),
) -> Result<WebhookEndpoint, StoreError> {
    e.events = serde_json::from_str(&events)?;
    e.user_ids = users.map(|u| serde_json::from_str(&u)).transpose()?;
    Ok(e)
}

fn json_col<T: serde::de::DeserializeOwned>(text: String) -> Result<T, StoreError> {
    Ok(serde_json::from_str(&text)?)
}

type KeyRow = (String, String, String, Option<String>);

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

/// Times are stored as RFC 3339 text (see the migrations).
fn time_col(text: &str) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    Ok(chrono::DateTime::parse_from_rfc3339(text)?.with_timezone(&chrono::Utc))
}

fn key_info((key_hash, user_id, created, revoked): KeyRow) -> Result<KeyInfo, StoreError> {
    Ok(KeyInfo {
        key_id: super::key_id(&key_hash),
        user_id,
        created_at: time_col(&created)?,
        revoked_at: revoked.as_deref().map(time_col).transpose()?,
        key_hash,
    })
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert(&self, key_hash: &str, user_id: &str) -> Result<(), StoreError> {
        let (k, u) = (key_hash.to_string(), user_id.to_string());
        self.with(move |c| {
            c.execute(sql::INSERT_KEY, params![k, u])?;
            Ok(())
        })
        .await
    }

    async fn user_for(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        let k = key_hash.to_string();
        self.with(move |c| {
            Ok(c.query_row(sql::USER_FOR_KEY, [k], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn list(&self, user_id: &str) -> Result<Vec<KeyInfo>, StoreError> {
        let u = user_id.to_string();
        self.with(move |c| {
            let mut st = c.prepare_cached(sql::LIST_KEYS)?;
            let rows = st.query_map([u], key_row)?.collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(key_info).collect()
        })
        .await
    }

    async fn revoke(&self, key_id: &str) -> Result<Revocation, StoreError> {
        let id = key_id.to_string();
        // One transaction: the connection is this store's alone, so nothing comes between the
        // look-up and the update.
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let rows = {
                let mut st = tx.prepare_cached(sql::KEYS_BY_ID)?;
                let rows = st.query_map([&id], key_row)?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let mut found = match <[_; 1]>::try_from(rows) {
                Ok([row]) => key_info(row)?,
                Err(rows) if rows.is_empty() => return Ok(Revocation::NotFound),
                Err(_) => return Ok(Revocation::Ambiguous),
            };
            if found.revoked_at.is_some() {
                return Ok(Revocation::AlreadyRevoked(found));
            }
            let at: String = tx.query_row(sql::REVOKE_KEY, [&found.key_hash], |r| r.get(0))?;
            tx.commit()?;
            found.revoked_at = Some(time_col(&at)?);
            Ok(Revocation::Revoked(found))
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.with(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn load_offsets(&self, group: &str, topic: &str) -> Result<Vec<(i32, i64)>, StoreError> {
        let (g, t) = (group.to_string(), topic.to_string());
        self.with(move |c| {
            let mut st = c.prepare_cached(sql::LOAD_OFFSETS)?;
            let rows = st.query_map(params![g, t], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn log_identity(&self, topic: &str) -> Result<Option<String>, StoreError> {
        let t = topic.to_string();
        self.with(move |c| {
            Ok(c.query_row(sql::LOAD_LOG_IDENTITY, [t], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    async fn adopt_log(
        &self,
        topic: &str,
        identity: &str,
        forget_offsets: bool,
    ) -> Result<(), StoreError> {
        let (t, i) = (topic.to_string(), identity.to_string());
        self.with(move |c| {
            let tx = c.transaction()?;
            if forget_offsets {
                tx.execute(sql::FORGET_OFFSETS, [&t])?;
            }
            tx.execute(sql::SET_LOG_IDENTITY, params![t, i])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn load_user(&self, pseudonym: &str) -> Result<Option<StoredUser>, StoreError> {
        let p = pseudonym.to_string();
        self.with(move |c| {
            let row = c
                .query_row(sql::LOAD_USER, [p], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<i32>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                    ))
                })
                .optional()?;
            row.map(
                |(thread_id, user_id, checkpoint_id, version, state, p, o)| {
                    Ok(StoredUser {
                        thread_id,
                        user_id,
                        checkpoint_id,
                        version,
                        state: json_col(state)?,
                        last_position: p.zip(o),
                    })
                },
            )
            .transpose()
        })
        .await
    }

    async fn commit(&self, b: &CommitBatch) -> Result<(), StoreError> {
        let b = b.clone();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for k in &b.checkpoints {
                tx.execute(
                    sql::UPSERT_THREAD,
                    params![k.thread_id, k.pseudonym, k.user_id, k.mode],
                )?;
                tx.execute(
                    sql::INSERT_CHECKPOINT,
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
                tx.execute(
                    sql::SET_LATEST_CHECKPOINT,
                    params![k.checkpoint_id, k.thread_id],
                )?;
                if b.keep_checkpoints > 0 {
                    tx.execute(
                        sql::PRUNE_CHECKPOINTS,
                        params![k.thread_id, b.keep_checkpoints],
                    )?;
                }
            }
            for s in &b.switches {
                let new = tx.execute(
                    sql::INSERT_SWITCH,
                    params![
                        s.switch_id,
                        s.thread_id,
                        s.from_mode.as_str(),
                        s.to_mode.as_str(),
                        s.confidence,
                        s.at.to_rfc3339(),
                        serde_json::to_string(s)?
                    ],
                )? > 0;
                // A switch already in the history was queued when it was first committed.
                if new {
                    for sink in &b.sinks {
                        tx.execute(
                            sql::QUEUE_DELIVERY,
                            params![sink, s.user_pseudonym, s.switch_id],
                        )?;
                    }
                    tx.execute(sql::QUEUE_WEBHOOKS, params![s.user_pseudonym, s.switch_id])?;
                }
            }
            for (p, o) in &b.offsets {
                tx.execute(sql::UPSERT_OFFSET, params![b.group, b.topic, p, o])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn unpublished(&self, limit: i64) -> Result<Vec<OutboxSwitch>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare_cached(sql::UNPUBLISHED)?;
            let rows = st
                .query_map([limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(key, m)| {
                    Ok(OutboxSwitch {
                        key,
                        message: json_col(m)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn mark_published(&self, ids: &[String]) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.with(move |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "UPDATE mode_history SET published_at = now() WHERE switch_id = $1",
                )?;
                for id in &ids {
                    st.execute([id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn history(&self, pseudonym: &str, limit: i64) -> Result<Vec<SwitchMessage>, StoreError> {
        let p = pseudonym.to_string();
        self.with(move |c| {
            let mut st = c.prepare_cached(sql::HISTORY)?;
            let rows = st
                .query_map(params![p, limit], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(json_col).collect()
        })
        .await
    }

    async fn switches_after(
        &self,
        pseudonym: Option<&str>,
        after_switch_id: &str,
        limit: i64,
    ) -> Result<Option<Vec<SwitchMessage>>, StoreError> {
        let thread = pseudonym.map(crate::messages::thread_id);
        let after = after_switch_id.to_string();
        self.with(move |c| {
            let seq: Option<i64> = match &thread {
                Some(t) => c
                    .query_row(sql::SWITCH_SEQ_OF_THREAD, params![after, t], |r| r.get(0))
                    .optional()?,
                None => c
                    .query_row(sql::SWITCH_SEQ, [&after], |r| r.get(0))
                    .optional()?,
            };
            let Some(seq) = seq else {
                return Ok(None);
            };
            let rows = match &thread {
                Some(t) => c
                    .prepare_cached(sql::THREAD_SWITCHES_AFTER)?
                    .query_map(params![t, seq, limit], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?,
                None => c
                    .prepare_cached(sql::SWITCHES_AFTER)?
                    .query_map(params![seq, limit], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            rows.into_iter()
                .map(json_col)
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
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

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn claim(
        &self,
        kind: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let (kind, owner) = (kind.to_string(), owner.to_string());
        self.with(move |c| {
            let tx = c.transaction()?;
            let claim = sql::CLAIM_DELIVERIES.replace("{lock}", "");
            let ids = {
                let mut st = tx.prepare_cached(&claim)?;
                let rows = st
                    .query_map(params![owner, ts(lease_until), kind, ts(now), limit], |r| {
                        r.get::<_, i64>(0)
                    })?;
                rows.collect::<Result<Vec<_>, _>>()?
            };
            let mut out = Vec::with_capacity(ids.len());
            {
                let mut st = tx.prepare_cached(sql::LOAD_DELIVERY)?;
                for id in ids {
                    let (target, pseudonym, attempts, queued, message) =
                        st.query_row([id], |r| {
                            Ok((
                                r.get::<_, String>(0)?,
                                r.get::<_, String>(1)?,
                                r.get::<_, i32>(2)?,
                                r.get::<_, String>(3)?,
                                r.get::<_, String>(4)?,
                            ))
                        })?;
                    out.push(PendingDelivery {
                        id,
                        target,
                        pseudonym,
                        attempts,
                        queued_at: parse_ts(&queued)?,
                        message: json_col(message)?,
                    });
                }
            }
            tx.commit()?;
            out.sort_by_key(|d| d.id);
            Ok(out)
        })
        .await
    }

    async fn finish(&self, id: i64) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute(sql::FINISH_DELIVERY, [id])?;
            Ok(())
        })
        .await
    }

    async fn retry_at(
        &self,
        id: i64,
        attempts: i32,
        at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let error = error.to_string();
        self.with(move |c| {
            c.execute(sql::RETRY_DELIVERY, params![attempts, ts(at), error, id])?;
            Ok(())
        })
        .await
    }

    async fn backlog(&self, kind: &str) -> Result<i64, StoreError> {
        let kind = kind.to_string();
        self.with(move |c| Ok(c.query_row(sql::DELIVERY_BACKLOG, [kind], |r| r.get(0))?))
            .await
    }

    async fn create_endpoint(
        &self,
        e: &WebhookEndpoint,
        pseudonyms: &[String],
    ) -> Result<(), StoreError> {
        let (e, pseudonyms) = (e.clone(), pseudonyms.to_vec());
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                sql::INSERT_ENDPOINT,
                params![
                    e.id,
                    e.url,
                    serde_json::to_string(&e.events)?,
                    e.user_ids.as_ref().map(serde_json::to_string).transpose()?,
                    e.secret_sealed,
                    ts(e.created_at)
                ],
            )?;
            for p in &pseudonyms {
                tx.execute(sql::INSERT_ENDPOINT_USER, params![e.id, p])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn endpoints(&self) -> Result<Vec<WebhookEndpoint>, StoreError> {
        self.with(move |c| {
            let q = format!("{} ORDER BY created_at, id", sql::SELECT_ENDPOINTS);
            let mut st = c.prepare_cached(&q)?;
            let rows = st
                .query_map([], endpoint_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(endpoint_json).collect()
        })
        .await
    }

    async fn endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, StoreError> {
        let id = id.to_string();
        self.with(move |c| {
            let q = format!("{} WHERE id = $1", sql::SELECT_ENDPOINTS);
            let row = c.query_row(&q, [id], endpoint_row).optional()?;
            row.map(endpoint_json).transpose()
        })
        .await
    }

    async fn delete_endpoint(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with(move |c| {
            let tx = c.transaction()?;
            let mut deleted = 0;
            for q in sql::DELETE_ENDPOINT {
                deleted = tx.execute(q, [&id])?;
            }
            tx.commit()?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn disable_endpoint(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        let (id, reason) = (id.to_string(), reason.to_string());
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(sql::DISABLE_ENDPOINT[0], params![reason, id])?;
            tx.execute(sql::DISABLE_ENDPOINT[1], [&id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn record_attempt(
        &self,
        endpoint_id: &str,
        a: &WebhookAttempt,
    ) -> Result<(), StoreError> {
        let (id, a) = (endpoint_id.to_string(), a.clone());
        self.with(move |c| {
            c.execute(
                sql::INSERT_ATTEMPT,
                params![
                    id,
                    a.message_id,
                    a.attempt,
                    ts(a.attempted_at),
                    a.status,
                    a.outcome,
                    a.error,
                    a.duration_ms
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn attempts(
        &self,
        endpoint_id: &str,
        limit: i64,
    ) -> Result<Vec<WebhookAttempt>, StoreError> {
        let id = endpoint_id.to_string();
        self.with(move |c| {
            let mut st = c.prepare_cached(sql::SELECT_ATTEMPTS)?;
            let rows = st.query_map(params![id, limit], |r| {
                Ok(WebhookAttempt {
                    message_id: r.get(0)?,
                    attempt: r.get(1)?,
                    attempted_at: parse_ts(&r.get::<_, String>(2)?)?,
                    status: r.get(3)?,
                    outcome: r.get(4)?,
                    error: r.get(5)?,
                    duration_ms: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}
