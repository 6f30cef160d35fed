CREATE TABLE IF NOT EXISTS checklist_items (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    change_seq    INT8 NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    deleted       BOOL NOT NULL DEFAULT false,
    work_order_id TEXT NOT NULL,
    label         TEXT NOT NULL,
    done          BOOL NOT NULL,
    position      INT8 NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT checklist_items_change_order UNIQUE (tenant_id, change_seq)
)
