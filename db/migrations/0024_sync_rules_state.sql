-- The fingerprint of each bucket definition (a role's bucket in the sync
-- rules) that its rows in sync_bucket_members were last computed for. At
-- start-up and in `tidemark migrate` the server recomputes the rows of every
-- definition whose fingerprint differs from the rules it runs, or is absent
-- (syncengine/rebuild.go), and then records it here.
CREATE TABLE IF NOT EXISTS sync_rules_state (
    bucket_def  TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    rebuilt_at  TIMESTAMPTZ NOT NULL
)
