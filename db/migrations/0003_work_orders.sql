CREATE TABLE IF NOT EXISTS work_orders (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    change_seq  INT8 NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    deleted     BOOL NOT NULL DEFAULT false,
    site_id     TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT,
    status      TEXT NOT NULL,
    priority    INT8 NOT NULL,
    assignee_id TEXT,
    due_at      TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT work_orders_change_order UNIQUE (tenant_id, change_seq)
)
