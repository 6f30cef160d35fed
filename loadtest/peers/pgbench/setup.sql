-- pgbench's scratch table for scripts/bench-peers.sh: a copy of Tidemark's
-- work_orders with its columns, defaults, keys and every index (LIKE ...
-- INCLUDING ALL follows the migrations), in a schema of its own, so
-- pgbench's inserts pay for the same index maintenance as a push's and
-- touch none of Tidemark's rows. Run against Tidemark's migrated database.
DROP SCHEMA IF EXISTS peers_pgbench CASCADE;
CREATE SCHEMA peers_pgbench;
CREATE TABLE peers_pgbench.work_orders (LIKE public.work_orders INCLUDING ALL);
CREATE SEQUENCE peers_pgbench.ids;
