-- Site.workOrders and the siteId filter of the read API.
CREATE INDEX IF NOT EXISTS work_orders_by_site ON work_orders (tenant_id, site_id)
