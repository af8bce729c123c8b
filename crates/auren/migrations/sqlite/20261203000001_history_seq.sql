-- A total order of the mode history (issue 9), the twin of PostgreSQL's BIGSERIAL: the row id,
-- which only grows because history rows are never deleted.
ALTER TABLE mode_history ADD COLUMN seq INTEGER;
UPDATE mode_history SET seq = rowid;
CREATE UNIQUE INDEX IF NOT EXISTS mode_history_seq ON mode_history (seq);
CREATE TRIGGER IF NOT EXISTS mode_history_number AFTER INSERT ON mode_history
BEGIN
    UPDATE mode_history SET seq = NEW.rowid WHERE rowid = NEW.rowid;
END;
