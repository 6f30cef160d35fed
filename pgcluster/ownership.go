package pgcluster

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// prepareDataDir creates the data folder and the cluster folder when it is
// another (parents 0755, folders 0700) and, when switching users, gives the
// cluster folder to c.acct. A data folder whose cluster lives elsewhere
// stays root's: its user cannot reach it anyway.
func (c *Cluster) prepareDataDir() error {
	if c.clusterDir != c.dataDir {
		if err := c.makeFolder("data folder", c.dataDir, false); err != nil {
			return err
		}
	}
	if err := c.makeFolder(c.clusterFolderName(), c.clusterDir, c.acct.switchUser); err != nil {
		return err
	}
	return c.chownIfExists(c.logFile)
}

// clusterFolderName names the cluster folder in messages.
func (c *Cluster) clusterFolderName() string {
	if c.clusterDir != c.dataDir {
		return "cluster folder"
	}
	return "data folder"
}

// makeFolder creates dir (parents 0755, dir 0700) unless it exists and,
// when give is set, gives it to c.acct.
func (c *Cluster) makeFolder(what, dir string, give bool) error {
	var created []string
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", what, err)
	}
	if c.acct.switchUser {
		for _, d := range created { // the umask may have narrowed them
			if err := os.Chmod(d, 0o755); err != nil {
				return fmt.Errorf("creating %s: %w", what, err)
			}
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating %s: %w", what, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s %s is not a folder", what, dir)
	}
	if give {
		if err := os.Chown(dir, c.acct.uid, c.acct.gid); err != nil {
			return fmt.Errorf("giving %s to user %q: %w", what, c.acct.name, err)
		}
	}
	return nil
}

func (c *Cluster) chownIfExists(path string) error {
	if !c.acct.switchUser {
		return nil
	}
	if err := os.Lchown(path, c.acct.uid, c.acct.gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("giving %s to user %q: %w", path, c.acct.name, err)
	}
	return nil
}

// acquireLock takes the cluster folder's lock file, held while the cluster
// runs.
func (c *Cluster) acquireLock() error {
	path := filepath.Join(c.clusterDir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening lock file: %w", err)
	}
	if err := tryLock(f); err != nil {
		holder, _ := io.ReadAll(io.LimitReader(f, 64))
		f.Close()
		if errors.Is(err, errLocked) {
			who := "another process"
			if h := strings.TrimSpace(string(holder)); h != "" {
				who = "process " + h
			}
			return fmt.Errorf("%w: %s already runs the PostgreSQL cluster in %s (%s holds %s); "+
				"stop it, or give this server or test another data folder", ErrInUse, who, c.dataDir, who, path)
		}
		return fmt.Errorf("locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	c.lock = f
	return nil
}

func (c *Cluster) releaseLock() {
	if c.lock != nil {
		_ = c.lock.Truncate(0)
		_ = c.lock.Close()
		c.lock = nil
	}
}

// fixOwnership gives an existing cluster to c.acct if someone else owns it
// (e.g. it was created by a run as another user).
func (c *Cluster) fixOwnership() error {
	if !c.acct.switchUser {
		return nil
	}
	fi, err := os.Stat(c.pgData)
	if err != nil {
		return err
	}
	if uid, _, ok := fileOwner(fi); !ok || uid == c.acct.uid {
		return nil
	}
	c.log.Warn("giving the existing cluster to the PostgreSQL user", "user", c.acct.name)
	return filepath.WalkDir(c.pgData, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, c.acct.uid, c.acct.gid)
	})
}

// writeFile writes a file that PostgreSQL must be able to read.
func (c *Cluster) writeFile(path string, data []byte, perm fs.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return err
	}
	return c.chownIfExists(path)
}
