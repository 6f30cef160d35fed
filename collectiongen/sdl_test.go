package collectiongen_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/tidemark/tidemark/collectiongen"
)

const assetSchema = `"Equipment installed at a site."
type Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {
  id: ID!
  siteId: ID! @references(collection: "Site")
  name: String! @length(max: 200)
  serialNumber: String
  installedAt: Time
  updatedAt: Time!
  deleted: Boolean!
}
`

// projectSchemaWith returns the project's schema sources and extra ones.
func projectSchemaWith(t *testing.T, extra ...*ast.Source) []*ast.Source {
	t.Helper()
	files, err := filepath.Glob("../schema/*.graphqls")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files (%v)", err)
	}
	var out []*ast.Source
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &ast.Source{Name: "schema/" + filepath.Base(f), Input: string(b)})
	}
	return append(out, extra...)
}

// The generated schema of a new collection, with the project's, is a valid
// schema with every operation and type the guide promises.
func TestGeneratedSchemaOfANewCollectionIsValid(t *testing.T) {
	sources := projectSchemaWith(t, &ast.Source{Name: "schema/asset.graphqls", Input: assetSchema})
	sc, err := collectiongen.Describe(sources)
	if err != nil {
		t.Fatal(err)
	}
	generated := sc.Sources()
	var asset *ast.Source
	for _, s := range generated {
		if s.Name == "schema/asset.synced.graphqls" {
			asset = s
		}
	}
	if asset == nil {
		t.Fatalf("no schema/asset.synced.graphqls among the generated sources")
	}
	schema, gqlErr := gqlparser.LoadSchema(append(sources, generated...)...)
	if gqlErr != nil {
		t.Fatalf("the schema with the generated sources does not load: %v\n%s", gqlErr, asset.Input)
	}
	for _, f := range []struct{ object, field, typ string }{
		{"Query", "pullAssets", "AssetPullBulk!"},
		{"Query", "assets", "AssetConnection!"},
		{"Mutation", "pushAssets", "[Asset!]!"},
		{"Subscription", "streamAssets", "AssetPullBulk!"},
		{"AssetInput", "updatedAt", "Time"}, // accepted and ignored: a client sends back what it got
		{"AssetInput", "siteId", "ID!"},
		{"AssetPushRow", "assumedMasterState", "AssetInput"},
		{"AssetPushRow", "newDocumentState", "AssetInput!"},
		{"AssetPullBulk", "checkpoint", "Checkpoint!"},
		{"AssetFilter", "updatedSince", "Time"},
		{"AssetFilter", "includeDeleted", "Boolean"},
		{"AssetConnection", "totalCount", "Int!"},
		{"AssetEdge", "node", "Asset!"},
		{"NoteInput", "authorId", "ID"}, // server-set: optional in input
	} {
		def := schema.Types[f.object]
		if def == nil {
			t.Errorf("no type %s", f.object)
			continue
		}
		field := def.Fields.ForName(f.field)
		if field == nil {
			t.Errorf("no field %s.%s", f.object, f.field)
			continue
		}
		if got := field.Type.String(); got != f.typ {
			t.Errorf("%s.%s is %s, want %s", f.object, f.field, got, f.typ)
		}
	}
	if got := schema.Types["AssetInput"].Description; !strings.HasPrefix(got, "An Asset as a client writes it.") {
		t.Errorf("AssetInput's description is %q", got)
	}
	if got := schema.Types["SiteInput"].Description; !strings.HasPrefix(got, "A Site as a client writes it.") {
		t.Errorf("SiteInput's description is %q", got)
	}
	if args := schema.Query.Fields.ForName("assets").Arguments; len(args) != 5 || args.ForName("filter").Type.String() != "AssetFilter" {
		t.Errorf("assets takes %d arguments, want first, after, last, before, filter: AssetFilter", len(args))
	}
}

// A hand-written declaration of a generated name takes the place of the
// generated one: how a collection gets a custom filter or connection.
func TestHandWrittenFilterAndListReplaceTheGenerated(t *testing.T) {
	custom := assetSchema + `
input AssetFilter {
  siteId: ID
}

extend type Query {
  assets(first: Int, after: String, filter: AssetFilter): AssetConnection!
}
`
	sources := projectSchemaWith(t, &ast.Source{Name: "schema/asset.graphqls", Input: custom})
	sc, err := collectiongen.Describe(sources)
	if err != nil {
		t.Fatal(err)
	}
	var asset *collectiongen.Synced
	for _, s := range sc.Synced {
		if s.Collection.Name == "Asset" {
			asset = s
		}
	}
	sdl := sc.SDL(asset)
	for _, gone := range []string{"input AssetFilter", "  assets("} {
		if strings.Contains(sdl, gone) {
			t.Errorf("the generated schema still declares %q:\n%s", gone, sdl)
		}
	}
	for _, kept := range []string{"type AssetEdge", "type AssetConnection", "pullAssets(", "pushAssets(", "streamAssets("} {
		if !strings.Contains(sdl, kept) {
			t.Errorf("the generated schema lacks %q:\n%s", kept, sdl)
		}
	}
	if _, gqlErr := gqlparser.LoadSchema(append(sources, sc.Sources()...)...); gqlErr != nil {
		t.Fatalf("the schema does not load: %v", gqlErr)
	}
	if _, _, ok := sc.Generates("Query", "assets"); ok {
		t.Error("Generates claims Query.assets, which is hand-written")
	}
	if s, verb, ok := sc.Generates("Mutation", "pushAssets"); !ok || s != asset || verb != "push" {
		t.Errorf("Generates(Mutation, pushAssets) = %v, %q, %v", s, verb, ok)
	}
	code, err := sc.ResolversGo("github.com/tidemark/tidemark/collections", "github.com/tidemark/tidemark/graph/model", "github.com/tidemark/tidemark/readapi")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(code), "func listAssets(") || !strings.Contains(string(code), "func pushAssets(") {
		t.Errorf("the resolvers implement the hand-written list or lack the push:\n%s", code)
	}
}
