-- The tombstone purge finds the removals older than the retention horizon.
CREATE INDEX IF NOT EXISTS sync_bucket_members_removals ON sync_bucket_members (changed_at) WHERE present = false AND refs = 0
