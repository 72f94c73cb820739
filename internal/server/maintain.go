package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/keys"
)

// cleanupEvery is how often expired rows (refresh families, revocations, single-use records,
// failure counters, dropped signing keys) and audit events older than server.audit_retention are
// deleted. Expiry is enforced on read; the cleanup only keeps tables small, so its period is not
// a security property.
const cleanupEvery = 10 * time.Minute

// maintain runs the periodic work until ctx ends: keyring rotation and refresh every
// keys.RefreshInterval (so a rotation on another replica is picked up), store cleanups every
// cleanupEvery.
func (s *Server) maintain(ctx context.Context) {
	keyTick := time.NewTicker(keys.RefreshInterval)
	defer keyTick.Stop()
	cleanTick := time.NewTicker(cleanupEvery)
	defer cleanTick.Stop()
	s.cleanup(ctx)
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
		case <-cleanTick.C:
			s.cleanup(ctx)
			// The write probe also runs here, so a replica nobody polls on /readyz still notices
			// that writes work again and gives back the WAL space a full disk left behind.
			_ = s.probeWrites(ctx)
		}
	}
}

func (s *Server) cleanup(ctx context.Context) {
	now := s.svc.Clock.Now()
	for _, c := range []struct {
		what string
		fn   func(context.Context, time.Time) error
	}{
		{"refresh tokens", s.store.DeleteRefreshExpiredBefore},
		{"revocations", s.store.DeleteRevocationsExpiredBefore},
		{"single-use records", s.store.DeleteSingleUseExpiredBefore},
		{"failure counters", s.store.DeleteCountersExpiredBefore},
		{"signing keys", s.store.DeleteSigningKeysExpiredBefore},
		{"audit events", func(ctx context.Context, now time.Time) error {
			return s.store.DeleteAuditBefore(ctx, now.Add(-auditRetention(s.cfg)))
		}},
	} {
		if ctx.Err() != nil {
			return
		}
		if err := c.fn(ctx, now); err != nil {
			s.log.Warn("cleanup failed", slog.String("what", c.what), slog.String("error", err.Error()))
		}
	}
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
