-- The tombstone purge finds the work_orders deleted before the retention horizon.
CREATE INDEX IF NOT EXISTS work_orders_tombstones ON work_orders (updated_at) WHERE deleted
