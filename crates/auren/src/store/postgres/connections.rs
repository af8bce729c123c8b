//! [`ConnectionStore`] on PostgreSQL.

use super::PgStore;
use crate::store::{ConnectionStore, ParkedNotification, StoreError, SyncState, VendorConnection};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

const COLUMNS: &str =
    "vendor, user_id, vendor_user_id, access_sealed, refresh_sealed, expires_at, \
     scope, status, last_sync_at, last_error, created_at";
/// What [`row`] reads: the columns, then the sync state.
const SELECTED: &str =
    "vendor, user_id, vendor_user_id, access_sealed, refresh_sealed, expires_at, \
     scope, status, last_sync_at, last_error, created_at, backfill_status, backfill_from, \
     backfill_done_until, backfill_events, synced_until, next_sync_at";

fn row(r: &sqlx::postgres::PgRow) -> VendorConnection {
    VendorConnection {
        vendor: r.get(0),
        user_id: r.get(1),
        vendor_user_id: r.get(2),
        access_sealed: r.get(3),
        refresh_sealed: r.get(4),
        expires_at: r.get(5),
        scope: r.get(6),
        status: r.get(7),
        last_sync_at: r.get(8),
        last_error: r.get(9),
        created_at: r.get(10),
        sync: SyncState {
            backfill_status: r.get(11),
            backfill_from: r.get(12),
            backfill_done_until: r.get(13),
            backfill_events: r.get(14),
            synced_until: r.get(15),
            next_sync_at: r.get(16),
        },
    }
}

#[async_trait]
impl ConnectionStore for PgStore {
    async fn upsert_connection(&self, c: &VendorConnection) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM vendor_connections WHERE vendor = $1 AND (user_id = $2 OR vendor_user_id = $3)",
        )
        .bind(&c.vendor)
        .bind(&c.user_id)
        .bind(&c.vendor_user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "INSERT INTO vendor_connections ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&c.vendor)
        .bind(&c.user_id)
        .bind(&c.vendor_user_id)
        .bind(&c.access_sealed)
        .bind(&c.refresh_sealed)
        .bind(c.expires_at)
        .bind(&c.scope)
        .bind(&c.status)
        .bind(c.last_sync_at)
        .bind(&c.last_error)
        .bind(c.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn connection(
        &self,
        vendor: &str,
        user_id: &str,
    ) -> Result<Option<VendorConnection>, StoreError> {
        let r = sqlx::query(&format!(
            "SELECT {SELECTED} FROM vendor_connections WHERE vendor = $1 AND user_id = $2"
        ))
        .bind(vendor)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.as_ref().map(row))
    }

    async fn connection_for_vendor_user(
        &self,
        vendor: &str,
        vendor_user_id: &str,
    ) -> Result<Option<VendorConnection>, StoreError> {
        let r = sqlx::query(&format!(
            "SELECT {SELECTED} FROM vendor_connections WHERE vendor = $1 AND vendor_user_id = $2"
        ))
        .bind(vendor)
        .bind(vendor_user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.as_ref().map(row))
    }

    async fn connections_of(&self, user_id: &str) -> Result<Vec<VendorConnection>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {SELECTED} FROM vendor_connections WHERE user_id = $1 ORDER BY vendor"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(row).collect())
    }

    async fn claim_refresh(
        &self,
        vendor: &str,
        user_id: &str,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE vendor_connections SET refresh_owner = $3, refresh_lease_until = $4 \
             WHERE vendor = $1 AND user_id = $2 \
             AND (refresh_lease_until IS NULL OR refresh_lease_until < now() OR refresh_owner = $3)",
        )
        .bind(vendor)
        .bind(user_id)
        .bind(owner)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn release_refresh(
        &self,
        vendor: &str,
        user_id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE vendor_connections SET refresh_owner = NULL, refresh_lease_until = NULL \
             WHERE vendor = $1 AND user_id = $2 AND refresh_owner = $3",
        )
        .bind(vendor)
        .bind(user_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn store_tokens(
        &self,
        vendor: &str,
        user_id: &str,
        access_sealed: &str,
        refresh_sealed: Option<&str>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE vendor_connections SET access_sealed = $3, refresh_sealed = $4, expires_at = $5, \
             refresh_owner = NULL, refresh_lease_until = NULL, updated_at = now() WHERE vendor = $1 AND user_id = $2",
        )
        .bind(vendor)
        .bind(user_id)
        .bind(access_sealed)
        .bind(refresh_sealed)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_health(
        &self,
        vendor: &str,
        user_id: &str,
        status: &str,
        last_error: Option<&str>,
        synced_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE vendor_connections SET status = $3, last_error = $4, \
             last_sync_at = COALESCE($5, last_sync_at), updated_at = now() \
             WHERE vendor = $1 AND user_id = $2",
        )
        .bind(vendor)
        .bind(user_id)
        .bind(status)
        .bind(last_error)
        .bind(synced_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_sync(
        &self,
        vendors: &[String],
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<VendorConnection>, StoreError> {
        let r = sqlx::query(&format!(
            "UPDATE vendor_connections SET sync_owner = $2, sync_lease_until = $3 \
             WHERE (vendor, user_id) = (SELECT vendor, user_id FROM vendor_connections \
               WHERE status = 'connected' AND vendor = ANY($1) \
                 AND (next_sync_at IS NULL OR next_sync_at <= $4) \
                 AND (sync_lease_until IS NULL OR sync_lease_until < $4) \
               ORDER BY next_sync_at NULLS FIRST LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {SELECTED}"
        ))
        .bind(vendors)
        .bind(owner)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.as_ref().map(row))
    }

    async fn save_sync(
        &self,
        vendor: &str,
        user_id: &str,
        owner: &str,
        sync: &SyncState,
        until: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE vendor_connections SET backfill_status = $4, backfill_from = $5, \
             backfill_done_until = $6, backfill_events = $7, synced_until = $8, \
             next_sync_at = $9, sync_lease_until = $10, \
             sync_owner = CASE WHEN $10::timestamptz IS NULL THEN NULL ELSE sync_owner END, \
             updated_at = now() \
             WHERE vendor = $1 AND user_id = $2 AND sync_owner = $3",
        )
        .bind(vendor)
        .bind(user_id)
        .bind(owner)
        .bind(&sync.backfill_status)
        .bind(sync.backfill_from)
        .bind(sync.backfill_done_until)
        .bind(sync.backfill_events)
        .bind(sync.synced_until)
        .bind(sync.next_sync_at)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn take_rate(
        &self,
        vendor: &str,
        span_seconds: i64,
        window_start: DateTime<Utc>,
        limit: i64,
    ) -> Result<bool, StoreError> {
        // Windows older than a day are of no use to anyone; dropped now and then.
        if rand::random::<u8>() == 0 {
            sqlx::query(
                "DELETE FROM vendor_rate_windows WHERE window_start < now() - interval '2 days'",
            )
            .execute(&self.pool)
            .await?;
        }
        let r = sqlx::query(
            "INSERT INTO vendor_rate_windows (vendor, span_seconds, window_start, used) \
             VALUES ($1, $2, $3, 1) ON CONFLICT (vendor, span_seconds, window_start) \
             DO UPDATE SET used = vendor_rate_windows.used + 1 WHERE vendor_rate_windows.used < $4 \
             RETURNING used",
        )
        .bind(vendor)
        .bind(span_seconds as i32)
        .bind(window_start)
        .bind(limit as i32)
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.is_some())
    }

    async fn delete_connection(&self, vendor: &str, user_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM vendor_connections WHERE vendor = $1 AND user_id = $2")
            .bind(vendor)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn park_notification(&self, p: &ParkedNotification) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO vendor_parked_notifications \
             (event_id, vendor, vendor_user_id, body, reason, not_before, attempts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO UPDATE SET \
             reason = excluded.reason, not_before = excluded.not_before, attempts = excluded.attempts",
        )
        .bind(&p.event_id)
        .bind(&p.vendor)
        .bind(&p.vendor_user_id)
        .bind(&p.body)
        .bind(&p.reason)
        .bind(p.not_before)
        .bind(p.attempts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn due_parked(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ParkedNotification>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.event_id, p.vendor, p.vendor_user_id, p.body, p.reason, p.not_before, p.attempts \
             FROM vendor_parked_notifications p JOIN vendor_connections v \
             ON v.vendor = p.vendor AND v.vendor_user_id = p.vendor_user_id \
             WHERE v.status = 'connected' AND p.not_before <= $1 ORDER BY p.created_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| ParkedNotification {
                event_id: r.get(0),
                vendor: r.get(1),
                vendor_user_id: r.get(2),
                body: r.get(3),
                reason: r.get(4),
                not_before: r.get(5),
                attempts: r.get(6),
            })
            .collect())
    }

    async fn drop_parked(&self, event_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM vendor_parked_notifications WHERE event_id = $1")
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn consume_oauth_state(
        &self,
        nonce: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        sqlx::query("DELETE FROM vendor_oauth_states WHERE expires_at < now()")
            .execute(&self.pool)
            .await?;
        let r = sqlx::query(
            "INSERT INTO vendor_oauth_states (nonce, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(nonce)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
