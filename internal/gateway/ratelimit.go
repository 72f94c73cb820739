package gateway

import (
	"hash/maphash"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters holds one token bucket per (route, principal), in shards so that busy principals on
// different shards do not contend. The map is bounded: when a shard is full it first forgets
// buckets that have refilled completely (forgetting them changes nothing: a new bucket starts
// full), and only if that is not enough, arbitrary ones — which at worst gives those principals a
// fresh burst, the price of bounded memory under a flood of distinct principals.
type limiters struct {
	seed     maphash.Seed
	shards   [limiterShards]limiterShard
	perShard int
}

const limiterShards = 32

// DefaultMaxLimiters bounds the number of buckets kept.
const DefaultMaxLimiters = 100_000

type limiterShard struct {
	mu sync.Mutex
	m  map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	full time.Duration // time an empty bucket needs to refill completely
	last time.Time
}

func newLimiters(max int) *limiters {
	if max <= 0 {
		max = DefaultMaxLimiters
	}
	l := &limiters{seed: maphash.MakeSeed(), perShard: max/limiterShards + 1}
	for i := range l.shards {
		l.shards[i].m = map[string]*bucket{}
	}
	return l
}

// allow takes one token from key's bucket at now. When the bucket is empty it returns false and
// how long until a token is available.
func (l *limiters) allow(key string, limit rate.Limit, burst int, now time.Time) (bool, time.Duration) {
	s := &l.shards[maphash.String(l.seed, key)%limiterShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[key]
	if !ok {
		if len(s.m) >= l.perShard {
			s.evict(now, l.perShard)
		}
		b = &bucket{lim: rate.NewLimiter(limit, burst), full: time.Duration(float64(burst) / float64(limit) * float64(time.Second))}
		s.m[key] = b
	}
	b.last = now
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (s *limiterShard) evict(now time.Time, perShard int) {
	for k, b := range s.m {
		if now.Sub(b.last) >= b.full {
			delete(s.m, k)
		}
	}
	if len(s.m) < perShard {
		return
	}
	// Still full of active buckets: drop half of them (map order is random).
	n := len(s.m) / 2
	for k := range s.m {
		if n == 0 {
			break
		}
		delete(s.m, k)
		n--
	}
}

func (l *limiters) len() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].m)
		l.shards[i].mu.Unlock()
	}
	return n
}
