package sqlstore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestCombiner: a request that finds nothing in flight is sent alone at once; the requests that
// arrive meanwhile go together in the next statement (at most max of them), and every caller gets
// its own outcome only after its statement returned.
func TestCombiner(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sizes []int
	c := &combiner[int]{max: 4, send: func(_ context.Context, reqs []int) []error {
		mu.Lock()
		first := len(sizes) == 0
		sizes = append(sizes, len(reqs))
		mu.Unlock()
		if first {
			<-release
		}
		errs := make([]error, len(reqs))
		for i, r := range reqs {
			if r%2 == 1 {
				errs[i] = errors.New("odd")
			}
		}
		return errs
	}}
	results := make([]error, 7)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); results[0] = c.do(context.Background(), 0) }()
	waitFor := func(cond func() bool) {
		t.Helper()
		for range 2000 {
			if cond() {
				return
			}
			time.Sleep(time.Millisecond) // polling the combiner's state, not waiting for a timer
		}
		t.Fatal("combiner state never reached")
	}
	waitFor(func() bool { mu.Lock(); defer mu.Unlock(); return len(sizes) == 1 })
	for i := 1; i < 7; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = c.do(context.Background(), i) }()
	}
	waitFor(func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.queue) == 6 })
	close(release)
	wg.Wait()
	if !slices.Equal(sizes, []int{1, 4, 2}) {
		t.Fatalf("statement sizes %v, want [1 4 2]", sizes)
	}
	for i, err := range results {
		if (err != nil) != (i%2 == 1) {
			t.Errorf("request %d: %v", i, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running || len(c.queue) != 0 {
		t.Fatalf("idle combiner still running (%v) or queued (%d)", c.running, len(c.queue))
	}
}
