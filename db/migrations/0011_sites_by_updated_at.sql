-- sites(), ordered by updatedAt like every generated connection: keyset pages.
CREATE INDEX IF NOT EXISTS sites_by_updated_at ON sites (tenant_id, updated_at, id)
