package collectiongen

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/99designs/gqlgen/codegen"
	"github.com/99designs/gqlgen/codegen/config"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"
)

// Plugin is the gqlgen plugin: it injects each synced type's generated
// schema before gqlgen loads the schema, writes the resolver bodies of the
// generated operations, and writes the Go and SQL the rest of Tidemark
// reads (see Paths).
type Plugin struct {
	Paths  Paths
	schema *Schema
	log    func(format string, args ...any)
}

// Paths are where the plugin writes, relative to the module root.
type Paths struct {
	Registry      string // collections/registry.generated.go
	Resolvers     string // resolvers/collections.generated.go
	Migrations    string // db/migrations
	PrintedSchema string // docs/schema.graphql: the whole served schema, for review
	// Imports of resolvers/collections.generated.go.
	ResolverImports []string
}

// DefaultPaths are Tidemark's.
var DefaultPaths = Paths{
	Registry:      "collections/registry.generated.go",
	Resolvers:     "resolvers/collections.generated.go",
	Migrations:    "db/migrations",
	PrintedSchema: "docs/schema.graphql",
	ResolverImports: []string{
		"github.com/tidemark/tidemark/collections",
		"github.com/tidemark/tidemark/graph",
		"github.com/tidemark/tidemark/graph/model",
		"github.com/tidemark/tidemark/readapi",
	},
}

// New describes the synced types of cfg's schema sources.
func New(cfg *config.Config, paths Paths, log func(format string, args ...any)) (*Plugin, error) {
	sc, err := Describe(cfg.Sources)
	if err != nil {
		return nil, err
	}
	return &Plugin{Paths: paths, schema: sc, log: log}, nil
}

// Name implements plugin.Plugin.
func (p *Plugin) Name() string { return "tidemark-collections" }

// InjectSourcesEarly adds the generated schema of every synced type, so the
// hand-written schema may extend and refer to generated types.
func (p *Plugin) InjectSourcesEarly() ([]*ast.Source, error) {
	return p.schema.Sources(), nil
}

// MutateConfig declares the collection directives as schema-only: they
// describe storage and have no resolver-time behaviour.
func (p *Plugin) MutateConfig(cfg *config.Config) error {
	for _, d := range []string{"synced", "references", "length", "serverSet"} {
		cfg.Directives[d] = config.DirectiveConfig{SkipRuntime: true}
	}
	return nil
}

// Implement writes the body of a generated operation's resolver; every
// other resolver keeps what was written by hand.
func (p *Plugin) Implement(prev string, f *codegen.Field) string {
	if s, verb, ok := p.schema.Generates(f.Object.Name, f.Name); ok {
		return ResolverBody(s, verb)
	}
	if body := strings.TrimSpace(prev); body != "" && !p.schema.wasGenerated(f.Object.Name, f.Name, body) {
		return prev
	}
	return fmt.Sprintf("panic(fmt.Errorf(%q))", "not implemented: "+f.GoFieldName+" - "+f.Name)
}

// wasGenerated reports whether body is the generated body of a root field
// that is now declared by hand: a connection (Query.assets) replaced by a
// custom one. gqlgen carries a resolver's body over when its field moves
// to another file; kept, it would call the generated list function that is
// no longer generated, and the build would fail with "undefined: listAssets".
// The hand-written field starts from gqlgen's "not implemented" stub instead.
func (sc *Schema) wasGenerated(object, field, body string) bool {
	for _, s := range sc.Synced {
		if object == "Query" && field == LowerFirst(s.Plural) && body == ResolverBody(s, "list") {
			return true
		}
	}
	return false
}

// GenerateCode writes the collection registry, node(id)'s conversions, the
// printed schema and any new table's migrations, and has gqlgen resolve the
// relation fields of synced types inline (see resolveRelationsInline); it
// runs before gqlgen writes its executor.
func (p *Plugin) GenerateCode(data *codegen.Data) error {
	p.schema.resolveRelationsInline(data.Objects)
	lists, err := listsGo(data.Config.Exec.Package, data.Objects)
	if err != nil {
		return err
	}
	if err := writeIfChanged(filepath.Join(data.Config.Exec.Dir(), "lists.generated.go"), lists); err != nil {
		return err
	}
	registry, err := p.schema.RegistryGo()
	if err != nil {
		return err
	}
	if err := writeIfChanged(p.Paths.Registry, registry); err != nil {
		return err
	}
	resolvers, err := p.schema.ResolversGo(p.Paths.ResolverImports...)
	if err != nil {
		return err
	}
	if err := writeIfChanged(p.Paths.Resolvers, resolvers); err != nil {
		return err
	}
	var printed strings.Builder
	printed.WriteString("# The schema Tidemark serves, printed by `go generate ./...`. DO NOT EDIT: edit schema/ instead.\n\n")
	formatter.NewFormatter(&printed, formatter.WithIndent("  ")).FormatSchema(data.Schema)
	if err := writeIfChanged(p.Paths.PrintedSchema, []byte(printed.String())); err != nil {
		return err
	}
	migrations, err := p.schema.NewMigrations(p.Paths.Migrations)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		path := filepath.Join(p.Paths.Migrations, m.Name)
		if err := os.WriteFile(path, []byte(m.SQL), 0o644); err != nil {
			return err
		}
		p.log("wrote %s: review it and commit it with the schema change", path)
	}
	return nil
}

// resolveRelationsInline turns off gqlgen's goroutine per resolver field
// for every synced type whose resolver fields are all relations (no
// arguments, a synced type or a list of one: WorkOrder.site, .checklist,
// .notes, ChecklistItem.workOrder), as gqlgen does for Mutation. Their data
// is ready before they resolve: a page primes its items' relations and
// keeps their models, and a relation read without that (node, pulls,
// Site.workOrders) queues its object's other selected relations before it
// waits, so they share one batch as when they ran side by side
// (resolvers.parent, resolvers.children). A goroutine per field was a
// sixth of a nested read's CPU. A type with any other resolver field (a
// paged relation such as Site.workOrders) keeps its goroutines.
func (sc *Schema) resolveRelationsInline(objects codegen.Objects) {
	synced := map[string]bool{}
	for _, s := range sc.Synced {
		synced[s.Definition.Name] = true
	}
	for _, o := range objects {
		if !synced[o.Name] {
			continue
		}
		relations := 0
		inline := true
		for _, f := range o.Fields {
			if !f.IsResolver && !f.MethodHasContext {
				continue
			}
			if !f.IsResolver || len(f.Args) > 0 || !synced[f.Type.Name()] {
				inline = false
				break
			}
			relations++
		}
		if inline && relations > 0 {
			o.DisableConcurrency = true
		}
	}
}

func writeIfChanged(path string, content []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(content) {
		return nil
	}
	return os.WriteFile(path, content, 0o644)
}
