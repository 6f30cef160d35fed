-- The notifier's one query per poll: the scopes whose counter advanced since
-- a time, read from this index alone (it carries the key and the head), so a
-- poll reads the rows of the scopes that changed, not of every tenant.
CREATE INDEX IF NOT EXISTS change_counters_by_changed_at ON change_counters (changed_at) INCLUDE (tenant_id, collection, seq)
