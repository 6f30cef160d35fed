-- notes(), ordered by updatedAt: keyset pages.
CREATE INDEX IF NOT EXISTS notes_by_updated_at ON notes (tenant_id, updated_at, id)
