package syncrules

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/collections"
)

func TestAccessFor(t *testing.T) {
	cols := newTestCols()
	def := mustDefault(t, cols.all())
	custom := mustParse(t, lines(
		`claim https://tidemark.example/role`,
		`role "field tech"`,
		`    WorkOrder where assigneeId = token.sub`,
		`    Site where id in WorkOrder.siteId`,
		`role triage`,
		`    WorkOrder where status = token.queue`,
		`role suspended`,
		`    nothing`,
	), cols.all())
	type want struct {
		whole, denied bool
		bucketID      string // "" when the access is not a bucket
		// per collection, in the order Site, WorkOrder, ChecklistItem, Note
		scopes [4]Scope
	}
	whole := want{whole: true, scopes: [4]Scope{All, All, All, All}}
	nothing := want{denied: true}
	tests := []struct {
		name   string
		rules  *Rules
		userID string
		claims map[string]string
		want   want
	}{
		{
			name: "technician syncs their bucket in all four collections", rules: def,
			userID: "u-42", claims: map[string]string{"role": "technician"},
			want: want{bucketID: "technician:u-42", scopes: [4]Scope{InBucket, InBucket, InBucket, InBucket}},
		},
		{
			name: "technician's bucket is keyed by the user id, not a sub claim", rules: def,
			userID: "u-42", claims: map[string]string{"role": "technician", "sub": "u-7"},
			want: want{bucketID: "technician:u-42", scopes: [4]Scope{InBucket, InBucket, InBucket, InBucket}},
		},
		{
			name: "technician without a user id syncs nothing", rules: def,
			userID: "", claims: map[string]string{"role": "technician"},
			want: nothing,
		},
		{
			name: "dispatcher syncs the whole tenant", rules: def,
			userID: "u-1", claims: map[string]string{"role": "dispatcher"},
			want: whole,
		},
		{
			name: "a token without a role claim syncs the whole tenant", rules: def,
			userID: "u-1", claims: map[string]string{"tenant_id": "t-1"},
			want: whole,
		},
		{
			name: "nil claims mean no role", rules: def,
			userID: "u-1", claims: nil,
			want: whole,
		},
		{
			name: "an unknown role syncs nothing", rules: def,
			userID: "u-1", claims: map[string]string{"role": "intern"},
			want: nothing,
		},
		{
			name: "an empty role is an unknown role, not a missing one", rules: def,
			userID: "u-1", claims: map[string]string{"role": ""},
			want: nothing,
		},
		{
			name: "roles match exactly", rules: def,
			userID: "u-1", claims: map[string]string{"role": "Technician"},
			want: nothing,
		},
		{
			name: "custom role claim and a quoted role", rules: custom,
			userID: "u-9", claims: map[string]string{"https://tidemark.example/role": "field tech"},
			want: want{bucketID: "field%20tech:u-9", scopes: [4]Scope{InBucket, InBucket, None, None}},
		},
		{
			name: "the default claim means nothing when the file names another", rules: custom,
			userID: "u-9", claims: map[string]string{"role": "field tech"},
			want: nothing, // no role, and the file has no `no role` block
		},
		{
			name: "a bucket keyed by another claim", rules: custom,
			userID: "u-9", claims: map[string]string{"https://tidemark.example/role": "triage", "queue": "OPEN"},
			want: want{bucketID: "triage:OPEN", scopes: [4]Scope{None, InBucket, None, None}},
		},
		{
			name: "a bucket whose claim the token lacks syncs nothing", rules: custom,
			userID: "u-9", claims: map[string]string{"https://tidemark.example/role": "triage"},
			want: nothing,
		},
		{
			name: "a role that says nothing", rules: custom,
			userID: "u-9", claims: map[string]string{"https://tidemark.example/role": "suspended"},
			want: nothing,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.rules.AccessFor(tt.userID, tt.claims)
			if a.WholeTenant() != tt.want.whole || a.Denied() != tt.want.denied {
				t.Errorf("WholeTenant, Denied = %v, %v; want %v, %v (%v)", a.WholeTenant(), a.Denied(), tt.want.whole, tt.want.denied, a)
			}
			def, id, ok := a.Bucket()
			if ok != (tt.want.bucketID != "") || id != tt.want.bucketID || ok != (def != nil) {
				t.Errorf("Bucket = %v, %q, %v; want id %q", def, id, ok, tt.want.bucketID)
			}
			for i, c := range cols.all() {
				got := a.Collection(c)
				wantID := ""
				if tt.want.scopes[i] == InBucket {
					wantID = tt.want.bucketID
				}
				if got.Scope != tt.want.scopes[i] || got.BucketID != wantID {
					t.Errorf("Collection(%s) = %v %q, want %v %q", c.Name, got.Scope, got.BucketID, tt.want.scopes[i], wantID)
				}
			}
		})
	}
}

func TestAccessOfAnUnknownCollectionIsNone(t *testing.T) {
	cols := newTestCols()
	r := mustDefault(t, cols.all())
	other := &collections.Collection{Name: "Invoice"}
	a := r.AccessFor("u-1", map[string]string{"role": "technician"})
	if got := a.Collection(other).Scope; got != None {
		t.Errorf("technician's access to a collection the rules do not name = %v, want none", got)
	}
	if got := (Access{}).Collection(cols.WorkOrder).Scope; got != None || !(Access{}).Denied() {
		t.Errorf("the zero Access grants %v, want none", got)
	}
}

func TestAccessString(t *testing.T) {
	r := mustDefault(t, newTestCols().all())
	for claims, want := range map[string]string{
		"technician": "bucket technician:u-1",
		"dispatcher": "whole tenant",
		"intern":     `nothing (role "intern")`,
	} {
		if got := r.AccessFor("u-1", map[string]string{"role": claims}).String(); got != want {
			t.Errorf("%s: %q, want %q", claims, got, want)
		}
	}
	if got := (Access{}).String(); got != "nothing (no role)" {
		t.Errorf("zero Access: %q", got)
	}
}

func TestClaimNames(t *testing.T) {
	cols := newTestCols()
	r := mustParse(t, lines(`claim group`, `role a`, `    WorkOrder where status = token.queue`, `role b`, `    Note where authorId = token.sub`), cols.all())
	if got, want := r.ClaimNames(), []string{"group", "queue", "sub"}; !slices.Equal(got, want) {
		t.Errorf("ClaimNames = %v, want %v", got, want)
	}
}

func TestBucketIDsEscapeClaimValues(t *testing.T) {
	cols := newTestCols()
	r := mustParse(t, lines(
		`role technician`, `    WorkOrder where assigneeId = token.sub`,
		`role technician:x`, `    WorkOrder where assigneeId = token.sub`,
		`role "tech nician"`, `    WorkOrder where assigneeId = token.sub`,
	), cols.all())
	tests := []struct {
		role, sub, want string
	}{
		{"technician", "u-42", "technician:u-42"},
		{"technician", "0b7f3c1e-8d4a-4e8b-9f6a-2c1d3e4f5a6b", "technician:0b7f3c1e-8d4a-4e8b-9f6a-2c1d3e4f5a6b"},
		{"technician", "ana@example.com", "technician:ana@example.com"},
		{"technician", "auth0|5f7c", "technician:auth0%7C5f7c"},
		{"technician", "x:y", "technician:x%3Ay"},
		{"technician:x", "y", "technician%3Ax:y"},
		{"technician", "%3A", "technician:%253A"},
		{"technician", "é", "technician:%C3%A9"},
		{"tech nician", "u", "tech%20nician:u"},
	}
	for _, tt := range tests {
		a := r.AccessFor(tt.sub, map[string]string{"role": tt.role})
		_, id, _ := a.Bucket()
		if id != tt.want {
			t.Errorf("role %q, sub %q: bucket %q, want %q", tt.role, tt.sub, id, tt.want)
		}
		// The engine files a work order under the same id.
		b, _, _ := a.Bucket()
		doc := collections.Document{ID: "w", Fields: map[string]any{"assigneeId": tt.sub}}
		if got, ok := b.RootBucketOf(doc); !ok || got != tt.want {
			t.Errorf("role %q: RootBucketOf(assignee %q) = %q, %v; want %q", tt.role, tt.sub, got, ok, tt.want)
		}
	}
}

// findIDCollision looks for two different (role, claim value) pairs that get
// the same bucket id, over every string of up to three bytes of an alphabet
// chosen to forge ids: the separator, the escape byte and hex digits.
func findIDCollision(id func(role, value string) string) (a, b [2]string, found bool) {
	alphabet := []string{"a", ":", "%", "3", "A"}
	words := []string{""}
	for n := 0; n < 3; n++ {
		for _, w := range words {
			if len(w) == n {
				for _, c := range alphabet {
					words = append(words, w+c)
				}
			}
		}
	}
	seen := map[string][2]string{}
	for _, role := range words[1:] {
		for _, v := range words[1:] {
			k := id(role, v)
			if prev, ok := seen[k]; ok {
				return prev, [2]string{role, v}, true
			}
			seen[k] = [2]string{role, v}
		}
	}
	return a, b, false
}

func TestNoClaimValueForgesAnotherBucketsID(t *testing.T) {
	id := func(role, value string) string { return (&BucketDef{name: role}).id(value) }
	if a, b, found := findIDCollision(id); found {
		t.Errorf("%q and %q share bucket id %q", a, b, id(a[0], a[1]))
	}
}

// The control: the check finds the forgery a plain "role:value" id allows.
func TestIDCollisionCheckCatchesANaiveJoin(t *testing.T) {
	naive := func(role, value string) string { return role + ":" + value }
	if _, _, found := findIDCollision(naive); !found {
		t.Error("the collision check passes a naive join: it cannot fail")
	}
}

func TestRootBucketOf(t *testing.T) {
	cols := newTestCols()
	tech := bucketNamed(t, mustDefault(t, cols.all()), "technician")
	lead := bucketNamed(t, mustParse(t, lines(`role lead`, `    Site where id = token.site`), cols.all()), "lead")
	tests := []struct {
		name   string
		bucket *BucketDef
		doc    collections.Document
		want   string // "" for no bucket
	}{
		{"assigned work order", tech, collections.Document{ID: "w1", Fields: map[string]any{"assigneeId": "u-42"}}, "technician:u-42"},
		{"unassigned work order", tech, collections.Document{ID: "w1", Fields: map[string]any{"assigneeId": nil}}, ""},
		{"work order without the field", tech, collections.Document{ID: "w1", Fields: map[string]any{}}, ""},
		{"empty assignee", tech, collections.Document{ID: "w1", Fields: map[string]any{"assigneeId": ""}}, ""},
		{"deleted work order", tech, collections.Document{ID: "w1", Fields: map[string]any{"assigneeId": "u-42"}, Deleted: true}, ""},
		{"a value that is not a string", tech, collections.Document{ID: "w1", Fields: map[string]any{"assigneeId": int64(42)}}, ""},
		{"an assignee that looks like another bucket", tech, collections.Document{ID: "w1", Fields: map[string]any{"assigneeId": "u:42"}}, "technician:u%3A42"},
		{"a root on id", lead, collections.Document{ID: "s-1", Fields: map[string]any{"name": "Depot"}}, "lead:s-1"},
		{"a deleted root on id", lead, collections.Document{ID: "s-1", Deleted: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.bucket.RootBucketOf(tt.doc)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("RootBucketOf = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func TestMembershipRef(t *testing.T) {
	cols := newTestCols()
	tech := bucketNamed(t, mustDefault(t, cols.all()), "technician")
	item, _ := tech.Membership(cols.ChecklistItem)
	site, _ := tech.Membership(cols.Site)
	order := tech.Root()
	tests := []struct {
		name string
		m    *Membership
		doc  collections.Document
		want string
	}{
		{"a checklist item hangs off its work order", item, collections.Document{ID: "c1", Fields: map[string]any{"workOrderId": "w1"}}, "w1"},
		{"a deleted checklist item hangs off nothing", item, collections.Document{ID: "c1", Fields: map[string]any{"workOrderId": "w1"}, Deleted: true}, ""},
		{"a work order references its site", site, collections.Document{ID: "w1", Fields: map[string]any{"siteId": "s1"}}, "s1"},
		{"a deleted work order references nothing", site, collections.Document{ID: "w1", Fields: map[string]any{"siteId": "s1"}, Deleted: true}, ""},
		{"a null reference", site, collections.Document{ID: "w1", Fields: map[string]any{"siteId": nil}}, ""},
		{"a root has no reference", order, collections.Document{ID: "w1", Fields: map[string]any{"assigneeId": "u-1"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.m.Ref(tt.doc)
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("Ref = %q, %v; want %q", got, ok, tt.want)
			}
		})
	}
}

func TestDependentsOf(t *testing.T) {
	cols := newTestCols()
	tech := bucketNamed(t, mustDefault(t, cols.all()), "technician")
	author := bucketNamed(t, mustParse(t, lines(
		`role author`,
		`    Site where id in WorkOrder.siteId`,
		`    ChecklistItem where workOrderId in WorkOrder`,
		`    WorkOrder where id in Note.workOrderId`,
		`    Note where authorId = token.sub`,
	), cols.all()), "author")
	tests := []struct {
		name   string
		bucket *BucketDef
		of     *collections.Collection
		want   []string
	}{
		{"a work order's checklist items, notes and site", tech, cols.WorkOrder, []string{
			"ChecklistItem where workOrderId in WorkOrder",
			"Note where workOrderId in WorkOrder",
			"Site where id in WorkOrder.siteId",
		}},
		{"nothing hangs off a site", tech, cols.Site, []string{}},
		{"nothing hangs off a checklist item", tech, cols.ChecklistItem, []string{}},
		{"a note's work order", author, cols.Note, []string{"WorkOrder where id in Note.workOrderId"}},
		{"a parent's children and parents", author, cols.WorkOrder, []string{
			"ChecklistItem where workOrderId in WorkOrder",
			"Site where id in WorkOrder.siteId",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := memberLines(tt.bucket.DependentsOf(tt.of)); !slices.Equal(got, tt.want) {
				t.Errorf("DependentsOf(%s) = %q, want %q", tt.of.Name, got, tt.want)
			}
		})
	}
	if got, want := memberLines(author.Memberships()), []string{
		"Note where authorId = token.sub",
		"WorkOrder where id in Note.workOrderId",
		"ChecklistItem where workOrderId in WorkOrder",
		"Site where id in WorkOrder.siteId",
	}; !slices.Equal(got, want) {
		t.Errorf("Memberships = %q, want the root first, each after the one it hangs off: %q", got, want)
	}
	if _, ok := tech.Membership(&collections.Collection{Name: "Invoice"}); ok {
		t.Error("Membership of a collection the bucket does not sync: ok")
	}
}

// lockOrderViolation returns a dependency of rules that order breaks: a
// collection that comes before one it depends on, or "".
func lockOrderViolation(r *Rules, order []*collections.Collection) string {
	at := map[string]int{}
	for i, c := range order {
		at[c.Name] = i
	}
	for _, b := range r.Buckets() {
		for _, m := range b.Memberships() {
			if m.Via != nil && at[m.Via.Name] >= at[m.Collection.Name] {
				return m.Collection.Name + " is locked before " + m.Via.Name + ", on which it depends (" + m.String() + ")"
			}
		}
	}
	return ""
}

func TestLockOrder(t *testing.T) {
	cols := newTestCols()
	attachment := &collections.Collection{Name: "Attachment", Fields: []collections.Field{
		{Name: "noteId", Kind: collections.String, RefersTo: "Note"},
	}}
	withAttachment := append(cols.all(), attachment)
	tests := []struct {
		name  string
		rules *Rules
		want  []string
	}{
		{"default rules: work orders before what hangs off them", mustDefault(t, cols.all()),
			[]string{"WorkOrder", "ChecklistItem", "Note", "Site"}},
		{"whole tenant only: by name", mustParse(t, lines(`role d`, `    all`), cols.all()),
			[]string{"ChecklistItem", "Note", "Site", "WorkOrder"}},
		{"a chain of parents", mustParse(t, lines(
			`role author`,
			`    Note where authorId = token.sub`,
			`    WorkOrder where id in Note.workOrderId`,
			`    Site where id in WorkOrder.siteId`,
			`    ChecklistItem where workOrderId in WorkOrder`,
		), cols.all()), []string{"Note", "WorkOrder", "ChecklistItem", "Site"}},
		{"a collection no rule names still has its place", mustParse(t, technicianBlock, withAttachment),
			[]string{"Attachment", "WorkOrder", "ChecklistItem", "Note", "Site"}},
		{"two buckets together", mustParse(t, technicianBlock+lines(`role writer`, `    Note where authorId = token.sub`), cols.all()),
			[]string{"WorkOrder", "ChecklistItem", "Note", "Site"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			order := tt.rules.LockOrder()
			if got := names(order); !slices.Equal(got, tt.want) {
				t.Errorf("LockOrder = %v, want %v", got, tt.want)
			}
			if v := lockOrderViolation(tt.rules, order); v != "" {
				t.Error(v)
			}
			for _, c := range order {
				if locks := tt.rules.LocksFor(c); len(locks) == 0 || locks[0] != c {
					t.Errorf("LocksFor(%s) = %v: a writer takes its own lock first", c.Name, names(locks))
				}
			}
		})
	}
}

// The control: the order check rejects the plain by-name order under the
// default rules, where ChecklistItem depends on WorkOrder.
func TestLockOrderCheckCatchesAnOrderByName(t *testing.T) {
	cols := newTestCols()
	r := mustDefault(t, cols.all())
	byName := []*collections.Collection{cols.ChecklistItem, cols.Note, cols.Site, cols.WorkOrder}
	if lockOrderViolation(r, byName) == "" {
		t.Error("the lock order check accepts an order by name: it cannot fail")
	}
}

func TestLocksFor(t *testing.T) {
	cols := newTestCols()
	def := mustDefault(t, cols.all())
	author := mustParse(t, lines(
		`role author`,
		`    Note where authorId = token.sub`,
		`    WorkOrder where id in Note.workOrderId`,
		`    Site where id in WorkOrder.siteId`,
	), cols.all())
	tests := []struct {
		name  string
		rules *Rules
		of    *collections.Collection
		want  []string
	}{
		{"a work order's writer locks what hangs off work orders", def, cols.WorkOrder, []string{"WorkOrder", "ChecklistItem", "Note", "Site"}},
		{"a site's writer locks only sites", def, cols.Site, []string{"Site"}},
		{"a note's writer locks only notes", def, cols.Note, []string{"Note"}},
		{"dependencies of dependencies", author, cols.Note, []string{"Note", "WorkOrder", "Site"}},
		{"a collection the rules never saw", def, &collections.Collection{Name: "Invoice"}, []string{"Invoice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(tt.rules.LocksFor(tt.of)); !slices.Equal(got, tt.want) {
				t.Errorf("LocksFor(%s) = %v, want %v", tt.of.Name, got, tt.want)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	cols := newTestCols()
	base := mustDefault(t, cols.all())
	same := map[string]string{
		"another layout, other comments, other orders": lines(
			`no role`, `  all`,
			`role dispatcher # office`, `all`,
			`role technician`,
			`Site where id in WorkOrder.siteId`,
			`Note where workOrderId in WorkOrder`,
			`WorkOrder where assigneeId=token.sub`,
			`ChecklistItem where workOrderId in WorkOrder`,
		),
		"the claim left to its default": strings.Replace(string(DefaultSource()), "claim role", "", 1),
	}
	for name, src := range same {
		if got := mustParse(t, src, cols.all()).Fingerprint(); got != base.Fingerprint() {
			t.Errorf("%s: fingerprint changed", name)
		}
	}
	tech := bucketNamed(t, base, "technician").Fingerprint()
	changed := []struct {
		name       string
		src        string
		sameBucket bool // the technician bucket itself is unchanged
	}{
		{"another role claim", strings.Replace(string(DefaultSource()), "claim role", "claim group", 1), true},
		{"dispatchers sync nothing", strings.Replace(string(DefaultSource()), "role dispatcher\n    all", "role dispatcher\n    nothing", 1), true},
		{"tokens without a role sync nothing", strings.Replace(string(DefaultSource()), "no role\n    all", "no role\n    nothing", 1), true},
		{"technicians no longer sync notes", strings.Replace(string(DefaultSource()), "    Note          where workOrderId in WorkOrder\n", "", 1), false},
		{"technicians keyed by another claim", strings.Replace(string(DefaultSource()), "token.sub", "token.email", 1), false},
	}
	for _, tt := range changed {
		r := mustParse(t, tt.src, cols.all())
		if r.Fingerprint() == base.Fingerprint() {
			t.Errorf("%s: fingerprint unchanged", tt.name)
		}
		if got := bucketNamed(t, r, "technician").Fingerprint() == tech; got != tt.sameBucket {
			t.Errorf("%s: technician bucket fingerprint unchanged = %v, want %v", tt.name, got, tt.sameBucket)
		}
	}
	if len(base.Fingerprint()) != 64 || base.Fingerprint() != mustDefault(t, cols.all()).Fingerprint() {
		t.Errorf("fingerprint %q is not a stable SHA-256", base.Fingerprint())
	}
}

func TestLoad(t *testing.T) {
	cols := newTestCols()
	def, err := Load("", cols.all())
	if err != nil || def.Fingerprint() != mustDefault(t, cols.all()).Fingerprint() {
		t.Fatalf(`Load("") = %v, %v; want the default rules`, def, err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.rules")
	if err := os.WriteFile(good, []byte(lines(`role dispatcher`, `    all`)), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Load(good, cols.all())
	if err != nil || !r.AccessFor("u", map[string]string{"role": "dispatcher"}).WholeTenant() {
		t.Errorf("Load(good) = %v, %v", r, err)
	}
	bad := filepath.Join(dir, "bad.rules")
	if err := os.WriteFile(bad, []byte(lines(`role dispatcher`, `    everything`)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad, cols.all()); err == nil || !strings.HasPrefix(err.Error(), bad+":2: ") {
		t.Errorf("Load(bad) error = %v, want it to name %s:2", err, bad)
	}
	missing := filepath.Join(dir, "missing.rules")
	if _, err := Load(missing, cols.all()); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) error = %v, want it to name the path", err)
	}
}

// docs/sync-rules.md shows the default rules in full and examples of every
// form; they must stay true.
func TestDocsShowTheDefaultRulesAndValidExamples(t *testing.T) {
	doc, err := os.ReadFile("../docs/sync-rules.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```rules\n"+string(DefaultSource())+"```\n") {
		t.Error("docs/sync-rules.md does not show default.rules in full, as it is, in a ```rules block")
	}
	blocks := regexp.MustCompile("(?s)```rules\n(.*?)```\n").FindAllStringSubmatch(string(doc), -1)
	if len(blocks) < 3 {
		t.Fatalf("docs/sync-rules.md has %d ```rules blocks, want the examples", len(blocks))
	}
	cols := newTestCols()
	for _, b := range blocks {
		if _, err := Parse("docs/sync-rules.md", []byte(b[1]), cols.all()); err != nil {
			t.Errorf("example does not parse: %v\n%s", err, b[1])
		}
	}
}
