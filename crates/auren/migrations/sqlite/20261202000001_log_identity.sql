-- Which event log the stored offsets belong to: see the PostgreSQL migration of the same name.
CREATE TABLE IF NOT EXISTS log_identity (
    topic       TEXT PRIMARY KEY,
    identity    TEXT NOT NULL,
    recorded_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
