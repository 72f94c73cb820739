// Package runtest runs a client's long-lived Run(ctx) (a POS socket client) in the background of
// a test, and records the pauses the client asks for instead of sleeping them.
package runtest

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Timeout bounds how long Wait waits for Run to return.
const Timeout = 20 * time.Second

// Runner is one background Run at a time. The zero value is ready to use.
type Runner struct {
	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	sleeps []time.Duration
}

// Start calls run in a new goroutine with a context that Stop cancels.
func (r *Runner) Start(run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	done := make(chan error, 1)
	r.done = done
	go func() { done <- run(ctx) }()
}

// Cancel cancels Run's context without waiting for Run to return.
func (r *Runner) Cancel() { r.cancel() }

// Stop cancels Run's context and returns what Run returned; it returns nil when Run was never
// started or its result was already taken by Wait.
func (r *Runner) Stop(t testing.TB) error {
	t.Helper()
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	return r.Wait(t)
}

// Wait returns what Run returned, failing t when it does not return within Timeout.
func (r *Runner) Wait(t testing.TB) error {
	t.Helper()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(Timeout):
		t.Fatal("Run did not return")
		return nil
	}
}

// Sleep is a client's sleep hook: it records d and returns at once (ctx.Err()).
func (r *Runner) Sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.sleeps = append(r.sleeps, d)
	r.mu.Unlock()
	return ctx.Err()
}

// Sleeps returns the pauses recorded so far.
func (r *Runner) Sleeps() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.sleeps...)
}
