CREATE TABLE IF NOT EXISTS sites (
    tenant_id  TEXT NOT NULL,
    id         TEXT NOT NULL,
    change_seq INT8 NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    deleted    BOOL NOT NULL DEFAULT false,
    name       TEXT NOT NULL,
    address    TEXT NOT NULL,
    latitude   FLOAT8,
    longitude  FLOAT8,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT sites_change_order UNIQUE (tenant_id, change_seq)
)
