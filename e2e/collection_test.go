package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/tidemark/tidemark/collectiongen"
	"github.com/tidemark/tidemark/collections"
	"github.com/tidemark/tidemark/db"
	"github.com/tidemark/tidemark/db/dbtest"
	"github.com/tidemark/tidemark/testenv/modcopy"
)

// assetSchema is the guide's example collection (docs/collections.md),
// added to the copy as its only hand-written change.
const assetSchema = `"Equipment installed at a site."
type Asset implements Node @synced(conflicts: CLIENT_RESOLVES) {
  id: ID!
  siteId: ID! @references(collection: "Site")
  name: String! @length(max: 200)
  serialNumber: String
  installedAt: Time
  updatedAt: Time!
  deleted: Boolean!
}
`

// TestAddingACollection follows docs/collections.md on a copy of the
// project: it adds schema/asset.graphqls and nothing else, runs
// `go generate ./...`, builds the binary, runs `tidemark migrate` on a
// database at the current schema version, serves with a JWT secret (as in
// production), signs a token with `tidemark token`, and syncs assets over
// real HTTP and a real websocket.
func TestAddingACollection(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: generates, builds and serves a copy of the project")
	}
	began := time.Now()
	took := func(what string, since time.Time) {
		t.Helper()
		t.Logf("%s took %s", what, time.Since(since).Round(time.Millisecond))
	}
	// Each step builds on the ones before it: the first failure ends the test.
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	if err := modcopy.Copy(root, work); err != nil {
		t.Fatalf("copy the project: %v", err)
	}
	if err := os.WriteFile(filepath.Join(work, "schema", "asset.graphqls"), []byte(assetSchema), 0o644); err != nil {
		t.Fatal(err)
	}
	before := digests(t, work)

	start := time.Now()
	runIn(t, work, nil, "go", "generate", "./...")
	took("go generate ./...", start)
	checkGeneratedFiles(t, work, before, digests(t, work))

	start = time.Now()
	bin := filepath.Join(t.TempDir(), "tidemark")
	runIn(t, work, nil, "go", "build", "-o", bin, "./cmd/tidemark")
	took("go build ./cmd/tidemark", start)

	// A database at the schema version of the project as it was: the
	// deployment the new collection is added to.
	secret := randomHex(t, 20)
	dbURL := dbtest.URL(t)
	env := append(os.Environ(),
		"TIDEMARK_DATABASE_URL="+dbURL,
		"TIDEMARK_JWT_SECRET="+secret,
		"TIDEMARK_LOG_FORMAT=json",
		"TIDEMARK_DATA_DIR="+t.TempDir(),
	)
	_, migrateLog := runIn(t, work, env, bin, "migrate")
	applied := appliedMigrations(t, migrateLog)
	if want := newMigrations(t, root, work); !slices.Equal(applied, want) {
		t.Fatalf("tidemark migrate applied %v, want the generated %v", applied, want)
	}
	checkTablesMatchSchema(t, work, dbURL)

	srv := startInstance(t, "asset", bin, env)
	signed, _ := runIn(t, work, env, bin, "token", "--tenant", "tenant-assets", "--user", "user-a")
	token := strings.TrimSpace(signed)
	c := &graphqlClient{url: srv.url() + "/graphql", token: token}
	start = time.Now()

	step("a new asset is written", func(t *testing.T) {
		c.mustDo(t, `mutation($rows: [SitePushRow!]!) { pushSites(rows: $rows) { id } }`, vars{"rows": []any{
			map[string]any{"newDocumentState": map[string]any{"id": "site-1", "name": "Plant", "address": "Quay 1", "deleted": false}},
		}}, nil)
		var out struct{ PushAssets []asset }
		c.mustDo(t, pushAssets, vars{"rows": []any{pushRow(nil, newAsset("asset-1", "Pump"))}}, &out)
		if len(out.PushAssets) != 0 {
			t.Fatalf("a new asset came back as a conflict: %+v", out.PushAssets)
		}
	})

	var first asset // asset-1 as the server has it
	step("pullAssets returns the asset with a checkpoint", func(t *testing.T) {
		var out struct {
			PullAssets struct {
				Documents  []asset
				Checkpoint struct{ Cursor string }
			}
		}
		c.mustDo(t, `query { pullAssets(checkpoint: null, limit: 10) { documents { `+assetFields+` } checkpoint { cursor } } }`, nil, &out)
		docs := out.PullAssets.Documents
		if len(docs) != 1 || docs[0].ID != "asset-1" || docs[0].Name != "Pump" || docs[0].SiteID != "site-1" ||
			docs[0].SerialNumber == nil || *docs[0].SerialNumber != "SN-asset-1" || docs[0].InstalledAt == nil || docs[0].UpdatedAt == "" {
			t.Fatalf("pullAssets returned %+v, want asset-1 as pushed", docs)
		}
		if out.PullAssets.Checkpoint.Cursor == "" {
			t.Fatal("pullAssets returned no checkpoint")
		}
		first = docs[0]
	})

	step("push with a stale assumed state returns the server's document (CLIENT_RESOLVES)", func(t *testing.T) {
		moved := first.input()
		moved["name"] = "Pump (moved)"
		var out struct{ PushAssets []asset }
		c.mustDo(t, pushAssets, vars{"rows": []any{pushRow(first.input(), moved)}}, &out)
		if len(out.PushAssets) != 0 {
			t.Fatalf("an edit from the current state came back: %+v", out.PushAssets)
		}
		stale := first.input()
		stale["name"] = "Pump (renamed offline)"
		c.mustDo(t, pushAssets, vars{"rows": []any{pushRow(first.input(), stale)}}, &out)
		if len(out.PushAssets) != 1 || out.PushAssets[0].ID != "asset-1" || out.PushAssets[0].Name != "Pump (moved)" {
			t.Fatalf("a push from a stale state returned %+v, want the server's asset-1 named %q", out.PushAssets, "Pump (moved)")
		}
	})

	step("a name of 201 characters is refused naming the field, 200 are accepted", func(t *testing.T) {
		err := c.do(t, pushAssets, vars{"rows": []any{pushRow(nil, newAsset("asset-long", strings.Repeat("n", 201)))}}, nil)
		err.want(t, "BAD_USER_INPUT", "rows[0].newDocumentState.name")
		var out struct{ PushAssets []asset }
		c.mustDo(t, pushAssets, vars{"rows": []any{pushRow(nil, newAsset("asset-2", strings.Repeat("n", 200)))}}, &out)
		if len(out.PushAssets) != 0 {
			t.Fatalf("a name of 200 characters came back: %+v", out.PushAssets)
		}
	})

	step("an empty siteId is refused", func(t *testing.T) {
		a := newAsset("asset-nowhere", "Valve")
		a["siteId"] = ""
		err := c.do(t, pushAssets, vars{"rows": []any{pushRow(nil, a)}}, nil)
		err.want(t, "BAD_USER_INPUT", "rows[0].newDocumentState.siteId")
	})

	step("node(id) returns the asset", func(t *testing.T) {
		var out struct {
			Node *struct {
				Typename string `json:"__typename"`
				asset
			}
		}
		c.mustDo(t, `query { node(id: "asset-1") { __typename ... on Asset { `+assetFields+` } } }`, nil, &out)
		if out.Node == nil || out.Node.Typename != "Asset" || out.Node.ID != "asset-1" || out.Node.Name != "Pump (moved)" {
			t.Fatalf("node(id: asset-1) = %+v, want the Asset named %q", out.Node, "Pump (moved)")
		}
	})

	step("assets(first: 10) lists the assets with totalCount", func(t *testing.T) {
		var out struct {
			Assets struct {
				TotalCount int
				Edges      []struct {
					Cursor string
					Node   asset
				}
				PageInfo struct{ HasNextPage bool }
			}
		}
		c.mustDo(t, `query { assets(first: 10) { totalCount edges { cursor node { `+assetFields+` } } pageInfo { hasNextPage } } }`, nil, &out)
		var ids []string
		for _, e := range out.Assets.Edges {
			if e.Cursor == "" {
				t.Errorf("edge of %s has no cursor", e.Node.ID)
			}
			ids = append(ids, e.Node.ID)
		}
		// Ordered by updatedAt: asset-1 was last written before asset-2.
		if want := []string{"asset-1", "asset-2"}; !slices.Equal(ids, want) || out.Assets.TotalCount != 2 || out.Assets.PageInfo.HasNextPage {
			t.Fatalf("assets(first: 10) = %v (totalCount %d, hasNextPage %v), want %v and totalCount 2",
				ids, out.Assets.TotalCount, out.Assets.PageInfo.HasNextPage, want)
		}
	})

	step("streamAssets delivers a later push over a websocket", func(t *testing.T) {
		ws := dialGraphQLWS(t, srv.url(), token)
		ws.send(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
			"query": `subscription { streamAssets { documents { ` + assetFields + ` } checkpoint { cursor } } }`,
		}})
		// The connection's stream starts at the heads read at
		// connection_init, so this push reaches it however late the
		// subscription itself is set up.
		c.mustDo(t, pushAssets, vars{"rows": []any{pushRow(nil, newAsset("asset-3", "Compressor"))}}, nil)
		var event struct {
			StreamAssets struct {
				Documents  []asset
				Checkpoint struct{ Cursor string }
			}
		}
		ws.next(t, "1", &event)
		docs := event.StreamAssets.Documents
		if len(docs) != 1 || docs[0].ID != "asset-3" || docs[0].Name != "Compressor" || event.StreamAssets.Checkpoint.Cursor == "" {
			t.Fatalf("stream event = %+v, want asset-3 alone with a checkpoint", event.StreamAssets)
		}
	})
	took("the API checks", start)
	took("TestAddingACollection", began)
}

const assetFields = `id siteId name serialNumber installedAt updatedAt deleted`

const pushAssets = `mutation($rows: [AssetPushRow!]!) { pushAssets(rows: $rows) { ` + assetFields + ` } }`

type vars map[string]any

// asset is an Asset as the API returns it.
type asset struct {
	ID           string  `json:"id"`
	SiteID       string  `json:"siteId"`
	Name         string  `json:"name"`
	SerialNumber *string `json:"serialNumber"`
	InstalledAt  *string `json:"installedAt"`
	UpdatedAt    string  `json:"updatedAt"`
	Deleted      bool    `json:"deleted"`
}

// input is the asset as an AssetInput, as a client sends back what it got.
func (a asset) input() map[string]any {
	return map[string]any{
		"id": a.ID, "siteId": a.SiteID, "name": a.Name, "serialNumber": a.SerialNumber,
		"installedAt": a.InstalledAt, "updatedAt": a.UpdatedAt, "deleted": a.Deleted,
	}
}

func newAsset(id, name string) map[string]any {
	return map[string]any{
		"id": id, "siteId": "site-1", "name": name, "serialNumber": "SN-" + id,
		"installedAt": "2026-03-01T08:00:00Z", "deleted": false,
	}
}

func pushRow(assumed, next map[string]any) map[string]any {
	return map[string]any{"assumedMasterState": assumed, "newDocumentState": next}
}

// runIn runs a command in dir (with env, or the test's own when nil) and
// returns its standard output and standard error; it fails the test, with the output, when the
// command fails.
func runIn(t *testing.T, dir string, env []string, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

// digests maps every file below dir (by slash-separated relative path) to
// its SHA-256.
func digests(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[filepath.ToSlash(rel)] = sha256.Sum256(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkGeneratedFiles checks what `go generate` did to the copy (see
// generationProblems) and that the new table's migration has its columns.
func checkGeneratedFiles(t *testing.T, work string, before, after map[string][32]byte) {
	t.Helper()
	for _, p := range generationProblems(before, after) {
		t.Error(p)
	}
	if t.Failed() {
		t.FailNow()
	}
	table := fmt.Sprintf("%04d_assets.sql", lastMigration(before)+1)
	sql, err := os.ReadFile(filepath.Join(work, "db", "migrations", table))
	if err != nil {
		t.Fatal(err)
	}
	for _, column := range []string{"site_id TEXT NOT NULL", "name TEXT NOT NULL", "serial_number TEXT,", "installed_at TIMESTAMPTZ,", "PRIMARY KEY (tenant_id, id)"} {
		if !strings.Contains(string(sql), column) {
			t.Errorf("%s lacks %q:\n%s", table, column, sql)
		}
	}
}

// generationProblems compares the copy's files before and after
// `go generate` (adding Asset) and returns, one line each, what the guide
// promises and did not happen: files are written only in the generated
// places (graph/, resolvers/, the registry, the printed schema,
// migrations), never a hand-written resolver or an existing migration, and
// Asset's executor, resolvers and three numbered migrations are there.
func generationProblems(before, after map[string][32]byte) []string {
	var problems, added, changed []string
	for path, sum := range after {
		old, ok := before[path]
		switch {
		case !ok:
			added = append(added, path)
		case old != sum:
			changed = append(changed, path)
		}
	}
	for path := range before {
		if _, ok := after[path]; !ok {
			problems = append(problems, "go generate removed "+path)
		}
	}
	slices.Sort(added)
	slices.Sort(changed)
	generated := func(path string) bool {
		return strings.HasPrefix(path, "graph/") || strings.HasPrefix(path, "resolvers/") || strings.HasPrefix(path, "db/migrations/") ||
			path == "collections/registry.generated.go" || path == "docs/schema.graphql"
	}
	for _, path := range slices.Concat(added, changed) {
		if !generated(path) {
			problems = append(problems, "go generate wrote "+path+", outside the generated places")
		}
	}
	for _, path := range changed {
		switch {
		case strings.HasPrefix(path, "db/migrations/"):
			problems = append(problems, "go generate rewrote the existing migration "+path)
		case strings.HasPrefix(path, "resolvers/") && !strings.HasSuffix(path, ".generated.go"):
			problems = append(problems, "go generate changed the hand-written resolvers in "+path)
		}
	}
	for _, path := range []string{"graph/asset.synced.generated.go", "resolvers/asset.synced.resolvers.go"} {
		if !slices.Contains(added, path) {
			problems = append(problems, "go generate did not write "+path)
		}
	}
	for _, path := range []string{"collections/registry.generated.go", "resolvers/collections.generated.go", "docs/schema.graphql"} {
		if !slices.Contains(changed, path) {
			problems = append(problems, "go generate did not update "+path)
		}
	}
	var migrations []string
	for _, path := range added {
		if migrationNumber.MatchString(path) {
			migrations = append(migrations, path)
		}
	}
	last := lastMigration(before)
	want := []string{
		fmt.Sprintf("db/migrations/%04d_assets.sql", last+1),
		fmt.Sprintf("db/migrations/%04d_assets_by_updated_at.sql", last+2),
		fmt.Sprintf("db/migrations/%04d_assets_tombstones.sql", last+3),
		fmt.Sprintf("db/migrations/%04d_assets_by_site_id.sql", last+4),
	}
	if !slices.Equal(migrations, want) {
		problems = append(problems, fmt.Sprintf("go generate wrote the migrations %v, want %v", migrations, want))
	}
	return problems
}

// The check above can fail: a stray file, a rewritten migration, a changed
// hand-written resolver, a removed file and missing output are each named.
func TestGenerationProblemsNamesEachBrokenPromise(t *testing.T) {
	sum := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	before := map[string][32]byte{
		"db/migrations/0001_sites.sql":       sum("create"),
		"resolvers/read.resolvers.go":        sum("hand-written"),
		"resolvers/collections.generated.go": sum("old"),
		"collections/registry.generated.go":  sum("old"),
		"docs/schema.graphql":                sum("old"),
		"cmd/tidemark/main.go":               sum("main"),
		"schema/site.graphqls":               sum("site"),
	}
	after := map[string][32]byte{
		"db/migrations/0001_sites.sql":       sum("create, rewritten"),
		"db/migrations/0002_assets.sql":      sum("create"),
		"resolvers/read.resolvers.go":        sum("hand-written, reformatted"),
		"resolvers/collections.generated.go": sum("new"),
		"collections/registry.generated.go":  sum("new"),
		"docs/schema.graphql":                sum("new"),
		"cmd/tidemark/main.go":               sum("main, edited"),
		"graph/asset.synced.generated.go":    sum("new"),
		"schema/asset.synced.graphqls":       sum("stray"),
	}
	got := strings.Join(generationProblems(before, after), "\n")
	for _, want := range []string{
		"go generate removed schema/site.graphqls",
		"go generate wrote cmd/tidemark/main.go, outside the generated places",
		"go generate wrote schema/asset.synced.graphqls, outside the generated places",
		"go generate rewrote the existing migration db/migrations/0001_sites.sql",
		"go generate changed the hand-written resolvers in resolvers/read.resolvers.go",
		"go generate did not write resolvers/asset.synced.resolvers.go",
		"go generate wrote the migrations [db/migrations/0002_assets.sql], want [db/migrations/0002_assets.sql db/migrations/0003_assets_by_updated_at.sql db/migrations/0004_assets_tombstones.sql db/migrations/0005_assets_by_site_id.sql]",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n") + 1; n != 7 {
		t.Errorf("want 7 problems, got %d:\n%s", n, got)
	}
}

// checkTablesMatchSchema compares the migrated tables with the copy's
// schema, as db's schema test does for the project's own collections.
func checkTablesMatchSchema(t *testing.T, work, dbURL string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(work, "schema", "*.graphqls"))
	if err != nil {
		t.Fatal(err)
	}
	var sources []*ast.Source
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, &ast.Source{Name: f, Input: string(b)})
	}
	sc, err := collectiongen.Describe(sources)
	if err != nil {
		t.Fatal(err)
	}
	var cols []*collections.Collection
	for _, s := range sc.Synced {
		cols = append(cols, s.Collection)
	}
	if !slices.ContainsFunc(cols, func(c *collections.Collection) bool { return c.Name == "Asset" }) {
		t.Fatalf("the copy's schema has no Asset collection")
	}
	ctx := context.Background()
	d, err := db.Open(ctx, dbURL, db.PoolConfig{MaxConns: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	diffs, err := d.TableDifferences(ctx, cols)
	if err != nil {
		t.Fatal(err)
	}
	for _, diff := range diffs {
		t.Errorf("the migrated database and the schema differ: %s", diff)
	}
}

var migrationNumber = regexp.MustCompile(`^db/migrations/(\d{4})_[a-z0-9_]+(?:\.(?:cockroachdb|postgresql))?\.sql$`)

// lastMigration is the highest migration number among files (0 for none).
func lastMigration(files map[string][32]byte) int {
	last := 0
	for path := range files {
		if m := migrationNumber.FindStringSubmatch(path); m != nil {
			n, _ := strconv.Atoi(m[1])
			last = max(last, n)
		}
	}
	return last
}

// newMigrations lists the copy's migrations the original tree lacks, as
// "0014_assets", in order.
func newMigrations(t *testing.T, root, work string) []string {
	t.Helper()
	var out []string
	entries, err := os.ReadDir(filepath.Join(work, "db", "migrations"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, "db", "migrations", e.Name())); os.IsNotExist(err) {
			out = append(out, strings.TrimSuffix(e.Name(), ".sql"))
		}
	}
	return out
}

// appliedMigrations reads `tidemark migrate`'s JSON log for the migrations
// it applied, as "0014_assets".
func appliedMigrations(t *testing.T, log string) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var rec struct {
			Msg     string `json:"msg"`
			Version int    `json:"version"`
			Name    string `json:"name"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "migration applied" {
			out = append(out, fmt.Sprintf("%04d_%s", rec.Version, rec.Name))
		}
	}
	return out
}

// graphqlClient posts GraphQL requests with a bearer token.
type graphqlClient struct {
	url   string
	token string
}

// graphqlErrors are a response's errors.
type graphqlErrors []struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

// want fails unless there is exactly one error, with the code, that names field
// (in extensions.field or in the message).
func (e graphqlErrors) want(t *testing.T, code, field string) {
	t.Helper()
	if len(e) != 1 {
		t.Fatalf("want one %s error naming %s, got %+v", code, field, e)
	}
	if e[0].Extensions["code"] != code {
		t.Errorf("error code %v, want %s: %+v", e[0].Extensions["code"], code, e[0])
	}
	if e[0].Extensions["field"] != field && !strings.Contains(e[0].Message, field) {
		t.Errorf("the error does not name %s: %+v", field, e[0])
	}
}

func (c *graphqlClient) do(t *testing.T, query string, variables vars, out any) graphqlErrors {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": variables})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var resp struct {
		Data   json.RawMessage `json:"data"`
		Errors graphqlErrors   `json:"errors"`
	}
	if err := json.NewDecoder(res.Body).Decode(&resp); err != nil {
		t.Fatalf("POST /graphql: %s, body is not a GraphQL response: %v", res.Status, err)
	}
	if out != nil && len(resp.Errors) == 0 {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			t.Fatalf("decode %s: %v", resp.Data, err)
		}
	}
	return resp.Errors
}

func (c *graphqlClient) mustDo(t *testing.T, query string, variables vars, out any) {
	t.Helper()
	if errs := c.do(t, query, variables, out); len(errs) > 0 {
		t.Fatalf("%s: %+v", query, errs)
	}
}

// graphqlWS is a graphql-transport-ws connection.
type graphqlWS struct {
	conn *websocket.Conn
}

// dialGraphQLWS connects to base's /graphql, authenticates in
// connection_init and waits for connection_ack.
func dialGraphQLWS(t *testing.T, base, token string) *graphqlWS {
	t.Helper()
	dialer := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 5 * time.Second}
	conn, _, err := dialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/graphql", nil)
	if err != nil {
		t.Fatalf("dial the websocket: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ws := &graphqlWS{conn: conn}
	ws.send(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + token}})
	if msg := ws.read(t); msg.Type != "connection_ack" {
		t.Fatalf("got %s after connection_init, want connection_ack: %s", msg.Type, msg.Payload)
	}
	return ws
}

type wsMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

func (ws *graphqlWS) send(msg any) {
	_ = ws.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = ws.conn.WriteJSON(msg)
}

func (ws *graphqlWS) read(t *testing.T) wsMessage {
	t.Helper()
	for {
		_ = ws.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		var msg wsMessage
		if err := ws.conn.ReadJSON(&msg); err != nil {
			t.Fatalf("read the websocket: %v", err)
		}
		if msg.Type == "ping" {
			ws.send(map[string]any{"type": "pong"})
			continue
		}
		return msg
	}
}

// next reads the subscription's next event into out; an error or the end of
// the subscription fails the test.
func (ws *graphqlWS) next(t *testing.T, id string, out any) {
	t.Helper()
	msg := ws.read(t)
	if msg.Type != "next" || msg.ID != id {
		t.Fatalf("got %s for %q, want next for %q: %s", msg.Type, msg.ID, id, msg.Payload)
	}
	var result struct {
		Data   json.RawMessage `json:"data"`
		Errors graphqlErrors   `json:"errors"`
	}
	if err := json.Unmarshal(msg.Payload, &result); err != nil || len(result.Errors) > 0 {
		t.Fatalf("stream event %s: %v %+v", msg.Payload, err, result.Errors)
	}
	if err := json.Unmarshal(result.Data, out); err != nil {
		t.Fatalf("decode %s: %v", result.Data, err)
	}
}
