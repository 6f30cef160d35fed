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
//
// If that user cannot reach the data folder (a clone below /root, mode
// 0700, say) and the data folder holds no cluster yet, the cluster lives in
// a cluster folder of its own instead, FallbackDir/<hash of the data
// folder's path> (/var/lib/tidemark/... by default), owned by that user:
//
//	ClusterDir/pgdata/, ClusterDir/postgresql.log, ClusterDir/pgcluster.lock
//	ClusterDir/data-folder         names the data folder, for people
//	DataDir/pgcluster.location     names the cluster folder
//
// The data folder stays root's and keeps everything else (Tidemark's dev
// secret). Every start of the same data folder finds the same cluster
// folder, even once the data folder has become reachable. Removing the data
// folder removes its cluster, as it does when the cluster lives inside it: a
// start that finds a cluster for the data folder's path but no
// pgcluster.location in the data folder starts afresh.
//
// With Config.Supervise, a server that dies while the Cluster runs (killed,
// crashed) is started again on the same port and data, with backoff, and
// Cluster.Err reports the outage meanwhile; PostgreSQL's crash recovery
// brings the data back to its last commit.
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
	"sync/atomic"
	"time"
)

// Superuser is the PostgreSQL superuser of every cluster made by pgcluster.
const Superuser = "tidemark"

// Defaults used for zero values in Config.
const (
	DefaultDataDir      = "./tidemark-data"
	DefaultRunAs        = "postgres"
	DefaultFallbackDir  = "/var/lib/tidemark"
	DefaultStartTimeout = 60 * time.Second
)

// ErrInUse is returned (wrapped) by Start when another Cluster, in this or
// another process, already runs the data folder.
var ErrInUse = errors.New("data folder is in use")

var errLocked = errors.New("locked")

// Names inside the data folder and the cluster folder.
const (
	pgDataName  = "pgdata"
	initTmpName = "pgdata.initdb" // initdb works here, then it is renamed to pgdata
	logName     = "postgresql.log"
	lockName    = "pgcluster.lock"
	confName    = "tidemark.conf" // inside pgdata, included by postgresql.conf

	locationName   = "pgcluster.location" // in a data folder whose cluster lives elsewhere
	dataFolderName = "data-folder"        // in such a cluster folder
)

// Config of an embedded cluster. Zero values are sensible defaults.
type Config struct {
	// DataDir is the folder holding the cluster; it is created if missing
	// (default "./tidemark-data"). Relative paths are made absolute.
	DataDir string
	// FallbackDir is where, when this process is root and PostgreSQL's
	// user cannot reach DataDir, the cluster is kept instead, in a folder
	// named after DataDir's path (default "/var/lib/tidemark").
	FallbackDir string
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
	// deadline on Start's context applies too. It bounds each restart too.
	StartTimeout time.Duration

	// Supervise restarts the server, on the same data and port, when it
	// exits while the Cluster runs (it was killed, or crashed): PostgreSQL's
	// crash recovery brings the data back to its last commit. Err reports
	// the outage meanwhile. Without it a dead server stays dead.
	Supervise bool
	// WatchInterval is how often a supervised server is checked (default
	// 500ms); RestartBackoff the wait after a first failed restart (default
	// 500ms), doubled after each further failure up to MaxRestartBackoff
	// (default 30s).
	WatchInterval     time.Duration
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
}

// Cluster is a running embedded PostgreSQL cluster. Its methods are safe
// for concurrent use.
type Cluster struct {
	dataDir    string // absolute
	clusterDir string // absolute: dataDir, or a folder below Config.FallbackDir
	pgData     string // absolute, symlinks resolved once it exists
	logFile    string
	binDir     string
	major      int
	port       int
	acct       *account
	log        *slog.Logger

	// relocated is true when the cluster lives below Config.FallbackDir.
	// marked tells whether the data folder holds pgcluster.location, and
	// markedDir is the cluster folder that file names.
	relocated bool
	marked    bool
	markedDir string

	mu      sync.Mutex
	lock    *os.File // nil once released
	stopped bool

	// Supervision (Config.Supervise): the postmaster's pid as last
	// started, the supervisor, and the outage while the server is down.
	pid      atomic.Int64
	super    *supervisor
	restarts atomic.Int64
	downMu   sync.Mutex
	down     *downState
}

// Start initializes a cluster in cfg.DataDir (or, see the package
// documentation, a folder below cfg.FallbackDir) if there is none yet,
// starts the server on 127.0.0.1 and returns once it accepts connections.
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
	if cfg.Supervise {
		c.startSupervisor(cfg)
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
	c := &Cluster{
		dataDir: dataDir,
		binDir:  binDir,
		acct:    acct,
		log:     logger.With("component", "pgcluster", "data_dir", dataDir),
	}
	c.setClusterDir(dataDir)
	return c, nil
}

// setClusterDir places the cluster's files in dir.
func (c *Cluster) setClusterDir(dir string) {
	c.clusterDir = dir
	c.pgData = filepath.Join(dir, pgDataName)
	c.logFile = filepath.Join(dir, logName)
}

func (c *Cluster) start(ctx context.Context, cfg Config) (err error) {
	if err := c.locate(cfg.FallbackDir); err != nil {
		return err
	}
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
	if err := c.claimClusterDir(ctx); err != nil {
		return err
	}
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
	c.pid.Store(int64(pid))
	c.log.Info("PostgreSQL started", "port", c.port, "pid", pid, "version", c.major, "user", c.acct.name, "cluster_dir", c.clusterDir)
	return nil
}

// Port returns the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DataDir returns the absolute path of the data folder.
func (c *Cluster) DataDir() string { return c.dataDir }

// ClusterDir returns the absolute path of the folder holding the cluster:
// the data folder, or, when PostgreSQL's user cannot reach that, a folder
// below Config.FallbackDir.
func (c *Cluster) ClusterDir() string { return c.clusterDir }

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
