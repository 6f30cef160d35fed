package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/db/dbtest"
)

// chromiumPath is Debian's Chromium, which the browser tests drive with
// playwright-core (no browser download: .ci/run installs the package).
const chromiumPath = "/usr/bin/chromium"

// TestBrowser runs browser/*.test.mjs in Chromium, each file against a dev-mode
// Tidemark of its own (the real binary, on a fresh database): the demo app
// at /demo, and whatever else a file opens. See browser/README.md.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: builds the server and drives Chromium")
	}
	requireTools(t, "the browser tests", "node", "npm", chromiumPath)
	files, err := filepath.Glob(filepath.Join("browser", "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no browser/*.test.mjs files (%v)", err)
	}
	bin := buildTidemark(t)
	installNodeModulesIn(t, "browser")
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".test.mjs"), func(t *testing.T) {
			server := startDevTidemark(t, bin)
			runBrowserTestFile(t, file, "TIDEMARK_URL="+server.url(), "TIDEMARK_CHROMIUM="+chromiumPath)
		})
	}
}

// requireTools fails the test when a tool is missing under CI (CI=true), so
// that CI cannot pass by quietly not running it, and skips it elsewhere.
// A tool is a command on PATH or an absolute path.
func requireTools(t *testing.T, what string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		var err error
		if filepath.IsAbs(tool) {
			_, err = os.Stat(tool)
		} else {
			_, err = exec.LookPath(tool)
		}
		if err == nil {
			continue
		}
		msg := tool + " is missing; " + what + " need it (.ci/run installs it: bash .ci/run browser)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// buildTidemark builds ./cmd/tidemark into the test's temporary folder.
func buildTidemark(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "tidemark")
	build := exec.Command("go", "build", "-o", bin, "./cmd/tidemark")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tidemark: %v\n%s", err, out)
	}
	return bin
}

// startDevTidemark starts `tidemark serve` in dev mode (no secret, no JWKS:
// it migrates, serves /demo and hands out dev identities) on a fresh
// database and a free loopback port, until the test ends.
func startDevTidemark(t *testing.T, bin string) *instance {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		// Whatever the machine sets for Tidemark would leave dev mode.
		if !strings.HasPrefix(kv, "TIDEMARK_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"TIDEMARK_DATABASE_URL="+dbtest.URL(t),
		"TIDEMARK_DATA_DIR="+t.TempDir(),
		"TIDEMARK_LOG_FORMAT=json",
	)
	return startInstance(t, "dev-mode", bin, env)
}

// runBrowserTestFile runs one file under `node --test`, its output in the test log.
func runBrowserTestFile(t *testing.T, file string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", filepath.Base(file))
	cmd.Dir = filepath.Dir(file)
	cmd.Env = append(os.Environ(), env...)
	out := &lineLogger{t: t, prefix: "node: "}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	out.Flush()
	t.Logf("node --test %s took %s", file, time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("node --test %s: %v", file, err)
	}
}

// installNodeModulesIn runs `npm ci` in dir when its node_modules is
// missing or older than its package-lock.json.
func installNodeModulesIn(t *testing.T, dir string) {
	t.Helper()
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	installed, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err == nil && !installed.ModTime().Before(lock.ModTime()) {
		return
	}
	start := time.Now()
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out := &lineLogger{t: t, prefix: "npm: "}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	out.Flush()
	if err != nil {
		t.Fatalf("npm ci in %s: %v", dir, err)
	}
	t.Logf("npm ci in %s took %s", dir, time.Since(start).Round(time.Millisecond))
}
