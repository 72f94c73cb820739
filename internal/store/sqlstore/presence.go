package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/posgate/posgate/internal/store"
)

const presenceCols = `conn_id, tenant, replica, since, seen_at`

// PutPresence inserts p, or replaces the row of its (ConnID, Tenant), in one upsert.
func (s *Store) PutPresence(ctx context.Context, p *store.Presence) error {
	const op = "put presence"
	if p.ConnID == "" || p.Tenant == "" || p.Replica == "" {
		return s.fail(op, errors.New("empty connection id, tenant or replica"))
	}
	_, err := s.exec(ctx, `INSERT INTO presence (`+presenceCols+`) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (conn_id, tenant) DO UPDATE SET replica = excluded.replica,
			since = excluded.since, seen_at = excluded.seen_at`,
		p.ConnID, p.Tenant, p.Replica, ms(p.Since), ms(p.SeenAt))
	return s.fail(op, err)
}

// TouchPresence sets the SeenAt of every row of connID; ErrNotFound when it has none.
func (s *Store) TouchPresence(ctx context.Context, connID string, at time.Time) error {
	n, err := s.exec(ctx, `UPDATE presence SET seen_at = $2 WHERE conn_id = $1`, connID, ms(at))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("touch presence", err)
}

// DeletePresence deletes connID's rows, if any.
func (s *Store) DeletePresence(ctx context.Context, connID string) error {
	_, err := s.exec(ctx, `DELETE FROM presence WHERE conn_id = $1`, connID)
	return s.fail("delete presence", err)
}

// ListPresence returns tenant's rows seen at or after seenSince, newest Since first.
func (s *Store) ListPresence(ctx context.Context, tenant string, seenSince time.Time) ([]*store.Presence, error) {
	const op = "list presence"
	r, err := s.reader()
	if err != nil {
		return nil, s.fail(op, err)
	}
	rows, err := r.Query(ctx, `SELECT `+presenceCols+` FROM presence WHERE tenant = $1 AND seen_at >= $2
		ORDER BY since DESC, conn_id DESC`, tenant, ms(seenSince))
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	out := []*store.Presence{}
	for rows.Next() {
		var p store.Presence
		var since, seen int64
		if err := rows.Scan(&p.ConnID, &p.Tenant, &p.Replica, &since, &seen); err != nil {
			return nil, s.fail(op, err)
		}
		p.Since, p.SeenAt = fromMS(since), fromMS(seen)
		out = append(out, &p)
	}
	return out, s.fail(op, rows.Err())
}

// DeletePresenceSeenBefore deletes the rows not seen since t and returns how many.
func (s *Store) DeletePresenceSeenBefore(ctx context.Context, t time.Time) (int, error) {
	n, err := s.exec(ctx, `DELETE FROM presence WHERE seen_at < $1`, ms(t))
	return int(n), s.fail("delete stale presence", err)
}
