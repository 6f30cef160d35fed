// Package collectiongen derives Tidemark's synced collections from the
// GraphQL schema: every object type marked @synced becomes a collection
// description (collections.Collection), the GraphQL types and operations
// that sync it, the resolver bodies, node(id) support and, for a new table,
// a create-table migration. It runs as a gqlgen plugin (cmd/tidemark-generate),
// so `go generate ./...` is the only step after editing the schema.
package collectiongen

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/parser"

	"github.com/tidemark/tidemark/collections"
)

// Synced is one @synced type: its collection description and the names
// the generated API uses for it.
type Synced struct {
	Collection *collections.Collection
	Plural     string // "WorkOrders": pullWorkOrders, pushWorkOrders, streamWorkOrders
	Definition *ast.Definition
}

// Source is the schema file a type is declared in ("schema/work_order.graphqls").
func (s *Synced) Source() string { return s.Definition.Position.Src.Name }

// bookkeeping are the fields every synced type declares, with the exact
// types the sync protocol gives them.
var bookkeeping = map[string]string{"id": "ID!", "updatedAt": "Time!", "deleted": "Boolean!"}

// Schema is what the generator learns from the hand-written schema.
type Schema struct {
	Synced []*Synced // in source order
	// handTypes and handFields are the type names and root fields
	// ("Query.workOrders") declared by hand. A hand-written declaration
	// takes the place of the generated one of the same name: that is how a
	// collection gets a custom filter or an ordered connection.
	handTypes  map[string]bool
	handFields map[string]bool
}

// Describe parses the schema sources (without validating them: generated
// types they refer to do not exist yet) and returns the @synced types, or
// an error that names the file and line of the first mistake in a synced
// type's declaration.
func Describe(sources []*ast.Source) (*Schema, error) {
	var docs []*ast.SchemaDocument
	for _, src := range sources {
		doc, err := parser.ParseSchema(src)
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
	enums := map[string][]string{}
	schema := &Schema{handTypes: map[string]bool{}, handFields: map[string]bool{}}
	for _, doc := range docs {
		for _, d := range doc.Definitions {
			schema.handTypes[d.Name] = true
		}
		for _, d := range append(slices.Clone(doc.Definitions), doc.Extensions...) {
			for _, f := range d.Fields {
				schema.handFields[d.Name+"."+f.Name] = true
			}
			if d.Kind == ast.Enum {
				for _, v := range d.EnumValues {
					enums[d.Name] = append(enums[d.Name], v.Name)
				}
			}
		}
	}
	var out []*Synced
	for _, doc := range docs {
		for _, d := range doc.Definitions {
			if d.Directives.ForName("synced") == nil {
				continue
			}
			s, err := describeType(d, enums)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
	}
	names := map[string]*Synced{}
	for _, s := range out {
		names[s.Collection.Name] = s
	}
	tables := map[string]string{}
	for _, s := range out {
		if other, ok := tables[s.Collection.Table]; ok {
			return nil, errorAt(s.Definition.Position, "%s and %s would both be stored in table %s; give one of them another plural", other, s.Collection.Name, s.Collection.Table)
		}
		tables[s.Collection.Table] = s.Collection.Name
		if err := checkNames(s, schema); err != nil {
			return nil, err
		}
		for _, f := range s.Collection.Fields {
			if f.RefersTo == "" {
				continue
			}
			if _, ok := names[f.RefersTo]; !ok {
				def := s.Definition.Fields.ForName(f.Name)
				return nil, errorAt(def.Position, "%s.%s references %q, which is not a @synced type", s.Collection.Name, f.Name, f.RefersTo)
			}
		}
	}
	schema.Synced = out
	return schema, nil
}

// checkNames refuses a synced type whose generated names are taken by
// something that is not a deliberate replacement.
func checkNames(s *Synced, schema *Schema) error {
	if schema.handTypes[s.Collection.Name+"PullBulk"] || schema.handTypes[s.Collection.Name+"PushRow"] || schema.handTypes[s.Collection.Name+"Input"] {
		return errorAt(s.Definition.Position, "%s: the types %sInput, %sPushRow and %sPullBulk are generated; remove their hand-written declarations",
			s.Collection.Name, s.Collection.Name, s.Collection.Name, s.Collection.Name)
	}
	for _, f := range []string{"Query.pull" + s.Plural, "Mutation.push" + s.Plural, "Subscription.stream" + s.Plural} {
		if schema.handFields[f] {
			return errorAt(s.Definition.Position, "%s: %s is generated; remove its hand-written declaration", s.Collection.Name, f)
		}
	}
	return nil
}

func describeType(d *ast.Definition, enums map[string][]string) (*Synced, error) {
	if d.Kind != ast.Object {
		return nil, errorAt(d.Position, "@synced %s must be an object type", d.Name)
	}
	if !slices.Contains(d.Interfaces, "Node") {
		return nil, errorAt(d.Position, "@synced type %s must implement Node", d.Name)
	}
	synced := d.Directives.ForName("synced")
	c := &collections.Collection{Name: d.Name}
	switch policy := argValue(synced, "conflicts"); policy {
	case string(collections.ClientResolves), string(collections.MergeFields):
		c.Policy = collections.ConflictPolicy(policy)
	default:
		return nil, errorAt(synced.Position, "@synced on %s: conflicts must be CLIENT_RESOLVES or MERGE_FIELDS (got %q)", d.Name, policy)
	}
	plural := argValue(synced, "plural")
	if plural == "" {
		plural = Plural(d.Name)
	}
	if !isIdentifier(plural) || !unicode.IsUpper(rune(plural[0])) {
		return nil, errorAt(synced.Position, "@synced on %s: plural must be a capitalized GraphQL name (got %q)", d.Name, plural)
	}
	c.Table = SnakeCase(plural)

	seen := map[string]bool{}
	for _, f := range d.Fields {
		if want, ok := bookkeeping[f.Name]; ok {
			if f.Type.String() != want {
				return nil, errorAt(f.Position, "%s.%s must be %s (got %s)", d.Name, f.Name, want, f.Type.String())
			}
			if len(f.Directives) > 0 {
				return nil, errorAt(f.Position, "%s.%s is set by the sync protocol and takes no directives", d.Name, f.Name)
			}
			seen[f.Name] = true
			continue
		}
		field, err := describeField(d, f, enums)
		if err != nil {
			return nil, err
		}
		c.Fields = append(c.Fields, field)
	}
	for _, name := range []string{"id", "updatedAt", "deleted"} {
		if !seen[name] {
			return nil, errorAt(d.Position, "@synced type %s must have %s: %s", d.Name, name, bookkeeping[name])
		}
	}
	return &Synced{Collection: c, Plural: plural, Definition: d}, nil
}

func describeField(d *ast.Definition, f *ast.FieldDefinition, enums map[string][]string) (collections.Field, error) {
	field := collections.Field{Name: f.Name, Column: SnakeCase(f.Name), Nullable: !f.Type.NonNull}
	if len(f.Arguments) > 0 {
		return field, errorAt(f.Position, "%s.%s: a synced field takes no arguments; declare nested fields in an `extend type %s` block", d.Name, f.Name, d.Name)
	}
	if f.Type.Elem != nil {
		return field, errorAt(f.Position, "%s.%s: lists are not supported in synced documents; use a collection that references %s", d.Name, f.Name, d.Name)
	}
	switch name := f.Type.NamedType; name {
	case "ID":
		field.Kind, field.MaxLen = collections.String, collections.MaxIDLen
	case "String":
		field.Kind = collections.String
	case "Int":
		field.Kind = collections.Int
	case "Float":
		field.Kind = collections.Float
	case "Boolean":
		field.Kind = collections.Bool
	case "Time":
		field.Kind = collections.Time
	default:
		values, ok := enums[name]
		if !ok {
			return field, errorAt(f.Position, "%s.%s has type %s; synced fields are ID, String, Int, Float, Boolean, Time or an enum", d.Name, f.Name, name)
		}
		field.Kind, field.Values = collections.Enum, values
	}
	for _, dir := range f.Directives {
		switch dir.Name {
		case "references":
			if f.Type.NamedType != "ID" {
				return field, errorAt(dir.Position, "%s.%s: @references needs an ID field", d.Name, f.Name)
			}
			field.RefersTo = argValue(dir, "collection")
			if field.RefersTo == "" {
				return field, errorAt(dir.Position, "%s.%s: @references needs collection: \"TypeName\"", d.Name, f.Name)
			}
		case "length":
			if field.Kind != collections.String {
				return field, errorAt(dir.Position, "%s.%s: @length applies to String and ID fields", d.Name, f.Name)
			}
			n, err := intArg(dir, "max")
			if err != nil || n < 1 {
				return field, errorAt(dir.Position, "%s.%s: @length(max:) must be a positive integer", d.Name, f.Name)
			}
			field.MaxLen = n
		case "serverSet":
			v := collections.ServerValue(argValue(dir, "value"))
			if v != collections.CallerUserID {
				return field, errorAt(dir.Position, "%s.%s: @serverSet(value:) must be %s", d.Name, f.Name, collections.CallerUserID)
			}
			field.ServerOwned, field.ServerValue = true, v
		}
	}
	return field, nil
}

func argValue(d *ast.Directive, name string) string {
	if a := d.Arguments.ForName(name); a != nil && a.Value != nil {
		return a.Value.Raw
	}
	return ""
}

func intArg(d *ast.Directive, name string) (int, error) {
	var n int
	_, err := fmt.Sscanf(argValue(d, name), "%d", &n)
	return n, err
}

func errorAt(pos *ast.Position, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if pos == nil || pos.Src == nil {
		return fmt.Errorf("%s", msg)
	}
	return fmt.Errorf("%s:%d: %s", pos.Src.Name, pos.Line, msg)
}

// Plural is the default plural of a type name: the English rules that
// cover ordinary nouns ("Site" → "Sites", "Category" → "Categories",
// "Box" → "Boxes"). @synced(plural:) covers the rest.
func Plural(name string) string {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, "y") && len(lower) > 1 && !strings.ContainsRune("aeiou", rune(lower[len(lower)-2])):
		return name[:len(name)-1] + "ies"
	case strings.HasSuffix(lower, "s"), strings.HasSuffix(lower, "x"), strings.HasSuffix(lower, "z"),
		strings.HasSuffix(lower, "ch"), strings.HasSuffix(lower, "sh"):
		return name + "es"
	}
	return name + "s"
}

// SnakeCase turns a GraphQL name into a storage name: "workOrderId" →
// "work_order_id", "WorkOrders" → "work_orders".
func SnakeCase(name string) string {
	var b strings.Builder
	runes := []rune(name)
	for i, r := range runes {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(runes[i-1]) || unicode.IsDigit(runes[i-1]) ||
				(i+1 < len(runes) && unicode.IsLower(runes[i+1]))) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// LowerFirst is a type name as a field name: "WorkOrders" → "workOrders".
func LowerFirst(name string) string {
	if name == "" {
		return name
	}
	return strings.ToLower(name[:1]) + name[1:]
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || unicode.IsLetter(r) && r < unicode.MaxASCII || i > 0 && unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}
