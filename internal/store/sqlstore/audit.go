package sqlstore

import (
	"context"

	"github.com/posgate/posgate/internal/store"
)

// Audit list bounds: a non-positive limit means DefaultAuditLimit; larger ones are capped.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 10000
)

// AppendAudit stores e and sets e.ID.
func (s *Store) AppendAudit(ctx context.Context, e *store.AuditEvent) error {
	w, err := s.writer()
	if err != nil {
		return s.fail("append audit", err)
	}
	var id int64
	err = w.QueryRow(ctx, `INSERT INTO audit_events (occurred_at, actor, action, target, address, outcome, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
		ms(e.At), e.Actor, e.Action, e.Target, e.Address, e.Outcome, e.Detail).Scan(&id)
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
