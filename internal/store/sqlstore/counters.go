package sqlstore

import (
	"context"
	"errors"
	"fmt"
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

// incrCountersSQL is incrCounterSQL over the rows of values (for distinct names).
const incrCountersSQL = `INSERT INTO counters (name, window_start, hits, expires_at) VALUES %s
		ON CONFLICT (name) DO UPDATE SET
			hits = CASE WHEN counters.window_start >= excluded.window_start THEN counters.hits + 1 ELSE 1 END,
			window_start = CASE WHEN counters.window_start >= excluded.window_start THEN counters.window_start ELSE excluded.window_start END,
			expires_at = CASE WHEN counters.expires_at >= excluded.expires_at THEN counters.expires_at ELSE excluded.expires_at END
		RETURNING name, hits`

// CountFailure adds one to each counter and stores the audit event in one write: one
// transaction, and on a server one round trip. The counters' rows are locked in key order,
// whatever the caller's order, so two failures sharing counters cannot deadlock.
//
// With distinct keys (a failed attempt's counters always are) the upserts are one statement of
// many rows, in key order, and on PostgreSQL the audit insert rides in the same statement as a
// data-modifying CTE: one statement per failure instead of one per counter and one for the
// event. SQLite has no data-modifying CTEs: there the event is a second statement of the same
// unit. The same key twice runs one upsert per increment, one after the other, each counting the
// one before it.
func (s *Store) CountFailure(ctx context.Context, incs []store.CounterIncrement, event *store.AuditEvent) ([]int, error) {
	if len(incs) == 0 && event == nil {
		return nil, nil
	}
	order := make([]int, len(incs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(incs[a].Key, incs[b].Key) })
	distinct := true
	for j := 1; j < len(order); j++ {
		distinct = distinct && incs[order[j]].Key != incs[order[j-1]].Key
	}
	var counts []int64
	var err error
	if distinct && len(incs) > 0 {
		counts, err = s.countDistinct(ctx, incs, order, event)
	} else {
		counts, err = s.countEach(ctx, incs, order, event)
	}
	if err != nil {
		return nil, s.fail("count failure", err)
	}
	out := make([]int, len(incs))
	for i, n := range counts {
		out[i] = int(n)
	}
	return out, nil
}

// countDistinct is CountFailure for distinct keys: one multi-row upsert (see CountFailure).
func (s *Store) countDistinct(ctx context.Context, incs []store.CounterIncrement, order []int, event *store.AuditEvent) ([]int64, error) {
	var rows strings.Builder
	args := make([]any, 0, 3*len(incs)+7)
	for _, i := range order {
		if len(args) > 0 {
			rows.WriteString(", ")
		}
		fmt.Fprintf(&rows, "($%d, $%d, 1, $%d)", len(args)+1, len(args)+2, len(args)+3)
		c := incs[i]
		args = append(args, c.Key, ms(c.WindowStart), ms(c.ExpiresAt))
	}
	upsert := fmt.Sprintf(incrCountersSQL, rows.String())
	index := make(map[string]int, len(incs))
	for i, c := range incs {
		index[c.Key] = i
	}
	counts := make([]int64, len(incs))
	found := 0
	var id int64
	scan := func(r Rows) error {
		var name *string
		var n int64
		if err := r.Scan(&name, &n); err != nil {
			return err
		}
		if name == nil { // the audit event's row (PostgreSQL)
			id = n
			return nil
		}
		i, ok := index[*name]
		if !ok || counts[i] != 0 {
			return fmt.Errorf("the upsert returned counter %q unexpectedly", *name)
		}
		counts[i] = n
		found++
		return nil
	}
	if s.dialect == PostgreSQL {
		q := upsert
		if event != nil {
			n := len(args)
			q = `WITH c AS (` + upsert + `), a AS (INSERT INTO audit_events (occurred_at, actor, action, target, address, outcome, detail)
				VALUES (` + fmt.Sprintf("$%d, $%d, $%d, $%d, $%d, $%d, $%d", n+1, n+2, n+3, n+4, n+5, n+6, n+7) + `) RETURNING id)
				SELECT name, hits FROM c UNION ALL SELECT NULL, id FROM a`
			args = append(args, auditArgs(event)...)
		}
		if err := s.queryEach(ctx, q, args, scan); err != nil {
			return nil, err
		}
	} else {
		err := s.inTx(ctx, "count failure", func(tx Tx) error {
			found, id = 0, 0
			clear(counts)
			if err := eachRow(ctx, tx, upsert, args, scan); err != nil {
				return err
			}
			if event == nil {
				return nil
			}
			return tx.QueryRow(ctx, appendAuditSQL, auditArgs(event)...).Scan(&id)
		})
		if err != nil {
			return nil, err
		}
	}
	if found != len(incs) {
		return nil, fmt.Errorf("the upsert returned %d counters of %d", found, len(incs))
	}
	if event != nil {
		if id == 0 {
			return nil, errors.New("the audit insert returned no id")
		}
		event.ID = id
	}
	return counts, nil
}

// eachRow runs q in tx and calls fn for each row.
func eachRow(ctx context.Context, tx Tx, q string, args []any, fn func(Rows) error) error {
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// countEach is CountFailure with a key named more than once: one upsert per increment, in key
// order, and the audit insert, as one batch.
func (s *Store) countEach(ctx context.Context, incs []store.CounterIncrement, order []int, event *store.AuditEvent) ([]int64, error) {
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
		return nil, err
	}
	for _, st := range stmts {
		if st.NoRows {
			return nil, errors.New("an upsert returned no row")
		}
	}
	if event != nil {
		event.ID = id
	}
	return counts, nil
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
