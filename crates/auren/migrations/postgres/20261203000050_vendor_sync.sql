-- Backfill and reconciliation of vendor connections (issue 8): each connection's history is
-- fetched once (from `backfill_from`, progress in `backfill_done_until`), then reconciled on a
-- schedule (`next_sync_at`) for objects whose notifications never came. One instance syncs a
-- connection at a time (`sync_owner` holds a lease until `sync_lease_until`).
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS backfill_status TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS backfill_from TIMESTAMPTZ;
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS backfill_done_until TIMESTAMPTZ;
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS backfill_events BIGINT NOT NULL DEFAULT 0;
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS synced_until TIMESTAMPTZ;
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS next_sync_at TIMESTAMPTZ;
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS sync_owner TEXT;
ALTER TABLE vendor_connections ADD COLUMN IF NOT EXISTS sync_lease_until TIMESTAMPTZ;

-- The vendors' rate limits are per application: every instance takes its requests from one
-- budget, counted in fixed windows (WHOOP: 100 a minute and 10,000 a day; Oura: 5,000 in five
-- minutes).
CREATE TABLE IF NOT EXISTS vendor_rate_windows (
    vendor       TEXT NOT NULL,
    span_seconds INTEGER NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    used         INTEGER NOT NULL,
    PRIMARY KEY (vendor, span_seconds, window_start)
);
