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

// TestCombinerLeavesOutEndedCallers: a request whose caller's context ends while it waits for
// the statement in flight is answered with that error and not sent: its caller was told it
// failed, and a rotation or single use written behind its back would make a retry a replay.
func TestCombinerLeavesOutEndedCallers(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var sent [][]int
	c := &combiner[int]{max: 4, send: func(_ context.Context, reqs []int) []error {
		mu.Lock()
		first := len(sent) == 0
		sent = append(sent, slices.Clone(reqs))
		mu.Unlock()
		if first {
			<-release
		}
		return make([]error, len(reqs))
	}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = c.do(context.Background(), 0) }()
	queued := func(n int) {
		t.Helper()
		for range 2000 {
			c.mu.Lock()
			got := len(c.queue)
			c.mu.Unlock()
			mu.Lock()
			inFlight := len(sent) == 1
			mu.Unlock()
			if got == n && inFlight {
				return
			}
			time.Sleep(time.Millisecond) // polling the combiner's state, not waiting for a timer
		}
		t.Fatal("combiner state never reached")
	}
	queued(0)
	ctx, cancel := context.WithCancel(context.Background())
	results := make([]error, 3)
	for i := 1; i <= 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx := context.Background()
			if i == 1 {
				rctx = ctx
			}
			results[i] = c.do(rctx, i)
		}()
	}
	queued(2)
	cancel()
	close(release)
	wg.Wait()
	if !errors.Is(results[1], context.Canceled) || results[2] != nil {
		t.Fatalf("results %v, want canceled for 1 and nil for 2", results[1:])
	}
	if !slices.EqualFunc(sent, [][]int{{0}, {2}}, slices.Equal) {
		t.Fatalf("statements %v, want [[0] [2]]: the ended caller's request was sent", sent)
	}
}
