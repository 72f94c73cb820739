package auth_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
)

// throttleStores are the two ways a throttle counts: in the store, and in memory when the store
// cannot count (a closed store fails every call).
var throttleStores = []struct {
	name   string
	closed bool
}{{"store", false}, {"memory", true}}

// eachThrottleStore runs f as a subtest for each way of counting, with a throttle of a
// per-address limit whose fake clock starts at start.
func eachThrottleStore(t *testing.T, start time.Time, limit int, f func(t *testing.T, th *auth.Throttle, clk *clock.Fake, closed bool)) {
	for _, tc := range throttleStores {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(start)
			f(t, auth.NewThrottle(openThrottleStore(t, tc.closed), clk, slidingLimits(limit), nil), clk, tc.closed)
		})
	}
}

func openThrottleStore(t *testing.T, closed bool) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	if closed {
		st.Close()
	} else {
		t.Cleanup(func() { st.Close() })
	}
	return st
}

// boundary is a 5-minute window boundary; the tests start just before it.
var boundary = time.Date(2026, 3, 2, 10, 5, 0, 0, time.UTC)

const window = 5 * time.Minute

func slidingLimits(limit int) auth.ThrottleLimits {
	return auth.ThrottleLimits{Window: window, PerAddress: limit, PerAddressIdent: 1000, PerIdentity: 1000, IdentityBackoff: window}
}

// retryAfter is Check's RetryAfter, or 0 when not blocked.
func retryAfter(t *testing.T, th *auth.Throttle, addr, identity string) time.Duration {
	t.Helper()
	err := th.Check(t.Context(), "test.scope", addr, identity)
	if err == nil {
		return 0
	}
	var e *errs.Error
	if !errors.As(err, &e) || e.Kind != errs.Throttled {
		t.Fatalf("Check: %v, want a Throttled error", err)
	}
	return e.RetryAfter
}

func fail(t *testing.T, th *auth.Throttle, addr, identity string, closed bool) {
	t.Helper()
	if err := th.Fail(t.Context(), "test.scope", addr, identity); err != nil && !closed {
		t.Fatal(err)
	}
}

// Failures just before a window boundary still count just after it: limit−1 failures a second
// before the boundary and one a second after reach the limit (a fixed window restarted the count
// at the boundary, doubling a guesser's budget).
func TestThrottleSlidingAcrossBoundary(t *testing.T) {
	eachThrottleStore(t, boundary.Add(-time.Second), 5, func(t *testing.T, th *auth.Throttle, clk *clock.Fake, closed bool) {
		for range 4 {
			fail(t, th, "192.0.2.1", "", closed)
		}
		if d := retryAfter(t, th, "192.0.2.1", ""); d != 0 {
			t.Fatalf("blocked after 4 failures of 5: retry after %v", d)
		}
		clk.Advance(2 * time.Second)
		if d := retryAfter(t, th, "192.0.2.1", ""); d != 0 {
			t.Fatalf("blocked after 4 failures of 5, across the boundary: retry after %v", d)
		}
		fail(t, th, "192.0.2.1", "", closed)
		if d := retryAfter(t, th, "192.0.2.1", ""); d != window {
			t.Fatalf("after 5 failures in 2 s across a boundary: retry after %v, want %v (blocked a window)", d, window)
		}
	})
}

// A block lasts a whole window from the failure that reached the limit, whatever the boundary:
// reached a second before one, it still holds a second after it, Retry-After says the time left,
// and it ends a window after it began.
func TestThrottleBlockLastsAWindow(t *testing.T) {
	eachThrottleStore(t, boundary.Add(-time.Second), 3, func(t *testing.T, th *auth.Throttle, clk *clock.Fake, closed bool) {
		for range 3 {
			fail(t, th, "192.0.2.1", "", closed)
		}
		if d := retryAfter(t, th, "192.0.2.1", ""); d != window {
			t.Fatalf("retry after %v at the block, want %v", d, window)
		}
		clk.Advance(2 * time.Second)
		if d := retryAfter(t, th, "192.0.2.1", ""); d != window-2*time.Second {
			t.Fatalf("a second after the boundary: retry after %v, want %v", d, window-2*time.Second)
		}
		clk.Set(boundary.Add(-time.Second).Add(window - time.Second))
		if d := retryAfter(t, th, "192.0.2.1", ""); d != time.Second {
			t.Fatalf("a second before the block's end: retry after %v, want 1s", d)
		}
		clk.Advance(time.Second)
		if d := retryAfter(t, th, "192.0.2.1", ""); d != 0 {
			t.Fatalf("still blocked a window after the block began: retry after %v", d)
		}
	})
}

// The previous window's failures count by the part of it still inside the sliding window,
// rounded up: 4 failures at the start of a window weigh 4 a minute into the next window
// (ceil(4×4/5)), so one more reaches a limit of 5; two windows later they are gone.
func TestThrottleSlidingWeighsPreviousWindow(t *testing.T) {
	eachThrottleStore(t, boundary.Add(-window), 5, func(t *testing.T, th *auth.Throttle, clk *clock.Fake, closed bool) {
		for _, a := range []string{"192.0.2.1", "192.0.2.2"} {
			for range 4 {
				fail(t, th, a, "", closed)
			}
		}
		// 4 min into the next window, the 4 weigh ceil(4×1/5) = 1: 1+1 < 5.
		clk.Set(boundary.Add(4 * time.Minute))
		fail(t, th, "192.0.2.2", "", closed)
		if d := retryAfter(t, th, "192.0.2.2", ""); d != 0 {
			t.Fatalf("blocked 4 minutes on: retry after %v", d)
		}
		// 1 min into the next window, the 4 weigh ceil(4×4/5) = 4: 1+4 = 5.
		clk.Set(boundary.Add(time.Minute))
		fail(t, th, "192.0.2.1", "", closed)
		if d := retryAfter(t, th, "192.0.2.1", ""); d != window {
			t.Fatalf("not blocked a minute on: retry after %v", d)
		}
	})
}

// Replicas share the counts, so failures split between two replicas across a boundary add up
// on the replica that sees the last one.
func TestThrottleSlidingAcrossReplicas(t *testing.T) {
	st := openThrottleStore(t, false)
	clk := clock.NewFake(boundary.Add(-time.Second))
	r1 := auth.NewThrottle(st, clk, slidingLimits(5), nil)
	r2 := auth.NewThrottle(st, clk, slidingLimits(5), nil)
	for range 4 {
		fail(t, r1, "192.0.2.1", "", false)
	}
	clk.Advance(2 * time.Second)
	fail(t, r2, "192.0.2.1", "", false)
	if d := retryAfter(t, r2, "192.0.2.1", ""); d != window {
		t.Fatalf("replica 2 after 4+1 failures across a boundary: retry after %v, want %v", d, window)
	}
}

// The identity-wide count slides over its backoff window and blocks for the whole of it; its
// audit hook fires once, when the block starts.
func TestThrottleIdentitySlides(t *testing.T) {
	backoff := 10 * time.Minute
	clk := clock.NewFake(time.Date(2026, 3, 2, 10, 10, 0, 0, time.UTC).Add(-time.Second))
	var blocks int
	th := auth.NewThrottle(openThrottleStore(t, false), clk, auth.ThrottleLimits{Window: window, PerAddress: 100,
		PerAddressIdent: 100, PerIdentity: 4, IdentityBackoff: backoff}, func(context.Context, string, string, string) { blocks++ })
	for _, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		fail(t, th, a, "alice", false)
	}
	clk.Advance(2 * time.Second)
	fail(t, th, "192.0.2.4", "alice", false)
	if d := retryAfter(t, th, "192.0.2.9", "alice"); d != backoff || blocks != 1 {
		t.Fatalf("identity after 3+1 failures across a boundary: retry after %v, hook %d times; want %v, once", d, blocks, backoff)
	}
}
