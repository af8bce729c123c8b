-- Users' OAuth2 connections to Oura and WHOOP (issue 8). Tokens are sealed with AUREN_TOKEN_KEY
-- (crypto.rs): the database alone reveals none. One connection per (vendor, user), and one user
-- per vendor account, so a notification names exactly one of our users.
CREATE TABLE IF NOT EXISTS vendor_connections (
    vendor          TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    vendor_user_id  TEXT NOT NULL,
    access_sealed   TEXT NOT NULL,
    refresh_sealed  TEXT,
    expires_at      TEXT NOT NULL,
    scope           TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT 'connected',
    last_sync_at    TEXT,
    last_error      TEXT,
    -- A refresh in flight: WHOOP's refresh token rotates, so one instance refreshes a user at
    -- a time; the others wait for the new tokens.
    refresh_owner       TEXT,
    refresh_lease_until TEXT,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (vendor, user_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS vendor_connections_vendor_user ON vendor_connections (vendor, vendor_user_id);

-- OAuth2 `state` values already used: a state is single-use, across every instance.
CREATE TABLE IF NOT EXISTS vendor_oauth_states (
    nonce      TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);

-- Notifications that cannot be fetched yet, kept until they can: their vendor account is not
-- connected yet, or the vendor has not scored the object yet (retried from `not_before`).
CREATE TABLE IF NOT EXISTS vendor_parked_notifications (
    event_id       TEXT PRIMARY KEY,
    vendor         TEXT NOT NULL,
    vendor_user_id TEXT NOT NULL,
    body           TEXT NOT NULL,
    reason         TEXT NOT NULL,
    not_before     TEXT NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS vendor_parked_by_account ON vendor_parked_notifications (vendor, vendor_user_id);
