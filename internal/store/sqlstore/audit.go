package sqlstore

import (
	"context"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// Audit list bounds: a non-positive limit means DefaultAuditLimit; larger ones are capped.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 10000
)

const appendAuditSQL = `INSERT INTO audit_events (occurred_at, actor, action, target, address, outcome, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`

func auditArgs(e *store.AuditEvent) []any {
	return []any{ms(e.At), e.Actor, e.Action, e.Target, e.Address, e.Outcome, e.Detail}
}

// AppendAudit stores e and sets e.ID.
func (s *Store) AppendAudit(ctx context.Context, e *store.AuditEvent) error {
	w, err := s.writer()
	if err != nil {
		return s.fail("append audit", err)
	}
	var id int64
	err = w.QueryRow(ctx, appendAuditSQL, auditArgs(e)...).Scan(&id)
	if err != nil {
		return s.fail("append audit", err)
	}
	e.ID = id
	return nil
}

// ListAudit returns up to limit events, the most recently appended first.
func (s *Store) ListAudit(ctx context.Context, limit int) ([]*store.AuditEvent, error) {
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	limit = min(limit, MaxAuditLimit)
	r, err := s.reader()
	if err != nil {
		return nil, s.fail("list audit", err)
	}
	rows, err := r.Query(ctx, `SELECT id, occurred_at, actor, action, target, address, outcome, detail
		FROM audit_events ORDER BY id DESC LIMIT $1`, int64(limit))
	if err != nil {
		return nil, s.fail("list audit", err)
	}
	defer rows.Close()
	out := make([]*store.AuditEvent, 0, min(limit, 64))
	for rows.Next() {
		var e store.AuditEvent
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Target, &e.Address, &e.Outcome, &e.Detail); err != nil {
			return nil, s.fail("list audit", err)
		}
		e.At = fromMS(at)
		out = append(out, &e)
	}
	return out, s.fail("list audit", rows.Err())
}

// auditDeleteBatch bounds one DELETE of old audit events: the first cleanup after retention is
// shortened (or after a long time without one) may have millions of rows to drop, and one
// statement for all of them would hold the single writer (SQLite) or a long transaction
// (PostgreSQL) while requests wait to append theirs.
const auditDeleteBatch = 1000

// DeleteAuditBefore deletes the events that occurred before t, oldest first, in batches of
// auditDeleteBatch (each its own statement) until none is left or ctx ends.
func (s *Store) DeleteAuditBefore(ctx context.Context, t time.Time) error {
	for {
		n, err := s.exec(ctx, `DELETE FROM audit_events WHERE id IN
			(SELECT id FROM audit_events WHERE occurred_at < $1 ORDER BY occurred_at LIMIT $2)`, ms(t), int64(auditDeleteBatch))
		if err != nil {
			return s.fail("delete old audit events", err)
		}
		if n < auditDeleteBatch {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return s.fail("delete old audit events", err)
		}
	}
}
