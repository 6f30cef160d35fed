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

// prepareDataDir creates the data folder (parents 0755, folder 0700) and,
// when switching users, gives it to c.acct.
func (c *Cluster) prepareDataDir() error {
	var created []string
	for d := filepath.Dir(c.dataDir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(filepath.Dir(c.dataDir), 0o755); err != nil {
		return fmt.Errorf("creating data folder: %w", err)
	}
	if c.acct.switchUser {
		for _, d := range created { // the umask may have narrowed them
			if err := os.Chmod(d, 0o755); err != nil {
				return fmt.Errorf("creating data folder: %w", err)
			}
		}
	}
	if err := os.Mkdir(c.dataDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating data folder: %w", err)
	}
	fi, err := os.Stat(c.dataDir)
	if err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data folder %s is not a folder", c.dataDir)
	}
	if c.acct.switchUser {
		if err := os.Chown(c.dataDir, c.acct.uid, c.acct.gid); err != nil {
			return fmt.Errorf("giving data folder to user %q: %w", c.acct.name, err)
		}
		if err := c.chownIfExists(c.logFile); err != nil {
			return err
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

// acquireLock takes the data folder's lock file, held while the cluster runs.
func (c *Cluster) acquireLock() error {
	path := filepath.Join(c.dataDir, lockName)
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
