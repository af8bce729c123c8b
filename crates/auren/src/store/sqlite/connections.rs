//! [`ConnectionStore`] on SQLite.

use super::{parse_ts, ts, SqliteStore};
use crate::store::{ConnectionStore, ParkedNotification, StoreError, SyncState, VendorConnection};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

const COLUMNS: &str =
    "vendor, user_id, vendor_user_id, access_sealed, refresh_sealed, expires_at, \
     scope, status, last_sync_at, last_error, created_at";
/// What [`row`] reads: the columns, then the sync state.
const SELECTED: &str =
    "vendor, user_id, vendor_user_id, access_sealed, refresh_sealed, expires_at, \
     scope, status, last_sync_at, last_error, created_at, backfill_status, backfill_from, \
     backfill_done_until, backfill_events, synced_until, next_sync_at";

fn row(r: &rusqlite::Row) -> rusqlite::Result<VendorConnection> {
    let opt_ts = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        r.get::<_, Option<String>>(i)?
            .as_deref()
            .map(parse_ts)
            .transpose()
    };
    Ok(VendorConnection {
        vendor: r.get(0)?,
        user_id: r.get(1)?,
        vendor_user_id: r.get(2)?,
        access_sealed: r.get(3)?,
        refresh_sealed: r.get(4)?,
        expires_at: parse_ts(&r.get::<_, String>(5)?)?,
        scope: r.get(6)?,
        status: r.get(7)?,
        last_sync_at: opt_ts(8)?,
        last_error: r.get(9)?,
        created_at: parse_ts(&r.get::<_, String>(10)?)?,
        sync: SyncState {
            backfill_status: r.get(11)?,
            backfill_from: opt_ts(12)?,
            backfill_done_until: opt_ts(13)?,
            backfill_events: r.get(14)?,
            synced_until: opt_ts(15)?,
            next_sync_at: opt_ts(16)?,
        },
    })
}

#[async_trait]
impl ConnectionStore for SqliteStore {
    async fn upsert_connection(&self, c: &VendorConnection) -> Result<(), StoreError> {
        let c = c.clone();
        self.with(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.execute(
                "DELETE FROM vendor_connections WHERE vendor = ?1 AND (user_id = ?2 OR vendor_user_id = ?3)",
                params![c.vendor, c.user_id, c.vendor_user_id],
            )?;
            tx.execute(
                &format!("INSERT INTO vendor_connections ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![
                    c.vendor,
                    c.user_id,
                    c.vendor_user_id,
                    c.access_sealed,
                    c.refresh_sealed,
                    ts(c.expires_at),
                    c.scope,
                    c.status,
                    c.last_sync_at.map(ts),
                    c.last_error,
                    ts(c.created_at)
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn connection(
        &self,
        vendor: &str,
        user_id: &str,
    ) -> Result<Option<VendorConnection>, StoreError> {
        let (v, u) = (vendor.to_string(), user_id.to_string());
        self.with(move |c| {
            Ok(c.query_row(
                &format!(
                    "SELECT {SELECTED} FROM vendor_connections WHERE vendor = ?1 AND user_id = ?2"
                ),
                params![v, u],
                row,
            )
            .optional()?)
        })
        .await
    }

    async fn connection_for_vendor_user(
        &self,
        vendor: &str,
        vendor_user_id: &str,
    ) -> Result<Option<VendorConnection>, StoreError> {
        let (v, u) = (vendor.to_string(), vendor_user_id.to_string());
        self.with(move |c| {
            Ok(c.query_row(
                &format!("SELECT {SELECTED} FROM vendor_connections WHERE vendor = ?1 AND vendor_user_id = ?2"),
                params![v, u],
                row,
            )
            .optional()?)
        })
        .await
    }

    async fn connections_of(&self, user_id: &str) -> Result<Vec<VendorConnection>, StoreError> {
        let u = user_id.to_string();
        self.with(move |c| {
            let mut st = c.prepare(&format!(
                "SELECT {SELECTED} FROM vendor_connections WHERE user_id = ?1 ORDER BY vendor"
            ))?;
            let rows = st.query_map(params![u], row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn claim_refresh(
        &self,
        vendor: &str,
        user_id: &str,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (v, u, o) = (vendor.to_string(), user_id.to_string(), owner.to_string());
        self.with(move |c| {
            Ok(c.execute(
                "UPDATE vendor_connections SET refresh_owner = ?3, refresh_lease_until = ?4 \
                 WHERE vendor = ?1 AND user_id = ?2 \
                 AND (refresh_lease_until IS NULL OR refresh_lease_until < now() OR refresh_owner = ?3)",
                params![v, u, o, ts(until)],
            )? == 1)
        })
        .await
    }

    async fn release_refresh(
        &self,
        vendor: &str,
        user_id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        let (v, u, o) = (vendor.to_string(), user_id.to_string(), owner.to_string());
        self.with(move |c| {
            c.execute(
                "UPDATE vendor_connections SET refresh_owner = NULL, refresh_lease_until = NULL \
                 WHERE vendor = ?1 AND user_id = ?2 AND refresh_owner = ?3",
                params![v, u, o],
            )?;
            Ok(())
        })
        .await
    }

    async fn store_tokens(
        &self,
        vendor: &str,
        user_id: &str,
        access_sealed: &str,
        refresh_sealed: Option<&str>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let (v, u, a, r) = (
            vendor.to_string(),
            user_id.to_string(),
            access_sealed.to_string(),
            refresh_sealed.map(str::to_string),
        );
        self.with(move |c| {
            c.execute(
                "UPDATE vendor_connections SET access_sealed = ?3, refresh_sealed = ?4, expires_at = ?5, \
                 refresh_owner = NULL, refresh_lease_until = NULL, updated_at = now() WHERE vendor = ?1 AND user_id = ?2",
                params![v, u, a, r, ts(expires_at)],
            )?;
            Ok(())
        })
        .await
    }

    async fn set_health(
        &self,
        vendor: &str,
        user_id: &str,
        status: &str,
        last_error: Option<&str>,
        synced_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let (v, u, s, e) = (
            vendor.to_string(),
            user_id.to_string(),
            status.to_string(),
            last_error.map(str::to_string),
        );
        self.with(move |c| {
            c.execute(
                "UPDATE vendor_connections SET status = ?3, last_error = ?4, \
                 last_sync_at = COALESCE(?5, last_sync_at), updated_at = now() \
                 WHERE vendor = ?1 AND user_id = ?2",
                params![v, u, s, e, synced_at.map(ts)],
            )?;
            Ok(())
        })
        .await
    }

    async fn claim_sync(
        &self,
        vendors: &[String],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<VendorConnection>, StoreError> {
        let (vendors, owner) = (vendors.to_vec(), owner.to_string());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = ts(now);
            let mut found = None;
            {
                let mut st = tx.prepare(&format!(
                    "SELECT {SELECTED} FROM vendor_connections WHERE status = 'connected' \
                     AND (next_sync_at IS NULL OR next_sync_at <= ?1) \
                     AND (sync_lease_until IS NULL OR sync_lease_until < ?1) \
                     ORDER BY next_sync_at IS NOT NULL, next_sync_at"
                ))?;
                let mut rows = st.query(params![now])?;
                while let Some(r) = rows.next()? {
                    let conn = row(r)?;
                    if vendors.contains(&conn.vendor) {
                        found = Some(conn);
                        break;
                    }
                }
            }
            if let Some(conn) = &found {
                tx.execute(
                    "UPDATE vendor_connections SET sync_owner = ?3, sync_lease_until = ?4 \
                     WHERE vendor = ?1 AND user_id = ?2",
                    params![conn.vendor, conn.user_id, owner, ts(until)],
                )?;
            }
            tx.commit()?;
            Ok(found)
        })
        .await
    }

    async fn save_sync(
        &self,
        vendor: &str,
        user_id: &str,
        owner: &str,
        sync: &SyncState,
        until: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let (v, u, o, sync) = (
            vendor.to_string(),
            user_id.to_string(),
            owner.to_string(),
            sync.clone(),
        );
        self.with(move |c| {
            let n = c.execute(
                "UPDATE vendor_connections SET backfill_status = ?4, backfill_from = ?5, \
                 backfill_done_until = ?6, backfill_events = ?7, synced_until = ?8, \
                 next_sync_at = ?9, sync_lease_until = ?10, \
                 sync_owner = CASE WHEN ?10 IS NULL THEN NULL ELSE sync_owner END, \
                 updated_at = now() \
                 WHERE vendor = ?1 AND user_id = ?2 AND sync_owner = ?3",
                params![
                    v,
                    u,
                    o,
                    sync.backfill_status,
                    sync.backfill_from.map(ts),
                    sync.backfill_done_until.map(ts),
                    sync.backfill_events,
                    sync.synced_until.map(ts),
                    sync.next_sync_at.map(ts),
                    until.map(ts)
                ],
            )?;
            Ok(n > 0)
        })
        .await
    }

    async fn take_rate(
        &self,
        vendor: &str,
        span_seconds: i64,
        window_start: DateTime<Utc>,
        limit: i64,
    ) -> Result<bool, StoreError> {
        let v = vendor.to_string();
        self.with(move |c| {
            c.execute(
                "DELETE FROM vendor_rate_windows WHERE window_start < ?1",
                params![ts(window_start - chrono::Duration::days(2))],
            )?;
            let used: Option<i64> = c
                .query_row(
                    "INSERT INTO vendor_rate_windows (vendor, span_seconds, window_start, used) \
                     VALUES (?1, ?2, ?3, 1) ON CONFLICT (vendor, span_seconds, window_start) \
                     DO UPDATE SET used = used + 1 WHERE used < ?4 RETURNING used",
                    params![v, span_seconds, ts(window_start), limit],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(used.is_some())
        })
        .await
    }

    async fn delete_connection(&self, vendor: &str, user_id: &str) -> Result<bool, StoreError> {
        let (v, u) = (vendor.to_string(), user_id.to_string());
        self.with(move |c| {
            Ok(c.execute(
                "DELETE FROM vendor_connections WHERE vendor = ?1 AND user_id = ?2",
                params![v, u],
            )? > 0)
        })
        .await
    }

    async fn park_notification(&self, p: &ParkedNotification) -> Result<(), StoreError> {
        let p = p.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO vendor_parked_notifications \
                 (event_id, vendor, vendor_user_id, body, reason, not_before, attempts) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (event_id) DO UPDATE SET \
                 reason = excluded.reason, not_before = excluded.not_before, attempts = excluded.attempts",
                params![p.event_id, p.vendor, p.vendor_user_id, p.body, p.reason, ts(p.not_before), p.attempts],
            )?;
            Ok(())
        })
        .await
    }

    async fn due_parked(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ParkedNotification>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT p.event_id, p.vendor, p.vendor_user_id, p.body, p.reason, p.not_before, p.attempts \
                 FROM vendor_parked_notifications p JOIN vendor_connections v \
                 ON v.vendor = p.vendor AND v.vendor_user_id = p.vendor_user_id \
                 WHERE v.status = 'connected' AND p.not_before <= ?1 ORDER BY p.created_at LIMIT ?2",
            )?;
            let rows = st.query_map(params![ts(now), limit], |r| {
                Ok(ParkedNotification {
                    event_id: r.get(0)?,
                    vendor: r.get(1)?,
                    vendor_user_id: r.get(2)?,
                    body: r.get(3)?,
                    reason: r.get(4)?,
                    not_before: parse_ts(&r.get::<_, String>(5)?)?,
                    attempts: r.get(6)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn drop_parked(&self, event_id: &str) -> Result<(), StoreError> {
        let id = event_id.to_string();
        self.with(move |c| {
            c.execute(
                "DELETE FROM vendor_parked_notifications WHERE event_id = ?1",
                params![id],
            )?;
            Ok(())
        })
        .await
    }

    async fn consume_oauth_state(
        &self,
        nonce: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = nonce.to_string();
        self.with(move |c| {
            c.execute(
                "DELETE FROM vendor_oauth_states WHERE expires_at < now()",
                [],
            )?;
            Ok(c.execute(
                "INSERT INTO vendor_oauth_states (nonce, expires_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![n, ts(expires_at)],
            )? == 1)
        })
        .await
    }
}
