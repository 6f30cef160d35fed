package dbtest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on 127.0.0.1 between a test's server and its
// PostgreSQL, for outages played over real connections: Cut makes the
// database unreachable (every connection reset, new ones closed at once),
// Hang makes it a black hole (connections accepted and written to, never
// answered), Restore lets everything through again.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  proxyMode
	pairs map[*proxyPair]struct{}
	held  map[net.Conn]struct{} // client sides a hang keeps open, unanswered
	// refusals is signalled (without blocking) after each connection a
	// Cut closes or a Hang holds.
	refusals chan struct{}
}

type proxyMode int

const (
	proxyPass proxyMode = iota
	proxyCut
	proxyHang
)

type proxyPair struct{ client, upstream net.Conn }

// NewProxy starts a proxy to target (host:port); it stops when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, pairs: map[*proxyPair]struct{}{}, held: map[net.Conn]struct{}{}, refusals: make(chan struct{}, 1)}
	go p.accept()
	tb.Cleanup(func() {
		ln.Close()
		p.closeAll(true)
	})
	return p
}

// ProxiedURL returns a fresh, migrated database of its own for this test
// (as URL) and a proxy in front of it: the URL through the proxy, and the
// proxy to cut.
func ProxiedURL(tb testing.TB) (string, *Proxy) {
	tb.Helper()
	u, err := url.Parse(URL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	p := NewProxy(tb, u.Host)
	u.Host = p.ln.Addr().String()
	return u.String(), p
}

// Cut resets every connection through the proxy and closes new ones at once,
// as a stopped database server does.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.mode = proxyCut
	p.mu.Unlock()
	p.closeAll(true)
}

// Hang keeps every connection open but answers nothing more, on old
// connections or new: a database behind a network that drops its packets.
func (p *Proxy) Hang() {
	p.mu.Lock()
	p.mode = proxyHang
	p.mu.Unlock()
	p.closeAll(false)
}

// Restore lets connections through again; those a hang held are reset.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.mode = proxyPass
	held := p.held
	p.held = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range held {
		c.Close()
	}
}

// Refusals is signalled after a connection attempt meets a Cut or Hang:
// a test waits on it to know a client has tried.
func (p *Proxy) Refusals() <-chan struct{} { return p.refusals }

// closeAll closes the upstream side of every pair, and the client side too
// unless the pair is to hang.
func (p *Proxy) closeAll(clients bool) {
	p.mu.Lock()
	pairs := p.pairs
	p.pairs = map[*proxyPair]struct{}{}
	var held []net.Conn
	if clients {
		for c := range p.held {
			held = append(held, c)
		}
		p.held = map[net.Conn]struct{}{}
	}
	for pair := range pairs {
		if !clients {
			p.held[pair.client] = struct{}{}
		}
	}
	p.mu.Unlock()
	for pair := range pairs {
		pair.upstream.Close()
		if clients {
			pair.client.Close()
		} else {
			go drain(pair.client)
		}
	}
	for _, c := range held {
		c.Close()
	}
}

// drain reads and drops what a held client sends, until it is closed.
func drain(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

func (p *Proxy) refuse() {
	select {
	case p.refusals <- struct{}{}:
	default:
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	p.mu.Lock()
	mode := p.mode
	switch mode {
	case proxyCut:
		p.refuse()
		p.mu.Unlock()
		c.Close()
		return
	case proxyHang:
		p.refuse()
		p.held[c] = struct{}{}
		p.mu.Unlock()
		drain(c)
		return
	}
	p.mu.Unlock()
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	pair := &proxyPair{client: c, upstream: u}
	p.mu.Lock()
	if p.mode != proxyPass {
		p.mu.Unlock()
		u.Close()
		c.Close()
		return
	}
	p.pairs[pair] = struct{}{}
	p.mu.Unlock()
	go func() {
		_, _ = io.Copy(u, c)
		p.finish(pair)
	}()
	_, _ = io.Copy(c, u)
	p.finish(pair)
}

// finish closes a pair whose copy ended, unless a hang holds its client.
func (p *Proxy) finish(pair *proxyPair) {
	p.mu.Lock()
	_, held := p.held[pair.client]
	delete(p.pairs, pair)
	p.mu.Unlock()
	pair.upstream.Close()
	if !held {
		pair.client.Close()
	}
}
