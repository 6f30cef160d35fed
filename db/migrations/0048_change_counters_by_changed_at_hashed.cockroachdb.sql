-- The notifier's index (0026) keyed by a timestamp every push sets to now:
-- on CockroachDB all of those writes land on the index's last range, one
-- hot spot for every tenant (and on a REGIONAL BY ROW table one per
-- region). A hash-sharded index spreads them over buckets; the notifier's
-- range scan then reads every bucket, which is cheap beside a push per
-- tenant on one range. PostgreSQL's B-tree has no such hot spot: skipped
-- there (docs/deploy.md, "The notifier's index on CockroachDB").
CREATE INDEX IF NOT EXISTS change_counters_by_changed_at_hashed ON change_counters (changed_at) USING HASH INCLUDE (tenant_id, collection, seq)
