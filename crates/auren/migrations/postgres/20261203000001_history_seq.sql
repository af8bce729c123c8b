-- A total order of the mode history (issue 9): agent deliveries and event streams read switches
-- after a position, and a client that reconnects names the last switch it saw. Rows written before
-- this migration are numbered in no particular order; every later switch gets a larger number
-- than those committed before it.
ALTER TABLE mode_history ADD COLUMN IF NOT EXISTS seq BIGSERIAL;
CREATE UNIQUE INDEX IF NOT EXISTS mode_history_seq ON mode_history (seq);
