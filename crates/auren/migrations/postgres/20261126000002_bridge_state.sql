-- Bridge state. One thread per user, keyed by the user's pseudonym, with a stable id.
CREATE TABLE IF NOT EXISTS threads (
    thread_id            TEXT PRIMARY KEY,
    user_pseudonym       TEXT NOT NULL UNIQUE,
    user_id              TEXT NOT NULL,
    mode                 TEXT NOT NULL DEFAULT 'PATTERN',
    latest_checkpoint_id TEXT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Checkpoints: time-ordered ids (UUIDv7), each pointing at its parent.
CREATE TABLE IF NOT EXISTS checkpoints (
    checkpoint_id  TEXT PRIMARY KEY,
    thread_id      TEXT NOT NULL REFERENCES threads (thread_id),
    parent_id      TEXT,
    version        BIGINT NOT NULL,
    state          JSONB NOT NULL,
    last_partition INTEGER,
    last_offset    BIGINT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS checkpoints_thread ON checkpoints (thread_id, checkpoint_id DESC);

-- Every mode switch, with its reasons; also the outbox of switches still to publish.
CREATE TABLE IF NOT EXISTS mode_history (
    switch_id    TEXT PRIMARY KEY,
    thread_id    TEXT NOT NULL REFERENCES threads (thread_id),
    from_mode    TEXT NOT NULL,
    to_mode      TEXT NOT NULL,
    confidence   DOUBLE PRECISION NOT NULL,
    switched_at  TIMESTAMPTZ NOT NULL,
    message      JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS mode_history_thread ON mode_history (thread_id, switched_at);
CREATE INDEX IF NOT EXISTS mode_history_unpublished ON mode_history (created_at) WHERE published_at IS NULL;

-- Where each consumer group stands, written in the same transaction as the state it produced.
CREATE TABLE IF NOT EXISTS consumer_offsets (
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    partition      INTEGER NOT NULL,
    next_offset    BIGINT NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
