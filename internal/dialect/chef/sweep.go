package chef

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/store"
)

// sweepEvery is how often each replica deletes the pending requests nobody has called about for
// chef.pending_retention. It only keeps the table (and the console) small: a stale request
// already stops counting toward the pairing caps when its approval window ends.
const sweepEvery = time.Minute

// stateExpired is the state of the TopicChefDevice notice announcing a sweep (no device id): the
// console's live lists refresh; held calls are not concerned (none is held on a stale request).
const stateExpired store.DeviceState = "expired"

var errSweeperStopped = errors.New("chef: the pending-request sweeper is stopped")

// Maintenance is the sweep of stale pending requests (app.Maintainer).
func (m *Module) Maintenance() []app.Task {
	return []app.Task{{Name: "chef stale pending requests", Every: sweepEvery, Run: func(ctx context.Context) error {
		_, err := m.SweepNow(ctx)
		if errors.Is(err, errSweeperStopped) {
			return nil
		}
		return err
	}}}
}

// SweepNow deletes the pending requests last updated more than the retention ago (by the module's
// clock), audits and announces how many went, and returns that number. Sweeps never overlap.
// Every replica sweeps; the delete is one statement, so they never double count. It fails once
// the module is shut down or closed. Tests call it with a fake clock.
func (m *Module) SweepNow(ctx context.Context) (int, error) {
	m.sweepMu.Lock()
	defer m.sweepMu.Unlock()
	if m.stopped.Load() {
		return 0, errSweeperStopped
	}
	cutoff := m.svc.Clock.Now().Add(-m.cfg.retention)
	n, err := m.svc.Store.DeletePendingChefDevicesBefore(ctx, cutoff)
	if err != nil {
		return 0, err
	}
	if n > 0 {
		m.svc.Audit(ctx, store.AuditEvent{Actor: "posgate", Action: "chef.device.expire", Outcome: "ok",
			Detail: "stale pending requests deleted: " + strconv.Itoa(n) + " (no call for " + m.cfg.retention.String() + ")"})
		m.publish(ctx, "", stateExpired)
	}
	return n, nil
}
