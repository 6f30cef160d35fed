package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestBucketRefusesOverItsRateAndRecoversAfterTheHint(t *testing.T) {
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	k := NewKeyed(Options{Rate: 1, Burst: 2, Now: c.Now})
	for i := range 2 {
		if ok, _ := k.Allow("a"); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, wait := k.Allow("a")
	if ok {
		t.Fatal("request over the burst allowed")
	}
	if wait < time.Second || wait > 2*time.Second {
		t.Errorf("retry hint %s, want between the 1s a token takes and twice that", wait)
	}
	if ok, _ := k.Allow("b"); !ok {
		t.Error("another key shares the bucket")
	}
	c.now = c.now.Add(wait)
	if ok, _ := k.Allow("a"); !ok {
		t.Error("refused after waiting the hint")
	}
}

func TestMadeUpKeysDoNotGrowMemoryPastMaxKeys(t *testing.T) {
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	k := NewKeyed(Options{Rate: 1, Burst: 5, MaxKeys: 100, Now: c.Now})
	for i := range 10_000 {
		k.Allow(fmt.Sprint("made-up-", i))
	}
	if n := k.Len(); n != 100 {
		t.Errorf("%d keys tracked, want the 100 most recent", n)
	}
}

func TestRefilledBucketsAreForgotten(t *testing.T) {
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	k := NewKeyed(Options{Rate: 10, Burst: 10, Now: c.Now})
	for i := range 50 {
		k.Allow(fmt.Sprint(i))
	}
	c.now = c.now.Add(2 * time.Second) // a bucket of 10 at 10/s is full after 1s
	k.Allow("new")
	if n := k.Len(); n != 1 {
		t.Errorf("%d keys tracked, want only the new one", n)
	}
}

func TestAStormOfRefusalsSpreadsTheHints(t *testing.T) {
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	k := NewKeyed(Options{Rate: 100, Burst: 1, Now: c.Now})
	k.Allow("")
	var longest time.Duration
	for range 3000 { // 3,000 refused in one second at 100/s: 30s to let them in
		if _, wait := k.Allow(""); wait > longest {
			longest = wait
		}
	}
	if longest < 10*time.Second || longest > maxSpread+time.Second {
		t.Errorf("longest hint %s, want the crowd spread over tens of seconds (at most %s)", longest, maxSpread)
	}
}

func TestOffLimiterAllowsEverything(t *testing.T) {
	var k *Keyed = NewKeyed(Options{Rate: -1})
	if ok, _ := k.Allow("a"); !ok || k.Len() != 0 {
		t.Error("a limiter with no rate refused or tracked a key")
	}
	c := NewConcurrency(0)
	if _, ok := c.Acquire("a"); !ok {
		t.Error("a concurrency limit of 0 (off) refused")
	}
}

func TestConcurrencyPerKey(t *testing.T) {
	c := NewConcurrency(2)
	r1, _ := c.Acquire("a")
	r2, _ := c.Acquire("a")
	if _, ok := c.Acquire("a"); ok {
		t.Fatal("a third unit in flight allowed")
	}
	if _, ok := c.Acquire("b"); !ok {
		t.Error("another key is limited by the first")
	}
	r1()
	r1() // twice is harmless
	if _, ok := c.Acquire("a"); !ok {
		t.Error("refused after a release")
	}
	r2()
	if _, ok := c.Acquire("a"); !ok {
		t.Error("refused after a second release")
	}
}
