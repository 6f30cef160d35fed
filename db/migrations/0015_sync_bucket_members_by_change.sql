-- A caller's pull: the bucket's entries after its checkpoint, in change order.
CREATE UNIQUE INDEX IF NOT EXISTS sync_bucket_members_by_change ON sync_bucket_members (tenant_id, collection, bucket, change_seq)
