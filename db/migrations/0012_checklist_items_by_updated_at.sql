-- checklistItems(), ordered by updatedAt: keyset pages.
CREATE INDEX IF NOT EXISTS checklist_items_by_updated_at ON checklist_items (tenant_id, updated_at, id)
