-- The home region of the row's tenant, written with the row from the
-- tenants table (NULL for a tenant not in it) and rewritten by `tidemark
-- tenant move`. On a multi-region CockroachDB the row's crdb_region is
-- computed from it, which places the row in its tenant's region
-- (db/regions.go, docs/deploy.md "Tenant homing").
ALTER TABLE purge_horizons ADD COLUMN IF NOT EXISTS home_region TEXT
