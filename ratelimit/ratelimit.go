// Package ratelimit holds the per-key limits of a public endpoint: token
// buckets keyed by client address or caller (Keyed) and a count of work in
// flight per caller (Concurrency). Both keep memory bounded whatever keys
// clients make up, and both answer a refusal with a jittered retry hint, so
// that thousands of refused clients do not all come back in the same second.
//
// The HTTP path (server) uses them for requests and websocket upgrades; the
// websocket side may reuse them for connections or subscriptions per caller.
package ratelimit

import (
	"container/list"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds the keys a Keyed limiter tracks when Options.MaxKeys
// is zero: about 25 MB at worst.
const DefaultMaxKeys = 100_000

// Options configure a Keyed limiter.
type Options struct {
	// Rate is the tokens added per second to each key's bucket and Burst
	// the bucket's size. A Rate of zero or less turns the limiter off.
	Rate  float64
	Burst int
	// MaxKeys bounds the keys tracked (default DefaultMaxKeys). When it is
	// reached the least recently used key is forgotten: that key starts
	// again with a full bucket, which errs on the lenient side.
	MaxKeys int
	// Now is the clock (default time.Now); tests advance their own.
	Now func() time.Time
}

// Keyed is a set of token buckets, one per key (a client address, a
// caller). A key whose bucket has refilled is forgotten, since a fresh
// bucket behaves the same; the rest are kept up to MaxKeys, least recently
// used first out. It is safe for concurrent use.
type Keyed struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	refill  time.Duration // how long an untouched bucket takes to be full again
	now     func() time.Time

	mu    sync.Mutex
	keys  map[string]*list.Element // of *bucket
	order *list.List               // front: most recently used
	storm storm
}

type bucket struct {
	key      string
	limiter  *rate.Limiter
	lastSeen time.Time
}

// NewKeyed returns a limiter; a nil *Keyed (Rate ≤ 0) allows everything.
func NewKeyed(o Options) *Keyed {
	if o.Rate <= 0 {
		return nil
	}
	if o.Burst < 1 {
		o.Burst = 1
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Keyed{
		limit:   rate.Limit(o.Rate),
		burst:   o.Burst,
		maxKeys: o.MaxKeys,
		refill:  time.Duration(float64(o.Burst) / o.Rate * float64(time.Second)),
		now:     o.Now,
		keys:    map[string]*list.Element{},
		order:   list.New(),
	}
}

// Allow takes a token from key's bucket. When the bucket is empty it
// returns false and how long the caller should wait before trying again:
// the time until a token is back, plus jitter that grows with the number
// of clients refused lately (see storm), so a crowd spreads out.
func (k *Keyed) Allow(key string) (ok bool, retryAfter time.Duration) {
	if k == nil {
		return true, 0
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.bucket(key, now)
	if b.limiter.AllowN(now, 1) {
		return true, 0
	}
	wait := time.Duration((1 - b.limiter.TokensAt(now)) / float64(k.limit) * float64(time.Second))
	return false, k.storm.retryAfter(now, wait, float64(k.limit))
}

// Len is the number of keys tracked.
func (k *Keyed) Len() int {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

func (k *Keyed) bucket(key string, now time.Time) *bucket {
	if el, ok := k.keys[key]; ok {
		b := el.Value.(*bucket)
		b.lastSeen = now
		k.order.MoveToFront(el)
		return b
	}
	// Forget buckets that have refilled (nothing is lost), then, if still
	// full, the least recently used one.
	for el := k.order.Back(); el != nil; el = k.order.Back() {
		b := el.Value.(*bucket)
		if now.Sub(b.lastSeen) < k.refill && len(k.keys) < k.maxKeys {
			break
		}
		k.order.Remove(el)
		delete(k.keys, b.key)
	}
	b := &bucket{key: key, limiter: rate.NewLimiter(k.limit, k.burst), lastSeen: now}
	k.keys[key] = k.order.PushFront(b)
	return b
}

// storm counts refusals per second to size the jitter of retry hints. A
// lone client over its rate is told to come back in about the time its
// bucket needs; when many are refused at once (a reconnect storm after a
// deploy), the hints are spread over as many seconds as the refused
// clients need at the limiter's rate, up to maxSpread.
type storm struct {
	second  int64
	refused float64
	prev    float64
}

const maxSpread = 60 * time.Second

func (s *storm) retryAfter(now time.Time, wait time.Duration, perSecond float64) time.Duration {
	sec := now.Unix()
	switch {
	case sec == s.second:
	case sec == s.second+1:
		s.second, s.prev, s.refused = sec, s.refused, 0
	default:
		s.second, s.prev, s.refused = sec, 0, 0
	}
	s.refused++
	wait = max(wait, time.Second)
	spread := wait
	if crowd := time.Duration(math.Max(s.refused, s.prev) / perSecond * float64(time.Second)); crowd > spread {
		spread = min(crowd, maxSpread)
	}
	return wait + rand.N(spread+1)
}

// Concurrency counts work in flight per key (pushes per caller). Keys with
// nothing in flight are dropped, so memory follows the work, not the keys
// ever seen. It is safe for concurrent use.
type Concurrency struct {
	max int

	mu       sync.Mutex
	inFlight map[string]int
}

// NewConcurrency allows max units in flight per key; a nil *Concurrency
// (max ≤ 0) allows any number.
func NewConcurrency(max int) *Concurrency {
	if max <= 0 {
		return nil
	}
	return &Concurrency{max: max, inFlight: map[string]int{}}
}

// Acquire takes a slot for key. It never waits: with every slot taken it
// returns false. On success, release gives the slot back; calling it more
// than once is harmless.
func (c *Concurrency) Acquire(key string) (release func(), ok bool) {
	if c == nil {
		return func() {}, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight[key] >= c.max {
		return nil, false
	}
	c.inFlight[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.inFlight[key]--; c.inFlight[key] <= 0 {
				delete(c.inFlight, key)
			}
		})
	}, true
}

// Jitter returns a retry hint of at least d (and at least a second) with
// up to as much again added at random, for refusals that have no bucket to
// measure (a full Concurrency).
func Jitter(d time.Duration) time.Duration {
	d = max(d, time.Second)
	return d + rand.N(d+1)
}
