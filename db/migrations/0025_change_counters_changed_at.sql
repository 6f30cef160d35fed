-- When a change counter last advanced, by the database's clock at the
-- advance (clock_timestamp(), set by the same UPDATE that reserves the
-- change numbers, so a push sends no statement more). The notifier reads the
-- scopes changed since its last poll by it (db/changes.go); NULL on rows
-- that have not advanced since this column came.
ALTER TABLE change_counters ADD COLUMN IF NOT EXISTS changed_at TIMESTAMPTZ
