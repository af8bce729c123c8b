-- Backfill and reconciliation of vendor connections (issue 8): each connection's history is
-- fetched once (from `backfill_from`, progress in `backfill_done_until`), then reconciled on a
-- schedule (`next_sync_at`) for objects whose notifications never came. One instance syncs a
-- connection at a time (`sync_owner` holds a lease until `sync_lease_until`).
ALTER TABLE vendor_connections ADD COLUMN backfill_status TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE vendor_connections ADD COLUMN backfill_from TEXT;
ALTER TABLE vendor_connections ADD COLUMN backfill_done_until TEXT;
ALTER TABLE vendor_connections ADD COLUMN backfill_events INTEGER NOT NULL DEFAULT 0;
ALTER TABLE vendor_connections ADD COLUMN synced_until TEXT;
ALTER TABLE vendor_connections ADD COLUMN next_sync_at TEXT;
ALTER TABLE vendor_connections ADD COLUMN sync_owner TEXT;
ALTER TABLE vendor_connections ADD COLUMN sync_lease_until TEXT;

-- The vendors' rate limits are per application: every process takes its requests from one
-- budget, counted in fixed windows.
CREATE TABLE IF NOT EXISTS vendor_rate_windows (
    vendor       TEXT NOT NULL,
    span_seconds INTEGER NOT NULL,
    window_start TEXT NOT NULL,
    used         INTEGER NOT NULL,
    PRIMARY KEY (vendor, span_seconds, window_start)
);
