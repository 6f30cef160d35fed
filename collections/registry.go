package collections

// The registered collections. Conflict policies are configured here, in one place.
var (
	Site = &Collection{
		Name:   "Site",
		Table:  "sites",
		Policy: ClientResolves,
		Fields: []Field{
			{Name: "name", Column: "name", Kind: String, MaxLen: 500},
			{Name: "address", Column: "address", Kind: String, MaxLen: 2000},
			{Name: "latitude", Column: "latitude", Kind: Float, Nullable: true},
			{Name: "longitude", Column: "longitude", Kind: Float, Nullable: true},
		},
	}

	WorkOrder = &Collection{
		Name:   "WorkOrder",
		Table:  "work_orders",
		Policy: MergeFields,
		Fields: []Field{
			{Name: "siteId", Column: "site_id", Kind: String, MaxLen: MaxIDLen, RefersTo: "Site"},
			{Name: "title", Column: "title", Kind: String, MaxLen: 500},
			{Name: "description", Column: "description", Kind: String, Nullable: true},
			{Name: "status", Column: "status", Kind: Enum, Values: []string{"OPEN", "IN_PROGRESS", "DONE", "CANCELLED"}},
			{Name: "priority", Column: "priority", Kind: Int},
			{Name: "assigneeId", Column: "assignee_id", Kind: String, Nullable: true, MaxLen: MaxIDLen},
			{Name: "dueAt", Column: "due_at", Kind: Time, Nullable: true},
		},
	}

	ChecklistItem = &Collection{
		Name:   "ChecklistItem",
		Table:  "checklist_items",
		Policy: MergeFields,
		Fields: []Field{
			{Name: "workOrderId", Column: "work_order_id", Kind: String, MaxLen: MaxIDLen, RefersTo: "WorkOrder"},
			{Name: "label", Column: "label", Kind: String, MaxLen: 1000},
			{Name: "done", Column: "done", Kind: Bool},
			{Name: "position", Column: "position", Kind: Int},
		},
	}

	Note = &Collection{
		Name:   "Note",
		Table:  "notes",
		Policy: ClientResolves,
		Fields: []Field{
			{Name: "workOrderId", Column: "work_order_id", Kind: String, MaxLen: MaxIDLen, RefersTo: "WorkOrder"},
			{Name: "body", Column: "body", Kind: String, MaxLen: 20_000},
			{Name: "authorId", Column: "author_id", Kind: String, MaxLen: MaxIDLen, ServerOwned: true},
		},
	}
)

// All lists every registered collection; adding one here registers it everywhere.
func All() []*Collection {
	return []*Collection{Site, WorkOrder, ChecklistItem, Note}
}

// ByName returns the registered collection with the given API name.
func ByName(name string) (*Collection, bool) {
	for _, c := range All() {
		if c.Name == name {
			return c, true
		}
	}
	return nil, false
}
