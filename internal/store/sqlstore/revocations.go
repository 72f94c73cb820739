package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/store"
)

func checkKind(kind string) error {
	if kind != "jti" && kind != "sid" {
		return fmt.Errorf("revocation kind %q is neither \"jti\" nor \"sid\"", kind)
	}
	return nil
}

// AddRevocation records r; revoking the same kind and value again keeps the first entry.
func (s *Store) AddRevocation(ctx context.Context, r store.Revocation) error {
	if err := checkKind(r.Kind); err != nil {
		return s.fail("add revocation", err)
	}
	if s.revocations != nil {
		if _, err := s.writer(); err != nil {
			return s.fail("add revocation", err)
		}
		return s.fail("add revocation", s.revocations.do(ctx, r))
	}
	_, err := s.exec(ctx, `INSERT INTO revocations (kind, subject, revoked_at, expires_at, reason)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (kind, subject) DO NOTHING`,
		r.Kind, r.Value, ms(r.RevokedAt), ms(r.ExpiresAt), r.Reason)
	return s.fail("add revocation", err)
}

// sendRevocations records reqs in one insert of many rows (see combiner); an entry already
// there, or asked for twice, keeps the first.
func (s *Store) sendRevocations(ctx context.Context, reqs []store.Revocation) []error {
	var q strings.Builder
	args := make([]any, 0, 5*len(reqs))
	q.WriteString("INSERT INTO revocations (kind, subject, revoked_at, expires_at, reason) VALUES ")
	for i, r := range reqs {
		if i > 0 {
			q.WriteString(", ")
		}
		n := len(args)
		fmt.Fprintf(&q, "($%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5)
		args = append(args, r.Kind, r.Value, ms(r.RevokedAt), ms(r.ExpiresAt), r.Reason)
	}
	q.WriteString(" ON CONFLICT (kind, subject) DO NOTHING")
	_, err := s.exec(ctx, q.String(), args...)
	errs := make([]error, len(reqs))
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// ListRevocationsSince returns the entries revoked at or after since that are still unexpired at
// now, in the order they were revoked.
func (s *Store) ListRevocationsSince(ctx context.Context, since, now time.Time) ([]store.Revocation, error) {
	r, err := s.reader()
	if err != nil {
		return nil, s.fail("list revocations", err)
	}
	rows, err := r.Query(ctx, `SELECT kind, subject, revoked_at, expires_at, reason FROM revocations
		WHERE revoked_at >= $1 AND expires_at > $2 ORDER BY revoked_at, kind, subject`, ms(since), ms(now))
	if err != nil {
		return nil, s.fail("list revocations", err)
	}
	defer rows.Close()
	var out []store.Revocation
	for rows.Next() {
		var v store.Revocation
		var revoked, expires int64
		if err := rows.Scan(&v.Kind, &v.Value, &revoked, &expires, &v.Reason); err != nil {
			return nil, s.fail("list revocations", err)
		}
		v.RevokedAt, v.ExpiresAt = fromMS(revoked), fromMS(expires)
		out = append(out, v)
	}
	return out, s.fail("list revocations", rows.Err())
}

// IsRevoked reports whether kind+value is in the set (a primary-key lookup).
func (s *Store) IsRevoked(ctx context.Context, kind, value string) (bool, error) {
	if err := checkKind(kind); err != nil {
		return false, s.fail("is revoked", err)
	}
	r, err := s.reader()
	if err != nil {
		return false, s.fail("is revoked", err)
	}
	var one int64
	err = r.QueryRow(ctx, `SELECT 1 FROM revocations WHERE kind = $1 AND subject = $2`, kind, value).Scan(&one)
	if errors.Is(err, ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, s.fail("is revoked", err)
	}
	return true, nil
}

// DeleteRevocationsExpiredBefore drops entries that expired before t.
func (s *Store) DeleteRevocationsExpiredBefore(ctx context.Context, t time.Time) error {
	_, err := s.exec(ctx, `DELETE FROM revocations WHERE expires_at < $1`, ms(t))
	return s.fail("delete expired revocations", err)
}
