package resolvers_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsUpToDate runs `go tool gqlgen generate` on a copy of
// the module and fails if any generated file (graph/, resolver stubs)
// would change: the schema is the source of truth and graph/ must follow it.
func TestGeneratedCodeIsUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs gqlgen on a copy of the module")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := copyModule(root, work); err != nil {
		t.Fatalf("copy module: %v", err)
	}
	cmd := exec.Command("go", "tool", "gqlgen", "generate")
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gqlgen generate: %v\n%s", err, out)
	}
	checked := 0
	for _, dir := range []string{"graph", "resolvers"} {
		err := filepath.WalkDir(filepath.Join(work, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
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

// copyModule copies the Go sources, schema and module files (not .git,
// node_modules or data folders) so gqlgen can load the packages.
func copyModule(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "tidemark-data", "testdata":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		ext := filepath.Ext(path)
		if ext != ".go" && ext != ".graphqls" && ext != ".sql" && rel != "go.mod" && rel != "go.sum" && rel != "gqlgen.yml" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}
