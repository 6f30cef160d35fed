-- The hash-sharded index (0048) replaces 0026's on CockroachDB: keeping
-- both would write every counter advance to the hot range anyway.
DROP INDEX IF EXISTS change_counters@change_counters_by_changed_at
