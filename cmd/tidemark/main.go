// Command tidemark is the Tidemark sync server.
//
//	tidemark [serve]     run the server (the default command)
//	tidemark migrate     bring the database schema up to date
//	tidemark token       print a signed bearer token
//	tidemark tenant      create, list or move tenants (their home regions)
//	tidemark bench sync|stream   measure a running server (docs/benchmarks.md)
//	tidemark version     print the version and build information
//
// Every setting has a flag and a TIDEMARK_* environment variable; run a
// command with -h to list them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/pgcluster"
	"github.com/tidemark/tidemark/syncengine"
	"github.com/tidemark/tidemark/syncrules"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The first signal starts the drain; a second one ends the process at
	// once, as the signal's default does.
	context.AfterFunc(ctx, stop)
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// Asking for help is not a failure; the flag package has
			// printed it already.
			return
		}
		fmt.Fprintln(os.Stderr, "tidemark:", err)
		os.Exit(2)
	}
}

// usage lists the commands, one line each; each command's -h lists its flags.
const usage = `Tidemark, a GraphQL sync server for offline-first apps.

Usage: tidemark [command] [flags]

Commands:
  serve     run the server (the default command; with no configuration it
            starts an embedded PostgreSQL and serves the Playground)
  migrate   bring the database schema and bucket membership up to date
  token     print a signed bearer token for a tenant and user
  tenant    create, list or move tenants and their home regions
  bench     measure a running server: sync, stream, read or rules
  version   print the version and build information

Run "tidemark COMMAND -h" for a command's flags. Every flag has a
TIDEMARK_* environment variable, named in its description.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	command := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		command, args = args[0], args[1:]
	} else if len(args) > 0 && isHelpFlag(args[0]) {
		command = "help"
	}
	switch command {
	case "help":
		_, err := io.WriteString(stdout, usage)
		return err
	case "version":
		if len(args) > 0 && isHelpFlag(args[0]) {
			fmt.Fprint(stderr, "Usage: tidemark version\n\nPrint the version and build information.\n")
			return flag.ErrHelp
		}
		return version(stdout)
	case "serve":
		return serve(ctx, args, stderr)
	case "migrate":
		return migrate(ctx, args, stderr)
	case "token":
		return token(args, stdout, stderr)
	case "tenant":
		return tenant(ctx, args, stdout, stderr)
	case "bench":
		if len(args) > 0 && isHelpFlag(args[0]) {
			fmt.Fprint(stderr, "Usage: tidemark bench sync|stream|read|rules|soak [flags]\n\nMeasure a running server (docs/benchmarks.md). Run \"tidemark bench KIND -h\" for a benchmark's flags.\n")
			return flag.ErrHelp
		}
		return bench(ctx, args, stdout, stderr)
	}
	return fmt.Errorf("unknown command %q (want serve, migrate, token, tenant, bench or version; see tidemark -h)", command)
}

func isHelpFlag(arg string) bool {
	switch arg {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

// version prints what Go recorded of this build: the module version (a
// tag when installed with go install), the commit and whether the tree
// had changes, and the Go release.
func version(stdout io.Writer) error {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		_, err := fmt.Fprintln(stdout, "tidemark (no build information)")
		return err
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	fmt.Fprintf(stdout, "tidemark %s\n", info.Main.Version)
	if rev := settings["vcs.revision"]; rev != "" {
		modified := ""
		if settings["vcs.modified"] == "true" {
			modified = " (with uncommitted changes)"
		}
		fmt.Fprintf(stdout, "commit    %s%s\n", rev, modified)
	}
	if at := settings["vcs.time"]; at != "" {
		fmt.Fprintf(stdout, "committed %s\n", at)
	}
	_, err := fmt.Fprintf(stdout, "go        %s %s/%s\n", info.GoVersion, runtime.GOOS, runtime.GOARCH)
	return err
}

// commandFlags are the flags each command that takes a Config binds, and
// the line its -h starts with: a command lists only the flags it reads.
var commandFlags = map[string]struct {
	bind    func(*flag.FlagSet, *Config) error
	summary string
}{
	"serve":   {bindConfig, "run the server; with no database URL it starts an embedded PostgreSQL"},
	"migrate": {bindMigrateConfig, "bring the database schema and bucket membership up to date; with TIDEMARK_REGIONS on CockroachDB, make it multi-region"},
}

func parseConfig(name string, args []string, stderr io.Writer) (Config, *slog.Logger, error) {
	var cfg Config
	command := commandFlags[name]
	fs := newFlagSet(name, command.summary, stderr)
	envErr := command.bind(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	if envErr != nil {
		return cfg, nil, envErr
	}
	log, err := newLogger(cfg, stderr)
	return cfg, log, err
}

// newFlagSet is a command's flag set, whose -h says what the command does
// and lists its flags, each with its environment variable.
func newFlagSet(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("tidemark "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tidemark %s [flags]\n\n%s.\n\nFlags:\n", name, strings.ToUpper(summary[:1])+summary[1:])
		fs.PrintDefaults()
	}
	return fs
}

func newLogger(cfg Config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", cfg.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.LogFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", cfg.LogFormat)
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, log, err := parseConfig("serve", args, stderr)
	if err != nil {
		return err
	}
	m := &Main{Config: cfg, Log: log}
	if err := m.Run(ctx); err != nil {
		return err
	}
	waitErr := m.Wait(ctx)
	log.Info("shutting down")
	// Shutdown drains within the shutdown timeout; the margin is for
	// closing the pool and stopping the embedded database.
	closeCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout+10*time.Second)
	defer cancel()
	return errors.Join(waitErr, m.Shutdown(closeCtx))
}

// migrate applies pending migrations to TIDEMARK_DATABASE_URL, or to the
// embedded database when none is set.
func migrate(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, log, err := parseConfig("migrate", args, stderr)
	if err != nil {
		return err
	}
	placement, err := cfg.Placement.Placement()
	if err != nil {
		return err
	}
	rules, err := syncrules.Load(cfg.SyncRules, collections.All())
	if err != nil {
		return fmt.Errorf("sync rules: %w", err)
	}
	url := cfg.DatabaseURL
	if url == "" {
		cluster, err := pgcluster.Start(ctx, pgcluster.Config{DataDir: cfg.DataDir, Logger: log})
		if err != nil {
			return fmt.Errorf("embedded PostgreSQL: %w", err)
		}
		defer cluster.Stop(context.WithoutCancel(ctx))
		if err := cluster.CreateDatabase(ctx, "tidemark"); err != nil {
			return err
		}
		url = cluster.URL("tidemark")
	}
	// No statement timeout: a migration may build an index on a large table.
	d, err := db.Open(ctx, url, db.PoolConfig{MaxConns: 2, StatementTimeout: -1}, log)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Migrate(ctx); err != nil {
		return err
	}
	if err := d.ApplyPlacement(ctx, placement); err != nil {
		return err
	}
	v, err := d.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	log.Info("database schema is current", "version", v)
	// Bucket rows follow the rules file this deployment runs: computed
	// once for data from before the rules, again when the file changed.
	engine := syncengine.New(d)
	engine.UseRules(rules)
	rebuilt, err := engine.RebuildMemberships(ctx)
	if err != nil {
		return err
	}
	log.Info("bucket membership is current", "rebuild", rebuilt)
	return nil
}

// token prints a bearer token signed with the configured secret (or, with
// none configured, the dev secret of the data folder).
func token(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "print a bearer token signed with TIDEMARK_JWT_SECRET, or with the dev secret of the data folder", stderr)
	tenant := fs.String("tenant", "", "tenant id (required)")
	user := fs.String("user", "", "user id (required)")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token is valid")
	secret := fs.String("jwt-secret", env("TIDEMARK_JWT_SECRET", ""), "HS256 secret (TIDEMARK_JWT_SECRET)")
	dataDir := fs.String("data-dir", env("TIDEMARK_DATA_DIR", defaults.DataDir), "data folder holding the dev secret (TIDEMARK_DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tenant == "" || *user == "" {
		return errors.New("token: --tenant and --user are required")
	}
	key := []byte(*secret)
	if len(key) > 0 && len(key) < minSecretLen {
		return fmt.Errorf("token: the JWT secret must be at least %d characters", minSecretLen)
	}
	if len(key) == 0 {
		b, err := os.ReadFile(*dataDir + "/" + devSecretFile)
		if err != nil {
			return errors.New("token: set TIDEMARK_JWT_SECRET (or run the server once in dev mode to create a dev secret)")
		}
		fmt.Fprintln(stderr, "tidemark: no TIDEMARK_JWT_SECRET set; signing with the dev secret of", *dataDir)
		key = b
	}
	tok, err := auth.Issue(key, *tenant, *user, *ttl, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}
