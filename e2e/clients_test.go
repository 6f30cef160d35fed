package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/testenv"
)

// TestClientGuides runs the client setups of docs/clients.md (Apollo
// Client, urql, plain graphql-ws, in e2e/clients/) with the npm packages the
// guide names against a real Tidemark on loopback: each pulls, pushes and
// receives its push on a stream.
func TestClientGuides(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: runs Node")
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; it is needed for the client guide tests (go test -short skips them)", tool)
		}
	}
	env := testenv.New(t, testenv.Options{})
	base := env.Serve(t)
	dir := "clients"
	installNodeModulesIn(t, dir)

	// A tenant per test, so that no test's stream or pull sees another's push.
	tokens := map[string]string{}
	for _, name := range []string{"apollo", "urql", "graphql-ws", "apollo-auth-token", "bare-token"} {
		tokens[name] = testenv.Token(t, "guide-"+name, "user-1")
	}
	tokensJSON, err := json.Marshal(tokens)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "test", "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s/test/*.test.mjs files (%v)", dir, err)
	}
	// A subtest per file: connection-params.test.mjs tests the connection_init
	// shapes other clients use, apart from the guides themselves.
	for _, f := range files {
		name, _ := filepath.Rel(dir, f)
		t.Run(strings.TrimSuffix(filepath.Base(name), ".test.mjs"), func(t *testing.T) {
			runGuideTests(t, dir, name, append(os.Environ(),
				"TIDEMARK_URL="+base+"/graphql",
				"TIDEMARK_WS_URL="+"ws"+strings.TrimPrefix(base, "http")+"/graphql",
				"TIDEMARK_TOKENS="+string(tokensJSON),
			))
		})
	}
}

// runGuideTests runs one file of Node tests in dir, its output in the test log.
func runGuideTests(t *testing.T, dir, file string, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// --test-timeout only keeps a hung test from holding CI; nothing asserts on time.
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "--test-timeout=60000", file)
	cmd.Dir = dir
	cmd.Env = env
	out := &lineLogger{t: t, prefix: "node: "}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	out.Flush()
	if err != nil {
		t.Fatalf("node --test %s: %v", file, err)
	}
}

// guideQuote is how docs/clients.md quotes a file whole:
//
//	<!-- quote: e2e/clients/apollo.mjs -->
//	```js
//	…the file…
//	```
//	<!-- end quote -->
var guideQuote = regexp.MustCompile("(?s)<!-- quote: ([^ ]+) -->\n```[a-z]*\n(.*?)```\n<!-- end quote -->")

// TestClientGuideQuotesTheTestedCode keeps docs/clients.md and the code the
// tests run identical, so that the guide cannot drift from what works.
func TestClientGuideQuotesTheTestedCode(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "clients.md"))
	if err != nil {
		t.Fatal(err)
	}
	quoted := map[string]int{}
	for _, m := range guideQuote.FindAllSubmatch(doc, -1) {
		path := string(m[1])
		quoted[path]++
		file, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(path)))
		if err != nil {
			t.Errorf("docs/clients.md quotes %s: %v", path, err)
			continue
		}
		if !bytes.Equal(m[2], file) {
			t.Errorf("docs/clients.md quotes %s, but not as it is: copy the file into the guide", path)
		}
	}
	// Every client setup the tests run is in the guide, once.
	setups, err := filepath.Glob(filepath.Join("clients", "*.mjs"))
	if err != nil || len(setups) == 0 {
		t.Fatalf("no clients/*.mjs (%v)", err)
	}
	for _, f := range setups {
		path := "e2e/" + filepath.ToSlash(f)
		if quoted[path] != 1 {
			t.Errorf("docs/clients.md quotes %s %d times, want once", path, quoted[path])
		}
	}
	if n := bytes.Count(doc, []byte("<!-- quote:")); n != len(guideQuote.FindAll(doc, -1)) {
		t.Errorf("docs/clients.md has %d quote markers, of which %d are well formed", n, len(guideQuote.FindAll(doc, -1)))
	}
}
