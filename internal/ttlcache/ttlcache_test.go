package ttlcache

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
)

var epoch = time.Unix(1_800_000_000, 0)

func TestExpiresAfterTTL(t *testing.T) {
	clk := clock.NewFake(epoch)
	c := New[string, int](clk, 3*time.Second, 10)
	c.Put("a", 1)
	clk.Advance(3*time.Second - time.Nanosecond)
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("within the TTL: %v %v", v, ok)
	}
	clk.Advance(time.Nanosecond)
	if _, ok := c.Get("a"); ok {
		t.Fatal("served at the end of the TTL")
	}
	// Put again restarts the TTL.
	c.Put("a", 2)
	clk.Advance(2 * time.Second)
	if v, ok := c.Get("a"); !ok || v != 2 {
		t.Fatalf("after a new Put: %v %v", v, ok)
	}
}

func TestClockGoingBackIsAMiss(t *testing.T) {
	clk := clock.NewFake(epoch)
	c := New[string, int](clk, time.Minute, 10)
	c.Put("a", 1)
	clk.Set(epoch.Add(-time.Second))
	if _, ok := c.Get("a"); ok {
		t.Fatal("an entry stored in the future was served")
	}
}

func TestDisabled(t *testing.T) {
	for _, ttl := range []time.Duration{0, -time.Second} {
		c := New[string, int](clock.NewFake(epoch), ttl, 10)
		c.Put("a", 1)
		if _, ok := c.Get("a"); ok || c.Len() != 0 {
			t.Fatalf("ttl %v: a disabled cache kept an entry", ttl)
		}
	}
}

func TestBound(t *testing.T) {
	clk := clock.NewFake(epoch)
	c := New[int, int](clk, time.Minute, 10)
	for i := range 100 {
		c.Put(i, i)
		if n := c.Len(); n > 10 {
			t.Fatalf("after %d puts the cache holds %d entries, max 10", i+1, n)
		}
		if v, ok := c.Get(i); !ok || v != i {
			t.Fatalf("the entry just put is missing: %d", i)
		}
	}
	// Replacing a key when full evicts nothing.
	before := c.Len()
	c.Put(99, -1)
	if c.Len() != before {
		t.Fatalf("replacing an entry changed the size: %d → %d", before, c.Len())
	}
}

func TestFullDropsExpiredFirst(t *testing.T) {
	clk := clock.NewFake(epoch)
	c := New[int, int](clk, time.Minute, 4)
	c.Put(1, 1)
	c.Put(2, 2)
	clk.Advance(30 * time.Second)
	c.Put(3, 3)
	c.Put(4, 4)
	clk.Advance(30 * time.Second) // 1 and 2 expired, 3 and 4 live
	c.Put(5, 5)
	if c.Len() != 3 {
		t.Fatalf("len %d, want 3 (the expired entries dropped, the live ones kept)", c.Len())
	}
	for _, k := range []int{3, 4, 5} {
		if _, ok := c.Get(k); !ok {
			t.Fatalf("live entry %d dropped", k)
		}
	}
	// Full of live entries: everything goes, then the new entry is kept.
	c.Put(6, 6)
	c.Put(7, 7)
	if _, ok := c.Get(7); !ok || c.Len() > 4 {
		t.Fatalf("len %d after overflow", c.Len())
	}
}

func TestDeleteDeleteFuncClear(t *testing.T) {
	c := New[string, string](clock.NewFake(epoch), time.Minute, 10)
	c.Put("h1", "id1")
	c.Put("h2", "id1")
	c.Put("h3", "id2")
	c.Delete("h3")
	if _, ok := c.Get("h3"); ok {
		t.Fatal("Delete kept the entry")
	}
	c.Put("h3", "id2")
	c.DeleteFunc(func(_ string, id string) bool { return id == "id1" })
	if _, ok := c.Get("h1"); ok {
		t.Fatal("DeleteFunc kept h1")
	}
	if _, ok := c.Get("h2"); ok {
		t.Fatal("DeleteFunc kept h2")
	}
	if _, ok := c.Get("h3"); !ok {
		t.Fatal("DeleteFunc dropped an entry it was not asked to")
	}
	c.Clear()
	if c.Len() != 0 {
		t.Fatal("Clear kept entries")
	}
}

// TestConcurrent runs readers, writers and droppers together (meaningful under -race) and checks
// the bound holds throughout.
func TestConcurrent(t *testing.T) {
	clk := clock.NewFake(epoch)
	c := New[int, int](clk, time.Second, 64)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 2000 {
				k := r.IntN(200)
				switch r.IntN(10) {
				case 0:
					c.Delete(k)
				case 1:
					c.DeleteFunc(func(_, v int) bool { return v%7 == 0 })
				case 2:
					clk.Advance(10 * time.Millisecond)
				case 3, 4, 5:
					c.Put(k, k)
				default:
					if v, ok := c.Get(k); ok && v != k {
						t.Errorf("key %d holds %d", k, v)
					}
				}
				if n := c.Len(); n > 64 {
					t.Errorf("len %d over the bound", n)
				}
			}
		}()
	}
	wg.Wait()
}

// FuzzModel compares the cache with a plain map model under a random sequence of operations: a
// Get hit must return the last value put for the key, within the TTL, and never more entries than
// the bound. Misses are allowed (the cache may drop entries when full) only when the cache was full.
func FuzzModel(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("put get advance delete clear"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		const size = 4
		clk := clock.NewFake(epoch)
		c := New[byte, int](clk, 5*time.Second, size)
		type rec struct {
			v  int
			at time.Time
		}
		model := map[byte]rec{}
		evicted := false
		for i, op := range ops {
			k := op >> 4 & 7
			switch op & 7 {
			case 0, 1:
				if c.Len() >= size {
					evicted = true
				}
				c.Put(k, i)
				model[k] = rec{i, clk.Now()}
			case 2:
				clk.Advance(time.Duration(op>>3) * 200 * time.Millisecond)
			case 3:
				c.Delete(k)
				delete(model, k)
			case 4:
				c.Clear()
				clear(model)
			default:
				v, ok := c.Get(k)
				m, inModel := model[k]
				live := inModel && clk.Now().Sub(m.at) < 5*time.Second
				switch {
				case ok && !live:
					t.Fatalf("op %d: key %d served after expiry or delete", i, k)
				case ok && v != m.v:
					t.Fatalf("op %d: key %d = %d, want %d", i, k, v, m.v)
				case !ok && live && !evicted:
					t.Fatalf("op %d: key %d missing though live and never evicted", i, k)
				}
			}
			if c.Len() > size {
				t.Fatalf("op %d: len %d over the bound", i, c.Len())
			}
		}
	})
}

func BenchmarkGetParallel(b *testing.B) {
	c := New[string, int](clock.System{}, time.Hour, 1<<14)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%04d", i)
		c.Put(keys[i], i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := c.Get(keys[i&1023]); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
}
