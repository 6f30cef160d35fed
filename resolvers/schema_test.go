package resolvers_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/tidemark/tidemark/graph"
	"github.com/tidemark/tidemark/resolvers"
)

// The API clients were built against (the schema served before the
// collections came from @synced, printed without descriptions) must stay:
// every type, field, argument, input field and enum value, with the same
// types. Additions are fine.
func TestServedSchemaKeepsTheBaselineAPI(t *testing.T) {
	baseline := loadBaseline(t)
	served := graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}}).Schema()
	for _, diff := range apiDifferences(baseline, served) {
		t.Error(diff)
	}
}

// The check above can fail: a baseline with a field the server lacks, or
// with another type for a field, is reported.
func TestAPIDifferencesCatchesARemovedOrRetypedField(t *testing.T) {
	served := graph.NewExecutableSchema(graph.Config{Resolvers: &resolvers.Resolver{}}).Schema()
	src, err := os.ReadFile("testdata/api-baseline.graphql")
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(src), "\ttitle: String!\n", "\ttitle: String!\n\tarchivedAt: Time\n", 1)
	changed = strings.Replace(changed, "\tpriority: Int!\n", "\tpriority: Float!\n", 1)
	if changed == string(src) {
		t.Fatal("the baseline no longer has the lines this control edits")
	}
	base := gqlparser.MustLoadSchema(&ast.Source{Name: "changed", Input: changed})
	diffs := strings.Join(apiDifferences(base, served), "\n")
	for _, want := range []string{"WorkOrder.archivedAt", "WorkOrder.priority"} {
		if !strings.Contains(diffs, want) {
			t.Errorf("differences do not mention %s:\n%s", want, diffs)
		}
	}
}

func loadBaseline(t *testing.T) *ast.Schema {
	t.Helper()
	src, err := os.ReadFile("testdata/api-baseline.graphql")
	if err != nil {
		t.Fatal(err)
	}
	s, err := gqlparser.LoadSchema(&ast.Source{Name: "api-baseline.graphql", Input: string(src)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func apiDifferences(baseline, served *ast.Schema) []string {
	var out []string
	for name, want := range baseline.Types {
		if want.BuiltIn {
			continue
		}
		got, ok := served.Types[name]
		if !ok {
			out = append(out, "type "+name+" is gone")
			continue
		}
		if got.Kind != want.Kind {
			out = append(out, "type "+name+" is a "+string(got.Kind)+", was "+string(want.Kind))
		}
		for _, v := range want.EnumValues {
			if got.EnumValues.ForName(v.Name) == nil {
				out = append(out, "enum value "+name+"."+v.Name+" is gone")
			}
		}
		for _, i := range want.Interfaces {
			if !slices.Contains(got.Interfaces, i) {
				out = append(out, "type "+name+" no longer implements "+i)
			}
		}
		for _, wf := range want.Fields {
			gf := got.Fields.ForName(wf.Name)
			where := name + "." + wf.Name
			if gf == nil {
				out = append(out, "field "+where+" is gone")
				continue
			}
			if gf.Type.String() != wf.Type.String() {
				out = append(out, "field "+where+" is "+gf.Type.String()+", was "+wf.Type.String())
			}
			if (gf.DefaultValue == nil) != (wf.DefaultValue == nil) || gf.DefaultValue != nil && gf.DefaultValue.String() != wf.DefaultValue.String() {
				out = append(out, "field "+where+" has another default value")
			}
			for _, wa := range wf.Arguments {
				ga := gf.Arguments.ForName(wa.Name)
				if ga == nil {
					out = append(out, "argument "+where+"("+wa.Name+") is gone")
					continue
				}
				if ga.Type.String() != wa.Type.String() {
					out = append(out, "argument "+where+"("+wa.Name+") is "+ga.Type.String()+", was "+wa.Type.String())
				}
			}
			for _, ga := range gf.Arguments {
				if wf.Arguments.ForName(ga.Name) == nil && ga.Type.NonNull && ga.DefaultValue == nil {
					out = append(out, "field "+where+" has a new required argument "+ga.Name)
				}
			}
		}
	}
	return out
}
