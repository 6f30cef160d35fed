-- Partial replication (docs/sync-rules.md): one row per document and bucket
-- (a caller's partition of a collection) that holds it or held it. A row's
-- change_seq comes from the collection's change counter, taken in the same
-- transaction as the write that changed the membership, so a caller's pull is
-- an index range read over its own bucket and as gap-free as the collection's.
-- refs counts the bucket's documents that bring this one in (a site used by
-- two of a technician's work orders); present says whether the bucket holds
-- it now. A row that is not present is a removal, carrying in removed_state
-- only the last state the bucket held.
CREATE TABLE IF NOT EXISTS sync_bucket_members (
    tenant_id     TEXT NOT NULL,
    collection    TEXT NOT NULL,
    bucket        TEXT NOT NULL,
    doc_id        TEXT NOT NULL,
    change_seq    INT8 NOT NULL,
    refs          INT8 NOT NULL DEFAULT 0,
    present       BOOL NOT NULL,
    removed_state JSONB,
    changed_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, collection, bucket, doc_id)
)
