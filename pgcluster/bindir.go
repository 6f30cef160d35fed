package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrNoPostgres is returned (wrapped) by FindBinDir, and so by Start, when
// no PostgreSQL server binaries can be found on the machine.
var ErrNoPostgres = errors.New("no PostgreSQL server binaries found")

// serverBinaries are the programs pgcluster needs in a bin folder.
var serverBinaries = []string{"initdb", "pg_ctl", "postgres"}

// defaultBinGlobs are the well-known install locations searched last, in
// this order; within one pattern the highest version comes first.
var defaultBinGlobs = []string{
	"/usr/lib/postgresql/*/bin", // Debian, Ubuntu
	"/usr/pgsql-*/bin",          // RHEL, Fedora (PGDG packages)
	"/usr/local/pgsql/bin",      // built from source
}

// FindBinDir returns the folder holding the PostgreSQL server binaries
// (initdb, pg_ctl, postgres). It looks, in order, at the folder of
// `postgres` or `initdb` found on PATH (symlinks resolved), at the output
// of `pg_config --bindir`, and at /usr/lib/postgresql/*/bin (highest
// version first). If nothing is found the error wraps ErrNoPostgres and
// says how to fix it.
func FindBinDir() (string, error) {
	return findBinDir(os.Getenv("PATH"), defaultBinGlobs)
}

func findBinDir(pathEnv string, globs []string) (string, error) {
	// 1. postgres or initdb on PATH.
	for _, name := range []string{"postgres", "initdb"} {
		p, ok := lookPathIn(name, pathEnv)
		if !ok {
			continue
		}
		if real, err := filepath.EvalSymlinks(p); err == nil && hasServerBinaries(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if hasServerBinaries(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	// 2. pg_config --bindir (pg_config is often installed by client or
	// development packages, and names the server's bin folder).
	if p, ok := lookPathIn("pg_config", pathEnv); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, p, "--bindir").Output()
		cancel()
		if dir := strings.TrimSpace(string(out)); err == nil && dir != "" && hasServerBinaries(dir) {
			return dir, nil
		}
	}
	// 3. Well-known locations.
	for _, pattern := range globs {
		matches, _ := filepath.Glob(pattern)
		sortByVersionDesc(matches)
		for _, dir := range matches {
			if hasServerBinaries(dir) {
				return dir, nil
			}
		}
	}
	return "", fmt.Errorf("%w (looked for postgres and initdb on PATH, at `pg_config --bindir` and in %s): "+
		"install the PostgreSQL server package (e.g. `apt-get install postgresql`), "+
		"or set TIDEMARK_DATABASE_URL to use an existing PostgreSQL database",
		ErrNoPostgres, strings.Join(globs, ", "))
}

// lookPathIn is exec.LookPath with an explicit PATH value.
func lookPathIn(name, pathEnv string) (string, bool) {
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			continue // an empty element means ".", which we never want here
		}
		p := filepath.Join(dir, name)
		if isExecutable(p) {
			return p, true
		}
	}
	return "", false
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

func hasServerBinaries(dir string) bool {
	for _, name := range serverBinaries {
		if !isExecutable(filepath.Join(dir, name)) {
			return false
		}
	}
	return true
}

// sortByVersionDesc sorts paths like /usr/lib/postgresql/9.6/bin and
// /usr/lib/postgresql/16/bin by the numbers they contain, highest first.
func sortByVersionDesc(paths []string) {
	key := func(p string) []int {
		var nums []int
		for _, f := range strings.FieldsFunc(p, func(r rune) bool { return r < '0' || r > '9' }) {
			n, _ := strconv.Atoi(f)
			nums = append(nums, n)
		}
		return nums
	}
	sort.SliceStable(paths, func(i, j int) bool {
		a, b := key(paths[i]), key(paths[j])
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] > b[k]
			}
		}
		return len(a) > len(b)
	})
}
