-- Background jobs that must run on one instance at a time (the tombstone
-- purge) hold a lease here: a row with its holder and expiry, taken and
-- renewed with one conditional upsert, so no session-bound lock is needed.
CREATE TABLE IF NOT EXISTS job_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
)
