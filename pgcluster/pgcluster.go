// Package pgcluster creates and runs a private PostgreSQL cluster in a data
// folder, using the PostgreSQL server binaries installed on the machine.
//
// It is Tidemark's embedded default database: with no database URL
// configured, the server starts one of these, and the test harness uses it
// too. The cluster listens only on 127.0.0.1 (no Unix socket), trusts local
// TCP connections for the superuser "tidemark", and keeps its data across
// restarts.
//
// Layout of a data folder:
//
//	DataDir/pgdata/          the PostgreSQL data directory (PGDATA)
//	DataDir/postgresql.log   server log (earlier log in postgresql.log.1)
//	DataDir/pgcluster.lock   held by the process that runs the cluster
//
// When the process runs as root, PostgreSQL (which refuses to run as root)
// runs as an unprivileged user, "postgres" by default, and the data folder
// is owned by that user.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Superuser is the PostgreSQL superuser of every cluster made by pgcluster.
const Superuser = "tidemark"

// Defaults used for zero values in Config.
const (
	DefaultDataDir      = "./tidemark-data"
	DefaultRunAs        = "postgres"
	DefaultStartTimeout = 60 * time.Second
)

// ErrInUse is returned (wrapped) by Start when another Cluster, in this or
// another process, already runs the data folder.
var ErrInUse = errors.New("data folder is in use")

var errLocked = errors.New("locked")

// Names inside the data folder.
const (
	pgDataName  = "pgdata"
	initTmpName = "pgdata.initdb" // initdb works here, then it is renamed to pgdata
	logName     = "postgresql.log"
	lockName    = "pgcluster.lock"
	confName    = "tidemark.conf" // inside pgdata, included by postgresql.conf
)

const includeLine = "include_if_exists = '" + confName + "'"

// rotateLogAt is the log size above which Start moves the log aside.
const rotateLogAt = 16 << 20

// Config of an embedded cluster. Zero values are sensible defaults.
type Config struct {
	// DataDir is the folder holding the cluster; it is created if missing
	// (default "./tidemark-data"). Relative paths are made absolute.
	DataDir string
	// BinDir is the PostgreSQL bin folder; "" means FindBinDir.
	BinDir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// RunAs is the OS user PostgreSQL runs as when this process is root
	// (default "postgres"). When not root, PostgreSQL runs as the current
	// user and RunAs is ignored.
	RunAs string
	// Logger receives pgcluster's own messages; may be nil.
	Logger *slog.Logger
	// Settings are extra server settings (postgresql.conf parameters),
	// rewritten at every start, e.g. {"fsync": "off", "shared_buffers":
	// "16MB"}. port, listen_addresses and unix_socket_directories are
	// managed by pgcluster and are refused here. With fsync "off", initdb
	// also skips syncing its files to disk.
	Settings map[string]string
	// StartTimeout bounds Start, including initdb (default 60s). A
	// deadline on Start's context applies too.
	StartTimeout time.Duration
}

// Cluster is a running embedded PostgreSQL cluster. Its methods are safe
// for concurrent use.
type Cluster struct {
	dataDir string // absolute
	pgData  string // absolute, symlinks resolved once it exists
	logFile string
	binDir  string
	major   int
	port    int
	acct    *account
	log     *slog.Logger

	mu      sync.Mutex
	lock    *os.File // nil once released
	stopped bool
}

// account is the OS user PostgreSQL's programs run as.
type account struct {
	name       string
	home       string
	uid, gid   int
	groups     []int
	switchUser bool // true when we are root and run PostgreSQL as name
}

// Start initializes a cluster in cfg.DataDir if there is none yet, starts
// the server on 127.0.0.1 and returns once it accepts connections.
//
// A stale postmaster.pid left by a crash does not prevent the start. A
// server still running from an earlier, ended run of this folder is stopped
// and started again with the current configuration; if another live Cluster
// runs the folder, Start fails with an error wrapping ErrInUse.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	c, err := newCluster(cfg)
	if err != nil {
		return nil, err
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.start(ctx, cfg); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	return c, nil
}

func newCluster(cfg Config) (*Cluster, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: data folder: %w", err)
	}
	if _, err := settingsConf(cfg.Settings); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("pgcluster: invalid port %d", cfg.Port)
	}
	binDir := cfg.BinDir
	if binDir == "" {
		if binDir, err = FindBinDir(); err != nil {
			return nil, fmt.Errorf("pgcluster: %w", err)
		}
	} else if !hasServerBinaries(binDir) {
		return nil, fmt.Errorf("pgcluster: BinDir %s does not contain the PostgreSQL server programs %s",
			binDir, strings.Join(serverBinaries, ", "))
	}
	acct, err := resolveAccount(cfg.RunAs)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	return &Cluster{
		dataDir: dataDir,
		pgData:  filepath.Join(dataDir, pgDataName),
		logFile: filepath.Join(dataDir, logName),
		binDir:  binDir,
		acct:    acct,
		log:     logger.With("component", "pgcluster", "data_dir", dataDir),
	}, nil
}

func (c *Cluster) start(ctx context.Context, cfg Config) (err error) {
	if c.major, err = c.probe(ctx); err != nil {
		return err
	}
	if err := c.prepareDataDir(); err != nil {
		return err
	}
	if err := c.acquireLock(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			c.releaseLock()
		}
	}()
	if err := c.ensureInitialized(ctx, cfg.Settings["fsync"] == "off"); err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(c.pgData); err == nil {
		c.pgData = real // /proc reports resolved paths
	}
	if err := c.clearLeftovers(ctx); err != nil {
		return err
	}
	if err := c.ensureInclude(); err != nil {
		return err
	}
	c.rotateLog()
	if err := c.startServer(ctx, cfg); err != nil {
		return err
	}
	if err := c.waitReady(ctx); err != nil {
		c.stopQuietly()
		return fmt.Errorf("PostgreSQL started but does not accept connections on port %d: %w%s", c.port, err, c.logTailSince(0))
	}
	pid, _ := c.Pid()
	c.log.Info("PostgreSQL started", "port", c.port, "pid", pid, "version", c.major, "user", c.acct.name)
	return nil
}

// resolveAccount picks the OS user PostgreSQL runs as.
func resolveAccount(runAs string) (*account, error) {
	if os.Geteuid() != 0 {
		a := &account{uid: os.Geteuid(), gid: os.Getegid()}
		if u, err := user.Current(); err == nil {
			a.name, a.home = u.Username, u.HomeDir
		}
		return a, nil
	}
	if runAs == "" {
		runAs = DefaultRunAs
	}
	u, err := user.Lookup(runAs)
	if err != nil {
		return nil, fmt.Errorf("running as root, so PostgreSQL (which refuses to run as root) must run as user %q, "+
			"but looking it up failed: %v; create that user (e.g. `useradd --system --user-group %s`) or set Config.RunAs", runAs, err, runAs)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q has non-numeric ids %s:%s", runAs, u.Uid, u.Gid)
	}
	if uid == 0 {
		return nil, fmt.Errorf("RunAs user %q is root; PostgreSQL refuses to run as root, choose an unprivileged user", runAs)
	}
	a := &account{name: u.Username, home: u.HomeDir, uid: uid, gid: gid, switchUser: true}
	gids, _ := u.GroupIds()
	for _, g := range gids {
		if n, err := strconv.Atoi(g); err == nil {
			a.groups = append(a.groups, n)
		}
	}
	if !slices.Contains(a.groups, gid) {
		a.groups = append(a.groups, gid)
	}
	return a, nil
}

// command prepares one of PostgreSQL's programs to run as c.acct, in the
// data folder (or dir when not empty).
func (c *Cluster) command(ctx context.Context, dir, program string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.binDir, program), args...)
	cmd.Dir = dir
	if cmd.Dir == "" {
		cmd.Dir = c.dataDir
	}
	cmd.WaitDelay = 5 * time.Second
	env := make([]string, 0, len(os.Environ())+4)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		// PG* variables (PGDATA, PGPORT, ...) must not redirect our programs.
		if strings.HasPrefix(k, "PG") {
			continue
		}
		if c.acct.switchUser && (k == "HOME" || k == "USER" || k == "LOGNAME") {
			continue
		}
		env = append(env, kv)
	}
	if c.acct.switchUser {
		env = append(env, "HOME="+c.acct.home, "USER="+c.acct.name, "LOGNAME="+c.acct.name)
	}
	cmd.Env = env
	setCredential(cmd, c.acct)
	return cmd
}

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

func (c *Cluster) initdb(ctx context.Context, noSync bool) error {
	tmp := filepath.Join(c.dataDir, initTmpName)
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

// writeFile writes a file that PostgreSQL must be able to read.
func (c *Cluster) writeFile(path string, data []byte, perm fs.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return err
	}
	return c.chownIfExists(path)
}

// clearLeftovers deals with what an earlier run of this folder left: a
// server still running, a stale postmaster.pid, or server processes that
// have not exited yet.
func (c *Cluster) clearLeftovers(ctx context.Context) error {
	pidFile := filepath.Join(c.pgData, "postmaster.pid")
	if pid := readPid(pidFile); pid > 0 && processRunning(pid) {
		same, known := processCwdIs(pid, c.pgData)
		switch {
		case !known:
			return fmt.Errorf("%s names process %d, which is running; cannot tell whether it is a PostgreSQL server of this folder: "+
				"stop it (`pg_ctl stop -D %s`), or remove postmaster.pid if that process is something else", pidFile, pid, c.pgData)
		case same:
			c.log.Warn("a PostgreSQL server from an earlier run of this folder is still running; stopping it", "pid", pid)
			if err := c.pgctlStop(ctx, "fast"); err != nil {
				return fmt.Errorf("stopping the PostgreSQL server (pid %d) left running by an earlier run: %w", pid, err)
			}
		default:
			// The pid was reused by an unrelated process after a crash or
			// reboot; PostgreSQL itself would refuse to start.
			c.log.Warn("removing stale postmaster.pid", "pid", pid)
			if err := os.Remove(pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("removing stale %s: %w", pidFile, err)
			}
		}
	}
	// After a crash of the postmaster its children exit on their own, soon.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, ok := processesIn(c.pgData)
		if !ok {
			// Without /proc, leave a stale postmaster.pid to PostgreSQL,
			// which checks it (and its shared memory) itself.
			return nil
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("processes %v of an earlier PostgreSQL server are still running in %s; stop them", pids, c.pgData)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// No process of an earlier server is left, so a remaining postmaster.pid
	// is stale. PostgreSQL would remove it itself unless its pid is a zombie
	// (a crashed postmaster not yet reaped, as happens in containers whose
	// init does not reap promptly), which it takes for a live postmaster.
	if pid := readPid(pidFile); pid > 0 && !processRunning(pid) {
		c.log.Warn("removing stale postmaster.pid of a crashed server", "pid", pid)
		if err := os.Remove(pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale %s: %w", pidFile, err)
		}
	}
	return nil
}

// readPid returns the pid on the first line of a postmaster.pid, or 0.
func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

// rotateLog moves a large log aside, keeping one earlier log.
func (c *Cluster) rotateLog() {
	if fi, err := os.Stat(c.logFile); err == nil && fi.Size() > rotateLogAt {
		_ = os.Rename(c.logFile, c.logFile+".1")
	}
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

// startServer runs pg_ctl start, retrying with another port when a picked
// free port was taken in the meantime.
func (c *Cluster) startServer(ctx context.Context, cfg Config) error {
	for attempt := 1; ; attempt++ {
		port := cfg.Port
		if port == 0 {
			var err error
			if port, err = freePort(); err != nil {
				return fmt.Errorf("picking a free port: %w", err)
			}
		}
		if err := c.writeConf(port, cfg.Settings); err != nil {
			return fmt.Errorf("writing server settings: %w", err)
		}
		var offset int64
		if fi, err := os.Stat(c.logFile); err == nil {
			offset = fi.Size()
		}
		out, err := c.command(ctx, "", "pg_ctl", "start", "-D", c.pgData, "-l", c.logFile, "-w", "-t", timeoutSecs(ctx)).CombinedOutput()
		if err == nil {
			c.port = port
			return nil
		}
		tail := c.logTailSince(offset)
		c.stopQuietly() // pg_ctl may have given up on a server that still starts
		if cfg.Port == 0 && attempt < 3 && ctx.Err() == nil &&
			(strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets")) {
			c.log.Warn("port taken, retrying with another", "port", port)
			continue
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return fmt.Errorf("starting PostgreSQL on 127.0.0.1:%d failed: %w\n%s%s", port, err, bytes.TrimSpace(out), tail)
	}
}

// freePort asks the kernel for a free TCP port on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// timeoutSecs renders the context's remaining time for pg_ctl -t.
func timeoutSecs(ctx context.Context) string {
	secs := int(DefaultStartTimeout / time.Second)
	if d, ok := ctx.Deadline(); ok {
		secs = max(1, int(time.Until(d).Seconds()))
	}
	return strconv.Itoa(secs)
}

// waitReady waits until the server answers a query over TCP.
func (c *Cluster) waitReady(ctx context.Context) error {
	for {
		err := c.ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cluster) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

// logTailSince returns the end of what the server logged after offset,
// formatted for an error message.
func (c *Cluster) logTailSince(offset int64) string {
	const maxTail = 8 << 10
	f, err := os.Open(c.logFile)
	if err != nil {
		return fmt.Sprintf("\n(no server log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	if fi.Size() < offset { // rotated or truncated
		offset = 0
	}
	if fi.Size()-offset > maxTail {
		offset = fi.Size() - maxTail
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, offset, fi.Size()-offset))
	if len(bytes.TrimSpace(b)) == 0 {
		return fmt.Sprintf("\n(the server log %s has nothing new)", c.logFile)
	}
	return fmt.Sprintf("\n--- end of server log %s ---\n%s", c.logFile, lastLines(b, 30))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// pgctlStop stops the server with pg_ctl stop -m mode and waits for it. A
// server that is not running counts as stopped.
func (c *Cluster) pgctlStop(ctx context.Context, mode string) error {
	pidFile := filepath.Join(c.pgData, "postmaster.pid")
	if !processRunning(readPid(pidFile)) {
		return nil
	}
	pid := readPid(pidFile)
	out, err := c.command(ctx, "", "pg_ctl", "stop", "-D", c.pgData, "-m", mode, "-w", "-t", timeoutSecs(ctx)).CombinedOutput()
	if err != nil && processRunning(readPid(pidFile)) {
		return fmt.Errorf("pg_ctl stop -m %s: %w: %s", mode, err, bytes.TrimSpace(out))
	}
	// pg_ctl returns once postmaster.pid is gone, which the postmaster
	// removes just before it exits: wait for the exit too, so that the port
	// and shared memory are free when Stop returns.
	for deadline := time.Now().Add(5 * time.Second); processRunning(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// stopQuietly makes sure no server of this cluster is left running after a
// failed start.
func (c *Cluster) stopQuietly() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.pgctlStop(ctx, "immediate"); err != nil {
		c.log.Warn("stopping PostgreSQL after a failed start", "err", err)
	}
}

// Stop shuts the server down (fast shutdown: clients are disconnected,
// open transactions rolled back) and waits until it has exited. Calling
// Stop again does nothing.
func (c *Cluster) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultStartTimeout)
		defer cancel()
	}
	if err := c.pgctlStop(ctx, "fast"); err != nil {
		return fmt.Errorf("pgcluster: stopping PostgreSQL: %w", err)
	}
	c.stopped = true
	c.releaseLock()
	c.log.Info("PostgreSQL stopped")
	return nil
}

// URL returns the connection URL of a database of the cluster, as its
// superuser: postgres://tidemark@127.0.0.1:PORT/database?sslmode=disable.
// An empty database means "postgres".
func (c *Cluster) URL(database string) string {
	if database == "" {
		database = "postgres"
	}
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, c.port, url.PathEscape(database))
}

// CreateDatabase creates a database unless it exists.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("pgcluster: empty database name")
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created concurrently
		return nil
	}
	if err != nil {
		return fmt.Errorf("pgcluster: creating database %q: %w", name, err)
	}
	return nil
}

// DropDatabase drops a database if it exists, disconnecting its clients.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	if name == "" {
		return errors.New("pgcluster: empty database name")
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgcluster: dropping database %q: %w", name, err)
	}
	return nil
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DataDir returns the absolute path of the data folder.
func (c *Cluster) DataDir() string { return c.dataDir }

// LogFile returns the path of the server log.
func (c *Cluster) LogFile() string { return c.logFile }

// Pid returns the process id of the running server (the postmaster).
func (c *Cluster) Pid() (int, error) {
	pidFile := filepath.Join(c.pgData, "postmaster.pid")
	pid := readPid(pidFile)
	if pid == 0 {
		return 0, fmt.Errorf("pgcluster: no server running (no valid %s)", pidFile)
	}
	return pid, nil
}
