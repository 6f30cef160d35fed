package syncrules

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const technicianBlock = `
role technician
    WorkOrder where assigneeId = token.sub
    ChecklistItem where workOrderId in WorkOrder
    Note where workOrderId in WorkOrder
    Site where id in WorkOrder.siteId
`

func TestDefaultRulesAreTheContractOfIssue9(t *testing.T) {
	cols := newTestCols()
	r := mustDefault(t, cols.all())
	want := "claim role\n" +
		"\nrole dispatcher\n    all\n" +
		technicianBlock +
		"\nno role\n    all\n"
	if got := r.Format(); got != want {
		t.Errorf("default rules, normalized:\n%s\nwant:\n%s", got, want)
	}
	if got := r.RoleClaim(); got != "role" {
		t.Errorf("RoleClaim = %q, want role", got)
	}
	b := bucketNamed(t, r, "technician")
	if len(r.Buckets()) != 1 {
		t.Errorf("buckets = %d, want only technician", len(r.Buckets()))
	}
	root := b.Root()
	if root.Shape != Root || root.Collection != cols.WorkOrder || root.Field != "assigneeId" || root.Claim != "sub" {
		t.Errorf("root = %+v", root)
	}
	for _, tc := range []struct {
		col   string
		shape Shape
		field string
		via   string
	}{
		{"WorkOrder", Root, "assigneeId", ""},
		{"ChecklistItem", Child, "workOrderId", "WorkOrder"},
		{"Note", Child, "workOrderId", "WorkOrder"},
		{"Site", Parent, "siteId", "WorkOrder"},
	} {
		var m *Membership
		for _, c := range cols.all() {
			if c.Name == tc.col {
				m, _ = b.Membership(c)
			}
		}
		if m == nil {
			t.Errorf("%s: no membership", tc.col)
			continue
		}
		via := ""
		if m.Via != nil {
			via = m.Via.Name
		}
		if m.Shape != tc.shape || m.Field != tc.field || via != tc.via {
			t.Errorf("%s: membership %v %s via %q, want %v %s via %q", tc.col, m.Shape, m.Field, via, tc.shape, tc.field, tc.via)
		}
	}
}

func TestParseValidFiles(t *testing.T) {
	cols := newTestCols()
	tests := []struct {
		name string
		src  string
		want string // Format of the result
	}{
		{
			name: "layout, comments, CRLF and tabs do not matter",
			src: "# header\r\n" +
				"claim role # the default anyway\r\n" +
				"role technician   # trailing comment\r\n" +
				"WorkOrder where assigneeId=token.sub\r\n" +
				"\t\tSite where id in WorkOrder.siteId\r\n" +
				"\r\n" +
				"  Note where workOrderId in WorkOrder\r\n" +
				"ChecklistItem    where workOrderId    in WorkOrder\r\n" +
				"role dispatcher\r\n all\r\nno role\r\n  all",
			want: "claim role\n\nrole dispatcher\n    all\n" + technicianBlock + "\nno role\n    all\n",
		},
		{
			name: "empty file: claim defaults to role, every caller syncs nothing",
			src:  "# nothing here\n",
			want: "claim role\n",
		},
		{
			name: "custom claim name and quoted role names",
			src: lines(
				`claim https://tidemark.example/role`,
				`role "field tech"`,
				`    WorkOrder where assigneeId = token.sub`,
				`role "office#1"`,
				`    all`,
			),
			want: lines(
				`claim https://tidemark.example/role`,
				``,
				`role "field tech"`,
				`    WorkOrder where assigneeId = token.sub`,
				``,
				`role "office#1"`,
				`    all`,
			),
		},
		{
			name: "root on id, children of children, any claim",
			src: lines(
				`role site-lead`,
				`    ChecklistItem where workOrderId in WorkOrder`,
				`    WorkOrder where siteId in Site`,
				`    Site where id = token.site_id`,
			),
			want: lines(
				`claim role`,
				``,
				`role site-lead`,
				`    Site where id = token.site_id`,
				`    WorkOrder where siteId in Site`,
				`    ChecklistItem where workOrderId in WorkOrder`,
			),
		},
		{
			name: "parents of parents and children of parents",
			src: lines(
				`role author`,
				`    Note where authorId = token.sub`,
				`    WorkOrder where id in Note.workOrderId`,
				`    Site where id in WorkOrder.siteId`,
				`    ChecklistItem where workOrderId in WorkOrder`,
			),
			want: lines(
				`claim role`,
				``,
				`role author`,
				`    Note where authorId = token.sub`,
				`    WorkOrder where id in Note.workOrderId`,
				`    ChecklistItem where workOrderId in WorkOrder`,
				`    Site where id in WorkOrder.siteId`,
			),
		},
		{
			name: "an Enum field may be a root; a role may sync nothing",
			src: lines(
				`role triage`,
				`    WorkOrder where status = token.queue`,
				`role suspended`,
				`    nothing`,
				`no role`,
				`    nothing`,
			),
			want: lines(
				`claim role`,
				``,
				`role suspended`,
				`    nothing`,
				``,
				`role triage`,
				`    WorkOrder where status = token.queue`,
				``,
				`no role`,
				`    nothing`,
			),
		},
		{
			name: "a keyword may name a role",
			src:  lines(`role role`, `all`, `role where`, `all`),
			want: lines(`claim role`, ``, `role role`, `    all`, ``, `role where`, `    all`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustParse(t, tt.src, cols.all())
			if got := r.Format(); got != tt.want {
				t.Errorf("Format:\n%s\nwant:\n%s", got, tt.want)
			}
			again := mustParse(t, r.Format(), cols.all())
			if again.Format() != r.Format() || again.Fingerprint() != r.Fingerprint() {
				t.Errorf("Format does not parse back to the same rules:\n%s", again.Format())
			}
		})
	}
}

func TestParseErrorsNameTheFileLineAndProblem(t *testing.T) {
	cols := newTestCols()
	const root = `    WorkOrder where assigneeId = token.sub`
	tests := []struct {
		name string
		src  string
		want []string
	}{
		// Bad syntax.
		{
			name: "unknown statement",
			src:  lines(`role t`, root, `    sync everything`),
			want: []string{"test.rules:3: bad syntax: unknown statement \"sync\": expected claim, role, no role, all, nothing or " + memberForms},
		},
		{
			name: "collection without where",
			src:  lines(`role t`, `    WorkOrder assigneeId = token.sub`),
			want: []string{"test.rules:2: bad syntax: expected `where` after WorkOrder"},
		},
		{
			name: "bucket line with a word too many",
			src:  lines(`role t`, `    WorkOrder where assigneeId = token.sub or token.email`),
			want: []string{"test.rules:2: bad syntax: expected " + memberForms},
		},
		{
			name: "unknown operator",
			src:  lines(`role t`, `    WorkOrder where assigneeId is token.sub`),
			want: []string{`test.rules:2: bad syntax: expected = or in after assigneeId, found "is"`},
		},
		{
			name: "root compared with something that is not a claim",
			src:  lines(`role t`, `    WorkOrder where assigneeId = sub`),
			want: []string{`test.rules:2: bad syntax: the right side of = must be a token claim, like token.sub; found "sub"`},
		},
		{
			name: "root compared with an empty claim name",
			src:  lines(`role t`, `    WorkOrder where assigneeId = token.`),
			want: []string{`test.rules:2: bad syntax: the right side of = must be a token claim, like token.sub; found "token."`},
		},
		{
			name: "parent line that does not match on id",
			src:  lines(`role t`, root, `    Site where name in WorkOrder.siteId`),
			want: []string{"test.rules:3: bad syntax: a parent line matches on id: `Site where id in WorkOrder.siteId` (a child line is `Site where name in WorkOrder`)"},
		},
		{
			name: "parent line without the referencing field",
			src:  lines(`role t`, root, `    Site where id in WorkOrder`),
			want: []string{"test.rules:3: bad syntax: a parent line names the referencing field: `Site where id in WorkOrder.siteId`"},
		},
		{
			name: "unterminated quote",
			src:  lines(`role "field tech`, root),
			want: []string{"test.rules:1: bad syntax: unterminated quoted string"},
		},
		{
			name: "quoted collection",
			src:  lines(`role t`, `    "WorkOrder" where assigneeId = token.sub`),
			want: []string{`test.rules:2: bad syntax: "WorkOrder": only role and claim names may be quoted`},
		},
		{
			name: "role without a name",
			src:  lines(`role`, root),
			want: []string{"test.rules:1: bad syntax: expected `role <name>` (quote a name with spaces: role \"field tech\")"},
		},
		{
			name: "role with an empty name",
			src:  lines(`role ""`, `    all`),
			want: []string{"test.rules:1: role name must not be empty"},
		},
		{
			name: "no role with a name",
			src:  lines(`no role please`, `    all`),
			want: []string{"test.rules:1: bad syntax: expected `no role` alone on its line"},
		},
		{
			name: "all with words after it",
			src:  lines(`role d`, `    all documents`),
			want: []string{"test.rules:2: bad syntax: `all` stands alone on its line"},
		},
		{
			name: "invalid UTF-8",
			src:  lines(`role d`, "    all \xff"),
			want: []string{"test.rules:2: line is not valid UTF-8"},
		},
		// Structure of the file.
		{
			name: "bucket line outside a role block",
			src:  lines(`# rules`, root),
			want: []string{"test.rules:2: bucket line outside a role block: start one with `role <name>`"},
		},
		{
			name: "all outside a role block",
			src:  lines(`all`),
			want: []string{"test.rules:1: `all` outside a role block: start one with `role <name>` or `no role`"},
		},
		{
			name: "claim set twice",
			src:  lines(`claim role`, `claim group`, `role d`, `    all`),
			want: []string{"test.rules:2: claim is already set at line 1"},
		},
		{
			name: "claim after a role block",
			src:  lines(`role d`, `    all`, `claim group`),
			want: []string{"test.rules:3: claim must come before the first role block (line 1)"},
		},
		{
			name: "claim with an empty name",
			src:  lines(`claim ""`),
			want: []string{"test.rules:1: claim name must not be empty"},
		},
		{
			name: "duplicate role",
			src:  lines(`role dispatcher`, `    all`, ``, `role dispatcher`, `    nothing`),
			want: []string{"test.rules:4: duplicate role dispatcher: already defined at line 1"},
		},
		{
			name: "duplicate no role",
			src:  lines(`no role`, `    all`, `no role`, `    nothing`),
			want: []string{"test.rules:3: duplicate `no role`: already defined at line 1"},
		},
		{
			name: "empty role block",
			src:  lines(`role dispatcher`, `# all, some day`, `role technician`, root),
			want: []string{"test.rules:1: role dispatcher is empty: give it `all`, `nothing` or bucket lines"},
		},
		{
			name: "all after bucket lines",
			src:  lines(`role t`, root, `    all`),
			want: []string{"test.rules:3: role t defines a bucket (line 2): a role syncs `all`, `nothing` or one bucket, not several"},
		},
		{
			name: "bucket line after all",
			src:  lines(`role t`, `    all`, root),
			want: []string{"test.rules:3: role t says `all` at line 2: a role syncs `all`, `nothing` or one bucket, not several"},
		},
		{
			name: "all and nothing",
			src:  lines(`role t`, `    all`, `    nothing`),
			want: []string{"test.rules:3: role t already says `all` at line 2"},
		},
		{
			name: "a bucket for tokens without a role",
			src:  lines(`no role`, root),
			want: []string{"test.rules:2: `no role` takes `all` or `nothing`: a bucket belongs to a named role"},
		},
		// Collections and fields.
		{
			name: "unknown collection",
			src:  lines(`role t`, `    WorkOrders where assigneeId = token.sub`),
			want: []string{"test.rules:2: unknown collection WorkOrders (collections: ChecklistItem, Note, Site, WorkOrder)"},
		},
		{
			name: "unknown parent collection",
			src:  lines(`role t`, root, `    Note where workOrderId in Job`),
			want: []string{"test.rules:3: unknown collection Job (collections: ChecklistItem, Note, Site, WorkOrder)"},
		},
		{
			name: "unknown field",
			src:  lines(`role t`, `    WorkOrder where assignee = token.sub`),
			want: []string{"test.rules:2: unknown field WorkOrder.assignee (fields: id, siteId, title, description, status, priority, assigneeId, dueAt)"},
		},
		{
			name: "unknown referencing field of a parent line",
			src:  lines(`role t`, root, `    Site where id in WorkOrder.site`),
			want: []string{"test.rules:3: unknown field WorkOrder.site (fields: id, siteId, title, description, status, priority, assigneeId, dueAt)"},
		},
		{
			name: "child field that is not a reference",
			src:  lines(`role t`, root, `    ChecklistItem where label in WorkOrder`),
			want: []string{"test.rules:3: ChecklistItem.label is not a reference to WorkOrder (it refers to no collection)"},
		},
		{
			name: "child field that refers to another collection",
			src:  lines(`role t`, root, `    Note where workOrderId in Site`),
			want: []string{"test.rules:3: Note.workOrderId is not a reference to Site (it refers to WorkOrder)"},
		},
		{
			name: "parent field that refers to another collection",
			src:  lines(`role t`, root, `    Note where id in WorkOrder.siteId`),
			want: []string{"test.rules:3: WorkOrder.siteId is not a reference to Note (it refers to Site)"},
		},
		{
			name: "root field of kind Int",
			src:  lines(`role t`, `    WorkOrder where priority = token.sub`),
			want: []string{"test.rules:2: kind mismatch: WorkOrder.priority is Int, but a token claim is a string: compare a String or Enum field, or id"},
		},
		{
			name: "root field of kind Time",
			src:  lines(`role t`, `    WorkOrder where dueAt = token.sub`),
			want: []string{"test.rules:2: kind mismatch: WorkOrder.dueAt is Time, but a token claim is a string: compare a String or Enum field, or id"},
		},
		// The shape of a bucket.
		{
			name: "two roots",
			src:  lines(`role t`, root, `    Note where authorId = token.sub`),
			want: []string{"test.rules:3: two roots in role t: WorkOrder (line 2) is already its root, and a bucket has exactly one"},
		},
		{
			name: "no root",
			src:  lines(`role t`, `    Note where workOrderId in WorkOrder`, `    WorkOrder where id in Note.workOrderId`),
			want: []string{"test.rules:1: role t has no root: a bucket needs exactly one `<Collection> where <field> = token.<claim>` line"},
		},
		{
			name: "collection listed twice",
			src:  lines(`role t`, root, `    Note where workOrderId in WorkOrder`, `    Note where workOrderId in WorkOrder`),
			want: []string{"test.rules:4: Note already has a line in role t (line 3): a role syncs a collection one way"},
		},
		{
			name: "unreachable: hangs off a collection the role does not sync",
			src:  lines(`role t`, `    Note where authorId = token.sub`, `    ChecklistItem where workOrderId in WorkOrder`),
			want: []string{"test.rules:3: unreachable collection ChecklistItem: ChecklistItem hangs off WorkOrder, which role t does not sync, so it never reaches the root Note"},
		},
		{
			name: "unreachable: hangs off a chain that ends outside the role",
			src: lines(`role t`, `    Note where authorId = token.sub`,
				`    ChecklistItem where workOrderId in WorkOrder`,
				`    WorkOrder where siteId in Site`),
			want: []string{
				"test.rules:3: unreachable collection ChecklistItem: ChecklistItem hangs off WorkOrder, which hangs off Site, which role t does not sync, so it never reaches the root Note",
				"test.rules:4: unreachable collection WorkOrder: WorkOrder hangs off Site, which role t does not sync, so it never reaches the root Note",
			},
		},
		{
			name: "unreachable: a cycle",
			src: lines(`role t`, `    Site where name = token.site`,
				`    WorkOrder where id in ChecklistItem.workOrderId`,
				`    ChecklistItem where workOrderId in WorkOrder`),
			want: []string{
				"test.rules:3: unreachable collection WorkOrder: WorkOrder hangs off ChecklistItem, which hangs off WorkOrder, a cycle that never reaches the root Site",
				"test.rules:4: unreachable collection ChecklistItem: ChecklistItem hangs off WorkOrder, which hangs off ChecklistItem, a cycle that never reaches the root Site",
			},
		},
		{
			name: "roles whose dependencies form a cycle together",
			src: lines(`role technician`, root, `    Site where id in WorkOrder.siteId`,
				`role site-lead`, `    Site where id = token.site`, `    WorkOrder where siteId in Site`),
			want: []string{"test.rules:6: collections depend on each other across roles, so writers could not take their locks in one order: " +
				"Site depends on WorkOrder in role technician (line 3), WorkOrder depends on Site in role site-lead (line 6)"},
		},
		// Several problems at once.
		{
			name: "every problem is reported, in line order",
			src: lines(
				`role technician`,
				`    WorkOrder where assignee = token.sub`,
				`role dispatcher`,
				`    all`,
				`role technician`,
				`    all`,
				`role auditor`,
				`    Note where body = token.sub`,
				`    Site where id in Note.workOrderId`,
			),
			want: []string{
				"test.rules:2: unknown field WorkOrder.assignee (fields: id, siteId, title, description, status, priority, assigneeId, dueAt)",
				"test.rules:5: duplicate role technician: already defined at line 1",
				"test.rules:9: Note.workOrderId is not a reference to Site (it refers to WorkOrder)",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse("test.rules", []byte(tt.src), cols.all())
			if err == nil {
				t.Fatalf("Parse succeeded, want errors; rules:\n%s", r.Format())
			}
			var list Errors
			if !errors.As(err, &list) {
				t.Fatalf("error is %T, want Errors", err)
			}
			got := strings.Split(err.Error(), "\n")
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for i, e := range list {
				if e.File != "test.rules" || e.Line == 0 || e.Msg == "" || (i > 0 && e.Line < list[i-1].Line) {
					t.Errorf("error %d = %+v: want file, line in order and message", i, e)
				}
			}
		})
	}
}

func TestParseRejectsABadCollectionList(t *testing.T) {
	cols := newTestCols()
	if _, err := Parse("t", []byte("role d\n all\n"), append(cols.all(), cols.Site)); err == nil {
		t.Error("two collections named Site: Parse succeeded")
	}
	if _, err := Parse("t", []byte("role d\n all\n"), append(cols.all(), nil)); err == nil {
		t.Error("a nil collection: Parse succeeded")
	}
}

func TestErrorsStopAtALimitOnGarbage(t *testing.T) {
	src := strings.Repeat("this is not a rules file\n", 100)
	_, err := Parse("garbage", []byte(src), newTestCols().all())
	var list Errors
	if !errors.As(err, &list) || len(list) != maxErrors {
		t.Errorf("errors = %d, want %d", len(list), maxErrors)
	}
}
