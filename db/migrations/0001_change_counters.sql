-- One change counter per (tenant, collection). A write increments it in the
-- same transaction and takes its new values as the rows' change numbers; the
-- row lock orders the writers of one scope by commit, which keeps pull
-- cursors gap-free (docs/sync-protocol.md).
CREATE TABLE IF NOT EXISTS change_counters (
    tenant_id  TEXT NOT NULL,
    collection TEXT NOT NULL,
    seq        INT8 NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, collection)
)
