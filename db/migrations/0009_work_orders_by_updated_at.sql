-- workOrders(orderBy: UPDATED_AT), the read API's default order: keyset pages.
CREATE INDEX IF NOT EXISTS work_orders_by_updated_at ON work_orders (tenant_id, updated_at, id)
