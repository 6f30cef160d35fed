package resolvers

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/graph/model"
)

// BenchmarkFromDocuments converts a pull page of 1,000 work orders into
// the GraphQL models, as pull, stream and the read API do.
func BenchmarkFromDocuments(b *testing.B) {
	docs := make([]collections.Document, 1000)
	for i := range docs {
		docs[i] = collections.Document{ID: fmt.Sprintf("wo-%d", i), UpdatedAt: time.Now(), Fields: map[string]any{
			"siteId": "site-1", "title": "Work order", "description": nil, "status": "OPEN",
			"priority": int64(i % 5), "assigneeId": "u1", "dueAt": time.Now(),
		}}
	}
	b.ReportAllocs()
	for b.Loop() {
		if out := fromDocuments[model.WorkOrder](collections.WorkOrder, docs); len(out) != len(docs) {
			b.Fatal(len(out))
		}
	}
}
