package server

import (
	"context"
	"strings"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// depthLimitCode is the extensions.code of a too-deep operation, named after
// the limit like gqlgen's COMPLEXITY_LIMIT_EXCEEDED; registered as a
// protocol error, so plain HTTP requests get 422.
const depthLimitCode = "DEPTH_LIMIT_EXCEEDED"

var registerDepthCode sync.Once

// newDepthLimit registers the code with gqlgen once (its registry is a
// plain global map) and returns the extension.
func newDepthLimit(max int) depthLimit {
	registerDepthCode.Do(func() { errcode.RegisterErrorType(depthLimitCode, errcode.KindProtocol) })
	return depthLimit{Max: max}
}

// depthLimit rejects operations nested deeper than Max selection levels.
// Introspection subtrees are not counted: GraphiQL's own schema query nests
// type references about ten levels deep, and introspection has its own switch.
type depthLimit struct{ Max int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = depthLimit{}

func (depthLimit) ExtensionName() string                   { return "DepthLimit" }
func (depthLimit) Validate(graphql.ExecutableSchema) error { return nil }
func (d depthLimit) MutateOperationContext(_ context.Context, oc *graphql.OperationContext) *gqlerror.Error {
	if oc.Operation == nil {
		return nil
	}
	if depth := selectionDepth(oc.Operation.SelectionSet, 0, map[string]bool{}); depth > d.Max {
		err := gqlerror.Errorf("operation is nested %d levels deep; the limit is %d", depth, d.Max)
		errcode.Set(err, depthLimitCode)
		return err
	}
	return nil
}

func selectionDepth(set ast.SelectionSet, level int, visiting map[string]bool) int {
	deepest := level
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			if strings.HasPrefix(s.Name, "__") {
				continue
			}
			if len(s.SelectionSet) == 0 {
				d = level + 1
			} else {
				d = selectionDepth(s.SelectionSet, level+1, visiting)
			}
		case *ast.InlineFragment:
			d = selectionDepth(s.SelectionSet, level, visiting)
		case *ast.FragmentSpread:
			// Validation already rejects fragment cycles; the guard keeps
			// this function safe on its own.
			if s.Definition == nil || visiting[s.Name] {
				continue
			}
			visiting[s.Name] = true
			d = selectionDepth(s.Definition.SelectionSet, level, visiting)
			delete(visiting, s.Name)
		}
		deepest = max(deepest, d)
	}
	return deepest
}
