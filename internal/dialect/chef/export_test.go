package chef

import (
	"context"
	"errors"
)

var errSweeperStopped = errors.New("chef: the pending-request sweeper is not running")

// SweepNow runs one sweep of stale pending requests on the module's sweeper goroutine and returns
// its result: the test exercises the sweeper itself (with the module's clock), not a copy of it.
func (m *Module) SweepNow(ctx context.Context) (int, error) {
	m.sweepMu.Lock()
	done := m.sweepDone
	m.sweepMu.Unlock()
	if done == nil {
		return 0, errSweeperStopped
	}
	reply := make(chan sweepResult, 1)
	select {
	case m.sweepNow <- reply:
	case <-done:
		return 0, errSweeperStopped
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.deleted, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
