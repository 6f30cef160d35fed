package syncengine

// Table tests of the push rules (decide, decideAll), the three-way merge
// (mergeFields) and the comparison they rest on (sameClientState). They
// run on collections described here, not on the registry, and need no
// database.

import (
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
)

// mergeTasks merges disjoint edits; its author is set by the server.
var mergeTasks = &collections.Collection{
	Name:   "Task",
	Table:  "tasks",
	Policy: collections.MergeFields,
	Fields: []collections.Field{
		{Name: "title", Kind: collections.String},
		{Name: "done", Kind: collections.Bool},
		{Name: "dueAt", Kind: collections.Time, Nullable: true},
		{Name: "authorId", Kind: collections.String, ServerOwned: true},
	},
}

// clientTasks is the same collection under CLIENT_RESOLVES.
var clientTasks = &collections.Collection{
	Name:   "Task",
	Table:  "tasks",
	Policy: collections.ClientResolves,
	Fields: mergeTasks.Fields,
}

var noon = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// task is a document of the test collections; change edits its fields.
func task(id, title string, done bool, change ...func(*collections.Document)) collections.Document {
	d := collections.Document{ID: id, Fields: map[string]any{
		"title": title, "done": done, "dueAt": nil, "authorId": "alice",
	}}
	for _, f := range change {
		f(&d)
	}
	return d
}

func author(id string) func(*collections.Document) {
	return func(d *collections.Document) { d.Fields["authorId"] = id }
}

func due(t time.Time) func(*collections.Document) {
	return func(d *collections.Document) { d.Fields["dueAt"] = t }
}

func deleted(d *collections.Document) { d.Deleted = true }

func ptr(d collections.Document) *collections.Document { return &d }

// outcomeName names an outcome in failure messages.
func outcomeName(o outcome) string {
	switch o {
	case outcomeWrite:
		return "write"
	case outcomeRetry:
		return "retry"
	case outcomeMerge:
		return "merge"
	case outcomeConflict:
		return "conflict"
	}
	return "unknown outcome"
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name    string
		c       *collections.Collection
		assumed *collections.Document
		next    collections.Document
		master  *collections.Document
		want    outcome
		wantDoc *collections.Document // the document written or returned; nil: not checked
	}{
		{
			name: "push of a document the server lacks writes it",
			c:    clientTasks, next: task("t1", "new", false),
			want: outcomeWrite, wantDoc: ptr(task("t1", "new", false)),
		},
		{
			name: "push of a new document with an assumed state still writes it",
			c:    clientTasks, assumed: ptr(task("t1", "old", false)), next: task("t1", "new", false),
			want: outcomeWrite, wantDoc: ptr(task("t1", "new", false)),
		},
		{
			name: "push whose assumed state is the master writes the new state",
			c:    clientTasks, assumed: ptr(task("t1", "a", false)), next: task("t1", "b", false), master: ptr(task("t1", "a", false)),
			want: outcomeWrite, wantDoc: ptr(task("t1", "b", false)),
		},
		{
			name: "push with stale assumed state returns conflict with the master",
			c:    clientTasks, assumed: ptr(task("t1", "a", false)), next: task("t1", "b", false), master: ptr(task("t1", "server", false)),
			want: outcomeConflict, wantDoc: ptr(task("t1", "server", false)),
		},
		{
			name: "push of an existing document without an assumed state returns conflict",
			c:    clientTasks, next: task("t1", "b", false), master: ptr(task("t1", "a", false)),
			want: outcomeConflict, wantDoc: ptr(task("t1", "a", false)),
		},
		{
			name: "retried push whose new state the server has is a retry",
			c:    clientTasks, assumed: ptr(task("t1", "a", false)), next: task("t1", "b", false), master: ptr(task("t1", "b", false)),
			want: outcomeRetry,
		},
		{
			name: "retried push whose assumed state is now stale is still a retry",
			c:    clientTasks, assumed: ptr(task("t1", "very old", false)), next: task("t1", "b", false), master: ptr(task("t1", "b", false)),
			want: outcomeRetry,
		},
		{
			name: "push that differs from the master only in a server-owned field is a retry",
			c:    clientTasks, next: task("t1", "a", false, author("mallory")), master: ptr(task("t1", "a", false)),
			want: outcomeRetry,
		},
		{
			name: "assumed state that differs only in a server-owned field is not stale",
			c:    clientTasks, assumed: ptr(task("t1", "a", false, author("someone else"))), next: task("t1", "b", false), master: ptr(task("t1", "a", false)),
			want: outcomeWrite, wantDoc: ptr(task("t1", "b", false)),
		},
		{
			name: "delete with the current state assumed writes the tombstone",
			c:    clientTasks, assumed: ptr(task("t1", "a", false)), next: task("t1", "a", false, deleted), master: ptr(task("t1", "a", false)),
			want: outcomeWrite, wantDoc: ptr(task("t1", "a", false, deleted)),
		},
		{
			name: "edit of a document deleted on the server returns conflict",
			c:    clientTasks, assumed: ptr(task("t1", "a", false)), next: task("t1", "b", false), master: ptr(task("t1", "a", false, deleted)),
			want: outcomeConflict, wantDoc: ptr(task("t1", "a", false, deleted)),
		},
		{
			name: "push with stale assumed state under MERGE_FIELDS merges disjoint edits",
			c:    mergeTasks, assumed: ptr(task("t1", "a", false)), next: task("t1", "a", true, author("bob")), master: ptr(task("t1", "server", false)),
			want: outcomeMerge, wantDoc: ptr(task("t1", "server", true, author("bob"))),
		},
		{
			name: "push with stale assumed state under MERGE_FIELDS returns conflict when both changed a field",
			c:    mergeTasks, assumed: ptr(task("t1", "a", false)), next: task("t1", "client", false), master: ptr(task("t1", "server", false)),
			want: outcomeConflict, wantDoc: ptr(task("t1", "server", false)),
		},
		{
			name: "push under MERGE_FIELDS whose changes the server already has returns the master",
			c:    mergeTasks, assumed: ptr(task("t1", "a", false)), next: task("t1", "a", true), master: ptr(task("t1", "server", true)),
			want: outcomeConflict, wantDoc: ptr(task("t1", "server", true)),
		},
		{
			name: "push without an assumed state under MERGE_FIELDS returns conflict, not a merge",
			c:    mergeTasks, next: task("t1", "a", true), master: ptr(task("t1", "server", false)),
			want: outcomeConflict, wantDoc: ptr(task("t1", "server", false)),
		},
		{
			name: "push with stale assumed state under CLIENT_RESOLVES never merges",
			c:    clientTasks, assumed: ptr(task("t1", "a", false)), next: task("t1", "a", true), master: ptr(task("t1", "server", false)),
			want: outcomeConflict, wantDoc: ptr(task("t1", "server", false)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(tt.c, PushRow{Assumed: tt.assumed, New: tt.next}, tt.master)
			if d.outcome != tt.want {
				t.Fatalf("outcome = %s, want %s (doc %+v)", outcomeName(d.outcome), outcomeName(tt.want), d.doc)
			}
			if tt.wantDoc != nil && !sameDocument(tt.c, d.doc, *tt.wantDoc) {
				t.Errorf("doc = %+v, want %+v", d.doc, *tt.wantDoc)
			}
		})
	}
}

// sameDocument compares every field, server-owned ones included.
func sameDocument(c *collections.Collection, a, b collections.Document) bool {
	if a.ID != b.ID || a.Deleted != b.Deleted {
		return false
	}
	for _, f := range c.Fields {
		if !f.Equal(a.Fields[f.Name], b.Fields[f.Name]) {
			return false
		}
	}
	return true
}

func TestDecideAll(t *testing.T) {
	t.Run("a later row for the same id is decided against the earlier row's write", func(t *testing.T) {
		rows := []PushRow{
			{Assumed: ptr(task("t1", "a", false)), New: task("t1", "b", false)},
			{Assumed: ptr(task("t1", "b", false)), New: task("t1", "c", false)},
		}
		p := decideAll(clientTasks, rows, map[string]collections.Document{"t1": task("t1", "a", false)})
		if got := outcomes(p); got != "write write" {
			t.Fatalf("outcomes = %s, want write write", got)
		}
		if len(p.writes) != 2 || p.decisions[1].write != 1 || p.decisions[1].masterWrite != 0 {
			t.Errorf("plan = %+v; want two writes, the second against the first", p)
		}
	})
	t.Run("a later row that assumed the state before an earlier row's write conflicts with that write", func(t *testing.T) {
		rows := []PushRow{
			{Assumed: ptr(task("t1", "a", false)), New: task("t1", "b", false)},
			{Assumed: ptr(task("t1", "a", false)), New: task("t1", "c", false)},
		}
		p := decideAll(clientTasks, rows, map[string]collections.Document{"t1": task("t1", "a", false)})
		if got := outcomes(p); got != "write conflict" {
			t.Fatalf("outcomes = %s, want write conflict", got)
		}
		if p.decisions[1].masterWrite != 0 {
			t.Errorf("masterWrite = %d, want 0 (the first row's write)", p.decisions[1].masterWrite)
		}
		stored := []collections.Document{task("t1", "b", false, func(d *collections.Document) { d.Change = 7 })}
		res := p.result(stored)
		if len(res) != 1 || res[0].Change != 7 || res[0].Fields["title"] != "b" {
			t.Errorf("result = %+v, want the first row's write as stored", res)
		}
	})
	t.Run("rows of different ids are decided independently", func(t *testing.T) {
		rows := []PushRow{
			{New: task("new", "n", false)},
			{Assumed: ptr(task("old", "stale", false)), New: task("old", "x", false)},
			{Assumed: ptr(task("same", "a", false)), New: task("same", "b", false)},
		}
		masters := map[string]collections.Document{
			"old":  task("old", "server", false),
			"same": task("same", "b", false),
		}
		p := decideAll(clientTasks, rows, masters)
		if got := outcomes(p); got != "write conflict retry" {
			t.Fatalf("outcomes = %s, want write conflict retry", got)
		}
		for i, d := range p.decisions {
			if d.masterWrite != -1 {
				t.Errorf("row %d: masterWrite = %d, want -1 (its master is stored, not written in this push)", i, d.masterWrite)
			}
		}
		res := p.result([]collections.Document{rows[0].New})
		if len(res) != 1 || res[0].ID != "old" || res[0].Fields["title"] != "server" {
			t.Errorf("result = %+v, want only the master of the conflicting row", res)
		}
	})
	t.Run("a merged row is returned as stored", func(t *testing.T) {
		rows := []PushRow{{Assumed: ptr(task("t1", "a", false)), New: task("t1", "a", true)}}
		p := decideAll(mergeTasks, rows, map[string]collections.Document{"t1": task("t1", "server", false)})
		if got := outcomes(p); got != "merge" {
			t.Fatalf("outcomes = %s, want merge", got)
		}
		stored := task("t1", "server", true, func(d *collections.Document) { d.Change = 3; d.UpdatedAt = noon })
		res := p.result([]collections.Document{stored})
		if len(res) != 1 || res[0].Change != 3 || !res[0].UpdatedAt.Equal(noon) {
			t.Errorf("result = %+v, want the merge as stored", res)
		}
	})
	t.Run("the masters passed in are not changed", func(t *testing.T) {
		masters := map[string]collections.Document{"t1": task("t1", "a", false)}
		decideAll(clientTasks, []PushRow{{Assumed: ptr(task("t1", "a", false)), New: task("t1", "b", false)}}, masters)
		if masters["t1"].Fields["title"] != "a" {
			t.Errorf("master changed to %+v", masters["t1"])
		}
	})
	t.Run("a push of no rows plans nothing", func(t *testing.T) {
		p := decideAll(clientTasks, nil, nil)
		if len(p.decisions) != 0 || len(p.writes) != 0 || len(p.result(nil)) != 0 {
			t.Errorf("plan = %+v", p)
		}
	})
}

func outcomes(p plan) string {
	s := ""
	for i, d := range p.decisions {
		if i > 0 {
			s += " "
		}
		s += outcomeName(d.outcome)
	}
	return s
}

func TestMergeFields(t *testing.T) {
	tests := []struct {
		name                  string
		assumed, master, next collections.Document
		want                  *collections.Document // nil: no merge
	}{
		{
			name:    "disjoint edits are both kept",
			assumed: task("t1", "a", false), master: task("t1", "server", false), next: task("t1", "a", true),
			want: ptr(task("t1", "server", true)),
		},
		{
			name:    "both sides setting a field to the same value merges",
			assumed: task("t1", "a", false), master: task("t1", "same", false), next: task("t1", "same", true),
			want: ptr(task("t1", "same", true)),
		},
		{
			name:    "both sides setting a field to different values does not merge",
			assumed: task("t1", "a", false), master: task("t1", "server", false), next: task("t1", "client", false),
		},
		{
			name:    "a field the client left alone keeps the server's value",
			assumed: task("t1", "a", false), master: task("t1", "a", false, due(noon)), next: task("t1", "a", true),
			want: ptr(task("t1", "a", true, due(noon))),
		},
		{
			name:    "a time the client set equal to the server's in another zone is no change",
			assumed: task("t1", "a", false, due(noon)), master: task("t1", "server", false, due(noon)), next: task("t1", "a", true, due(noon.In(time.FixedZone("X", 3600)))),
			want: ptr(task("t1", "server", true, due(noon))),
		},
		{
			name:    "the server-owned field is taken from the new state, whoever changed it",
			assumed: task("t1", "a", false, author("alice")), master: task("t1", "server", false, author("carol")), next: task("t1", "a", true, author("bob")),
			want: ptr(task("t1", "server", true, author("bob"))),
		},
		{
			name:    "a client delete merges with a server edit of a field",
			assumed: task("t1", "a", false), master: task("t1", "server", false), next: task("t1", "a", false, deleted),
			want: ptr(task("t1", "server", false, deleted)),
		},
		{
			name:    "a client undelete merges with a server edit of a field",
			assumed: task("t1", "a", false, deleted), master: task("t1", "server", false, deleted), next: task("t1", "a", false),
			want: ptr(task("t1", "server", false)),
		},
		{
			name:    "a server delete is kept when the client edits a field",
			assumed: task("t1", "a", false), master: task("t1", "a", false, deleted), next: task("t1", "a", true),
			want: ptr(task("t1", "a", true, deleted)),
		},
		{
			name:    "an undelete on both sides merges",
			assumed: task("t1", "a", false, deleted), master: task("t1", "a", false), next: task("t1", "a", false),
			want: ptr(task("t1", "a", false)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := mergeFields(mergeTasks, tt.assumed, tt.master, tt.next)
			if tt.want == nil {
				if ok {
					t.Fatalf("merged into %+v, want no merge", got)
				}
				return
			}
			if !ok {
				t.Fatal("no merge, want one")
			}
			if !sameDocument(mergeTasks, got, *tt.want) {
				t.Errorf("merge = %+v, want %+v", got, *tt.want)
			}
		})
	}
}

func TestSameClientState(t *testing.T) {
	tests := []struct {
		name string
		a, b collections.Document
		want bool
	}{
		{"equal documents are the same", task("t1", "a", false), task("t1", "a", false), true},
		{"a changed field differs", task("t1", "a", false), task("t1", "b", false), false},
		{"a changed bool differs", task("t1", "a", false), task("t1", "a", true), false},
		{"a deleted document differs from a live one", task("t1", "a", false), task("t1", "a", false, deleted), false},
		{"server-owned fields do not count", task("t1", "a", false, author("alice")), task("t1", "a", false, author("bob")), true},
		{"bookkeeping does not count", task("t1", "a", false), task("t1", "a", false, func(d *collections.Document) { d.Change = 9; d.UpdatedAt = noon }), true},
		{"the same instant in two zones is the same", task("t1", "a", false, due(noon)), task("t1", "a", false, due(noon.In(time.FixedZone("X", -7200)))), true},
		{"a null time differs from a set one", task("t1", "a", false), task("t1", "a", false, due(noon)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameClientState(clientTasks, tt.a, tt.b); got != tt.want {
				t.Errorf("sameClientState = %v, want %v", got, tt.want)
			}
			if got := sameClientState(clientTasks, tt.b, tt.a); got != tt.want {
				t.Errorf("sameClientState reversed = %v, want %v", got, tt.want)
			}
		})
	}
}
