-- Delivery of switches to agents (issue 9). Written in the bridge's commit transaction, one row
-- per (sink, switch): the outbox of each sink. A row is deleted once delivered or given up;
-- the head of each (sink, user) queue is the only one deliverable, which keeps a user's switches
-- in order while other users go on. A lease lets several bridge processes share the work.
CREATE TABLE IF NOT EXISTS deliveries (
    id              BIGSERIAL PRIMARY KEY,
    sink_kind       TEXT NOT NULL,
    sink_target     TEXT NOT NULL DEFAULT '',
    user_pseudonym  TEXT NOT NULL,
    switch_id       TEXT NOT NULL REFERENCES mode_history (switch_id),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT,
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (sink_kind, sink_target, switch_id)
);
CREATE INDEX IF NOT EXISTS deliveries_queue ON deliveries (sink_kind, sink_target, user_pseudonym, id);

-- Outgoing Standard Webhooks endpoints. The signing secret is encrypted with AUREN_TOKEN_KEY.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id              TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    events          TEXT NOT NULL,
    user_ids        TEXT,
    secret_sealed   TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    disabled_at     TIMESTAMPTZ,
    disabled_reason TEXT
);

-- The endpoints' user filters, by pseudonym, for the fan-out in the commit transaction.
CREATE TABLE IF NOT EXISTS webhook_endpoint_users (
    endpoint_id    TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    user_pseudonym TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, user_pseudonym)
);

-- Every delivery attempt to an endpoint, newest last.
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id           BIGSERIAL PRIMARY KEY,
    endpoint_id  TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    message_id   TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status       INTEGER,
    outcome      TEXT NOT NULL,
    error        TEXT,
    duration_ms  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id);
