package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// device is one simulated client, as RxDB's GraphQL replication keeps it:
// per collection, the documents with their last known server state and
// local state (a document whose two differ has an unpushed edit), and the
// checkpoint to pull from.
type device struct {
	r       *fleetRun
	idx, id int // index in this process, global id
	user    int
	role    string
	streams bool // holds a live stream while online; otherwise polls
	client  *Client

	mu       sync.Mutex // held for each action and while a streamed event is applied
	online   bool
	session  int32 // bumped at every connect and disconnect: older readers and events are ignored
	conn     *websocket.Conn
	wmu      sync.Mutex // one writer at a time on conn
	store    [numFleetCollections]map[string]*docEntry
	cp       [numFleetCollections]string // "" is a null checkpoint
	edits    int
	failures int  // syncs failed in a row, for the backoff
	unsynced bool // its last final push or pull failed
}

// docEntry holds a document's states as canonical JSON (sorted keys,
// without the server-owned updatedAt and authorId); master is "" for a
// document created here and not yet pushed.
type docEntry struct{ master, local string }

func (e *docEntry) pending() bool { return e.local != e.master }

func newDevice(r *fleetRun, idx int) *device {
	cfg := r.cfg
	id := cfg.DeviceOffset + idx
	u := cfg.userOf(id)
	d := &device{r: r, idx: idx, id: id, user: u, role: cfg.roleOf(u),
		streams: rand.Float64() < cfg.Stream}
	d.client = r.as(cfg.tenantName(cfg.tenantOf(u)), fleetUserID(u), d.role)
	for c := range d.store {
		d.store[c] = map[string]*docEntry{}
	}
	// Its own work order, created offline before its first sync.
	own := canonicalDoc(cfg.ownWorkOrder(id))
	d.store[colWorkOrders][ownWorkOrderID(id)] = &docEntry{local: own}
	return d
}

func (d *device) schedule(at time.Time, kind fleetEventKind) {
	d.r.sched.add(fleetEvent{at: at, device: int32(d.idx), kind: kind, session: d.session})
}

// startSchedule places the device's first transition within the ramp:
// online at once for its share of the online fraction, after an offline
// spell for the others.
func (d *device) startSchedule(began time.Time) {
	cfg := d.r.cfg
	at := began.Add(time.Duration(rand.Float64() * float64(cfg.Ramp)))
	if on := float64(cfg.OnlineMean) / float64(cfg.OnlineMean+cfg.OfflineMean); rand.Float64() >= on {
		at = at.Add(expRand(cfg.OfflineMean))
	}
	d.schedule(at, evToggle)
	if cfg.EditRate > 0 {
		d.schedule(began.Add(expRand(time.Duration(float64(time.Second)/cfg.EditRate))), evEdit)
	}
}

func (d *device) handle(ctx context.Context, ev fleetEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg := d.r.cfg
	now := time.Now()
	switch ev.kind {
	case evToggle:
		if d.online {
			d.disconnect()
			d.online = false
			d.r.stats.online.Add(-1)
			d.schedule(now.Add(expRand(cfg.OfflineMean)), evToggle)
			return
		}
		d.online = true
		d.r.stats.online.Add(1)
		d.schedule(now.Add(expRand(cfg.OnlineMean)), evToggle)
		d.sync(ctx)
	case evEdit:
		d.edit()
		if d.online {
			_ = d.push(ctx)
		}
		d.schedule(now.Add(expRand(time.Duration(float64(time.Second)/cfg.EditRate))), evEdit)
	case evPoll:
		if d.online && ev.session == d.session {
			if err := d.pullAll(ctx, false); err == nil {
				_ = d.push(ctx)
			}
			d.schedule(time.Now().Add(cfg.PollEvery), evPoll)
		}
	case evReconnect:
		if d.online && ev.session == d.session {
			d.r.stats.reconnect.Add(1)
			d.sync(ctx)
		}
	}
}

// sync is what RxDB does on going online and after each reconnect: open
// the stream (authenticated in connection_init, so the server starts it
// where the tenant stood when it accepted the connection), pull every
// collection from its checkpoint until caught up, then push what is
// pending. A failure closes the stream and retries later with a backoff,
// so no stream event moves a checkpoint past a pull that did not finish.
func (d *device) sync(ctx context.Context) {
	d.disconnect()
	t0 := time.Now()
	retry := func(after time.Duration) {
		d.disconnect()
		d.failures++
		if after <= 0 {
			ceiling := min(500*time.Millisecond<<min(d.failures, 6), 30*time.Second)
			after = ceiling/2 + time.Duration(rand.Int64N(int64(ceiling/2)+1))
		}
		d.schedule(time.Now().Add(after), evReconnect)
	}
	if d.streams {
		if after, err := d.connect(ctx); err != nil {
			if ctx.Err() == nil {
				d.r.stats.fail("connect", err)
			}
			retry(after)
			return
		}
	}
	if err := d.pullAll(ctx, false); err != nil {
		retry(0)
		return
	}
	if err := d.push(ctx); err != nil {
		retry(0)
		return
	}
	d.failures = 0
	d.r.stats.observe("sync", time.Since(t0))
	if !d.streams {
		d.schedule(time.Now().Add(d.r.cfg.PollEvery), evPoll)
	}
}

// disconnect closes the stream, if any, and starts a new session.
func (d *device) disconnect() {
	d.session++
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
		d.r.stats.streaming.Add(-1)
	}
}

// connect opens the websocket and subscribes to every collection. A
// refused upgrade (429, 503) returns its Retry-After.
func (d *device) connect(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	conn, resp, err := d.r.dialer.DialContext(ctx, d.r.wsURL, nil)
	if err != nil {
		if resp != nil {
			after, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			return time.Duration(after) * time.Second, fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return 0, err
	}
	fail := func(err error) (time.Duration, error) {
		conn.Close()
		return 0, err
	}
	if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer " + d.client.Token}}); err != nil {
		return fail(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	var ack struct{ Type string }
	if err := conn.ReadJSON(&ack); err != nil {
		return fail(err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if ack.Type != "connection_ack" {
		return fail(fmt.Errorf("expected connection_ack, got %q", ack.Type))
	}
	for _, c := range fleetCollections {
		if err := conn.WriteJSON(map[string]any{"id": c.plural, "type": "subscribe", "payload": map[string]any{"query": c.streamSubscription}}); err != nil {
			return fail(err)
		}
	}
	d.r.stats.observe("connect", time.Since(t0))
	d.conn = conn
	d.r.stats.streaming.Add(1)
	d.r.readers.Add(1)
	go d.read(conn, d.session, t0)
	return 0, nil
}

type fleetStreamMessage struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Payload struct {
		Data   map[string]pulledBulk `json:"data"`
		Errors json.RawMessage       `json:"errors"`
	} `json:"payload"`
}

type pulledBulk struct {
	Documents  []json.RawMessage `json:"documents"`
	Checkpoint struct {
		Cursor string `json:"cursor"`
	} `json:"checkpoint"`
}

// read is the stream's reader: it applies each event under the device's
// lock (so an event waits for a push or pull under way, as
// tidemark-rxdb.mjs makes RxDB wait) and takes its checkpoint. When the
// server ends the stream, the device reconnects and resyncs. Lag counts
// only documents written after the connection began: one that enters the
// device's set (a site its user's new work order is on) keeps its older
// updatedAt.
func (d *device) read(conn *websocket.Conn, session int32, since time.Time) {
	defer d.r.readers.Done()
	for {
		_, raw, err := conn.ReadMessage()
		if err != nil {
			d.ended(session, err, true)
			return
		}
		var m fleetStreamMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			d.ended(session, fmt.Errorf("stream message: %w", err), false)
			return
		}
		switch m.Type {
		case "next":
			if len(m.Payload.Errors) > 0 {
				d.ended(session, fmt.Errorf("stream %s: %s", m.ID, m.Payload.Errors), false)
				return
			}
			col, ok := collectionByName(m.ID)
			bulk, found := m.Payload.Data["r"]
			if !ok || !found {
				d.ended(session, fmt.Errorf("stream event of unknown subscription %q", m.ID), false)
				return
			}
			now := time.Now()
			d.mu.Lock()
			if d.session != session {
				d.mu.Unlock()
				return
			}
			for _, doc := range bulk.Documents {
				if at, ok := d.apply(col, doc); ok && at.After(since) {
					d.r.stats.observe("lag", now.Sub(at))
				}
			}
			d.cp[col] = bulk.Checkpoint.Cursor
			d.mu.Unlock()
			d.r.stats.streamEvents.Add(1)
			d.r.stats.streamDocs.Add(int64(len(bulk.Documents)))
		case "ping":
			d.wmu.Lock()
			_ = conn.WriteJSON(map[string]string{"type": "pong"})
			d.wmu.Unlock()
		case "error", "complete":
			d.ended(session, fmt.Errorf("stream %s ended by the server: %s %s", m.ID, m.Type, raw), false)
			return
		}
	}
}

// ended handles a stream that stopped while its session was current.
func (d *device) ended(session int32, err error, closed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.session != session {
		return // closed by the device itself
	}
	if closed {
		d.r.stats.dropped(err)
	} else {
		d.r.stats.fail("stream", err)
	}
	d.disconnect()
	d.failures++
	ceiling := min(500*time.Millisecond<<min(d.failures, 6), 30*time.Second)
	d.schedule(time.Now().Add(ceiling/2+time.Duration(rand.Int64N(int64(ceiling/2)+1))), evReconnect)
}

// pullAll pulls every collection from its checkpoint until a page comes
// back short. final marks the end-of-run sync, whose errors are not the
// server's load.
func (d *device) pullAll(ctx context.Context, final bool) error {
	for c := range fleetCollections {
		cp, err := pullPages(ctx, d.client, c, d.cp[c], d.r.cfg.PullLimit, d.r.stats, func(doc json.RawMessage) { d.apply(c, doc) })
		d.cp[c] = cp
		if err != nil {
			if ctx.Err() == nil && !final {
				d.r.stats.fail("pull", err)
			}
			return err
		}
	}
	return nil
}

// pullPages pulls one collection from cp until caught up, handing each
// document to apply, and returns the checkpoint it reached.
func pullPages(ctx context.Context, c *Client, col int, cp string, limit int, stats *fleetStats, apply func(json.RawMessage)) (string, error) {
	for {
		var vars = map[string]any{"cp": nil, "limit": limit}
		if cp != "" {
			vars["cp"] = map[string]any{"cursor": cp}
		}
		var out struct {
			R pulledBulk `json:"r"`
		}
		t0 := time.Now()
		if err := c.Do(ctx, fleetCollections[col].pullQuery, vars, &out); err != nil {
			return cp, fmt.Errorf("pull%s: %w", fleetCollections[col].plural, err)
		}
		if stats != nil {
			stats.observe("pull", time.Since(t0))
			stats.pulls.Add(1)
			stats.pulledDocs.Add(int64(len(out.R.Documents)))
		}
		for _, doc := range out.R.Documents {
			apply(doc)
		}
		cp = out.R.Checkpoint.Cursor
		if len(out.R.Documents) < limit {
			return cp, nil
		}
	}
}

// apply takes a pulled or streamed document into the store, unless the
// device has an unpushed edit of it: then, as in RxDB, the push decides.
// It returns the document's updatedAt.
func (d *device) apply(col int, raw json.RawMessage) (time.Time, bool) {
	doc, err := parseDoc(raw)
	if err != nil {
		d.r.stats.fail("document", err)
		return time.Time{}, false
	}
	if e := d.store[col][doc.id]; e != nil && e.pending() {
		d.r.stats.skipped.Add(1)
		return doc.updatedAt, true
	}
	if doc.deleted {
		if _, held := d.store[col][doc.id]; held {
			d.r.stats.removalsIn.Add(1)
		}
		delete(d.store[col], doc.id)
	} else {
		d.store[col][doc.id] = &docEntry{master: doc.canonical, local: doc.canonical}
	}
	return doc.updatedAt, true
}

// push sends every pending document of each collection, with the state it
// assumes the server holds, and adopts what the server returns: its
// document for a conflict, the merge for a merge, a removal for a row
// outside the caller's set. Rows not returned were written as sent.
func (d *device) push(ctx context.Context) error {
	for c := range fleetCollections {
		var ids []string
		var rows []map[string]any
		for id, e := range d.store[c] {
			if !e.pending() {
				continue
			}
			row := map[string]any{"newDocumentState": json.RawMessage(e.local)}
			if e.master != "" {
				row["assumedMasterState"] = json.RawMessage(e.master)
			}
			ids = append(ids, id)
			rows = append(rows, row)
			if len(rows) == 1000 {
				break // the server's limit; the rest go with the next push
			}
		}
		if len(rows) == 0 {
			continue
		}
		var out struct {
			R []json.RawMessage `json:"r"`
		}
		t0 := time.Now()
		err := d.client.Do(ctx, fleetCollections[c].pushMutation, map[string]any{"rows": rows}, &out)
		d.r.stats.observe("push", time.Since(t0))
		if err != nil {
			if ctx.Err() == nil {
				d.r.stats.fail("push", err)
			}
			return err
		}
		d.r.stats.pushes.Add(1)
		d.r.stats.pushRows.Add(int64(len(rows)))
		returned := make(map[string]parsedDoc, len(out.R))
		for _, raw := range out.R {
			doc, err := parseDoc(raw)
			if err != nil {
				d.r.stats.fail("push result", err)
				return err
			}
			returned[doc.id] = doc
		}
		for _, id := range ids {
			e := d.store[c][id]
			got, ok := returned[id]
			if !ok {
				e.master = e.local
				continue
			}
			d.r.stats.classify(e.master, e.local, got)
			if got.deleted {
				delete(d.store[c], id)
			} else {
				e.master, e.local = got.canonical, got.canonical
			}
		}
	}
	return nil
}

// classify counts a returned push row: a removal, a merge (every field the
// device changed holds its value) or a conflict (the server kept its own).
func (s *fleetStats) classify(assumed, sent string, got parsedDoc) {
	var a, n, g map[string]any
	_ = decodeDoc(sent, &n)
	_ = decodeDoc(got.canonical, &g)
	if got.deleted && n["deleted"] != true {
		s.removed.Add(1)
		return
	}
	if assumed == "" {
		s.conflicts.Add(1) // created here, but the server had it already
		return
	}
	_ = decodeDoc(assumed, &a)
	for k, v := range n {
		if !reflect.DeepEqual(a[k], v) && !reflect.DeepEqual(g[k], v) {
			s.conflicts.Add(1)
			return
		}
	}
	s.merges.Add(1)
}

// edit changes one field of a document: with probability cfg.Overlap one
// that other devices also edit (a shared work order or checklist item in
// the device's store), otherwise the device's own work order. A user who
// syncs the whole tenant may reassign a shared work order instead
// (cfg.Reassign).
func (d *device) edit() {
	d.edits++
	d.r.stats.edits.Add(1)
	col, id := colWorkOrders, ownWorkOrderID(d.id)
	if rand.Float64() < d.r.cfg.Overlap {
		var shared [][2]any
		for _, c := range []int{colWorkOrders, colChecklistItems} {
			for docID := range d.store[c] {
				if strings.HasPrefix(docID, "wo-u") || strings.HasPrefix(docID, "ci-u") {
					shared = append(shared, [2]any{c, docID})
				}
			}
		}
		if len(shared) > 0 {
			pick := shared[rand.IntN(len(shared))]
			col, id = pick[0].(int), pick[1].(string)
		}
	}
	e := d.store[col][id]
	if e == nil { // its own work order, never removed; recreated if it were
		e = &docEntry{local: canonicalDoc(d.r.cfg.ownWorkOrder(d.id))}
		d.store[col][id] = e
	}
	var doc map[string]any
	if err := decodeDoc(e.local, &doc); err != nil {
		d.r.stats.fail("edit", err)
		return
	}
	stamp := fmt.Sprintf("device %d, edit %d", d.id, d.edits)
	techs := d.r.techs[d.r.cfg.tenantOf(d.user)]
	if col == colWorkOrders && strings.HasPrefix(id, "wo-u") && fleetRoles[d.role] && len(techs) > 0 && rand.Float64() < d.r.cfg.Reassign {
		doc["assigneeId"] = fleetUserID(techs[rand.IntN(len(techs))])
		d.r.stats.reassigned.Add(1)
	} else if col == colChecklistItems {
		switch rand.IntN(2) {
		case 0:
			doc["done"] = doc["done"] != true
		default:
			doc["label"] = "Step checked by " + stamp
		}
	} else {
		switch rand.IntN(4) {
		case 0:
			doc["status"] = []string{"OPEN", "IN_PROGRESS", "DONE", "CANCELLED"}[rand.IntN(4)]
		case 1:
			doc["priority"] = rand.IntN(5)
		case 2:
			doc["description"] = "Edited by " + stamp
		default:
			doc["title"] = "Work order edited by " + stamp
		}
	}
	e.local = canonicalDoc(doc)
}

// goOfflineForCheck closes the stream before the final sync, so that the
// final store comes from pulls alone and no late event changes it.
func (d *device) goOfflineForCheck() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.disconnect()
	if d.online {
		d.online = false
		d.r.stats.online.Add(-1)
	}
}

func (d *device) finalPush(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unsynced = d.push(ctx) != nil
}

func (d *device) finalPull(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for range 3 {
		if d.unsynced = d.pullAll(ctx, true) != nil; !d.unsynced {
			return
		}
	}
}

// parsedDoc is a document as the server sent it.
type parsedDoc struct {
	id        string
	deleted   bool
	canonical string
	updatedAt time.Time
}

// serverOwned fields are set by the server; they take no part in comparisons.
var serverOwned = []string{"updatedAt", "authorId"}

func parseDoc(raw json.RawMessage) (parsedDoc, error) {
	var m map[string]any // numbers as float64, as decodeDoc reads them back
	if err := json.Unmarshal(raw, &m); err != nil {
		return parsedDoc{}, err
	}
	id, _ := m["id"].(string)
	if id == "" {
		return parsedDoc{}, errors.New("a document without an id")
	}
	p := parsedDoc{id: id, deleted: m["deleted"] == true}
	if s, ok := m["updatedAt"].(string); ok {
		p.updatedAt, _ = time.Parse(time.RFC3339Nano, s)
	}
	p.canonical = canonicalDoc(m)
	return p, nil
}

// canonicalDoc is a document's JSON with sorted keys, without the
// server-owned fields; numbers are float64 or int, which encode alike.
func canonicalDoc(m map[string]any) string {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	for _, k := range serverOwned {
		delete(c, k)
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err) // documents hold only JSON values
	}
	return string(b)
}

func decodeDoc(s string, out *map[string]any) error {
	return json.Unmarshal([]byte(s), out)
}
