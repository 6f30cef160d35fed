-- The newest change number of a (tenant, collection, bucket) whose entry the
-- tombstone purge has deleted; bucket '' is the whole collection. A checkpoint
-- at or before it may have missed a purged removal: CHECKPOINT_EXPIRED.
CREATE TABLE IF NOT EXISTS purge_horizons (
    tenant_id  TEXT NOT NULL,
    collection TEXT NOT NULL,
    bucket     TEXT NOT NULL,
    change_seq INT8 NOT NULL,
    PRIMARY KEY (tenant_id, collection, bucket)
)
