package storetest

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

func testCounters(t *testing.T, s store.Store) {
	w1, w2 := base, base.Add(time.Minute)
	for want := 1; want <= 3; want++ {
		n, err := s.IncrCounter(ctx(t), "login:192.0.2.1", w1, w1.Add(2*time.Minute))
		ok(t, err)
		eq(t, "count", n, want)
	}
	n, err := s.GetCounter(ctx(t), "login:192.0.2.1", w1)
	ok(t, err)
	eq(t, "GetCounter", n, 3)
	n, err = s.GetCounter(ctx(t), "login:other", w1)
	ok(t, err)
	eq(t, "GetCounter(unknown)", n, 0)

	// A new window restarts at 1; the old window then reads 0 for the new one.
	n, err = s.GetCounter(ctx(t), "login:192.0.2.1", w2)
	ok(t, err)
	eq(t, "GetCounter(next window) before any hit", n, 0)
	n, err = s.IncrCounter(ctx(t), "login:192.0.2.1", w2, w2.Add(2*time.Minute))
	ok(t, err)
	eq(t, "count in new window", n, 1)
	// A replica whose clock lags (older window) keeps counting in the newer window.
	n, err = s.IncrCounter(ctx(t), "login:192.0.2.1", w1, w1.Add(2*time.Minute))
	ok(t, err)
	eq(t, "count from a lagging replica", n, 2)
	n, err = s.GetCounter(ctx(t), "login:192.0.2.1", w2)
	ok(t, err)
	eq(t, "GetCounter(new window)", n, 2)

	// Expiry: a counter whose expiry is before t goes; the lagging increment did not shorten it.
	_, err = s.IncrCounter(ctx(t), "short", w1, w1.Add(time.Second))
	ok(t, err)
	ok(t, s.DeleteCountersExpiredBefore(ctx(t), w2.Add(time.Minute)))
	n, err = s.GetCounter(ctx(t), "short", w1)
	ok(t, err)
	eq(t, "deleted counter", n, 0)
	n, err = s.GetCounter(ctx(t), "login:192.0.2.1", w2)
	ok(t, err)
	eq(t, "kept counter", n, 2)
	ok(t, s.DeleteCountersExpiredBefore(ctx(t), w2.Add(3*time.Minute)))
	n, err = s.GetCounter(ctx(t), "login:192.0.2.1", w2)
	ok(t, err)
	eq(t, "deleted counter", n, 0)
}

func testCounterRace(t *testing.T, s store.Store) {
	const goroutines, each = 50, 4
	var mu sync.Mutex
	var seen []int
	errs := race(goroutines, func(int) error {
		for range each {
			n, err := s.IncrCounter(ctx(t), "hot", base, base.Add(time.Minute))
			if err != nil {
				return err
			}
			mu.Lock()
			seen = append(seen, n)
			mu.Unlock()
		}
		return nil
	})
	for _, err := range errs {
		ok(t, err)
	}
	slices.Sort(seen)
	for i, n := range seen { // every count from 1 to 200 returned exactly once
		if n != i+1 {
			t.Fatalf("counts returned %v, want 1..%d each once", seen, goroutines*each)
		}
	}
	n, err := s.GetCounter(ctx(t), "hot", base)
	ok(t, err)
	eq(t, "final count", n, goroutines*each)
}
