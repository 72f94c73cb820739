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
	if s.dialect == PostgreSQL {
		args := []any{ms(at), ms(expiresAt)}
		for _, k := range keys {
			args = append(args, k)
		}
		var q strings.Builder
		q.WriteString("WITH ")
		if guard != nil {
			args = append(args, guard.id, guard.version)
			fmt.Fprintf(&q, "c AS ("+clientCurrent+"), ", len(args)-1, len(args))
		}
		for i := range keys {
			if i > 0 {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, "k%d AS (INSERT INTO single_use (name, used_at, expires_at) SELECT $%d, $1, $2", i, i+3)
			switch {
			case i > 0:
				fmt.Fprintf(&q, " FROM k%d", i-1)
			case guard != nil:
				q.WriteString(" FROM c")
			}
			q.WriteString(` ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at
				WHERE single_use.expires_at <= excluded.used_at RETURNING 1)`)
		}
		q.WriteString(" SELECT ")
		if guard != nil {
			q.WriteString("(SELECT count(*) FROM c), ")
		} else {
			q.WriteString("1, ")
		}
		for i := range keys {
			if i > 0 {
				q.WriteString(" + ")
			}
			fmt.Fprintf(&q, "(SELECT count(*) FROM k%d)", i)
		}
		var current int64
		w, err := s.writer()
		if err == nil {
			err = w.QueryRow(ctx, q.String(), args...).Scan(&current, &n)
		}
		if err == nil && current == 0 {
			err = store.ErrClientChanged
		}
		if err != nil {
			return 0, s.fail(op, err)
		}
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
