-- One pgbench transaction: 100 new work orders of one tenant in one
-- statement and one commit, as one 100-row push is one transaction.
INSERT INTO peers_pgbench.work_orders (tenant_id, id, change_seq, updated_at, deleted, site_id, title, description, status, priority)
SELECT 'pgbench', 'wo-' || n, n, now(), false, 'bench-site', 'Work order ' || n, 'Replace the filter and check the pressure.', 'OPEN', n % 5
FROM (SELECT nextval('peers_pgbench.ids') AS n FROM generate_series(1, 100)) AS g;
