package token

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// DefaultCacheSize is how many verified tokens the Verifier remembers by default. An entry is a
// few hundred bytes, so the default costs a few MiB at most.
const DefaultCacheSize = 16384

const cacheShards = 16

// cacheEntry is what the opts-independent checks established about a token: its signature
// verified under kid, its header and registered claims are valid. The checks that depend on the
// moment or on the caller (times with leeway, audience, revocation) run on every hit.
type cacheEntry struct {
	claims *Claims
	kid    string
	exp    time.Time
}

// verifyCache maps a raw token (the exact string: a token differing in any byte is another
// entry) to its cacheEntry. Keying by the string itself avoids hashing it with SHA-256 on every
// request; entries hold a copy, so the cache never pins a caller's larger header string. It is
// sharded so concurrent verifications rarely contend; each shard is bounded and entries die at
// their token's exp.
type verifyCache struct {
	perShard int
	seed     maphash.Seed
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.RWMutex
	m  map[string]*cacheEntry
}

func newVerifyCache(size int) *verifyCache {
	c := &verifyCache{perShard: max(1, size/cacheShards), seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*cacheEntry)
	}
	return c
}

func (c *verifyCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%cacheShards]
}

// get returns the live entry for key (nil when absent or past its exp).
func (c *verifyCache) get(key string, now time.Time) *cacheEntry {
	s := c.shard(key)
	s.mu.RLock()
	e := s.m[key]
	s.mu.RUnlock()
	if e == nil || !now.Before(e.exp) {
		return nil
	}
	return e
}

// put stores e. A full shard first drops its expired entries, then, if still full, an arbitrary
// eighth of its entries (Go's map iteration order is randomised): cheap, and only valid tokens
// are ever cached, so an attacker cannot flush the cache with garbage.
func (c *verifyCache) put(key string, e *cacheEntry, now time.Time) {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perShard {
		for k, old := range s.m {
			if !now.Before(old.exp) {
				delete(s.m, k)
			}
		}
		drop := len(s.m) - c.perShard + max(1, c.perShard/8)
		for k := range s.m {
			if drop <= 0 {
				break
			}
			delete(s.m, k)
			drop--
		}
	}
	s.m[strings.Clone(key)] = e
}

func (c *verifyCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
