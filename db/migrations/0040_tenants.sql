-- Each tenant's home region (docs/deploy.md, "Tenant homing"): where its
-- rows live on a multi-region CockroachDB. Created by `tidemark tenant
-- create`, changed by `tidemark tenant move`. On both dialects, so the
-- commands work on PostgreSQL too (the region is recorded, nothing is
-- placed). A tenant with no row here still works: its rows get the default
-- region. On a multi-region database the table is LOCALITY GLOBAL
-- (db/regions.go): read locally from every region, as every insert does.
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id   TEXT PRIMARY KEY,
    home_region TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)
