package chef

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// sweepEvery is how often each replica deletes the pending requests nobody has called about for
// chef.pending_retention. It only keeps the table (and the console) small: a stale request
// already stops counting toward the pairing caps when its approval window ends.
const sweepEvery = time.Minute

// stateExpired is the state of the TopicChefDevice notice announcing a sweep (no device id): the
// console's live lists refresh; held calls are not concerned (none is held on a stale request).
const stateExpired store.DeviceState = "expired"

var errSweeperStopped = errors.New("chef: the pending-request sweeper is not running")

type sweepResult struct {
	deleted int
	err     error
}

// startSweeper starts the sweeper once; a module stopped before (Shutdown, Close) stays stopped.
func (m *Module) startSweeper() {
	m.sweepMu.Lock()
	defer m.sweepMu.Unlock()
	if m.sweepDone != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.sweepCancel, m.sweepDone = cancel, make(chan struct{})
	go m.sweepLoop(ctx, m.sweepDone)
}

// stopSweeper stops the sweeper and waits for it (an in-flight delete is cancelled).
func (m *Module) stopSweeper() {
	m.sweepMu.Lock()
	if m.sweepDone == nil { // never started: make sure it never will be
		m.sweepDone = make(chan struct{})
		close(m.sweepDone)
		m.sweepCancel = func() {}
	}
	cancel, done := m.sweepCancel, m.sweepDone
	m.sweepMu.Unlock()
	cancel()
	<-done
}

func (m *Module) sweepLoop(ctx context.Context, done chan struct{}) {
	defer close(done)
	tick := time.NewTicker(sweepEvery)
	defer tick.Stop()
	m.sweep(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			m.sweep(ctx)
		case reply := <-m.sweepNow:
			n, err := m.sweep(ctx)
			reply <- sweepResult{n, err}
		}
	}
}

// sweep deletes the pending requests last updated more than the retention ago (by the module's
// clock), audits and announces how many went. Every replica sweeps; the delete is one statement,
// so they never double count.
func (m *Module) sweep(ctx context.Context) (int, error) {
	cutoff := m.svc.Clock.Now().Add(-m.cfg.retention)
	n, err := m.svc.Store.DeletePendingChefDevicesBefore(ctx, cutoff)
	if err != nil {
		if ctx.Err() == nil {
			m.svc.Log.Warn("chef: stale pending requests not deleted", "error", err.Error())
		}
		return 0, err
	}
	if n > 0 {
		m.svc.Audit(ctx, store.AuditEvent{Actor: "posgate", Action: "chef.device.expire", Outcome: "ok",
			Detail: "stale pending requests deleted: " + strconv.Itoa(n) + " (no call for " + m.cfg.retention.String() + ")"})
		m.publish(ctx, "", stateExpired)
	}
	return n, nil
}

// SweepNow runs a sweep of stale pending requests at once, on the sweeper goroutine (so it never
// overlaps a scheduled one), and returns how many it deleted. It fails when the sweeper is not
// running (before Mount, after Shutdown or Close). Tests use it with a fake clock.
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
