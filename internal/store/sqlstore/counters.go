package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
		RETURNING name, hits, CAST(NULL AS BIGINT) AS prev_start`

// prevCountersSQL reads the counters a CountFailure names as PrevKey (%s: their placeholders),
// in the same row shape as incrCountersSQL returns, with each one's window start last so the
// caller can keep only the counts of the window it asked for.
const prevCountersSQL = `SELECT name, hits, window_start FROM counters WHERE name IN (%s)`

// prevCounterSQL is one PrevKey's count in the window starting at $2 (always one row).
const prevCounterSQL = `SELECT COALESCE(MAX(hits), 0) FROM counters WHERE name = $1 AND window_start = $2`

// CountFailure adds one to each counter and stores the audit event in one write: one
// transaction, and on a server one round trip. The counters' rows are locked in key order,
// whatever the caller's order, so two failures sharing counters cannot deadlock.
//
// With distinct keys (a failed attempt's counters always are) the upserts are one statement of
// many rows, in key order, and on PostgreSQL the audit insert rides in the same statement as a
// data-modifying CTE: one statement per failure instead of one per counter and one for the
// event. The PrevKey counters (a sliding window's previous window) are read in that same
// statement, from its snapshot. SQLite has no data-modifying CTEs: there the previous counts and
// the event are further statements of the same unit (in-process, no round trip). The same key
// twice runs one upsert per increment, one after the other, each counting the one before it.
func (s *Store) CountFailure(ctx context.Context, incs []store.CounterIncrement, event *store.AuditEvent) ([]store.FailureCount, error) {
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
	var counts []store.FailureCount
	var err error
	if distinct && len(incs) > 0 {
		counts, err = s.countDistinct(ctx, incs, order, event)
	} else {
		counts, err = s.countEach(ctx, incs, order, event)
	}
	if err != nil {
		return nil, s.fail("count failure", err)
	}
	return counts, nil
}

// countDistinct is CountFailure for distinct keys: one multi-row upsert (see CountFailure).
func (s *Store) countDistinct(ctx context.Context, incs []store.CounterIncrement, order []int, event *store.AuditEvent) ([]store.FailureCount, error) {
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
	prevs := map[string][]int{} // PrevKey → the incs that read it
	for i, c := range incs {
		index[c.Key] = i
		if c.PrevKey != "" {
			prevs[c.PrevKey] = append(prevs[c.PrevKey], i)
		}
	}
	// The previous counts' query, its placeholders numbered from first.
	prevArgs := make([]any, 0, len(prevs))
	for _, k := range slices.Sorted(maps.Keys(prevs)) {
		prevArgs = append(prevArgs, k)
	}
	prevQuery := func(first int) string {
		var ph strings.Builder
		for j := range prevArgs {
			if j > 0 {
				ph.WriteString(", ")
			}
			fmt.Fprintf(&ph, "$%d", first+j)
		}
		return fmt.Sprintf(prevCountersSQL, ph.String())
	}
	counts := make([]store.FailureCount, len(incs))
	found := 0
	var id int64
	scan := func(r Rows) error {
		var name *string
		var n int64
		var prevStart *int64
		if err := r.Scan(&name, &n, &prevStart); err != nil {
			return err
		}
		if name == nil { // the audit event's row (PostgreSQL)
			id = n
			return nil
		}
		if prevStart != nil { // a PrevKey's row: its count, if of the window asked for
			for _, i := range prevs[*name] {
				if ms(incs[i].PrevStart) == *prevStart {
					counts[i].Prev = int(n)
				}
			}
			return nil
		}
		i, ok := index[*name]
		if !ok || counts[i].Hits != 0 {
			return fmt.Errorf("the upsert returned counter %q unexpectedly", *name)
		}
		counts[i].Hits = int(n)
		found++
		return nil
	}
	if s.dialect == PostgreSQL {
		q := `WITH c AS (` + upsert + `)`
		tail := ` SELECT name, hits, prev_start FROM c`
		if len(prevArgs) > 0 {
			tail += ` UNION ALL ` + prevQuery(len(args)+1)
			args = append(args, prevArgs...)
		}
		if event != nil {
			n := len(args)
			q += `, a AS (INSERT INTO audit_events (occurred_at, actor, action, target, address, outcome, detail)
				VALUES (` + fmt.Sprintf("$%d, $%d, $%d, $%d, $%d, $%d, $%d", n+1, n+2, n+3, n+4, n+5, n+6, n+7) + `) RETURNING id)`
			tail += ` UNION ALL SELECT NULL, id, NULL FROM a`
			args = append(args, auditArgs(event)...)
		}
		if err := s.queryEach(ctx, q+tail, args, scan); err != nil {
			return nil, err
		}
	} else {
		err := s.inTx(ctx, "count failure", func(tx Tx) error {
			found, id = 0, 0
			clear(counts)
			if err := eachRow(ctx, tx, upsert, args, scan); err != nil {
				return err
			}
			if len(prevArgs) > 0 {
				if err := eachRow(ctx, tx, prevQuery(1), prevArgs, scan); err != nil {
					return err
				}
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

// eachRow runs q on db (a transaction or the writer) and calls fn for each row.
func eachRow(ctx context.Context, db Querier, q string, args []any, fn func(Rows) error) error {
	rows, err := db.Query(ctx, q, args...)
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
func (s *Store) countEach(ctx context.Context, incs []store.CounterIncrement, order []int, event *store.AuditEvent) ([]store.FailureCount, error) {
	hits := make([]int64, len(incs))
	prev := make([]int64, len(incs))
	stmts := make([]*Stmt, 0, 2*len(incs)+1)
	for _, i := range order {
		c := incs[i]
		stmts = append(stmts, &Stmt{SQL: incrCounterSQL, Args: []any{c.Key, ms(c.WindowStart), ms(c.ExpiresAt)}, Scan: []any{&hits[i]}})
	}
	for i, c := range incs {
		if c.PrevKey != "" {
			stmts = append(stmts, &Stmt{SQL: prevCounterSQL, Args: []any{c.PrevKey, ms(c.PrevStart)}, Scan: []any{&prev[i]}})
		}
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
	counts := make([]store.FailureCount, len(incs))
	for i := range counts {
		counts[i] = store.FailureCount{Hits: int(hits[i]), Prev: int(prev[i])}
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
