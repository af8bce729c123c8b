-- Per-user API keys for HealthKit and Health Auto Export pushes. Only a SHA-256 of the key is
-- stored: keys are 256-bit random values, so a fast hash cannot be brute-forced.
-- The SQLite twin of migrations/postgres/20261126000001_api_keys.sql: same tables, columns and
-- indexes (checked by a test); times are RFC 3339 text.
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    revoked_at TEXT
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id);
