-- Bridge state. One thread per user, keyed by the user's pseudonym, with a stable id.
-- The SQLite twin of migrations/postgres/20261126000002_bridge_state.sql (JSON as text).
CREATE TABLE IF NOT EXISTS threads (
    thread_id            TEXT PRIMARY KEY,
    user_pseudonym       TEXT NOT NULL UNIQUE,
    user_id              TEXT NOT NULL,
    mode                 TEXT NOT NULL DEFAULT 'PATTERN',
    latest_checkpoint_id TEXT,
    created_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- Checkpoints: time-ordered ids (UUIDv7), each pointing at its parent.
CREATE TABLE IF NOT EXISTS checkpoints (
    checkpoint_id  TEXT PRIMARY KEY,
    thread_id      TEXT NOT NULL REFERENCES threads (thread_id),
    parent_id      TEXT,
    version        INTEGER NOT NULL,
    state          TEXT NOT NULL,
    last_partition INTEGER,
    last_offset    INTEGER,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS checkpoints_thread ON checkpoints (thread_id, checkpoint_id DESC);

-- Every mode switch, with its reasons; also the outbox of switches still to publish.
CREATE TABLE IF NOT EXISTS mode_history (
    switch_id    TEXT PRIMARY KEY,
    thread_id    TEXT NOT NULL REFERENCES threads (thread_id),
    from_mode    TEXT NOT NULL,
    to_mode      TEXT NOT NULL,
    confidence   REAL NOT NULL,
    switched_at  TEXT NOT NULL,
    message      TEXT NOT NULL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    published_at TEXT
);
CREATE INDEX IF NOT EXISTS mode_history_thread ON mode_history (thread_id, switched_at);
CREATE INDEX IF NOT EXISTS mode_history_unpublished ON mode_history (created_at) WHERE published_at IS NULL;

-- Where each consumer group stands, written in the same transaction as the state it produced.
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    partition      INTEGER NOT NULL,
    next_offset    INTEGER NOT NULL,
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (consumer_group, topic, partition)
);
