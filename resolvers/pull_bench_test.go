package resolvers_test

import (
	"fmt"
	"testing"

	"github.com/tidemark/tidemark/server"
)

// BenchmarkPullPage serves a pull page of 1,000 work orders (the paged
// pull of issue 12, compared with PostGraphile's paged read) through the
// real handler and a real PostgreSQL, one page per iteration, every field
// of the documents selected as RxDB's replication asks for them.
func BenchmarkPullPage(b *testing.B) {
	env := newReadEnv(b, server.Config{})
	a := newAPI(b, env, tenantOf(b), "alice")
	orders := make([]doc, 1000)
	for w := range orders {
		orders[w] = workOrderDoc(fmt.Sprintf("wo-%04d", w), fmt.Sprintf("site-%02d", w%10))
	}
	a.seed(workOrderFixture, orders...)
	const query = `{ pullWorkOrders(checkpoint: null, limit: 1000) {
		documents { id siteId title description status priority assigneeId dueAt updatedAt deleted }
		checkpoint { cursor } } }`
	b.ReportAllocs()
	cpu0 := processCPU(b)
	for b.Loop() {
		var got struct{ PullWorkOrders struct{ Documents []any } }
		a.read(query, nil, &got)
		if len(got.PullWorkOrders.Documents) != len(orders) {
			b.Fatalf("%d documents, want %d", len(got.PullWorkOrders.Documents), len(orders))
		}
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
