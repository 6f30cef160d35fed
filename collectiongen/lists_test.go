package collectiongen

import (
	"strings"
	"testing"
)

func TestRewriteListMarshalsPointsObjectListsAtMarshalList(t *testing.T) {
	src := `func (ec *executionContext) marshalNWorkOrder2ᚕᚖgithubᚗcomᚋtidemarkᚋtidemarkᚋgraphᚋmodelᚐWorkOrderᚄ(ctx context.Context, sel ast.SelectionSet, v []*model.WorkOrder) graphql.Marshaler {
	ret := graphql.MarshalSliceConcurrently(ctx, len(v), 0, false, func(ctx context.Context, i int) graphql.Marshaler {
		return nil
	})
	return ret
}

func (ec *executionContext) marshalNWorkOrder2ᚖgithubᚗcomᚋtidemarkᚋtidemarkᚋgraphᚋmodelᚐWorkOrder(ctx context.Context, sel ast.SelectionSet, v *model.WorkOrder) graphql.Marshaler {
	ret := graphql.MarshalSliceConcurrently(ctx, len(v), 0, false, nil)
}
`
	out := string(rewriteListMarshals([]byte(src)))
	if !strings.Contains(out, `ret := marshalList(ctx, sel, "WorkOrder", len(v), 0, false, func(ctx context.Context, i int) graphql.Marshaler {`) {
		t.Fatalf("the list marshaller was not pointed at marshalList:\n%s", out)
	}
	if strings.Count(out, "graphql.MarshalSliceConcurrently(") != 1 {
		t.Fatalf("a function that marshals no list was rewritten too:\n%s", out)
	}
	if again := string(rewriteListMarshals([]byte(out))); again != out {
		t.Fatalf("a second rewrite changed the output:\n%s", again)
	}
}
