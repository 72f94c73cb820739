package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/keys"
)

// maintain runs the periodic work until ctx ends: keyring rotation and refresh every
// keys.RefreshInterval (so a rotation on another replica is picked up), and the housekeeping
// tasks of the shared mechanisms and of the modules (app.Maintainer), each at once and then every
// its period, tasks of one period one after the other.
func (s *Server) maintain(ctx context.Context) {
	var periods []time.Duration
	byPeriod := map[time.Duration][]app.Task{}
	for _, t := range s.tasks() {
		if t.Every <= 0 {
			t.Every = app.CleanupEvery
		}
		if _, ok := byPeriod[t.Every]; !ok {
			periods = append(periods, t.Every)
		}
		byPeriod[t.Every] = append(byPeriod[t.Every], t)
	}
	for _, every := range periods {
		s.wg.Add(1)
		go func(tasks []app.Task) {
			defer s.wg.Done()
			s.runTasks(ctx, every, tasks)
		}(byPeriod[every])
	}

	keyTick := time.NewTicker(keys.RefreshInterval)
	defer keyTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-keyTick.C:
			if rotated, err := s.keyring.MaybeRotate(ctx); err != nil {
				s.log.Warn("keyring refresh failed", slog.String("error", err.Error()))
			} else if rotated {
				s.log.Info("signing key rotated (schedule)")
			}
		}
	}
}

func (s *Server) runTasks(ctx context.Context, every time.Duration, tasks []app.Task) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		for _, t := range tasks {
			if ctx.Err() != nil {
				return
			}
			if err := t.Run(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("cleanup failed", slog.String("what", t.Name), slog.String("error", err.Error()))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// tasks are the cleanups of the shared mechanisms (expired revocations, single-use records,
// failure counters, dropped signing keys; audit events older than server.audit_retention), then
// the modules' own.
func (s *Server) tasks() []app.Task {
	at := func(del func(context.Context, time.Time) error) func(context.Context) error {
		return func(ctx context.Context) error { return del(ctx, s.svc.Clock.Now()) }
	}
	tasks := []app.Task{
		{Name: "revocations", Every: app.CleanupEvery, Run: at(s.store.DeleteRevocationsExpiredBefore)},
		{Name: "single-use records", Every: app.CleanupEvery, Run: at(s.store.DeleteSingleUseExpiredBefore)},
		{Name: "failure counters", Every: app.CleanupEvery, Run: at(s.store.DeleteCountersExpiredBefore)},
		{Name: "signing keys", Every: app.CleanupEvery, Run: at(s.store.DeleteSigningKeysExpiredBefore)},
		{Name: "audit events", Every: app.CleanupEvery, Run: func(ctx context.Context) error {
			return s.store.DeleteAuditBefore(ctx, s.svc.Clock.Now().Add(-auditRetention(s.cfg)))
		}},
		// The write probe runs here too, so a replica nobody polls on /readyz still notices that
		// writes work again and gives back the WAL space a full disk left behind. Its failure is
		// logged by the probe itself.
		{Name: "store write probe", Every: app.CleanupEvery, Run: func(ctx context.Context) error {
			_ = s.probeWrites(ctx)
			return nil
		}},
	}
	for _, m := range s.modules {
		if mt, ok := m.mod.(app.Maintainer); ok {
			tasks = append(tasks, mt.Maintenance()...)
		}
	}
	return tasks
}

// auditRetention is how long audit events are kept (server.audit_retention; validation keeps it
// at one day or more, and a zero from a hand-built config means the 90-day default, never
// "delete everything").
func auditRetention(cfg *config.Config) time.Duration {
	if cfg.Server.AuditRetention <= 0 {
		return config.Seconds(config.Default().Server.AuditRetention)
	}
	return config.Seconds(cfg.Server.AuditRetention)
}
