package syncrules

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tidemark/tidemark/collections"
)

// Error is one problem in a rules file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// Errors is every problem found in a rules file, in line order. Parse
// returns one when a file is not valid.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// maxErrors bounds the report on a file that is not a rules file at all.
const maxErrors = 20

// block is one role block as written.
type block struct {
	name       string
	noRole     bool
	line       int
	statements int
	all        int // line of `all`, 0 when absent
	nothing    int // line of `nothing`, 0 when absent
	members    []*Membership
	root       *Membership
	// broken blocks had a bad line: their structural checks would only
	// repeat that error in other words, so they are skipped.
	broken bool
}

func (b *block) title() string {
	if b.noRole {
		return "`no role`"
	}
	return "role " + quoteIfNeeded(b.name)
}

func (b *block) member(name string) *Membership {
	for _, m := range b.members {
		if m.Collection.Name == name {
			return m
		}
	}
	return nil
}

type parser struct {
	file      string
	cols      map[string]*collections.Collection
	errs      Errors
	claim     string
	claimLine int
	blocks    []*block
	named     map[string]*block
	noRole    *block
	cur       *block
}

// word is one token of a line: a bare word, "=", or a quoted string.
type word struct {
	text   string
	quoted bool
}

func parse(filename string, src []byte, cols []*collections.Collection) (*Rules, error) {
	p := &parser{file: filename, cols: map[string]*collections.Collection{}, named: map[string]*block{}}
	for _, c := range cols {
		if c == nil {
			return nil, errors.New("sync rules: nil collection")
		}
		if _, dup := p.cols[c.Name]; dup {
			return nil, fmt.Errorf("sync rules: two collections named %s", c.Name)
		}
		p.cols[c.Name] = c
	}
	for i, raw := range bytes.Split(src, []byte("\n")) {
		line := i + 1
		text := strings.TrimSuffix(string(raw), "\r")
		if !utf8.ValidString(text) {
			p.fail(line, "line is not valid UTF-8")
			continue
		}
		ws, err := splitLine(text)
		if err != nil {
			if f := strings.Fields(text); f[0] == "role" || f[0] == "no" {
				// A broken role header still opens a block, so that its lines
				// are not reported as outside one.
				p.cur = &block{line: line, broken: true}
			}
			p.fail(line, "%v", err)
			continue
		}
		if len(ws) > 0 {
			p.statement(line, ws)
		}
	}
	p.cur = nil
	for _, b := range p.blocks {
		p.checkBlock(b)
	}
	var r *Rules
	if len(p.errs) == 0 {
		r = p.build(cols)
	}
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
		if len(p.errs) > maxErrors {
			p.errs = p.errs[:maxErrors]
		}
		return nil, p.errs
	}
	return r, nil
}

// splitLine cuts a line into words. '#' starts a comment outside a quoted
// string; '=' is a word of its own, so "assigneeId=token.sub" reads as three.
func splitLine(line string) ([]word, error) {
	var ws []word
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case isSpace(c):
			i++
		case c == '#':
			return ws, nil
		case c == '=':
			ws = append(ws, word{text: "="})
			i++
		case c == '"':
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' {
					j++
				}
			}
			if j >= len(line) {
				return nil, errors.New("bad syntax: unterminated quoted string")
			}
			s, err := strconv.Unquote(line[i : j+1])
			if err != nil {
				return nil, fmt.Errorf("bad syntax: bad quoted string %s", line[i:j+1])
			}
			ws = append(ws, word{text: s, quoted: true})
			i = j + 1
		default:
			j := i
			for j < len(line) && !isSpace(line[j]) && !strings.ContainsRune("#=\"", rune(line[j])) {
				j++
			}
			ws = append(ws, word{text: line[i:j]})
			i = j
		}
	}
	return ws, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r' }

func (p *parser) fail(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
	if p.cur != nil && line >= p.cur.line {
		p.cur.broken = true
	}
}

func (p *parser) statement(line int, ws []word) {
	if head := ws[0]; !head.quoted {
		switch head.text {
		case "claim":
			p.claimStatement(line, ws)
			return
		case "role":
			p.roleStatement(line, ws)
			return
		case "no":
			if len(ws) >= 2 && ws[1].text == "role" && !ws[1].quoted {
				p.noRoleStatement(line, ws)
				return
			}
		case "all", "nothing":
			p.accessStatement(line, ws)
			return
		}
	}
	p.memberStatement(line, ws)
}

func (p *parser) claimStatement(line int, ws []word) {
	switch {
	case len(ws) != 2:
		p.fail(line, "bad syntax: expected `claim <name>`, the token claim that holds the caller's role")
	case ws[1].text == "":
		p.fail(line, "claim name must not be empty")
	case p.claimLine != 0:
		p.fail(line, "claim is already set at line %d", p.claimLine)
	case len(p.blocks) > 0:
		p.fail(line, "claim must come before the first role block (line %d)", p.blocks[0].line)
	default:
		p.claim, p.claimLine = ws[1].text, line
	}
}

func (p *parser) roleStatement(line int, ws []word) {
	b := &block{line: line}
	p.cur = b
	if len(ws) != 2 {
		p.fail(line, "bad syntax: expected `role <name>` (quote a name with spaces: role \"field tech\")")
		return
	}
	b.name = ws[1].text
	if b.name == "" {
		p.fail(line, "role name must not be empty")
		return
	}
	if prev, dup := p.named[b.name]; dup {
		p.fail(line, "duplicate role %s: already defined at line %d", quoteIfNeeded(b.name), prev.line)
		return
	}
	p.named[b.name] = b
	p.blocks = append(p.blocks, b)
}

func (p *parser) noRoleStatement(line int, ws []word) {
	b := &block{line: line, noRole: true}
	p.cur = b
	if len(ws) != 2 {
		p.fail(line, "bad syntax: expected `no role` alone on its line")
		return
	}
	if p.noRole != nil {
		p.fail(line, "duplicate `no role`: already defined at line %d", p.noRole.line)
		return
	}
	p.noRole = b
	p.blocks = append(p.blocks, b)
}

// accessStatement reads `all` and `nothing`.
func (p *parser) accessStatement(line int, ws []word) {
	kw := ws[0].text
	b := p.cur
	if b == nil {
		p.fail(line, "`%s` outside a role block: start one with `role <name>` or `no role`", kw)
		return
	}
	b.statements++
	switch {
	case len(ws) != 1:
		p.fail(line, "bad syntax: `%s` stands alone on its line", kw)
	case b.all != 0 || b.nothing != 0:
		p.fail(line, "%s already says `%s` at line %d", b.title(), b.accessWord(), max(b.all, b.nothing))
	case len(b.members) > 0:
		p.fail(line, "%s defines a bucket (line %d): a role syncs `all`, `nothing` or one bucket, not several", b.title(), b.members[0].Line)
	case kw == "all":
		b.all = line
	default:
		b.nothing = line
	}
}

func (b *block) accessWord() string {
	if b.all != 0 {
		return "all"
	}
	return "nothing"
}

const memberForms = "`<Collection> where <field> = token.<claim>`, `<Collection> where <field> in <Collection>` or `<Collection> where id in <Collection>.<field>`"

// memberStatement reads a bucket line, checks it against the collections and
// adds it to the current block.
func (p *parser) memberStatement(line int, ws []word) {
	if len(ws) < 2 || ws[1].text != "where" || ws[1].quoted {
		if _, ok := p.cols[ws[0].text]; ok && !ws[0].quoted {
			p.fail(line, "bad syntax: expected `where` after %s", ws[0].text)
		} else {
			p.fail(line, "bad syntax: unknown statement %q: expected claim, role, no role, all, nothing or %s", ws[0].text, memberForms)
		}
		return
	}
	b := p.cur
	if b == nil {
		p.fail(line, "bucket line outside a role block: start one with `role <name>`")
		return
	}
	b.statements++
	if len(ws) != 5 {
		p.fail(line, "bad syntax: expected %s", memberForms)
		return
	}
	for _, w := range []word{ws[0], ws[2], ws[3], ws[4]} {
		if w.quoted {
			p.fail(line, "bad syntax: %q: only role and claim names may be quoted", w.text)
			return
		}
	}
	if b.noRole {
		p.fail(line, "`no role` takes `all` or `nothing`: a bucket belongs to a named role")
		return
	}
	if b.all != 0 || b.nothing != 0 {
		p.fail(line, "%s says `%s` at line %d: a role syncs `all`, `nothing` or one bucket, not several", b.title(), b.accessWord(), max(b.all, b.nothing))
		return
	}
	name, lhs, op, rhs := ws[0].text, ws[2].text, ws[3].text, ws[4].text
	c, ok := p.collection(line, name)
	if !ok {
		return
	}
	var m *Membership
	switch op {
	case "=":
		m = p.rootLine(line, c, lhs, rhs)
	case "in":
		if via, field, dotted := strings.Cut(rhs, "."); dotted {
			m = p.parentLine(line, c, lhs, via, field)
		} else {
			m = p.childLine(line, c, lhs, rhs)
		}
	default:
		p.fail(line, "bad syntax: expected = or in after %s, found %q", lhs, op)
	}
	if m == nil {
		return
	}
	if prev := b.member(c.Name); prev != nil {
		p.fail(line, "%s already has a line in %s (line %d): a role syncs a collection one way", c.Name, b.title(), prev.Line)
		return
	}
	if m.Shape == Root && b.root != nil {
		p.fail(line, "two roots in %s: %s (line %d) is already its root, and a bucket has exactly one", b.title(), b.root.Collection.Name, b.root.Line)
		return
	}
	if m.Shape == Root {
		b.root = m
	}
	b.members = append(b.members, m)
}

// rootLine checks `C where F = token.X`.
func (p *parser) rootLine(line int, c *collections.Collection, field, rhs string) *Membership {
	claim, ok := strings.CutPrefix(rhs, "token.")
	if !ok || claim == "" {
		p.fail(line, "bad syntax: the right side of = must be a token claim, like token.sub; found %q", rhs)
		return nil
	}
	if field != "id" {
		f, ok := p.field(line, c, field)
		if !ok {
			return nil
		}
		if f.Kind != collections.String && f.Kind != collections.Enum {
			p.fail(line, "kind mismatch: %s.%s is %s, but a token claim is a string: compare a String or Enum field, or id", c.Name, field, f.Kind)
			return nil
		}
	}
	return &Membership{Collection: c, Shape: Root, Field: field, Claim: claim, Line: line}
}

// childLine checks `C where F in P`.
func (p *parser) childLine(line int, c *collections.Collection, field, parentName string) *Membership {
	parent, ok := p.collection(line, parentName)
	if !ok {
		return nil
	}
	if field == "id" {
		hint := "<field>"
		if refs := referencesTo(parent, c.Name); len(refs) == 1 {
			hint = refs[0]
		}
		p.fail(line, "bad syntax: a parent line names the referencing field: `%s where id in %s.%s`", c.Name, parent.Name, hint)
		return nil
	}
	f, ok := p.field(line, c, field)
	if !ok || !p.isReference(line, c, f, parent) {
		return nil
	}
	return &Membership{Collection: c, Shape: Child, Field: field, Via: parent, Line: line}
}

// parentLine checks `C where id in M.F`.
func (p *parser) parentLine(line int, c *collections.Collection, lhs, viaName, field string) *Membership {
	if lhs != "id" {
		p.fail(line, "bad syntax: a parent line matches on id: `%s where id in %s.%s` (a child line is `%s where %s in %s`)", c.Name, viaName, field, c.Name, lhs, viaName)
		return nil
	}
	via, ok := p.collection(line, viaName)
	if !ok {
		return nil
	}
	f, ok := p.field(line, via, field)
	if !ok || !p.isReference(line, via, f, c) {
		return nil
	}
	return &Membership{Collection: c, Shape: Parent, Field: field, Via: via, Line: line}
}

func (p *parser) collection(line int, name string) (*collections.Collection, bool) {
	c, ok := p.cols[name]
	if !ok {
		p.fail(line, "unknown collection %s (collections: %s)", name, strings.Join(sortedKeys(p.cols), ", "))
	}
	return c, ok
}

func (p *parser) field(line int, c *collections.Collection, name string) (collections.Field, bool) {
	f, ok := c.Field(name)
	if !ok {
		names := []string{"id"}
		for _, f := range c.Fields {
			names = append(names, f.Name)
		}
		p.fail(line, "unknown field %s.%s (fields: %s)", c.Name, name, strings.Join(names, ", "))
	}
	return f, ok
}

// isReference checks that f, a field of c, holds ids of target.
func (p *parser) isReference(line int, c *collections.Collection, f collections.Field, target *collections.Collection) bool {
	switch {
	case f.RefersTo == "":
		p.fail(line, "%s.%s is not a reference to %s (it refers to no collection)", c.Name, f.Name, target.Name)
		return false
	case f.RefersTo != target.Name:
		p.fail(line, "%s.%s is not a reference to %s (it refers to %s)", c.Name, f.Name, target.Name, f.RefersTo)
		return false
	case f.Kind != collections.String:
		p.fail(line, "kind mismatch: %s.%s refers to %s but is %s; ids are strings", c.Name, f.Name, target.Name, f.Kind)
		return false
	}
	return true
}

func referencesTo(c *collections.Collection, target string) []string {
	var out []string
	for _, f := range c.Fields {
		if f.RefersTo == target {
			out = append(out, f.Name)
		}
	}
	return out
}

// checkBlock checks what no single line shows: that a block says something,
// and that a bucket has a root every other line hangs off.
func (p *parser) checkBlock(b *block) {
	if b.broken {
		return
	}
	if b.statements == 0 {
		p.fail(b.line, "%s is empty: give it `all`, `nothing` or bucket lines", b.title())
		return
	}
	if len(b.members) == 0 {
		return
	}
	if b.root == nil {
		p.fail(b.line, "%s has no root: a bucket needs exactly one `<Collection> where <field> = token.<claim>` line", b.title())
		return
	}
	for _, m := range b.members {
		if m.Shape == Root {
			continue
		}
		chain := []string{m.Collection.Name}
		for at := m; ; {
			next := b.member(at.Via.Name)
			if next == nil {
				p.fail(m.Line, "unreachable collection %s: %s, which %s does not sync, so it never reaches the root %s",
					m.Collection.Name, hangs(chain, at.Via.Name), b.title(), b.root.Collection.Name)
				break
			}
			if next.Shape == Root {
				break
			}
			if slices.Contains(chain, next.Collection.Name) {
				p.fail(m.Line, "unreachable collection %s: %s, a cycle that never reaches the root %s",
					m.Collection.Name, hangs(chain, next.Collection.Name), b.root.Collection.Name)
				break
			}
			chain = append(chain, next.Collection.Name)
			at = next
		}
	}
}

// hangs words a chain of collections, each hanging off the next.
func hangs(chain []string, last string) string {
	var s strings.Builder
	s.WriteString(chain[0])
	for i, c := range append(chain[1:len(chain):len(chain)], last) {
		if i > 0 {
			s.WriteString(", which")
		}
		s.WriteString(" hangs off " + c)
	}
	return s.String()
}

// build turns valid blocks into Rules and checks what only all roles
// together show: that the collections' dependencies admit one lock order.
func (p *parser) build(cols []*collections.Collection) *Rules {
	r := &Rules{
		roleClaim: cmp.Or(p.claim, DefaultRoleClaim),
		roles:     map[string]*role{},
		downhill:  map[string][]string{},
	}
	for _, b := range p.blocks {
		ro := &role{name: b.name, line: b.line}
		switch {
		case b.all != 0:
			ro.kind = wholeTenant
		case b.nothing != 0:
			ro.kind = denied
		default:
			ro.kind = inBucket
			ro.bucket = newBucket(b)
			r.buckets = append(r.buckets, ro.bucket)
		}
		if b.noRole {
			r.noRole = ro
		} else {
			r.roles[b.name] = ro
		}
	}
	slices.SortFunc(r.buckets, func(a, b *BucketDef) int { return cmp.Compare(a.name, b.name) })

	// One lock order for every writer: a collection before those whose
	// membership depends on it, in every bucket at once.
	type edge struct {
		role string
		line int
	}
	edges := map[[2]string]edge{} // (via, collection) → first line that makes it
	for _, b := range p.blocks {
		for _, m := range b.members {
			if m.Via == nil {
				continue
			}
			k := [2]string{m.Via.Name, m.Collection.Name}
			if _, seen := edges[k]; !seen {
				edges[k] = edge{b.title(), m.Line}
				r.downhill[k[0]] = append(r.downhill[k[0]], k[1])
			}
		}
	}
	names := make([]string, len(cols))
	byName := map[string]*collections.Collection{}
	for i, c := range cols {
		names[i] = c.Name
		byName[c.Name] = c
	}
	order, cycle := topoOrder(names, r.downhill)
	if cycle != nil {
		var parts []string
		last := 0
		for i := range cycle {
			from, to := cycle[i], cycle[(i+1)%len(cycle)]
			e := edges[[2]string{from, to}]
			parts = append(parts, fmt.Sprintf("%s depends on %s in %s (line %d)", to, from, e.role, e.line))
			last = max(last, e.line)
		}
		p.fail(last, "collections depend on each other across roles, so writers could not take their locks in one order: %s", strings.Join(parts, ", "))
		return nil
	}
	for _, n := range order {
		r.lockOrder = append(r.lockOrder, byName[n])
	}
	r.text = format(r)
	return r
}

func newBucket(b *block) *BucketDef {
	bd := &BucketDef{
		name:       b.name,
		root:       b.root,
		byName:     map[string]*Membership{},
		dependents: map[string][]*Membership{},
	}
	var names []string
	down := map[string][]string{}
	for _, m := range b.members {
		bd.byName[m.Collection.Name] = m
		names = append(names, m.Collection.Name)
		if m.Via != nil {
			bd.dependents[m.Via.Name] = append(bd.dependents[m.Via.Name], m)
			down[m.Via.Name] = append(down[m.Via.Name], m.Collection.Name)
		}
	}
	for _, deps := range bd.dependents {
		slices.SortFunc(deps, func(a, b *Membership) int { return cmp.Compare(a.Collection.Name, b.Collection.Name) })
	}
	order, _ := topoOrder(names, down) // a tree hanging off the root: checkBlock saw to it
	for _, n := range order {
		bd.members = append(bd.members, bd.byName[n])
	}
	var text strings.Builder
	text.WriteString("bucket " + quoteIfNeeded(bd.name) + "\n")
	for _, m := range bd.members {
		text.WriteString(m.String() + "\n")
	}
	bd.fingerprint = digest(text.String())
	return bd
}

// topoOrder orders nodes so that every edge a → b of down puts a first,
// taking the smallest name whenever several are free. When the edges hold a
// cycle, it returns one (each node depends on the one before it, the first
// on the last).
func topoOrder(nodes []string, down map[string][]string) (order, cycle []string) {
	indeg := map[string]int{}
	for _, n := range nodes {
		indeg[n] += 0
	}
	for _, tos := range down {
		for _, to := range tos {
			indeg[to]++
		}
	}
	var ready []string
	for n, d := range indeg {
		if d == 0 {
			ready = append(ready, n)
		}
	}
	for len(ready) > 0 {
		slices.Sort(ready)
		n := ready[0]
		ready = ready[1:]
		order = append(order, n)
		for _, to := range down[n] {
			if indeg[to]--; indeg[to] == 0 {
				ready = append(ready, to)
			}
		}
	}
	if len(order) == len(indeg) {
		return order, nil
	}
	// Every node left has a predecessor that is left: walk back from the
	// smallest until a node repeats.
	left := map[string]bool{}
	for n, d := range indeg {
		if d > 0 {
			left[n] = true
		}
	}
	up := map[string][]string{}
	for from, tos := range down {
		for _, to := range tos {
			if left[from] && left[to] {
				up[to] = append(up[to], from)
			}
		}
	}
	at := slices.Min(sortedKeys(left))
	var path []string
	for !slices.Contains(path, at) {
		path = append(path, at)
		slices.Sort(up[at])
		at = up[at][0]
	}
	cycle = path[slices.Index(path, at):]
	slices.Reverse(cycle)
	return order, cycle
}

// Format returns the rules in normal form: the claim, the named roles by
// name, then `no role`; a bucket's lines root first, each after the one it
// hangs off. It parses back to the same rules.
func (r *Rules) Format() string { return r.text }

// Fingerprint is a stable digest of the normalized rules: comments, layout
// and the order of roles and lines do not change it, any change of meaning
// does. A server compares it with the one it stored to notice a changed
// rules file and recompute bucket membership.
func (r *Rules) Fingerprint() string { return digest(r.text) }

func format(r *Rules) string {
	var s strings.Builder
	s.WriteString("claim " + quoteIfNeeded(r.roleClaim) + "\n")
	body := func(ro *role) {
		switch ro.kind {
		case wholeTenant:
			s.WriteString("    all\n")
		case denied:
			s.WriteString("    nothing\n")
		case inBucket:
			for _, m := range ro.bucket.members {
				s.WriteString("    " + m.String() + "\n")
			}
		}
	}
	for _, name := range sortedKeys(r.roles) {
		s.WriteString("\nrole " + quoteIfNeeded(name) + "\n")
		body(r.roles[name])
	}
	if r.noRole != nil {
		s.WriteString("\nno role\n")
		body(r.noRole)
	}
	return s.String()
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// quoteIfNeeded writes a role or claim name as a bare word when it reads back
// as one, quoted otherwise.
func quoteIfNeeded(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return !unicode.IsPrint(r) || unicode.IsSpace(r) || strings.ContainsRune("#=\"", r)
	}) {
		return strconv.Quote(s)
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
