-- The tombstone purge finds the checklist_items deleted before the retention horizon.
CREATE INDEX IF NOT EXISTS checklist_items_tombstones ON checklist_items (updated_at) WHERE deleted
