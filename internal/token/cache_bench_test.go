package token

import (
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/ttlcache"
)

// BenchmarkVerifyCacheVsTTLCache reads the sharded verification cache and the generic bounded
// cache (ttlcache, one lock) with the same keys (token-sized strings), the same size and every
// goroutine on the machine: the sharded cache stays separate only as long as it is faster here.
// Compare the two sub-benchmarks of one run (docs/BENCHMARKS.md has the ratio).
func BenchmarkVerifyCacheVsTTLCache(b *testing.B) {
	const n = 1024
	now := time.Now()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = strings.Repeat("x", 400) + string(rune('a'+i%26)) + strings.Repeat("y", i%97) + string(rune(i))
	}
	e := &cacheEntry{claims: &Claims{}, exp: now.Add(time.Hour)}
	b.Run("sharded", func(b *testing.B) {
		c := newVerifyCache(DefaultCacheSize)
		for _, k := range keys {
			c.put(k, e, now)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if c.get(keys[i%n], time.Now()) == nil {
					b.Fatal("miss")
				}
				i++
			}
		})
	})
	b.Run("ttlcache", func(b *testing.B) {
		c := ttlcache.New[string, *cacheEntry](clock.System{}, time.Hour, DefaultCacheSize)
		for _, k := range keys {
			c.Put(k, e)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, ok := c.Get(keys[i%n]); !ok {
					b.Fatal("miss")
				}
				i++
			}
		})
	})
}
