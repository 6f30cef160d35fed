package loadtest

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/tidemark/tidemark/db/dbtest"
)

// echoServer echoes every connection's bytes back until it ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startDelayProxy(t *testing.T, target string, delay time.Duration) *DelayProxy {
	t.Helper()
	p, err := NewDelayProxy(target, delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestDelayProxyKeepsEveryByteInOrder sends 4 MiB in writes of random
// sizes through the proxy to an echo server while reading the echo: what
// comes back is what was sent, byte for byte, in order, both ways.
func TestDelayProxyKeepsEveryByteInOrder(t *testing.T) {
	for _, delay := range []time.Duration{0, 2 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			p := startDelayProxy(t, echoServer(t), delay)
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rng := rand.New(rand.NewPCG(1, uint64(delay)))
			sent := make([]byte, 4<<20)
			for i := range sent {
				sent[i] = byte(rng.Uint32())
			}
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(c)
				got <- b
			}()
			for rest := sent; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(100_000))
				if _, err := c.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			// Half-close: the echo ends once it has sent everything back.
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			back := <-got
			if len(back) != len(sent) {
				t.Fatalf("echoed %d bytes, sent %d", len(back), len(sent))
			}
			if i := firstDifference(back, sent); i >= 0 {
				t.Fatalf("echo differs from what was sent at byte %d", i)
			}
		})
	}
}

// TestDelayProxyDeliversWhatWasSentBeforeAClose: a server that writes and
// closes at once still has everything it wrote delivered, after the delay
// queue drains, and then the client reads the end.
func TestDelayProxyDeliversWhatWasSentBeforeAClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	payload := bytes.Repeat([]byte("tidemark "), 50_000)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write(payload)
		c.Close()
	}()
	p := startDelayProxy(t, ln.Addr().String(), 5*time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("read %d bytes before the end, want the %d written", len(got), len(payload))
	}
}

// TestFirstDifferenceFindsAReorderedChunk is the control of the checks
// above: two chunks swapped are found.
func TestFirstDifferenceFindsAReorderedChunk(t *testing.T) {
	sent := []byte("aaaabbbbcccc")
	swapped := []byte("aaaaccccbbbb")
	if i := firstDifference(swapped, sent); i != 4 {
		t.Errorf("firstDifference = %d, want 4", i)
	}
	if i := firstDifference(sent, sent); i != -1 {
		t.Errorf("firstDifference of equal bytes = %d, want -1", i)
	}
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// TestLatencyMeasuresEveryVerbAtEveryDelay runs the benchmark small,
// against a real database through the proxy: every verb is measured at
// every delay, with the cache on and off, and each request succeeded
// (a failed push, pull, stream event or read fails the run).
func TestLatencyMeasuresEveryVerbAtEveryDelay(t *testing.T) {
	rep, err := Latency(t.Context(), LatencyConfig{
		DatabaseURL: dbtest.URL(t),
		Delays:      []time.Duration{0, time.Millisecond},
		Requests:    3,
		Warmup:      1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + rep.String())
	if len(rep.Runs) != 4 {
		t.Fatalf("%d runs, want 2 delays × cache on and off", len(rep.Runs))
	}
	want := []string{VerbPush, VerbPull, VerbStream, VerbNested, VerbSites}
	for _, run := range rep.Runs {
		if len(run.Verbs) != len(want) {
			t.Fatalf("delay %s: %d verbs, want %d", run.Delay, len(run.Verbs), len(want))
		}
		for i, v := range run.Verbs {
			if v.Name != want[i] || v.Latency.Count != 3 || v.Latency.P50 <= 0 {
				t.Errorf("delay %s, no cache %t: verb %d = %s with %d requests, p50 %s; want %s with 3",
					run.Delay, run.NoCache, i, v.Name, v.Latency.Count, v.Latency.P50, want[i])
			}
		}
	}
}
