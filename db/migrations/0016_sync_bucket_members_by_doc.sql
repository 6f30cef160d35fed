-- A write's lookup of the buckets that hold a document.
CREATE INDEX IF NOT EXISTS sync_bucket_members_by_doc ON sync_bucket_members (tenant_id, collection, doc_id)
