-- The tombstone purge finds the sites deleted before the retention horizon.
CREATE INDEX IF NOT EXISTS sites_tombstones ON sites (updated_at) WHERE deleted
