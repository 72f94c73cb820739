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

// testCountFailure: the counters of a CountFailure count exactly as IncrCounter does (windows,
// lagging replicas), come back in the caller's order whatever the key order, and the event is
// stored with its ID.
func testCountFailure(t *testing.T, s store.Store) {
	w1, w2 := base, base.Add(time.Minute)
	incs := func(w time.Time, keys ...string) []store.CounterIncrement {
		var l []store.CounterIncrement
		for _, k := range keys {
			l = append(l, store.CounterIncrement{Key: k, WindowStart: w, ExpiresAt: w.Add(2 * time.Minute)})
		}
		return l
	}
	_, err := s.IncrCounter(ctx(t), "b", w1, w1.Add(2*time.Minute))
	ok(t, err)
	e := &store.AuditEvent{At: base, Actor: "anonymous", Action: "client.auth_failed", Target: "client:unknown",
		Address: "192.0.2.1", Outcome: "denied", Detail: "wrong secret"}
	n, err := countFailure(t, s, incs(w1, "c", "b", "a"), e)
	ok(t, err)
	if !slices.Equal(n, []int{1, 2, 1}) {
		t.Fatalf("counts %v, want [1 2 1] (the caller's order)", n)
	}
	if e.ID == 0 {
		t.Fatal("event ID not set")
	}
	l, err := s.ListAudit(ctx(t), 10)
	ok(t, err)
	if len(l) != 1 || l[0].ID != e.ID || l[0].Action != e.Action || l[0].Detail != e.Detail || !l[0].At.Equal(at(0)) {
		t.Fatalf("audit after CountFailure = %+v, want the one event %+v", l, e)
	}

	// Without an event only the counters change; a new window restarts at 1, a lagging one keeps
	// counting in the newer window, and the same key twice counts twice.
	n, err = countFailure(t, s, incs(w2, "a", "b"), nil)
	ok(t, err)
	if !slices.Equal(n, []int{1, 1}) {
		t.Fatalf("counts in the next window %v, want [1 1]", n)
	}
	n, err = countFailure(t, s, incs(w1, "b", "c", "b"), nil)
	ok(t, err)
	if !slices.Equal(n, []int{2, 2, 3}) {
		t.Fatalf("counts from a lagging window %v, want [2 2 3]", n)
	}
	for k, want := range map[string]int{"a": 1, "b": 3, "c": 2} {
		got, err := s.GetCounter(ctx(t), k, w1)
		ok(t, err)
		eq(t, "GetCounter("+k+")", got, want)
	}
	l, err = s.ListAudit(ctx(t), 10)
	ok(t, err)
	eq(t, "events", len(l), 1)
}

// countFailure is s.CountFailure's new counts alone.
func countFailure(t *testing.T, s store.Store, incs []store.CounterIncrement, e *store.AuditEvent) ([]int, error) {
	c, err := s.CountFailure(ctx(t), incs, e)
	n := make([]int, len(c))
	for i, x := range c {
		n[i] = x.Hits
	}
	return n, err
}

// testCountFailurePrev: a CountFailure reads each PrevKey's count in the same unit, only when
// its stored window is the one asked for, without changing it; both with distinct keys (one
// statement) and with a key named twice.
func testCountFailurePrev(t *testing.T, s store.Store) {
	w0, w1 := base, base.Add(time.Minute)
	inc := func(key, prev string) store.CounterIncrement {
		return store.CounterIncrement{Key: key, WindowStart: w1, ExpiresAt: w1.Add(2 * time.Minute), PrevKey: prev, PrevStart: w0}
	}
	for range 4 {
		_, err := s.IncrCounter(ctx(t), "a#0", w0, w0.Add(2*time.Minute))
		ok(t, err)
	}
	_, err := s.IncrCounter(ctx(t), "b#0", w0, w0.Add(2*time.Minute))
	ok(t, err)
	// A counter of an older window than the one asked for is not the previous window's.
	_, err = s.IncrCounter(ctx(t), "old#0", w0.Add(-time.Minute), w0.Add(time.Minute))
	ok(t, err)
	e := &store.AuditEvent{At: base, Actor: "anonymous", Action: "client.auth_failed", Outcome: "denied"}
	got, err := s.CountFailure(ctx(t), []store.CounterIncrement{inc("b#1", "b#0"), inc("a#1", "a#0"),
		inc("old#1", "old#0"), inc("none#1", "none#0"), inc("noprev", "")}, e)
	ok(t, err)
	fc := func(hits, prev int) store.FailureCount { return store.FailureCount{Hits: hits, Prev: prev} }
	want := []store.FailureCount{fc(1, 1), fc(1, 4), fc(1, 0), fc(1, 0), fc(1, 0)}
	if !slices.Equal(got, want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	if e.ID == 0 {
		t.Fatal("event ID not set")
	}
	got, err = s.CountFailure(ctx(t), []store.CounterIncrement{inc("a#1", "a#0"), inc("a#1", "a#0")}, nil)
	ok(t, err)
	if want := []store.FailureCount{fc(2, 4), fc(3, 4)}; !slices.Equal(got, want) {
		t.Fatalf("counts of a key named twice %v, want %v", got, want)
	}
	n, err := s.GetCounter(ctx(t), "a#0", w0)
	ok(t, err)
	eq(t, "previous window's counter after reading it", n, 4)
}

// testCountFailureRace: failures sharing counters, each naming them in a different order, all
// succeed (no deadlock between their transactions) and every count is returned exactly once.
func testCountFailureRace(t *testing.T, s store.Store) {
	const goroutines, each = 24, 4
	keys := []string{"a|x", "ai|x|y", "i|y"}
	var mu sync.Mutex
	seen := map[string][]int{}
	errs := race(goroutines, func(g int) error {
		for i := range each {
			var incs []store.CounterIncrement
			for j := range keys {
				k := keys[(g+i+j)%len(keys)]
				incs = append(incs, store.CounterIncrement{Key: k, WindowStart: base, ExpiresAt: base.Add(time.Minute)})
			}
			if g%2 == 1 {
				slices.Reverse(incs)
			}
			e := &store.AuditEvent{At: base, Actor: "anonymous", Action: "race", Outcome: "denied"}
			n, err := s.CountFailure(ctx(t), incs, e)
			if err != nil {
				return err
			}
			mu.Lock()
			for j, c := range incs {
				seen[c.Key] = append(seen[c.Key], n[j].Hits)
			}
			mu.Unlock()
		}
		return nil
	})
	for _, err := range errs {
		ok(t, err)
	}
	for _, k := range keys {
		got := seen[k]
		slices.Sort(got)
		for i, n := range got {
			if n != i+1 {
				t.Fatalf("counts of %s returned %v, want 1..%d each once", k, got, goroutines*each)
			}
		}
	}
	l, err := s.ListAudit(ctx(t), 1000)
	ok(t, err)
	eq(t, "events", len(l), goroutines*each)
}
