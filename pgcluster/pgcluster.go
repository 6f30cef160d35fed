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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
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
