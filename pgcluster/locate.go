package pgcluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// locate decides where the cluster lives. That is the data folder, unless
// this process is root, PostgreSQL's user cannot reach the data folder and
// the data folder holds no cluster of its own: then it is a folder below
// fallbackDir named after the data folder's path, so that every start of the
// same data folder finds it. A data folder that was once given such a folder
// (it holds pgcluster.location) keeps it, even once it has become reachable.
func (c *Cluster) locate(fallbackDir string) error {
	if !c.acct.switchUser {
		return nil
	}
	if _, err := os.Lstat(c.pgData); err == nil {
		return nil // the data folder's own cluster; probe says if it is unreachable
	}
	marked, err := os.ReadFile(filepath.Join(c.dataDir, locationName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading where the cluster of the data folder lives: %w", err)
	}
	c.marked = err == nil
	blocker, _ := c.firstUntraversable(filepath.Dir(c.dataDir))
	if !c.marked && blocker == "" {
		return nil
	}
	if fallbackDir == "" {
		fallbackDir = DefaultFallbackDir
	}
	if fallbackDir, err = filepath.Abs(fallbackDir); err != nil {
		return fmt.Errorf("fallback folder: %w", err)
	}
	c.relocated = true
	c.markedDir, _, _ = strings.Cut(strings.TrimSpace(string(marked)), "\n")
	c.setClusterDir(fallbackClusterDir(fallbackDir, c.dataDir))
	if blocker != "" {
		c.log.Info("PostgreSQL's user cannot reach the data folder, so the cluster lives in a folder that user can reach; "+
			"the data folder keeps the rest", "user", c.acct.name, "blocked_by", blocker, "cluster_dir", c.clusterDir)
	} else {
		c.log.Info("the cluster of this data folder lives in another folder", "cluster_dir", c.clusterDir)
	}
	return nil
}

// fallbackClusterDir is the cluster folder below fallbackDir of the data
// folder dataDir: named by a hash of dataDir's path with symlinks resolved,
// so that every spelling of the same folder finds the same cluster.
func fallbackClusterDir(fallbackDir, dataDir string) string {
	sum := sha256.Sum256([]byte(canonicalPath(dataDir)))
	return filepath.Join(fallbackDir, hex.EncodeToString(sum[:8]))
}

// canonicalPath resolves the symlinks in the longest existing part of the
// absolute path p.
func canonicalPath(p string) string {
	rest := ""
	for d := p; ; d = filepath.Dir(d) {
		if real, err := filepath.EvalSymlinks(d); err == nil {
			return filepath.Join(real, rest)
		}
		if filepath.Dir(d) == d {
			return p
		}
		rest = filepath.Join(filepath.Base(d), rest)
	}
}

// claimClusterDir ties a cluster folder below Config.FallbackDir to the data
// folder: the data folder's pgcluster.location names it, and it names the
// data folder. Called with the lock held, before initdb. A cluster found
// there while the data folder names no cluster folder belongs to an earlier
// data folder at this path that was removed since; removing a data folder
// removes its cluster, so that one is removed too and the start begins
// afresh.
func (c *Cluster) claimClusterDir(ctx context.Context) error {
	if !c.relocated {
		return nil
	}
	switch {
	case !c.marked:
		if _, err := os.Lstat(c.pgData); err == nil {
			c.log.Warn("removing the cluster of an earlier data folder at this path, which was removed since; "+
				"this data folder starts afresh", "cluster_dir", c.clusterDir)
			if real, err := filepath.EvalSymlinks(c.pgData); err == nil {
				c.pgData = real // /proc reports resolved paths
			}
			if err := c.clearLeftovers(ctx); err != nil {
				return err
			}
			for _, p := range []string{c.pgData, c.logFile, c.logFile + ".1"} {
				if err := os.RemoveAll(p); err != nil {
					return fmt.Errorf("removing the cluster of a removed data folder: %w", err)
				}
			}
		}
	case c.markedDir != c.clusterDir:
		c.log.Warn("the data folder names a cluster folder made for another path of it (was the data folder moved or copied?); "+
			"using the one for its path now; to keep the other's data instead, stop Tidemark and put the named folder in its place",
			"named", c.markedDir, "cluster_dir", c.clusterDir)
	}
	if err := os.WriteFile(filepath.Join(c.clusterDir, dataFolderName), []byte(c.dataDir+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing the cluster folder's note: %w", err)
	}
	// Written whole or not at all: a data folder without it loses its cluster.
	marker := filepath.Join(c.dataDir, locationName)
	if err := os.WriteFile(marker+".tmp", []byte(c.clusterDir+"\n"), 0o644); err != nil {
		return fmt.Errorf("noting in the data folder where its cluster lives: %w", err)
	}
	if err := os.Rename(marker+".tmp", marker); err != nil {
		return fmt.Errorf("noting in the data folder where its cluster lives: %w", err)
	}
	c.marked, c.markedDir = true, c.clusterDir
	return nil
}

// probe checks, before anything is created, that PostgreSQL can run as
// c.acct and reach the cluster folder's location, and returns the major
// version of the binaries.
func (c *Cluster) probe(ctx context.Context) (int, error) {
	// The cluster folder itself is created or chowned for the user later;
	// its nearest existing parent must already be reachable.
	dir := filepath.Dir(c.clusterDir)
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
			if blocker, fi := c.firstUntraversable(c.clusterDir); blocker != "" {
				uid, _, _ := fileOwner(fi)
				why := ""
				if _, err := os.Lstat(c.pgData); err == nil && !c.relocated {
					why = " (it holds a cluster already, which stays there)"
				}
				return 0, fmt.Errorf("PostgreSQL runs as user %q (uid %d), which cannot reach the %s %s%s: "+
					"%s (mode %v, owner uid %d) is not traversable by that user; choose a %s below folders that user can traverse "+
					"(e.g. /var/lib/tidemark), or allow it (e.g. `chmod o+x %s`)",
					c.acct.name, c.acct.uid, c.clusterFolderName(), c.clusterDir, why, blocker, fi.Mode().Perm(), uid,
					c.clusterFolderName(), blocker)
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
