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

// UseOnce records key as used until expiresAt, or fails with ErrAlreadyUsed. It is one statement:
// the insert wins when the key is new, the conflict branch takes the row over only when the stored
// record has expired at `at`, and otherwise nothing changes and no row is reported. The database
// serialises concurrent writers on the key's unique index, so exactly one caller sees a row
// changed. There is no read before the write, so there is no window between check and use.
func (s *Store) UseOnce(ctx context.Context, key string, at, expiresAt time.Time) error {
	if !expiresAt.After(at) {
		return s.fail("use once", fmt.Errorf("expiry %s is not after use time %s", expiresAt, at))
	}
	if s.useOnces != nil {
		if _, err := s.writer(); err != nil {
			return s.fail("use once", err)
		}
		return s.fail("use once", s.useOnces.do(ctx, useOnceReq{key: key, at: ms(at), expires: ms(expiresAt)}))
	}
	n, err := s.exec(ctx, useOnceSQL, key, ms(at), ms(expiresAt))
	if err == nil && n != 1 {
		err = store.ErrAlreadyUsed
	}
	return s.fail("use once", err)
}

// useOnceReq is one UseOnce of a combined statement.
type useOnceReq struct {
	key         string
	at, expires int64
}

// sendUseOnces records reqs in one upsert of many rows (see combiner), which decides each key as
// useOnceSQL does: the rows it returns are the keys recorded. A key asked for twice goes in once;
// its later requests are refused, as they would be one after the other.
func (s *Store) sendUseOnces(ctx context.Context, reqs []useOnceReq) []error {
	errs := make([]error, len(reqs))
	first := make(map[string]int, len(reqs))
	var q strings.Builder
	args := make([]any, 0, 3*len(reqs))
	q.WriteString("INSERT INTO single_use (name, used_at, expires_at) VALUES ")
	for i, r := range reqs {
		if _, dup := first[r.key]; dup {
			errs[i] = store.ErrAlreadyUsed
			continue
		}
		first[r.key] = i
		if len(args) > 0 {
			q.WriteString(", ")
		}
		fmt.Fprintf(&q, "($%d, $%d, $%d)", len(args)+1, len(args)+2, len(args)+3)
		args = append(args, r.key, r.at, r.expires)
	}
	q.WriteString(` ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at
		WHERE single_use.expires_at <= excluded.used_at RETURNING name`)
	recorded := make(map[string]bool, len(first))
	err := s.queryEach(ctx, q.String(), args, func(rows Rows) error {
		var name string
		if err := rows.Scan(&name); err != nil {
			return err
		}
		recorded[name] = true
		return nil
	})
	for k, i := range first {
		switch {
		case err != nil:
			errs[i] = err
		case !recorded[k]:
			errs[i] = store.ErrAlreadyUsed
		}
	}
	return errs
}

// queryEach runs a write statement returning rows on the writer and calls fn for each row.
func (s *Store) queryEach(ctx context.Context, query string, args []any, fn func(Rows) error) error {
	w, err := s.writer()
	if err != nil {
		return err
	}
	return eachRow(ctx, w, query, args, fn)
}

const useOnceSQL = `INSERT INTO single_use (name, used_at, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at
		WHERE single_use.expires_at <= excluded.used_at`

// maxChain bounds the keys of one UseOnceChain (its PostgreSQL statement grows with them).
const maxChain = 8

// UseOnceChain records keys in order until one is already used. On PostgreSQL it is one
// statement: each key's upsert is a data-modifying CTE that inserts only when the one before it
// changed a row, so the database decides the whole chain in one round trip and one commit, with
// every key's race decided by its unique index as in UseOnce. SQLite has no data-modifying CTEs;
// there the upserts run one after the other in one transaction, which on the single writer is
// one unit of one commit as well.
func (s *Store) UseOnceChain(ctx context.Context, keys []string, at, expiresAt time.Time) (int, error) {
	return s.useOnceChain(ctx, "use once (chain)", nil, keys, at, expiresAt)
}

// UseOnceAsClient is UseOnceChain behind a check of the client: on PostgreSQL the check is one
// more CTE of the same statement, which the first upsert selects from, so a client that is gone,
// disabled or at another version records nothing; on SQLite it is a read in the same
// transaction. Either way it costs no round trip of its own.
func (s *Store) UseOnceAsClient(ctx context.Context, clientID string, version int64, keys []string, at, expiresAt time.Time) (int, error) {
	return s.useOnceChain(ctx, "use once (as client)", &clientGuard{id: clientID, version: version}, keys, at, expiresAt)
}

// chainReq is one UseOnceChain or UseOnceAsClient of a combined statement; n is what it
// recorded, set before its caller is answered.
type chainReq struct {
	guard       *clientGuard
	keys        []string
	at, expires int64
	n           int64
}

// sendChains records the chains of reqs in one statement (see combiner): a CTE of the requests
// (one row each, from arrays, so one statement text serves any number of them), the requests whose
// client is current, and one upsert per position in the chains, each inserting a request's key
// at that position only when the upsert before it recorded the request's previous key. Each key's
// race is decided by its unique index, as in UseOnce. A request naming a key that an earlier
// request of the batch names too is sent alone after the statement, so it is decided as it would
// be after the other one.
func (s *Store) sendChains(ctx context.Context, reqs []*chainReq) []error {
	errs := make([]error, len(reqs))
	order := make([]int, len(reqs))
	for i := range order {
		order[i] = i
	}
	batch, later := splitRepeats(order, func(i int) []string { return reqs[i].keys })
	levels := 0
	for _, i := range batch {
		levels = max(levels, len(reqs[i].keys))
	}
	// Every statement takes its first keys in the same order, so two of them (two replicas
	// replaying the same assertions) wait for one another instead of deadlocking, which would
	// fail every request of the statement chosen as the victim.
	slices.SortFunc(batch, func(a, b int) int { return strings.Compare(reqs[a].keys[0], reqs[b].keys[0]) })
	n := max(len(batch), minCombinedRows) // the rows past the batch are NULL, and skipped
	clients := make([]*string, n)
	versions := make([]int64, n)
	ats := make([]int64, n)
	exps := make([]int64, n)
	keys := make([][]*string, levels)
	for l := range keys {
		keys[l] = make([]*string, n)
	}
	for j, i := range batch {
		r := reqs[i]
		if r.guard != nil {
			clients[j], versions[j] = &r.guard.id, r.guard.version
		}
		ats[j], exps[j] = r.at, r.expires
		for l := range r.keys {
			keys[l][j] = &r.keys[l]
		}
	}
	args := []any{clients, versions, ats, exps}
	for _, k := range keys {
		args = append(args, k)
	}
	var q strings.Builder
	q.WriteString("WITH r AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]")
	for l := range levels {
		fmt.Fprintf(&q, ", $%d::text[]", l+5)
	}
	q.WriteString(") AS r(client, version, at, exp")
	for l := range levels {
		fmt.Fprintf(&q, ", k%d", l)
	}
	q.WriteString(`) WHERE k0 IS NOT NULL), ok AS (SELECT * FROM r WHERE r.client IS NULL OR EXISTS (SELECT 1 FROM clients c
		WHERE c.id = r.client AND c.version = r.version AND NOT c.disabled))`)
	for l := range levels {
		fmt.Fprintf(&q, ", u%d AS (INSERT INTO single_use (name, used_at, expires_at) SELECT ok.k%d, ok.at, ok.exp FROM ok", l, l)
		if l > 0 {
			fmt.Fprintf(&q, " JOIN u%d ON u%d.name = ok.k%d WHERE ok.k%d IS NOT NULL", l-1, l-1, l-1, l)
		}
		q.WriteString(` ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at
			WHERE single_use.expires_at <= excluded.used_at RETURNING name)`)
	}
	q.WriteString(" SELECT r.k0, ok.k0 IS NOT NULL")
	for l := range levels {
		fmt.Fprintf(&q, ", u%d.name IS NOT NULL", l)
	}
	q.WriteString(" FROM r LEFT JOIN ok ON ok.k0 = r.k0")
	for l := range levels {
		fmt.Fprintf(&q, " LEFT JOIN u%d ON u%d.name = r.k%d", l, l, l)
	}
	got := make(map[string][]bool, len(batch))
	err := s.queryEach(ctx, q.String(), args, func(rows Rows) error {
		var k0 string
		flags := make([]bool, levels+1)
		dest := []any{&k0}
		for i := range flags {
			dest = append(dest, &flags[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		got[k0] = flags
		return nil
	})
	for _, i := range batch {
		r := reqs[i]
		flags, found := got[r.keys[0]]
		switch {
		case err != nil:
			errs[i] = err
		case !found:
			errs[i] = errors.New("combined single-use statement returned no row for a request")
		case !flags[0]:
			errs[i] = store.ErrClientChanged
		default:
			for _, rec := range flags[1 : 1+len(r.keys)] {
				if !rec {
					break
				}
				r.n++
			}
		}
	}
	for _, i := range later {
		errs[i] = s.sendChains(ctx, reqs[i:i+1])[0]
	}
	return errs
}

// clientGuard is the client a chain of single-use records is conditional on.
type clientGuard struct {
	id      string
	version int64
}

const clientCurrent = `SELECT 1 FROM clients WHERE id = $%d AND version = $%d AND NOT disabled`

func (s *Store) useOnceChain(ctx context.Context, op string, guard *clientGuard, keys []string, at, expiresAt time.Time) (int, error) {
	switch {
	case !expiresAt.After(at):
		return 0, s.fail(op, fmt.Errorf("expiry %s is not after use time %s", expiresAt, at))
	case len(keys) == 0 || len(keys) > maxChain:
		return 0, s.fail(op, fmt.Errorf("%d keys, want 1 to %d", len(keys), maxChain))
	}
	for i, k := range keys {
		if slices.Contains(keys[:i], k) {
			return 0, s.fail(op, fmt.Errorf("key %q given twice", k))
		}
	}
	var n int64
	if s.chains != nil {
		if _, err := s.writer(); err != nil {
			return 0, s.fail(op, err)
		}
		r := &chainReq{guard: guard, keys: keys, at: ms(at), expires: ms(expiresAt)}
		if err := s.chains.do(ctx, r); err != nil {
			return 0, s.fail(op, err)
		}
		n = r.n
	} else {
		err := s.inTx(ctx, op, func(tx Tx) error {
			n = 0
			if guard != nil {
				var one int64
				err := tx.QueryRow(ctx, fmt.Sprintf(clientCurrent, 1, 2), guard.id, guard.version).Scan(&one)
				if errors.Is(err, ErrNoRows) {
					return store.ErrClientChanged
				}
				if err != nil {
					return err
				}
			}
			for _, k := range keys {
				c, err := tx.Exec(ctx, useOnceSQL, k, ms(at), ms(expiresAt))
				if err != nil || c != 1 {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	if int(n) < len(keys) {
		return int(n), s.fail(op, store.ErrAlreadyUsed)
	}
	return int(n), nil
}

// ReleaseOnce deletes key's record (if any), so a later UseOnce of it succeeds.
func (s *Store) ReleaseOnce(ctx context.Context, key string) error {
	_, err := s.exec(ctx, `DELETE FROM single_use WHERE name = $1`, key)
	return s.fail("release single-use record", err)
}

// DeleteSingleUseExpiredBefore drops records that expired before t.
func (s *Store) DeleteSingleUseExpiredBefore(ctx context.Context, t time.Time) error {
	_, err := s.exec(ctx, `DELETE FROM single_use WHERE expires_at < $1`, ms(t))
	return s.fail("delete expired single-use records", err)
}
