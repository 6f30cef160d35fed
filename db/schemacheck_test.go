package db_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
)

// The migrations create exactly what the schema's @synced types describe.
func TestMigratedTablesMatchTheSchema(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	diffs, err := d.TableDifferences(context.Background(), collections.All())
	if err != nil {
		t.Fatal(err)
	}
	for _, diff := range diffs {
		t.Error(diff)
	}
}

// The check can fail: a description with a field the table lacks, another
// kind and another nullability is reported, naming each difference.
func TestTableDifferencesNamesEachDifference(t *testing.T) {
	d := dbtest.Open(t, db.PoolConfig{})
	changed := *collections.WorkOrder
	changed.Fields = slices.Clone(changed.Fields)
	for i, f := range changed.Fields {
		switch f.Name {
		case "priority":
			changed.Fields[i].Kind = collections.Float
		case "dueAt":
			changed.Fields[i].Nullable = false
		}
	}
	changed.Fields = append(changed.Fields, collections.Field{Name: "archivedAt", Column: "archived_at", Kind: collections.Time, Nullable: true})
	missing := &collections.Collection{Name: "Asset", Table: "assets"}
	diffs, err := d.TableDifferences(context.Background(), []*collections.Collection{&changed, missing})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(diffs, "\n")
	for _, want := range []string{
		"work_orders.archived_at (WorkOrder.archivedAt): column missing",
		"work_orders.priority (WorkOrder.priority): column is bigint, the schema needs double precision",
		"work_orders.due_at (WorkOrder.dueAt): column is nullable, the schema says NOT NULL",
		"Asset: table assets does not exist",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("differences lack %q:\n%s", want, got)
		}
	}
	if len(diffs) != 4 {
		t.Errorf("want 4 differences, got %d:\n%s", len(diffs), got)
	}
}
