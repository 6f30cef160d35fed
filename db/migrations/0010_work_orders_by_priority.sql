-- workOrders(orderBy: PRIORITY): keyset pages.
CREATE INDEX IF NOT EXISTS work_orders_by_priority ON work_orders (tenant_id, priority, id)
