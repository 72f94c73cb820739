package sqlstore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// incrCounterSQL adds one to a counter ($1) in the window starting at $2, expiring at $3, and
// returns the new count. A stored window older than $2 restarts at 1; a stored window newer than
// $2 (a replica whose clock is behind) keeps counting in the newer window, so a lagging clock can
// never reset a counter.
const incrCounterSQL = `INSERT INTO counters (name, window_start, hits, expires_at) VALUES ($1, $2, 1, $3)
		ON CONFLICT (name) DO UPDATE SET
			hits = CASE WHEN counters.window_start >= excluded.window_start THEN counters.hits + 1 ELSE 1 END,
			window_start = CASE WHEN counters.window_start >= excluded.window_start THEN counters.window_start ELSE excluded.window_start END,
			expires_at = CASE WHEN counters.expires_at >= excluded.expires_at THEN counters.expires_at ELSE excluded.expires_at END
		RETURNING hits`

// IncrCounter adds one to key's count in the window starting at windowStart and returns the new
// count, in one atomic upsert (incrCounterSQL).
func (s *Store) IncrCounter(ctx context.Context, key string, windowStart, expiresAt time.Time) (int, error) {
	w, err := s.writer()
	if err != nil {
		return 0, s.fail("increment counter", err)
	}
	var n int64
	err = w.QueryRow(ctx, incrCounterSQL, key, ms(windowStart), ms(expiresAt)).Scan(&n)
	if err != nil {
		return 0, s.fail("increment counter", err)
	}
	return int(n), nil
}

// CountFailure runs the counters' upserts and the audit insert as one batch: one transaction,
// and on a server one round trip. The upserts run in key order, whatever the caller's order, so
// two failures sharing counters lock their rows in the same order and cannot deadlock.
func (s *Store) CountFailure(ctx context.Context, incs []store.CounterIncrement, event *store.AuditEvent) ([]int, error) {
	if len(incs) == 0 && event == nil {
		return nil, nil
	}
	order := make([]int, len(incs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(incs[a].Key, incs[b].Key) })
	counts := make([]int64, len(incs))
	stmts := make([]*Stmt, 0, len(incs)+1)
	for _, i := range order {
		c := incs[i]
		stmts = append(stmts, &Stmt{SQL: incrCounterSQL, Args: []any{c.Key, ms(c.WindowStart), ms(c.ExpiresAt)}, Scan: []any{&counts[i]}})
	}
	var id int64
	if event != nil {
		stmts = append(stmts, &Stmt{SQL: appendAuditSQL, Args: auditArgs(event), Scan: []any{&id}})
	}
	if err := s.batch(ctx, stmts...); err != nil {
		return nil, s.fail("count failure", err)
	}
	for _, st := range stmts {
		if st.NoRows {
			return nil, s.fail("count failure", errors.New("an upsert returned no row"))
		}
	}
	if event != nil {
		event.ID = id
	}
	out := make([]int, len(incs))
	for i, n := range counts {
		out[i] = int(n)
	}
	return out, nil
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
