package sqlstore

import (
	"context"
	"errors"
	"time"
)

// IncrCounter adds one to key's count in the window starting at windowStart and returns the new
// count, in one atomic upsert. A stored window older than windowStart restarts at 1; a stored
// window newer than windowStart (a replica whose clock is behind) keeps counting in the newer
// window, so a lagging clock can never reset a counter.
func (s *Store) IncrCounter(ctx context.Context, key string, windowStart, expiresAt time.Time) (int, error) {
	w, err := s.writer()
	if err != nil {
		return 0, s.fail("increment counter", err)
	}
	var n int64
	err = w.QueryRow(ctx, `INSERT INTO counters (name, window_start, hits, expires_at) VALUES ($1, $2, 1, $3)
		ON CONFLICT (name) DO UPDATE SET
			hits = CASE WHEN counters.window_start >= excluded.window_start THEN counters.hits + 1 ELSE 1 END,
			window_start = CASE WHEN counters.window_start >= excluded.window_start THEN counters.window_start ELSE excluded.window_start END,
			expires_at = CASE WHEN counters.expires_at >= excluded.expires_at THEN counters.expires_at ELSE excluded.expires_at END
		RETURNING hits`, key, ms(windowStart), ms(expiresAt)).Scan(&n)
	if err != nil {
		return 0, s.fail("increment counter", err)
	}
	return int(n), nil
}

// GetCounter returns key's count in the window starting at windowStart (0 when the stored window
// is older or there is none).
func (s *Store) GetCounter(ctx context.Context, key string, windowStart time.Time) (int, error) {
	r, err := s.reader()
	if err != nil {
		return 0, s.fail("get counter", err)
	}
	var n int64
	err = r.QueryRow(ctx, `SELECT hits FROM counters WHERE name = $1 AND window_start >= $2`, key, ms(windowStart)).Scan(&n)
	if errors.Is(err, ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, s.fail("get counter", err)
	}
	return int(n), nil
}

// DeleteCountersExpiredBefore drops counters that expired before t.
func (s *Store) DeleteCountersExpiredBefore(ctx context.Context, t time.Time) error {
	_, err := s.exec(ctx, `DELETE FROM counters WHERE expires_at < $1`, ms(t))
	return s.fail("delete expired counters", err)
}
