-- WorkOrder.checklist, loaded in batches by work order.
CREATE INDEX IF NOT EXISTS checklist_items_by_work_order ON checklist_items (tenant_id, work_order_id, position)
