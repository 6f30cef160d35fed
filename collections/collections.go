// Package collections describes Tidemark's synced collections: their fields,
// which of them the client owns, and how push conflicts are settled. It is
// the one registry the database layer, the sync engine and the resolvers read.
// The registry itself (registry.generated.go) is generated from the @synced
// types of the GraphQL schema by `go generate ./...`: the schema is the one
// description of a collection.
//
// It knows neither SQL nor GraphQL; Field.Column is only the storage name the
// db package uses.
package collections

import (
	"context"
	"fmt"
	"time"
)

// Kind is the value type of a field. Values in a Document use one Go type per
// kind: String and Enum → string, Int → int64, Float → float64, Bool → bool,
// Time → time.Time (UTC, microsecond precision, which is what the database keeps).
type Kind int

const (
	String Kind = iota
	Int
	Float
	Bool
	Time
	Enum
)

func (k Kind) String() string {
	switch k {
	case String:
		return "String"
	case Int:
		return "Int"
	case Float:
		return "Float"
	case Bool:
		return "Bool"
	case Time:
		return "Time"
	case Enum:
		return "Enum"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Field is one collection-specific field of a document.
type Field struct {
	Name     string // API name, e.g. "siteId"
	Column   string // storage column, e.g. "site_id"
	Kind     Kind
	Nullable bool
	MaxLen   int      // for String: the longest value in characters; 0 means DefaultMaxLen
	Values   []string // for Enum: the allowed values
	// ServerOwned fields are set by the server on every accepted write (from
	// ServerValue), are ignored in input and never take part in conflict
	// comparisons.
	ServerOwned bool
	ServerValue ServerValue
	// RefersTo names the collection whose id this field holds, if any.
	RefersTo string
}

// ServerValue names where the server takes a server-owned field's value
// from; the schema declares it with @serverSet(value:).
type ServerValue string

// CallerUserID is the id of the user whose write is stored.
const CallerUserID ServerValue = "CALLER_USER_ID"

// DefaultMaxLen bounds strings that declare no MaxLen, so no field is unbounded.
const DefaultMaxLen = 10_000

// MaxIDLen bounds document ids; UUIDs (36) and most client id schemes fit easily.
const MaxIDLen = 128

// ConflictPolicy says what a push does when the client's assumed state is not
// the server's current state.
type ConflictPolicy string

const (
	// ClientResolves leaves the server document as it is and returns it to the client.
	ClientResolves ConflictPolicy = "CLIENT_RESOLVES"
	// MergeFields writes the three-way merge when the client's and the server's
	// changes touch different fields, and otherwise behaves as ClientResolves.
	MergeFields ConflictPolicy = "MERGE_FIELDS"
)

// Collection describes one synced collection.
type Collection struct {
	Name   string // API type name, e.g. "WorkOrder"; also the change-counter scope
	Table  string // storage table, e.g. "work_orders"
	Fields []Field
	Policy ConflictPolicy
}

// Field returns the field with the given API name.
func (c *Collection) Field(name string) (Field, bool) {
	for _, f := range c.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Document is one stored document of a collection. Fields holds every field
// of the collection by API name, with nil for a null value.
type Document struct {
	ID     string
	Fields map[string]any
	// Deleted marks a tombstone. It is client-owned: a delete is an edit.
	Deleted bool
	// UpdatedAt and Change are server-owned bookkeeping: the time of the last
	// accepted write and its position in the collection's change order.
	UpdatedAt time.Time
	Change    int64
}

// NormalizeTime gives a time the precision and zone it has once stored, so
// that a value compares equal to itself after a round trip through the database.
func NormalizeTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Microsecond)
}

// Writer writes one tenant's documents of one collection inside a
// transaction that orders it among the collection's other writers. The db
// package implements it; the sync engine decides what to write.
type Writer interface {
	// Get reads current documents (deleted ones included) by id.
	Get(ctx context.Context, ids []string) (map[string]Document, error)
	// Put stores docs as the next changes, in slice order, and returns them
	// as stored (with their change numbers and UpdatedAt set).
	Put(ctx context.Context, docs []Document) ([]Document, error)

	// The rest maintains bucket membership (partial replication) in the
	// same transaction; c may be another collection than the written one.

	// Documents reads current documents of c by id, deleted ones included.
	Documents(ctx context.Context, c *Collection, ids []string) (map[string]Document, error)
	// Children reads the live documents of c whose field holds one of parentIDs.
	Children(ctx context.Context, c *Collection, field string, parentIDs []string) ([]Document, error)
	// Members reads the bucket rows of c's documents with the given ids.
	Members(ctx context.Context, c *Collection, ids []string) (map[string][]Member, error)
	// SetMembers writes bucket rows of c's documents.
	SetMembers(ctx context.Context, c *Collection, changes []MemberChange) error
	// Reserve takes c's change lock (once per transaction; callers take
	// locks in one global order) and reserves n change numbers of c,
	// returning the first.
	Reserve(ctx context.Context, c *Collection, n int) (int64, error)
}

// Member is a bucket's row for one document: how many of the bucket's
// documents bring it in, and whether the bucket holds it now.
type Member struct {
	Bucket  string
	Change  int64 // the row's position in the bucket
	Refs    int64
	Present bool
}

// MemberChange sets a document's row in a bucket at a change number.
type MemberChange struct {
	DocID   string
	Bucket  string
	Change  int64
	Refs    int64
	Present bool
	// Removed is, for a row that is not present, the last state the bucket
	// held: all that a removal may show the bucket's callers.
	Removed *Document
}

// ScopeHead is the latest change number of one tenant's collection.
type ScopeHead struct {
	TenantID   string
	Collection string // Collection.Name
	Change     int64
}

// ByName returns the registered collection with the given API name.
func ByName(name string) (*Collection, bool) {
	for _, c := range All() {
		if c.Name == name {
			return c, true
		}
	}
	return nil, false
}
