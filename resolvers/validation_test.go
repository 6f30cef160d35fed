package resolvers_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/testenv"
)

// validationCase runs against one collection with one client of a fresh tenant.
type validationCase struct {
	name string
	run  func(t *testing.T, f fixture, a *api)
}

// assertNothingStored checks that the tenant has no documents at all.
func assertNothingStored(tb testing.TB, f fixture, a *api) {
	tb.Helper()
	if p := a.pull(f, "", 1000); len(p.docs) != 0 {
		tb.Fatalf("documents were written: %v", ids(p.docs))
	}
}

var validationCases = []validationCase{
	{
		name: "string too long in the last row is rejected naming row and field, and nothing is written",
		run: func(t *testing.T, f fixture, a *api) {
			err := a.pushErr(f,
				row{next: f.valid("a")},
				row{next: f.valid("b")},
				row{next: with(f.valid("c"), f.tooLong)},
			)
			field := "rows[2].newDocumentState." + f.tooLong.field
			assertError(t, err, "BAD_USER_INPUT", field)
			if err.Extensions["field"] != field {
				t.Fatalf("extensions.field = %v, want %q", err.Extensions["field"], field)
			}
			assertNothingStored(t, f, a)
		},
	},
	{
		name: "string at its maximum length is accepted",
		run: func(t *testing.T, f fixture, a *api) {
			s := f.tooLong.value.(string)
			full := with(f.valid("a"), edit{f.tooLong.field, s[1:]})
			a.create(f, full)
		},
	},
	{
		name: "string with a NUL character is rejected",
		run: func(t *testing.T, f fixture, a *api) {
			err := a.pushErr(f, row{next: f.valid("a")}, row{next: with(f.valid("b"), edit{f.tooLong.field, "nul\x00byte"})})
			assertError(t, err, "BAD_USER_INPUT", "rows[1].newDocumentState."+f.tooLong.field)
			assertNothingStored(t, f, a)
		},
	},
	{
		name: "empty id is rejected",
		run: func(t *testing.T, f fixture, a *api) {
			err := a.pushErr(f, row{next: f.valid("")})
			assertError(t, err, "BAD_USER_INPUT", "rows[0].newDocumentState.id")
			assertNothingStored(t, f, a)
		},
	},
	{
		name: "id longer than 128 bytes is rejected",
		run: func(t *testing.T, f fixture, a *api) {
			err := a.pushErr(f, row{next: f.valid("a")}, row{next: f.valid(strings.Repeat("i", 129))})
			assertError(t, err, "BAD_USER_INPUT", "rows[1].newDocumentState.id")
			assertNothingStored(t, f, a)
		},
	},
	{
		name: "assumed state of another id is rejected",
		run: func(t *testing.T, f fixture, a *api) {
			err := a.pushErr(f, row{next: f.valid("a")}, row{assumed: f.valid("b"), next: f.valid("c")})
			assertError(t, err, "BAD_USER_INPUT", "rows[1].assumedMasterState.id")
			assertNothingStored(t, f, a)
		},
	},
	{
		name: "invalid assumed state is rejected naming its field",
		run: func(t *testing.T, f fixture, a *api) {
			err := a.pushErr(f, row{next: f.valid("a")}, row{assumed: with(f.valid("b"), f.tooLong), next: f.valid("b")})
			assertError(t, err, "BAD_USER_INPUT", "rows[1].assumedMasterState."+f.tooLong.field)
			assertNothingStored(t, f, a)
		},
	},
	{
		name: "missing required field is rejected by GraphQL validation",
		run: func(t *testing.T, f fixture, a *api) {
			d := f.valid("b")
			delete(d, "deleted")
			assertValidationFailed(t, a, f, []row{{next: f.valid("a")}, {next: d}}, "must be defined", "deleted")
			assertNothingStored(t, f, a)
		},
	},
	{
		name: "1001 rows are rejected and nothing is written",
		run: func(t *testing.T, f fixture, a *api) {
			rows := make([]row, 1001)
			for i := range rows {
				rows[i] = row{next: f.valid(fmt.Sprintf("r%04d", i))}
			}
			assertError(t, a.pushErr(f, rows...), "BAD_USER_INPUT", "rows")
			assertNothingStored(t, f, a)
		},
	},
	{
		name: "1000 rows are written in one push",
		run: func(t *testing.T, f fixture, a *api) {
			rows := make([]row, 1000)
			for i := range rows {
				rows[i] = row{next: f.valid(fmt.Sprintf("r%04d", i))}
			}
			if got := a.push(f, rows...); len(got) != 0 {
				t.Fatalf("result has %d documents, want none", len(got))
			}
			p := a.pull(f, "", 1000)
			if len(p.docs) != 1000 || p.docs[0]["id"] != "r0000" || p.docs[999]["id"] != "r0999" {
				t.Fatalf("pulled %d documents (%v…), want r0000..r0999 in order", len(p.docs), ids(p.docs[:min(3, len(p.docs))]))
			}
		},
	},
	{
		name: "empty push writes nothing and returns nothing",
		run: func(t *testing.T, f fixture, a *api) {
			if got := a.push(f); len(got) != 0 {
				t.Fatalf("result = %s, want []", jsonString(got))
			}
			assertNothingStored(t, f, a)
		},
	},
}

// assertValidationFailed pushes rows that GraphQL variable validation must
// refuse (HTTP 422, before any resolver runs) and checks the error names the
// offending row and field.
func assertValidationFailed(tb testing.TB, a *api, f fixture, rows []row, message, field string) {
	tb.Helper()
	status, errs := a.postStatus(f.pushQuery(), map[string]any{"rows": rowsJSON(rows)})
	if status != http.StatusUnprocessableEntity || len(errs) != 1 {
		tb.Fatalf("status %d, errors %v; want 422 and one error", status, errs)
	}
	assertError(tb, errs[0], "GRAPHQL_VALIDATION_FAILED", message)
	if got, want := fmt.Sprint(errs[0].Path), fmt.Sprintf("[variable rows %d newDocumentState %s]", len(rows)-1, field); got != want {
		tb.Fatalf("error path = %s, want %s", got, want)
	}
}

func TestPushValidation(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	for _, f := range fixtures {
		t.Run(f.typ, func(t *testing.T) {
			t.Parallel()
			for _, tc := range validationCases {
				t.Run(tc.name, func(t *testing.T) {
					tc.run(t, f, newAPI(t, env, tenantOf(t), "alice"))
				})
			}
		})
	}
}

func TestPushInvalidEnumIsRejectedByGraphQLValidation(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	f := workOrderFixture
	a := newAPI(t, env, tenantOf(t), "alice")
	rows := []row{{next: f.valid("a")}, {next: with(f.valid("b"), edit{"status", "URGENT"})}}
	assertValidationFailed(t, a, f, rows, "URGENT is not a valid WorkOrderStatus", "status")
	assertNothingStored(t, f, a)
}

// TestPushIsAllOrNothing makes the database refuse one valid row (a CHECK
// constraint added to this test's own database) and checks that the rows
// before it are rolled back and that the failure shows as an internal error
// without detail.
func TestPushIsAllOrNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	tables := map[string]string{"Site": "sites", "WorkOrder": "work_orders", "ChecklistItem": "checklist_items", "Note": "notes"}
	for _, f := range fixtures {
		stmt := fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT test_refuses_poison CHECK (id <> 'poison')", tables[f.typ])
		if _, err := env.DB.Pool.Exec(context.Background(), stmt); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range fixtures {
		t.Run(f.typ, func(t *testing.T) {
			t.Run("batch whose last row the database refuses writes nothing and reports an internal error", func(t *testing.T) {
				a := newAPI(t, env, tenantOf(t), "alice")
				stored := a.create(f, f.valid("a"))
				cursor := a.head(f)
				err := a.pushErr(f,
					row{assumed: stored[0], next: with(stored[0], f.clientEdit)},
					row{next: f.valid("b")},
					row{next: f.valid("poison")},
				)
				a.assertNoChangesSince(f, cursor)
				assertDocs(t, []doc{a.latest(f, "a")}, stored)
				if err.Message != "internal error" || err.code() != "INTERNAL" || len(err.Extensions) != 1 {
					t.Errorf("error = %q %v, want \"internal error\" with only code INTERNAL", err.Message, err.Extensions)
				}
				// The change counter was rolled back too: the next write follows on.
				a.create(f, f.valid("c"))
				if p := a.pull(f, cursor, 10); len(p.docs) != 1 || p.docs[0]["id"] != "c" {
					t.Fatalf("after the failed push: %v, want [c]", ids(p.docs))
				}
			})
		})
	}
}

// The zero time is what GraphQL clients read as null: stored, it would make
// every later push of the document look like an edit.
func TestPushRejectsTheZeroTime(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Options{})
	f := workOrderFixture
	a := newAPI(t, env, tenantOf(t), "alice")
	err := a.pushErr(f, row{next: with(f.valid("a"), edit{"dueAt", "0001-01-01T00:00:00Z"})})
	if err.code() != "BAD_USER_INPUT" || !strings.Contains(err.Message, "rows[0].newDocumentState.dueAt") {
		t.Fatalf("error = %q %v; want BAD_USER_INPUT naming rows[0].newDocumentState.dueAt", err.Message, err.Extensions)
	}
	assertNothingStored(t, f, a)
}
