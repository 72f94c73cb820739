package sqlstore

import (
	"context"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// ListSigningKeys returns every signing key, oldest first.
func (s *Store) ListSigningKeys(ctx context.Context) ([]*store.SigningKey, error) {
	r, err := s.reader()
	if err != nil {
		return nil, s.fail("list signing keys", err)
	}
	rows, err := r.Query(ctx, `SELECT kid, alg, state, private_sealed, public_der, created_at, activate_at,
		retired_at, expires_at FROM signing_keys ORDER BY created_at, kid`)
	if err != nil {
		return nil, s.fail("list signing keys", err)
	}
	defer rows.Close()
	var out []*store.SigningKey
	for rows.Next() {
		var k store.SigningKey
		var state string
		var created int64
		var activate, retired, expires *int64
		if err := rows.Scan(&k.KID, &k.Alg, &state, &k.Private, &k.Public, &created, &activate, &retired, &expires); err != nil {
			return nil, s.fail("list signing keys", err)
		}
		k.State = store.KeyState(state)
		k.CreatedAt = fromMS(created)
		k.ActivateAt, k.RetiredAt, k.ExpiresAt = fromMSPtr(activate), fromMSPtr(retired), fromMSPtr(expires)
		out = append(out, &k)
	}
	return out, s.fail("list signing keys", rows.Err())
}

// CreateSigningKey stores k. ErrConflict on a duplicate kid, or when k is active and another key
// already is (a partial unique index keeps at most one active key).
func (s *Store) CreateSigningKey(ctx context.Context, k *store.SigningKey) error {
	return s.fail("create signing key", s.insertSigningKey(ctx, nil, k))
}

func (s *Store) insertSigningKey(ctx context.Context, tx Tx, k *store.SigningKey) error {
	var q Querier = tx
	if tx == nil {
		w, err := s.writer()
		if err != nil {
			return err
		}
		q = w
	}
	_, err := q.Exec(ctx, `INSERT INTO signing_keys (kid, alg, state, private_sealed, public_der, created_at,
		activate_at, retired_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		k.KID, k.Alg, string(k.State), blob(k.Private), blob(k.Public), ms(k.CreatedAt),
		msPtr(k.ActivateAt), msPtr(k.RetiredAt), msPtr(k.ExpiresAt))
	return err
}

// RotateSigningKeys retires expectActive, activates next and inserts newNext, all or nothing.
// Both state changes are conditional updates that must change exactly one row, so of replicas
// rotating at once exactly one succeeds and the others get ErrConflict.
func (s *Store) RotateSigningKeys(ctx context.Context, expectActive, next string, retiredAt, expiresAt time.Time, newNext *store.SigningKey) error {
	return s.inTx(ctx, "rotate signing keys", func(tx Tx) error {
		n, err := tx.Exec(ctx, `UPDATE signing_keys SET state = 'retired', retired_at = $2, expires_at = $3
			WHERE kid = $1 AND state = 'active'`, expectActive, ms(retiredAt), ms(expiresAt))
		if err != nil {
			return err
		}
		if n != 1 {
			return store.ErrConflict
		}
		n, err = tx.Exec(ctx, `UPDATE signing_keys SET state = 'active', activate_at = $2
			WHERE kid = $1 AND state = 'next'`, next, ms(retiredAt))
		if err != nil {
			return err
		}
		if n != 1 {
			return store.ErrConflict
		}
		if newNext != nil {
			return s.insertSigningKey(ctx, tx, newNext)
		}
		return nil
	})
}

// DeleteSigningKeysExpiredBefore drops retired keys whose expiry is before t. The active and next
// keys are never deleted, whatever their ExpiresAt.
func (s *Store) DeleteSigningKeysExpiredBefore(ctx context.Context, t time.Time) error {
	_, err := s.exec(ctx, `DELETE FROM signing_keys WHERE state = 'retired' AND expires_at < $1`, ms(t))
	return s.fail("delete expired signing keys", err)
}
