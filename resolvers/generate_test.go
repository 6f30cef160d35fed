package resolvers_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/testenv/modcopy"
)

// TestGeneratedCodeIsUpToDate runs `go generate`'s command on a copy of the
// module and fails if any generated file (graph/, resolver stubs, the
// collection registry, the printed schema, migrations) would change: the
// schema is the source of truth and the rest must follow it.
func TestGeneratedCodeIsUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator on a copy of the module")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := modcopy.Copy(root, work); err != nil {
		t.Fatalf("copy module: %v", err)
	}
	cmd := exec.Command("go", "run", "./cmd/tidemark-generate")
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./cmd/tidemark-generate: %v\n%s", err, out)
	}
	generated := func(path string) bool {
		rel, _ := filepath.Rel(work, path)
		switch {
		case strings.HasSuffix(path, "_test.go"):
			return false
		case strings.HasPrefix(rel, "graph"+string(filepath.Separator)), strings.HasPrefix(rel, "resolvers"+string(filepath.Separator)):
			return strings.HasSuffix(path, ".go")
		}
		return rel == filepath.Join("collections", "registry.generated.go") || rel == filepath.Join("docs", "schema.graphql") ||
			strings.HasPrefix(rel, filepath.Join("db", "migrations")+string(filepath.Separator))
	}
	checked := 0
	for _, dir := range []string{"graph", "resolvers", "collections", "docs", "db"} {
		err := filepath.WalkDir(filepath.Join(work, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !generated(path) {
				return err
			}
			rel, _ := filepath.Rel(work, path)
			fresh, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			committed, err := os.ReadFile(filepath.Join(root, rel))
			if err != nil {
				t.Errorf("gqlgen generates %s, which the tree lacks: run `go generate ./...`", rel)
				return nil
			}
			if !bytes.Equal(fresh, committed) {
				t.Errorf("%s is out of date with the schema: run `go generate ./...`", rel)
			}
			checked++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Files in the tree that gqlgen no longer generates are stale too.
	stale, _ := filepath.Glob(filepath.Join(root, "graph", "*.generated.go"))
	for _, path := range stale {
		rel, _ := filepath.Rel(root, path)
		if _, err := os.Stat(filepath.Join(work, rel)); err != nil {
			t.Errorf("%s is no longer generated from the schema: delete it", rel)
		}
	}
	if checked < 5 {
		t.Fatalf("compared only %d generated files; the check is not looking at the right tree", checked)
	}
}
