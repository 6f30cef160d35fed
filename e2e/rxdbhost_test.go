package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// rxdbHost drives RxDB clients in one Node process (rxdb-host.mjs) step by
// step, so that a Go test can interleave their moves with its own (a
// purge, a write through the API) and read each client's local state.
type rxdbHost struct {
	t       *testing.T
	stdin   io.WriteCloser
	answers chan hostAnswer
	next    int
}

type hostAnswer struct {
	Seq    int             `json:"seq"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

// hostCallTimeout bounds one command; a sync that waits out a retry or a
// resync takes a few seconds.
const hostCallTimeout = 2 * time.Minute

// startRxDBHost starts rxdb-host.mjs against the server of graphqlURL.
// token fills the variables test/helpers.mjs requires; each client gets its
// own token when it opens.
func startRxDBHost(t *testing.T, graphqlURL, token string) *rxdbHost {
	t.Helper()
	installNodeModules(t)
	answersR, answersW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", "rxdb-host.mjs")
	cmd.Env = append(os.Environ(),
		"TIDEMARK_URL="+graphqlURL,
		"TIDEMARK_TOKEN_A="+token,
		"TIDEMARK_TOKEN_B="+token,
		"TIDEMARK_TOKEN_OTHER="+token,
	)
	cmd.ExtraFiles = []*os.File{answersW} // file descriptor 3
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := &lineLogger{t: t, prefix: "node: "}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node rxdb-host.mjs: %v", err)
	}
	answersW.Close() // the child has its own copy
	h := &rxdbHost{t: t, stdin: stdin, answers: make(chan hostAnswer)}
	go func() {
		defer close(h.answers)
		sc := bufio.NewScanner(answersR)
		sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
		for sc.Scan() {
			var a hostAnswer
			if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
				a = hostAnswer{Seq: -1, Error: fmt.Sprintf("unreadable answer %q: %v", sc.Text(), err)}
			}
			h.answers <- a
		}
	}()
	t.Cleanup(func() {
		// Closing stdin closes the clients and ends the host.
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node rxdb-host.mjs: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("node rxdb-host.mjs did not exit within 30s of closing its input")
		}
		for range h.answers { // drain, so the reader ends
		}
		_ = answersR.Close()
		out.Flush()
	})
	return h
}

// call runs one command and decodes its result into out (when not nil);
// an error in the host fails the test.
func (h *rxdbHost) call(op string, args map[string]any, out any) {
	h.t.Helper()
	h.next++
	msg := map[string]any{"seq": h.next, "op": op}
	maps.Copy(msg, args)
	line, err := json.Marshal(msg)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.stdin.Write(append(line, '\n')); err != nil {
		h.t.Fatalf("%s: write to the host: %v", op, err)
	}
	select {
	case a, ok := <-h.answers:
		switch {
		case !ok:
			h.t.Fatalf("%s %v: the host exited", op, args["client"])
		case a.Seq != h.next:
			h.t.Fatalf("%s: answer %d (%s), want %d", op, a.Seq, a.Error, h.next)
		case a.Error != "":
			h.t.Fatalf("%s %v: %s", op, args["client"], a.Error)
		}
		if out != nil {
			if err := json.Unmarshal(a.Result, out); err != nil {
				h.t.Fatalf("%s: decode %s: %v", op, a.Result, err)
			}
		}
	case <-time.After(hostCallTimeout):
		h.t.Fatalf("%s %v: no answer within %s", op, args["client"], hostCallTimeout)
	}
}

// rxdbClient is one RxDB database in the host, replicating the four
// collections live with its own token.
type rxdbClient struct {
	h    *rxdbHost
	name string
}

// open opens a client; opts are openClient's (stream, checkpointReset).
func (h *rxdbHost) open(name, token string, opts map[string]any) *rxdbClient {
	h.t.Helper()
	args := map[string]any{"client": name, "token": token}
	maps.Copy(args, opts)
	h.call("open", args, nil)
	return &rxdbClient{h: h, name: name}
}

func (c *rxdbClient) do(op string, args map[string]any, out any) {
	c.h.t.Helper()
	all := map[string]any{"client": c.name}
	maps.Copy(all, args)
	c.h.call(op, all, out)
}

func (c *rxdbClient) insert(collection string, docs ...doc) {
	c.h.t.Helper()
	c.do("insert", map[string]any{"collection": collection, "docs": docs}, nil)
}

func (c *rxdbClient) patch(collection, id string, patch doc) {
	c.h.t.Helper()
	c.do("patch", map[string]any{"collection": collection, "id": id, "patch": patch}, nil)
}

// offline pauses the client's replications; local writes queue up.
func (c *rxdbClient) offline() { c.h.t.Helper(); c.do("offline", nil, nil) }
func (c *rxdbClient) online()  { c.h.t.Helper(); c.do("online", nil, nil) }

// sync pushes what is pending, then pulls until nothing is new.
func (c *rxdbClient) sync() { c.h.t.Helper(); c.do("sync", nil, nil) }

// clientState is what a client holds and what its replications reported.
type clientState struct {
	// Documents are the local, non-deleted documents by collection, sorted by id.
	Documents map[string][]doc `json:"documents"`
	// Conflicts are the documents pushes returned (RxDB's conflicts).
	Conflicts []struct {
		Collection string `json:"collection"`
		Returned   doc    `json:"returned"`
	} `json:"conflicts"`
	Errors []struct {
		Message string    `json:"message"`
		Codes   []*string `json:"codes"`
	} `json:"errors"`
	// Resets are the full resyncs after CHECKPOINT_EXPIRED, with the local
	// documents each one dropped.
	Resets []struct {
		Collection string   `json:"collection"`
		Dropped    []string `json:"dropped"`
	} `json:"resets"`
}

func (c *rxdbClient) state() clientState {
	c.h.t.Helper()
	var s clientState
	c.do("state", nil, &s)
	return s
}

// localDoc is a document in a client's storage, deleted or not.
type localDoc struct {
	Deleted bool `json:"deleted"`
	Doc     doc  `json:"doc"`
}

// local returns the client's stored documents of the ids, deleted ones
// included; an id it never had is missing from the map.
func (c *rxdbClient) local(collection string, ids ...string) map[string]localDoc {
	c.h.t.Helper()
	out := map[string]localDoc{}
	c.do("local", map[string]any{"collection": collection, "ids": ids}, &out)
	return out
}

// errorCodes lists the codes of the client's replication errors, "" for
// an error without one.
func (s clientState) errorCodes() []string {
	var out []string
	for _, e := range s.Errors {
		if len(e.Codes) == 0 {
			out = append(out, "")
		}
		for _, c := range e.Codes {
			if c == nil {
				out = append(out, "")
			} else {
				out = append(out, *c)
			}
		}
	}
	return out
}

// dropped is every id the client's resyncs dropped from the collection, sorted.
func (s clientState) dropped(collection string) []string {
	var out []string
	for _, r := range s.Resets {
		if r.Collection == collection {
			out = append(out, r.Dropped...)
		}
	}
	slices.Sort(out)
	return out
}

// resetCollections lists the collections that resynced from a null
// checkpoint at least once, sorted.
func (s clientState) resetCollections() []string {
	var out []string
	for _, r := range s.Resets {
		if !slices.Contains(out, r.Collection) {
			out = append(out, r.Collection)
		}
	}
	slices.Sort(out)
	return out
}

// doc is a document as JSON: a client's local one or the server's.
type doc = map[string]any

// collectionTypes maps the client collections to their GraphQL types.
var collectionTypes = map[string]string{
	"sites":          "Site",
	"workOrders":     "WorkOrder",
	"checklistItems": "ChecklistItem",
	"notes":          "Note",
}

var typeFields = map[string]string{
	"Site":          "id name address latitude longitude updatedAt deleted",
	"WorkOrder":     "id siteId title description status priority assigneeId dueAt updatedAt deleted",
	"ChecklistItem": "id workOrderId label done position updatedAt deleted",
	"Note":          "id workOrderId body authorId updatedAt deleted",
}

// serverDocuments pulls every document of the collection the caller syncs,
// deleted ones and removals included, by id.
func serverDocuments(t *testing.T, c *graphqlClient, collection string) map[string]doc {
	t.Helper()
	typ := collectionTypes[collection]
	query := fmt.Sprintf(`query($checkpoint: CheckpointInput) {
  pull%[1]ss(checkpoint: $checkpoint, limit: 1000) { documents { %[2]s } checkpoint { cursor } }
}`, typ, typeFields[typ])
	out := map[string]doc{}
	var checkpoint any
	for {
		var res map[string]struct {
			Documents  []doc
			Checkpoint struct{ Cursor string }
		}
		c.mustDo(t, query, vars{"checkpoint": checkpoint}, &res)
		page := res["pull"+typ+"s"]
		for _, d := range page.Documents {
			out[d["id"].(string)] = d
		}
		if len(page.Documents) < 1000 {
			return out
		}
		checkpoint = map[string]any{"cursor": page.Checkpoint.Cursor}
	}
}

// serverSet is the caller's set on the server: its non-deleted documents
// by collection, sorted by id, shaped like a client's state.
func serverSet(t *testing.T, c *graphqlClient) map[string][]doc {
	t.Helper()
	out := map[string][]doc{}
	for collection := range collectionTypes {
		docs := []doc{}
		for _, d := range serverDocuments(t, c, collection) {
			if d["deleted"] != true {
				docs = append(docs, d)
			}
		}
		slices.SortFunc(docs, func(a, b doc) int { return strings.Compare(a["id"].(string), b["id"].(string)) })
		out[collection] = docs
	}
	return out
}

// normalized drops what a client and the server spell differently: null
// fields (a locally created document lacks them) and the server's deleted
// flag (a client's state holds only live documents).
func normalized(d doc) doc {
	out := doc{}
	for k, v := range d {
		if v != nil && k != "deleted" {
			out[k] = v
		}
	}
	return out
}

// holdsExactly reports how got differs from want, collection by
// collection: missing and extra ids, and documents whose fields differ.
func holdsExactly(got, want map[string][]doc) []string {
	var problems []string
	for _, collection := range slices.Sorted(maps.Keys(collectionTypes)) {
		g, w := byID(got[collection]), byID(want[collection])
		for id, wd := range w {
			gd, ok := g[id]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s %s is missing", collection, id))
			case !reflect.DeepEqual(normalized(gd), normalized(wd)):
				problems = append(problems, fmt.Sprintf("%s %s differs:\n   have %v\n   want %v", collection, id, normalized(gd), normalized(wd)))
			}
		}
		for id := range g {
			if _, ok := w[id]; !ok {
				problems = append(problems, fmt.Sprintf("%s %s should not be there", collection, id))
			}
		}
	}
	slices.Sort(problems)
	return problems
}

func byID(docs []doc) map[string]doc {
	out := map[string]doc{}
	for _, d := range docs {
		out[d["id"].(string)] = d
	}
	return out
}

// ids lists the documents' ids, sorted.
func ids(docs []doc) []string {
	out := []string{}
	for _, d := range docs {
		out = append(out, d["id"].(string))
	}
	slices.Sort(out)
	return out
}
