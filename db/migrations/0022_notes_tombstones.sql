-- The tombstone purge finds the notes deleted before the retention horizon.
CREATE INDEX IF NOT EXISTS notes_tombstones ON notes (updated_at) WHERE deleted
