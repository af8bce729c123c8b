-- Which event log the stored offsets belong to (issue 7): a log deleted, replaced or swapped for
-- another cluster is refused at start instead of being read from offsets that are not its own.
CREATE TABLE IF NOT EXISTS log_identity (
    topic       TEXT PRIMARY KEY,
    identity    TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
