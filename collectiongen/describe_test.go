package collectiongen_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2/ast"

	"github.com/tidemark/tidemark/collectiongen"
	"github.com/tidemark/tidemark/collections"
)

// base is the hand-written schema every case builds on: the scalar, the
// interface and a synced Site to refer to, in schema/base.graphqls.
const base = `scalar Time
interface Node { id: ID! }
enum Condition { NEW USED }
"An ordinary type: not synced."
type Building { id: ID! }
type Site implements Node @synced(conflicts: CLIENT_RESOLVES) {
  id: ID!
  name: String!
  updatedAt: Time!
  deleted: Boolean!
}
`

// describe runs Describe on base and the case's schema/asset.graphqls.
func describe(asset string) (*collectiongen.Schema, error) {
	return collectiongen.Describe([]*ast.Source{
		{Name: "schema/base.graphqls", Input: base},
		{Name: "schema/asset.graphqls", Input: asset},
	})
}

// assetWith is a valid Asset with extra lines in its body.
func assetWith(lines ...string) string {
	return "type Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {\n" +
		"  id: ID!\n  updatedAt: Time!\n  deleted: Boolean!\n" +
		strings.Join(lines, "\n") + "\n}\n"
}

func TestDescribeRefusesMistakesNamingFileAndLine(t *testing.T) {
	cases := []struct {
		name   string
		schema string
		want   string // the whole message, "file:line: …"
	}{
		{
			name:   "missing id",
			schema: "type Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {\n  updatedAt: Time!\n  deleted: Boolean!\n}\n",
			want:   "schema/asset.graphqls:1: @synced type Asset must have id: ID!",
		},
		{
			name:   "missing updatedAt",
			schema: "\n\ntype Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {\n  id: ID!\n  deleted: Boolean!\n}\n",
			want:   "schema/asset.graphqls:3: @synced type Asset must have updatedAt: Time!",
		},
		{
			name:   "missing deleted",
			schema: "type Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {\n  id: ID!\n  updatedAt: Time!\n}\n",
			want:   "schema/asset.graphqls:1: @synced type Asset must have deleted: Boolean!",
		},
		{
			name:   "id of another type",
			schema: "type Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {\n  id: String!\n  updatedAt: Time!\n  deleted: Boolean!\n}\n",
			want:   "schema/asset.graphqls:2: Asset.id must be ID! (got String!)",
		},
		{
			name:   "nullable updatedAt",
			schema: "type Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {\n  id: ID!\n  updatedAt: Time\n  deleted: Boolean!\n}\n",
			want:   "schema/asset.graphqls:3: Asset.updatedAt must be Time! (got Time)",
		},
		{
			name:   "deleted as a list",
			schema: "type Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {\n  id: ID!\n  updatedAt: Time!\n  deleted: [Boolean!]!\n}\n",
			want:   "schema/asset.graphqls:4: Asset.deleted must be Boolean! (got [Boolean!]!)",
		},
		{
			name:   "bookkeeping field with a directive",
			schema: "type Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {\n  id: ID! @length(max: 36)\n  updatedAt: Time!\n  deleted: Boolean!\n}\n",
			want:   "schema/asset.graphqls:2: Asset.id is set by the sync protocol and takes no directives",
		},
		{
			name:   "not implementing Node",
			schema: "type Asset @synced(conflicts: CLIENT_RESOLVES) {\n  id: ID!\n  updatedAt: Time!\n  deleted: Boolean!\n}\n",
			want:   "schema/asset.graphqls:1: @synced type Asset must implement Node",
		},
		{
			name:   "an interface marked @synced",
			schema: "interface Asset @synced(conflicts: CLIENT_RESOLVES) {\n  id: ID!\n}\n",
			want:   "schema/asset.graphqls:1: @synced Asset must be an object type",
		},
		{
			name:   "unknown conflicts value",
			schema: "type Asset implements Node\n  @synced(conflicts: LAST_WRITE_WINS) {\n  id: ID!\n  updatedAt: Time!\n  deleted: Boolean!\n}\n",
			want:   `schema/asset.graphqls:2: @synced on Asset: conflicts must be CLIENT_RESOLVES or MERGE_FIELDS (got "LAST_WRITE_WINS")`,
		},
		{
			name:   "no conflicts value",
			schema: "type Asset implements Node @synced {\n  id: ID!\n  updatedAt: Time!\n  deleted: Boolean!\n}\n",
			want:   `schema/asset.graphqls:1: @synced on Asset: conflicts must be CLIENT_RESOLVES or MERGE_FIELDS (got "")`,
		},
		{
			name:   "lower-case plural",
			schema: "type Asset implements Node @synced(conflicts: CLIENT_RESOLVES, plural: \"assets\") {\n  id: ID!\n  updatedAt: Time!\n  deleted: Boolean!\n}\n",
			want:   `schema/asset.graphqls:1: @synced on Asset: plural must be a capitalized GraphQL name (got "assets")`,
		},
		{
			name:   "plural that another collection's table has",
			schema: "type Asset implements Node @synced(conflicts: CLIENT_RESOLVES, plural: \"Sites\") {\n  id: ID!\n  updatedAt: Time!\n  deleted: Boolean!\n}\n",
			want:   "schema/asset.graphqls:1: Site and Asset would both be stored in table sites; give one of them another plural",
		},
		{
			name:   "reference to a type that is not synced",
			schema: assetWith(`  buildingId: ID! @references(collection: "Building")`),
			want:   `schema/asset.graphqls:5: Asset.buildingId references "Building", which is not a @synced type`,
		},
		{
			name:   "reference to a type that does not exist",
			schema: assetWith(`  siteId: ID! @references(collection: "Sight")`),
			want:   `schema/asset.graphqls:5: Asset.siteId references "Sight", which is not a @synced type`,
		},
		{
			name:   "reference held in a String",
			schema: assetWith(`  siteId: String! @references(collection: "Site")`),
			want:   "schema/asset.graphqls:5: Asset.siteId: @references needs an ID field",
		},
		{
			name:   "reference without a collection",
			schema: assetWith(`  siteId: ID! @references`),
			want:   `schema/asset.graphqls:5: Asset.siteId: @references needs collection: "TypeName"`,
		},
		{
			name:   "length of an Int",
			schema: assetWith(`  count: Int`, `  rating: Int @length(max: 3)`),
			want:   "schema/asset.graphqls:6: Asset.rating: @length applies to String and ID fields",
		},
		{
			name:   "length of an enum",
			schema: assetWith(`  condition: Condition @length(max: 3)`),
			want:   "schema/asset.graphqls:5: Asset.condition: @length applies to String and ID fields",
		},
		{
			name:   "length of zero",
			schema: assetWith(`  name: String! @length(max: 0)`),
			want:   "schema/asset.graphqls:5: Asset.name: @length(max:) must be a positive integer",
		},
		{
			name:   "server-set value that does not exist",
			schema: assetWith(`  ownerId: ID! @serverSet(value: CALLER_TENANT_ID)`),
			want:   "schema/asset.graphqls:5: Asset.ownerId: @serverSet(value:) must be CALLER_USER_ID",
		},
		{
			name:   "object-typed field",
			schema: assetWith(`  site: Site`),
			want:   "schema/asset.graphqls:5: Asset.site has type Site; synced fields are ID, String, Int, Float, Boolean, Time or an enum",
		},
		{
			name:   "unknown scalar",
			schema: assetWith(`  photo: Upload`),
			want:   "schema/asset.graphqls:5: Asset.photo has type Upload; synced fields are ID, String, Int, Float, Boolean, Time or an enum",
		},
		{
			name:   "list of strings",
			schema: assetWith(`  tags: [String!]`),
			want:   "schema/asset.graphqls:5: Asset.tags: lists are not supported in synced documents; use a collection that references Asset",
		},
		{
			name:   "list of references",
			schema: assetWith(`  siteIds: [ID!]! @references(collection: "Site")`),
			want:   "schema/asset.graphqls:5: Asset.siteIds: lists are not supported in synced documents; use a collection that references Asset",
		},
		{
			name:   "field with arguments",
			schema: assetWith(`  name(locale: String): String`),
			want:   "schema/asset.graphqls:5: Asset.name: a synced field takes no arguments; declare nested fields in an `extend type Asset` block",
		},
		{
			name:   "hand-written push-row type",
			schema: assetWith() + "input AssetPushRow { id: ID! }\n",
			want:   "schema/asset.graphqls:1: Asset: the types AssetInput, AssetPushRow and AssetPullBulk are generated; remove their hand-written declarations",
		},
		{
			name:   "hand-written pull operation",
			schema: assetWith() + "type Query { pullAssets(limit: Int!): [Asset!]! }\n",
			want:   "schema/asset.graphqls:1: Asset: Query.pullAssets is generated; remove its hand-written declaration",
		},
		{
			name:   "hand-written stream operation in an extension",
			schema: assetWith() + "extend type Subscription { streamAssets: [Asset!]! }\n",
			want:   "schema/asset.graphqls:1: Asset: Subscription.streamAssets is generated; remove its hand-written declaration",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := describe(tc.schema)
			if err == nil {
				t.Fatalf("Describe accepted\n%s", tc.schema)
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n  %s\nwant\n  %s", err, tc.want)
			}
		})
	}
}

func TestDescribeReadsTheDirectives(t *testing.T) {
	sc, err := describe(`"Equipment installed at a site."
type Asset implements Node @synced(conflicts: MERGE_FIELDS) {
  id: ID!
  siteId: ID! @references(collection: "Site")
  name: String! @length(max: 200)
  serialNumber: String
  tag: ID
  count: Int!
  weight: Float
  active: Boolean!
  installedAt: Time
  condition: Condition!
  editorId: ID! @serverSet(value: CALLER_USER_ID)
  updatedAt: Time!
  deleted: Boolean!
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Synced) != 2 || sc.Synced[0].Collection.Name != "Site" || sc.Synced[1].Collection.Name != "Asset" {
		t.Fatalf("synced types %v, want Site and Asset in source order", sc.Synced)
	}
	s := sc.Synced[1]
	if s.Plural != "Assets" || s.Source() != "schema/asset.graphqls" {
		t.Errorf("plural %q, source %q", s.Plural, s.Source())
	}
	want := &collections.Collection{
		Name:   "Asset",
		Table:  "assets",
		Policy: collections.MergeFields,
		Fields: []collections.Field{
			{Name: "siteId", Column: "site_id", Kind: collections.String, MaxLen: collections.MaxIDLen, RefersTo: "Site"},
			{Name: "name", Column: "name", Kind: collections.String, MaxLen: 200},
			{Name: "serialNumber", Column: "serial_number", Kind: collections.String, Nullable: true},
			{Name: "tag", Column: "tag", Kind: collections.String, Nullable: true, MaxLen: collections.MaxIDLen},
			{Name: "count", Column: "count", Kind: collections.Int},
			{Name: "weight", Column: "weight", Kind: collections.Float, Nullable: true},
			{Name: "active", Column: "active", Kind: collections.Bool},
			{Name: "installedAt", Column: "installed_at", Kind: collections.Time, Nullable: true},
			{Name: "condition", Column: "condition", Kind: collections.Enum, Values: []string{"NEW", "USED"}},
			{Name: "editorId", Column: "editor_id", Kind: collections.String, MaxLen: collections.MaxIDLen, ServerOwned: true, ServerValue: collections.CallerUserID},
		},
	}
	if !reflect.DeepEqual(s.Collection, want) {
		t.Errorf("Asset is described as\n  %+v\nwant\n  %+v", s.Collection, want)
	}
}

func TestDescribeTakesAPluralFromTheDirective(t *testing.T) {
	sc, err := describe("type Asset implements Node @synced(conflicts: CLIENT_RESOLVES, plural: \"Equipment\") {\n  id: ID!\n  updatedAt: Time!\n  deleted: Boolean!\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := sc.Synced[1]; s.Plural != "Equipment" || s.Collection.Table != "equipment" {
		t.Fatalf("plural %q, table %q; want Equipment, equipment", s.Plural, s.Collection.Table)
	}
}

// The project's schema describes exactly the generated registry: the
// collections the engine and the database use come from the schema alone.
func TestProjectSchemaDescribesTheRegistry(t *testing.T) {
	files, err := filepath.Glob("../schema/*.graphqls")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files (%v)", err)
	}
	var sources []*ast.Source
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, &ast.Source{Name: f, Input: string(b)})
	}
	sc, err := collectiongen.Describe(sources)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*collections.Collection{}
	for _, s := range sc.Synced {
		byName[s.Collection.Name] = s.Collection
	}
	all := collections.All()
	if len(all) != len(byName) {
		t.Errorf("the schema has %d synced types, the registry %d collections: run `go generate ./...`", len(byName), len(all))
	}
	for _, c := range all {
		if got := byName[c.Name]; !reflect.DeepEqual(got, c) {
			t.Errorf("the schema describes %s as\n  %+v\nthe registry has\n  %+v\nrun `go generate ./...`", c.Name, got, c)
		}
	}
}

func TestPlural(t *testing.T) {
	for name, want := range map[string]string{
		"Site":          "Sites",
		"WorkOrder":     "WorkOrders",
		"ChecklistItem": "ChecklistItems",
		"Note":          "Notes",
		"Asset":         "Assets",
		"Category":      "Categories",
		"Day":           "Days", // a vowel before the y
		"Journey":       "Journeys",
		"Box":           "Boxes",
		"Bus":           "Buses",
		"Address":       "Addresses",
		"Match":         "Matches",
		"Dish":          "Dishes",
		"Y":             "Ys",
	} {
		if got := collectiongen.Plural(name); got != want {
			t.Errorf("Plural(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestSnakeCase(t *testing.T) {
	for name, want := range map[string]string{
		"workOrderId":    "work_order_id",
		"WorkOrders":     "work_orders",
		"ChecklistItems": "checklist_items",
		"siteId":         "site_id",
		"name":           "name",
		"userID":         "user_id",
		"ID":             "id",
		"HTTPServer":     "http_server",
		"geoJSONShape":   "geo_json_shape",
		"address2":       "address2",
		"line2Total":     "line2_total",
		"Equipment":      "equipment",
	} {
		if got := collectiongen.SnakeCase(name); got != want {
			t.Errorf("SnakeCase(%q) = %q, want %q", name, got, want)
		}
	}
}
