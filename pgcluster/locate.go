package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// probe checks, before anything is created, that PostgreSQL can run as
// c.acct and reach the data folder's location, and returns the major
// version of the binaries.
func (c *Cluster) probe(ctx context.Context) (int, error) {
	// The data folder itself is created or chowned for the user later; its
	// nearest existing parent must already be reachable.
	dir := filepath.Dir(c.dataDir)
	for {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	out, err := c.command(ctx, dir, "postgres", "-V").CombinedOutput()
	if err != nil {
		if c.acct.switchUser && errors.Is(err, fs.ErrPermission) {
			if blocker, fi := c.firstUntraversable(c.dataDir); blocker != "" {
				uid, _, _ := fileOwner(fi)
				return 0, fmt.Errorf("PostgreSQL runs as user %q (uid %d), which cannot reach the data folder %s: "+
					"%s (mode %v, owner uid %d) is not traversable by that user; choose a data folder below folders that user can traverse "+
					"(e.g. /var/lib/tidemark), or allow it (e.g. `chmod o+x %s`)",
					c.acct.name, c.acct.uid, c.dataDir, blocker, fi.Mode().Perm(), uid, blocker)
			}
			return 0, fmt.Errorf("user %q cannot run %s in %s: %w", c.acct.name, filepath.Join(c.binDir, "postgres"), dir, err)
		}
		return 0, fmt.Errorf("running %s -V: %w: %s", filepath.Join(c.binDir, "postgres"), err, bytes.TrimSpace(out))
	}
	m := regexp.MustCompile(`\(PostgreSQL\) (\d+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("cannot read the version in %q from %s -V", bytes.TrimSpace(out), filepath.Join(c.binDir, "postgres"))
	}
	major, _ := strconv.Atoi(string(m[1]))
	return major, nil
}

// firstUntraversable returns the first existing folder on the way to path
// that c.acct may not traverse according to its permission bits.
func (c *Cluster) firstUntraversable(path string) (string, fs.FileInfo) {
	p := "/"
	parts := strings.Split(strings.TrimPrefix(filepath.Clean(path), "/"), "/")
	for i := 0; ; i++ {
		fi, err := os.Stat(p)
		if err != nil {
			return "", nil
		}
		uid, gid, ok := fileOwner(fi)
		if !ok {
			return "", nil
		}
		var bit fs.FileMode = 0o001
		switch {
		case uid == c.acct.uid:
			bit = 0o100
		case gid == c.acct.gid || slices.Contains(c.acct.groups, gid):
			bit = 0o010
		}
		if fi.Mode().Perm()&bit == 0 {
			return p, fi
		}
		if i >= len(parts) || parts[i] == "" {
			return "", nil
		}
		p = filepath.Join(p, parts[i])
	}
}
