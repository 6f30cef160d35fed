package loadtest

import (
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/auth"
	"github.com/tidemark/tidemark/testenv"
)

// TestSoakRunsEveryKindOfLoadAndSamples runs a two-second soak against a
// real server in this process, sampling this process.
func TestSoakRunsEveryKindOfLoadAndSamples(t *testing.T) {
	env := testenv.New(t, testenv.Options{})
	c := &Client{URL: env.Serve(t) + "/graphql", HTTP: &http.Client{Timeout: time.Minute}}
	debug := http.NewServeMux()
	debug.HandleFunc("/debug/pprof/", pprof.Index)
	dsrv := httptest.NewServer(debug)
	t.Cleanup(dsrv.Close)
	token := func(tenant string) string {
		tok, err := auth.Issue(testenv.Secret, tenant, "soak", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	var lines strings.Builder
	rep, err := Soak(t.Context(), c, token, SoakConfig{
		Duration: 2 * time.Second, SampleEvery: 500 * time.Millisecond, Pushers: 2, Pullers: 1, Streams: 2, Readers: 1,
		PushEvery: 20 * time.Millisecond, PullEvery: 20 * time.Millisecond, ReadEvery: 20 * time.Millisecond, Documents: 20,
		ServerPID: os.Getpid(), DebugURL: dsrv.URL, Samples: &lines,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	if rep.FirstError != "" {
		t.Errorf("the soak saw errors: %s", rep.FirstError)
	}
	// How many samples fit in the 2 s depends on how long a forced GC for
	// the heap figure takes on a busy machine (under -race it can take
	// seconds): the first and the one after the load are what must be there.
	if n := len(rep.Samples); n < 2 || !rep.Samples[n-1].Stopped {
		t.Fatalf("%d samples, the last one stopped: %v; want one at the start and one after the load", n, rep.Samples[n-1].Stopped)
	}
	last := rep.Samples[len(rep.Samples)-1]
	if last.Pushes == 0 || last.Pulls == 0 || last.Streamed == 0 || last.Reads == 0 {
		t.Errorf("some load did not run: %+v", last)
	}
	for _, s := range rep.Samples {
		if s.RSS <= 0 || s.HeapAlloc <= 0 || s.Goroutines <= 0 || s.OpenFiles <= 0 {
			t.Errorf("a sample was not read: %s", s)
		}
	}
	if got := strings.Count(lines.String(), "\n"); got != len(rep.Samples) {
		t.Errorf("%d sample lines written as they were taken, want %d", got, len(rep.Samples))
	}
}

// TestTrendSlopeSkipsWarmUpAndTheStoppedSample: the slope is taken after
// the first tenth of the samples and without the one after the load.
func TestTrendSlopeSkipsWarmUpAndTheStoppedSample(t *testing.T) {
	var flat, rising []SoakSample
	for i := range 20 {
		at := time.Duration(i) * 6 * time.Minute // 20 samples over 2 hours
		v := int64(100)
		if i == 0 {
			v = 10 // warm-up
		}
		flat = append(flat, SoakSample{At: at, RSS: v})
		rising = append(rising, SoakSample{At: at, RSS: 100 + int64(i)*10}) // 100 per hour
	}
	flat = append(flat, SoakSample{At: 2 * time.Hour, RSS: 5, Stopped: true})
	get := func(s SoakSample) int64 { return s.RSS }
	if tr := trend(flat, get); tr.PerHour != 0 || tr.Start != 10 || tr.End != 100 || tr.Min != 10 || tr.Max != 100 {
		t.Errorf("flat after warm-up: %+v, want slope 0, start 10, end 100", tr)
	}
	if tr := trend(rising, get); tr.PerHour < 99.9 || tr.PerHour > 100.1 {
		t.Errorf("rising by 100 an hour: slope %.2f", tr.PerHour)
	}
}
