package pgcluster

import (
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
	"time"
)

const includeLine = "include_if_exists = '" + confName + "'"

// ensureInitialized runs initdb when the data folder has no cluster yet, and
// otherwise checks that the existing one fits the binaries.
func (c *Cluster) ensureInitialized(ctx context.Context, noSync bool) error {
	b, err := os.ReadFile(filepath.Join(c.pgData, "PG_VERSION"))
	switch {
	case err == nil:
		v, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if v != c.major {
			return fmt.Errorf("the cluster in %s was created by PostgreSQL %s but the binaries in %s are PostgreSQL %d; "+
				"use PostgreSQL %s binaries (Config.BinDir), upgrade the cluster with pg_upgrade, or move the folder away to start afresh",
				c.pgData, strings.TrimSpace(string(b)), c.binDir, c.major, strings.TrimSpace(string(b)))
		}
		return c.fixOwnership()
	case errors.Is(err, fs.ErrNotExist):
		entries, err := os.ReadDir(c.pgData)
		if err == nil && len(entries) > 0 {
			return fmt.Errorf("%s exists but holds no PostgreSQL cluster (no PG_VERSION); move it away", c.pgData)
		}
		if err == nil {
			_ = os.Remove(c.pgData)
		}
		return c.initdb(ctx, noSync)
	default:
		return fmt.Errorf("reading cluster version: %w", err)
	}
}

func (c *Cluster) initdb(ctx context.Context, noSync bool) error {
	tmp := filepath.Join(c.clusterDir, initTmpName)
	if err := os.RemoveAll(tmp); err != nil { // left by an interrupted earlier attempt
		return fmt.Errorf("removing %s: %w", tmp, err)
	}
	args := []string{"-D", tmp, "-U", Superuser, "-E", "UTF8", "--locale=C", "-A", "trust"}
	if c.major >= 13 {
		args = append(args, "--no-instructions")
	}
	if noSync {
		args = append(args, "--no-sync")
	}
	c.log.Info("initializing PostgreSQL cluster", "version", c.major, "user", c.acct.name)
	t0 := time.Now()
	out, err := c.command(ctx, "", "initdb", args...).CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("initdb failed: %w\n%s", err, lastLines(out, 30))
	}
	// Trust only TCP connections from 127.0.0.1; nothing else may connect.
	hba := "# Written by Tidemark's pgcluster: only local TCP connections, trusted.\n" +
		"# TYPE  DATABASE     USER  ADDRESS       METHOD\n" +
		"host    all          all   127.0.0.1/32  trust\n" +
		"host    replication  all   127.0.0.1/32  trust\n"
	if err := c.writeFile(filepath.Join(tmp, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(tmp, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n# Settings managed by Tidemark (rewritten at every start).\n%s\n", includeLine)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing postgresql.conf: %w", err)
	}
	if err := os.Rename(tmp, c.pgData); err != nil {
		return fmt.Errorf("moving new cluster into place: %w", err)
	}
	c.log.Info("initialized PostgreSQL cluster", "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// ensureInclude makes postgresql.conf include tidemark.conf (clusters made
// by pgcluster already do).
func (c *Cluster) ensureInclude() error {
	p := filepath.Join(c.pgData, "postgresql.conf")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("reading postgresql.conf: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == includeLine {
			return nil
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n%s\n", includeLine)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// managedSettings may not be set through Config.Settings.
var managedSettings = []string{"port", "listen_addresses", "unix_socket_directories"}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// settingsConf renders settings in postgresql.conf syntax, sorted.
func settingsConf(settings map[string]string) (string, error) {
	names := make([]string, 0, len(settings))
	for k := range settings {
		if !settingName.MatchString(k) {
			return "", fmt.Errorf("invalid server setting name %q", k)
		}
		if slices.Contains(managedSettings, strings.ToLower(k)) {
			return "", fmt.Errorf("server setting %q is managed by pgcluster (use Config.Port for the port)", k)
		}
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, k := range names {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(settings[k]))
	}
	return b.String(), nil
}

// quoteConf quotes a value for postgresql.conf.
func quoteConf(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `'`, `''`)
	return "'" + v + "'"
}

func (c *Cluster) writeConf(port int, settings map[string]string) error {
	user, err := settingsConf(settings)
	if err != nil {
		return err
	}
	conf := "# Written by Tidemark's pgcluster at every start; edits are lost.\n" +
		user +
		"listen_addresses = '127.0.0.1'\n" +
		"port = " + strconv.Itoa(port) + "\n" +
		"unix_socket_directories = ''\n"
	return c.writeFile(filepath.Join(c.pgData, confName), []byte(conf), 0o600)
}
