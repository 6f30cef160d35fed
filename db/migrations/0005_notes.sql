CREATE TABLE IF NOT EXISTS notes (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    change_seq    INT8 NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    deleted       BOOL NOT NULL DEFAULT false,
    work_order_id TEXT NOT NULL,
    body          TEXT NOT NULL,
    author_id     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT notes_change_order UNIQUE (tenant_id, change_seq)
)
