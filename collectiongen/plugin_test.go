package collectiongen_test

import (
	"strings"
	"testing"

	"github.com/99designs/gqlgen/codegen"
	"github.com/99designs/gqlgen/codegen/config"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/tidemark/tidemark/collectiongen"
)

func plugin(t *testing.T, asset string) *collectiongen.Plugin {
	t.Helper()
	cfg := &config.Config{Sources: projectSchemaWith(t, &ast.Source{Name: "schema/asset.graphqls", Input: asset})}
	p, err := collectiongen.New(cfg, collectiongen.DefaultPaths, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rootField(object, field string) *codegen.Field {
	return &codegen.Field{
		FieldDefinition: &ast.FieldDefinition{Name: field},
		Object:          &codegen.Object{Definition: &ast.Definition{Name: object}},
		GoFieldName:     strings.ToUpper(field[:1]) + field[1:],
	}
}

const generatedListBody = "return listAssets(ctx, r.Resolver, pageArgs(first, after, last, before), filter)"

func TestImplementWritesTheGeneratedOperations(t *testing.T) {
	p := plugin(t, assetSchema)
	for _, tc := range []struct{ object, field, prev, want string }{
		{"Query", "pullAssets", "", "return pullAssets(ctx, r.Resolver, checkpoint, limit)"},
		{"Mutation", "pushAssets", "return nil, nil", "return pushAssets(ctx, r.Resolver, rows)"},
		{"Subscription", "streamAssets", "", "return streamAssets(ctx, r.Resolver)"},
		{"Query", "assets", "", generatedListBody},
		{"Query", "node", "return node(ctx, r.Resolver, id)", "return node(ctx, r.Resolver, id)"},
		{"Query", "viewer", "", `panic(fmt.Errorf("not implemented: Viewer - viewer"))`},
	} {
		if got := p.Implement(tc.prev, rootField(tc.object, tc.field)); got != tc.want {
			t.Errorf("Implement(%s.%s) = %q, want %q", tc.object, tc.field, got, tc.want)
		}
	}
}

// When a generated connection is replaced by a hand-written one, gqlgen
// carries the old generated body over to the new resolver; it would call
// listAssets, which is no longer generated, so the build would break. The
// hand-written resolver starts from gqlgen's stub instead, and keeps what
// its author writes.
func TestImplementStartsAReplacedConnectionFromTheStub(t *testing.T) {
	p := plugin(t, assetSchema+`
extend type Query {
  assets(first: Int, after: String, filter: AssetFilter): AssetConnection!
}
`)
	field := rootField("Query", "assets")
	if got, want := p.Implement("\n\t"+generatedListBody+"\n", field), `panic(fmt.Errorf("not implemented: Assets - assets"))`; got != want {
		t.Errorf("Implement of the replaced connection = %q, want %q", got, want)
	}
	own := "return assetsByName(ctx, r.Resolver, first, after, filter)"
	if got := p.Implement(own, field); got != own {
		t.Errorf("Implement dropped the hand-written body: %q", got)
	}
}
