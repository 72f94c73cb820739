package server

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// writeProbeEvery is how often /readyz tries a small write. A store can answer reads and pings
// while every write fails (a full disk, a read-only standby), and a load balancer must take such
// a replica out: the probe is what tells. It runs on /readyz calls, at most this often, and with
// the periodic cleanup, so an idle replica writes rarely but still notices recovery.
const writeProbeEvery = 5 * time.Second

// writeProbeKey is the counter the probe increments (shared by replicas; cleaned up with the other
// counters when it expires).
const writeProbeKey = "readyz|write-probe"

// writeProbe remembers the last probe's time and outcome.
type writeProbe struct {
	mu     sync.Mutex
	at     time.Time
	err    error
	failed bool // the last probe failed: the next success is a recovery
}

// WALCheckpointer is a store whose write-ahead log can be folded back into the database and
// truncated (SQLite). After a full disk the log stays at its high-water size until something
// truncates it; /readyz does so when writes recover, so the space comes back without a restart.
type WALCheckpointer interface {
	CheckpointWAL(ctx context.Context) error
}

// probeWrites returns the outcome of the last small write, making a new one when the last is
// older than writeProbeEvery (by the injected clock). Concurrent callers share one probe.
func (s *Server) probeWrites(ctx context.Context) error {
	p := &s.probe
	p.mu.Lock()
	defer p.mu.Unlock()
	now := s.svc.Clock.Now()
	if !p.at.IsZero() && !now.Before(p.at) && now.Sub(p.at) < writeProbeEvery {
		return p.err
	}
	start := now.Truncate(time.Minute)
	_, err := s.store.IncrCounter(ctx, writeProbeKey, start, start.Add(2*time.Minute))
	p.at, p.err = now, err
	switch {
	case err != nil:
		if !p.failed {
			s.log.Error("readiness: store writes fail", slog.String("error", err.Error()))
		}
		p.failed = true
	case p.failed:
		p.failed = false
		s.log.Warn("readiness: store writes work again")
		if c, ok := s.store.(WALCheckpointer); ok {
			if err := c.CheckpointWAL(ctx); err != nil {
				s.log.Warn("readiness: WAL checkpoint after recovery failed", slog.String("error", err.Error()))
			} else {
				s.log.Info("readiness: WAL checkpointed and truncated after recovery")
			}
		}
	}
	return err
}
