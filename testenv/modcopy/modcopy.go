// Package modcopy copies Tidemark's module to another folder, for tests that
// run `go generate` or `go build` on a copy (to add a schema file, or to
// check that the generated code is current) without touching the tree.
package modcopy

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Copy copies the module in src to dst: every regular file, so that what
// packages embed (migrations, default sync rules) comes along, but for
// what .gitignore leaves out (the embedded database's data folder, Node
// modules, built binaries) and .git.
func Copy(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "tidemark-data":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() || ignored(rel) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

// ignored matches .gitignore's files: the built binary and test outputs.
func ignored(rel string) bool {
	return rel == "tidemark" || strings.HasSuffix(rel, ".test") || strings.HasSuffix(rel, ".out")
}
