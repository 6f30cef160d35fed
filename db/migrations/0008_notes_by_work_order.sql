-- WorkOrder.notes, loaded in batches by work order.
CREATE INDEX IF NOT EXISTS notes_by_work_order ON notes (tenant_id, work_order_id)
