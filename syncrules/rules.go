// Package syncrules holds Tidemark's per-user sync rules: which documents of
// a tenant a caller syncs, decided from the caller's token claims and the
// documents' fields, including through references. The rules are data, one
// declarative file parsed and validated at start-up (docs/sync-rules.md).
//
// The model: a token's role claim picks the caller's rules. A role either
// syncs the whole tenant, or defines one bucket: a per-caller partition of
// the tenant, named by the role and the claim value it uses
// ("technician:u-42"). A bucket's members are the documents of one root
// collection whose field equals the claim, plus, per other collection, the
// children that reference a member or the parents a member references.
// A caller therefore has exactly one access per collection: the whole
// tenant, its bucket, or nothing.
//
// The package knows neither SQL nor GraphQL. It does not maintain bucket
// membership: it tells the sync engine, which does, what membership means.
package syncrules

import (
	_ "embed"
	"fmt"
	"os"
	"strings"

	"github.com/tidemark/tidemark/collections"
)

// DefaultRoleClaim is the token claim holding the role when a rules file
// does not name one.
const DefaultRoleClaim = "role"

// subClaim is the token claim holding the user id.
const subClaim = "sub"

//go:embed default.rules
var defaultRules []byte

// Rules are parsed and validated sync rules. They are immutable and safe for
// concurrent use.
type Rules struct {
	roleClaim string
	roles     map[string]*role // by role name
	noRole    *role            // tokens without a role claim; nil when the file has no `no role` block
	buckets   []*BucketDef     // by name
	lockOrder []*collections.Collection
	downhill  map[string][]string // collection name → collections whose membership depends on it, in any bucket
	text      string              // the normalized rules (Format)
}

// role is one role block.
type role struct {
	name   string
	line   int
	kind   accessKind
	bucket *BucketDef // when kind == inBucket
}

type accessKind int

const (
	denied accessKind = iota // the zero value: nothing
	wholeTenant
	inBucket
)

// Parse parses a rules file and validates it against the collections. Its
// error lists every problem found, one per line, as "<file>:<line>: <message>"
// (an Errors value).
func Parse(filename string, src []byte, cols []*collections.Collection) (*Rules, error) {
	return parse(filename, src, cols)
}

// Default returns the rules shipped with Tidemark (default.rules) validated
// against cols.
func Default(cols []*collections.Collection) (*Rules, error) {
	return Parse("default.rules", defaultRules, cols)
}

// DefaultSource returns the text of the default rules file.
func DefaultSource() []byte {
	return append([]byte(nil), defaultRules...)
}

// Load reads and parses the rules file at path; "" means the default rules.
func Load(path string, cols []*collections.Collection) (*Rules, error) {
	if path == "" {
		return Default(cols)
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sync rules: %w", err)
	}
	return Parse(path, src, cols)
}

// RoleClaim is the name of the token claim that holds the caller's role.
func (r *Rules) RoleClaim() string { return r.roleClaim }

// ClaimNames lists the token claims the rules read: the role claim and every
// claim a bucket is keyed by, sorted. The sub claim is the user id.
func (r *Rules) ClaimNames() []string {
	seen := map[string]bool{r.roleClaim: true}
	for _, b := range r.buckets {
		seen[b.root.Claim] = true
	}
	return sortedKeys(seen)
}

// AccessFor is what a caller may sync. userID is the token's sub; claims
// holds its other string claims (a "sub" in it is ignored in favour of
// userID). A role claim that is missing means "no role"; one that is present
// is matched by name, exactly, so an empty role is an unknown role.
func (r *Rules) AccessFor(userID string, claims map[string]string) Access {
	claim := func(name string) (string, bool) {
		if name == subClaim {
			return userID, userID != ""
		}
		v, ok := claims[name]
		return v, ok
	}
	roleName, hasRole := claim(r.roleClaim)
	a := Access{role: roleName, hasRole: hasRole}
	ro := r.noRole
	if hasRole {
		ro = r.roles[roleName]
	}
	if ro == nil {
		return a
	}
	switch ro.kind {
	case wholeTenant:
		a.kind = wholeTenant
	case inBucket:
		v, _ := claim(ro.bucket.root.Claim)
		// An empty claim keys no bucket, as an empty field value joins none
		// (RootBucketOf): the caller has no set at all.
		if v != "" {
			a.kind = inBucket
			a.bucket = ro.bucket
			a.bucketID = ro.bucket.id(v)
		}
	}
	return a
}

// Buckets returns the bucket definitions, one per role that defines a
// bucket, ordered by name.
func (r *Rules) Buckets() []*BucketDef {
	return append([]*BucketDef(nil), r.buckets...)
}

// LockOrder returns every collection in the order in which a writer takes
// change locks: a collection comes before every collection whose membership
// depends on it in some bucket (topological order, ties by name). A writer
// of a collection takes its own lock first, then those of LocksFor.
func (r *Rules) LockOrder() []*collections.Collection {
	return append([]*collections.Collection(nil), r.lockOrder...)
}

// LocksFor returns the collections whose change locks a writer of c takes,
// in lock order: c first, then every collection whose membership depends on
// c, directly or through others, in any bucket.
func (r *Rules) LocksFor(c *collections.Collection) []*collections.Collection {
	reach := map[string]bool{c.Name: true}
	queue := []string{c.Name}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, d := range r.downhill[n] {
			if !reach[d] {
				reach[d] = true
				queue = append(queue, d)
			}
		}
	}
	var out []*collections.Collection
	for _, lc := range r.lockOrder {
		if reach[lc.Name] {
			out = append(out, lc)
		}
	}
	if len(out) == 0 { // a collection the rules were not validated against
		out = []*collections.Collection{c}
	}
	return out
}

// Access is what one caller may sync: the whole tenant, one bucket, or
// nothing. The zero Access syncs nothing.
type Access struct {
	role     string
	hasRole  bool
	kind     accessKind
	bucket   *BucketDef
	bucketID string
}

// Role returns the caller's role and whether its token has a role claim.
func (a Access) Role() (name string, ok bool) { return a.role, a.hasRole }

// WholeTenant reports whether the caller syncs every document of its tenant.
func (a Access) WholeTenant() bool { return a.kind == wholeTenant }

// Bucket returns the caller's bucket and its id, when its role defines one.
func (a Access) Bucket() (def *BucketDef, id string, ok bool) {
	return a.bucket, a.bucketID, a.kind == inBucket
}

// Denied reports that the caller syncs nothing at all: its role is not in
// the rules (or says `nothing`), or its token lacks the claim its bucket is
// keyed by. Such a caller's pushes are refused (FORBIDDEN).
func (a Access) Denied() bool { return a.kind == denied }

// Collection is the caller's access to one collection.
func (a Access) Collection(c *collections.Collection) CollectionAccess {
	switch a.kind {
	case wholeTenant:
		return CollectionAccess{Scope: All}
	case inBucket:
		if _, ok := a.bucket.byName[c.Name]; ok {
			return CollectionAccess{Scope: InBucket, BucketID: a.bucketID}
		}
	}
	return CollectionAccess{Scope: None}
}

// String describes the access for logs. It contains the bucket id, which
// holds a claim value (the user id): log it where user ids may be logged.
func (a Access) String() string {
	switch a.kind {
	case wholeTenant:
		return "whole tenant"
	case inBucket:
		return "bucket " + a.bucketID
	}
	if !a.hasRole {
		return "nothing (no role)"
	}
	return fmt.Sprintf("nothing (role %q)", a.role)
}

// Scope is how much of one collection a caller syncs.
type Scope int

const (
	// None: no document of the collection (the zero value).
	None Scope = iota
	// All: every document of the tenant's collection.
	All
	// InBucket: the collection's members of the caller's bucket.
	InBucket
)

func (s Scope) String() string {
	switch s {
	case None:
		return "none"
	case All:
		return "all"
	case InBucket:
		return "in bucket"
	}
	return fmt.Sprintf("Scope(%d)", int(s))
}

// CollectionAccess is a caller's access to one collection.
type CollectionAccess struct {
	Scope    Scope
	BucketID string // set when Scope is InBucket
}

// BucketDef defines one role's bucket: its root membership and, per other
// collection it syncs, how a document of that collection becomes a member.
type BucketDef struct {
	name        string
	root        *Membership
	members     []*Membership // root first, each after the one it hangs off (ties by name)
	byName      map[string]*Membership
	dependents  map[string][]*Membership // Via name → memberships hanging off it, by collection name
	fingerprint string
}

// Name is the bucket's name: the role that defines it. A bucket id is the
// name and the claim value, escaped (see RootBucketOf).
func (b *BucketDef) Name() string { return b.name }

// Root is the bucket's root membership.
func (b *BucketDef) Root() *Membership { return b.root }

// Memberships lists the bucket's memberships, one per collection it syncs:
// the root first, then each after the one it hangs off (ties by name).
func (b *BucketDef) Memberships() []*Membership {
	return append([]*Membership(nil), b.members...)
}

// Membership returns how documents of c become members of the bucket;
// ok is false when the bucket does not sync c.
func (b *BucketDef) Membership(c *collections.Collection) (*Membership, bool) {
	m, ok := b.byName[c.Name]
	return m, ok
}

// RootBucketOf returns the id of the bucket that doc, a document of the root
// collection, belongs to. ok is false when it belongs to none: it is
// deleted, or its root field is null or empty.
//
// A bucket id is "<name>:<value>" with both parts escaped so that neither
// holds a raw ':' (bytes other than ASCII letters, digits and "-_.~@" become
// %XX): no claim value can forge another bucket's id.
func (b *BucketDef) RootBucketOf(doc collections.Document) (bucketID string, ok bool) {
	if doc.Deleted {
		return "", false
	}
	v, ok := fieldString(doc, b.root.Field)
	if !ok {
		return "", false
	}
	return b.id(v), true
}

// DependentsOf returns the memberships that depend on the members of c: the
// children of c and the parents c references, ordered by collection name.
// When a document of c enters or leaves the bucket, or changes a reference,
// these are the memberships to recompute.
func (b *BucketDef) DependentsOf(c *collections.Collection) []*Membership {
	return append([]*Membership(nil), b.dependents[c.Name]...)
}

// Fingerprint is a stable digest of the bucket's definition: when it changes
// between two rules files, the bucket's membership must be recomputed.
func (b *BucketDef) Fingerprint() string { return b.fingerprint }

func (b *BucketDef) id(value string) string {
	return escapeIDPart(b.name) + ":" + escapeIDPart(value)
}

// Shape is how a collection's documents become members of a bucket.
type Shape int

const (
	// Root: the documents whose Field equals the token's Claim.
	Root Shape = iota + 1
	// Child: the documents whose reference Field points at a member of Via.
	Child
	// Parent: the documents that Field of a member of Via points at. A parent
	// stays a member while at least one member of Via references it.
	Parent
)

func (s Shape) String() string {
	switch s {
	case Root:
		return "root"
	case Child:
		return "child"
	case Parent:
		return "parent"
	}
	return fmt.Sprintf("Shape(%d)", int(s))
}

// Membership says how documents of Collection become members of a bucket.
// Deleted documents are never members. Memberships are read-only.
type Membership struct {
	Collection *collections.Collection
	Shape      Shape
	// Field is, for Root, the field of Collection compared with the claim
	// ("id" for the document id); for Child, Collection's reference field to
	// Via; for Parent, Via's reference field to Collection.
	Field string
	// Via is the collection this one hangs off: the parent collection of a
	// Child, the referencing collection of a Parent; nil for Root.
	Via *collections.Collection
	// Claim is the token claim a Root compares Field with.
	Claim string
	// Line is the line of the rules file that defines the membership.
	Line int
}

// Ref returns the id that ties doc to a member of Via. For a Child, doc is a
// document of Collection and Ref is the Via document it hangs off; for a
// Parent, doc is a document of Via and Ref is the Collection document it
// references. ok is false for a Root, a deleted document (never a member, so
// it holds nothing in the bucket), and a null or empty reference.
func (m *Membership) Ref(doc collections.Document) (id string, ok bool) {
	if m.Shape == Root || doc.Deleted {
		return "", false
	}
	return fieldString(doc, m.Field)
}

// String is the membership as a rules-file line.
func (m *Membership) String() string {
	switch m.Shape {
	case Root:
		return fmt.Sprintf("%s where %s = token.%s", m.Collection.Name, m.Field, m.Claim)
	case Child:
		return fmt.Sprintf("%s where %s in %s", m.Collection.Name, m.Field, m.Via.Name)
	case Parent:
		return fmt.Sprintf("%s where id in %s.%s", m.Collection.Name, m.Via.Name, m.Field)
	}
	return fmt.Sprintf("%s: %v", m.Collection.Name, m.Shape)
}

// fieldString returns a document's non-empty string value of a field; "id"
// is the document id.
func fieldString(doc collections.Document, field string) (string, bool) {
	if field == "id" {
		return doc.ID, doc.ID != ""
	}
	s, ok := doc.Fields[field].(string)
	return s, ok && s != ""
}

// escapeIDPart keeps ASCII letters, digits and "-_.~@" and writes every other
// byte as %XX, so an escaped part never holds ':' (the separator) and two
// different strings never escape alike.
func escapeIDPart(s string) string {
	const hex = "0123456789ABCDEF"
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '@':
			out = append(out, c)
		default:
			out = append(out, '%', hex[c>>4], hex[c&15])
		}
	}
	return string(out)
}

// Owns reports whether bucketID is one of this definition's buckets.
func (b *BucketDef) Owns(bucketID string) bool {
	return strings.HasPrefix(bucketID, escapeIDPart(b.name)+":")
}
