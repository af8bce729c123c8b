-- Per-user API keys for HealthKit and Health Auto Export pushes. Only a SHA-256 of the key is
-- stored: keys are 256-bit random values, so a fast hash cannot be brute-forced.
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id);
