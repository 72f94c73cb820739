package sqlstore

import (
	"context"
	"fmt"
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
	n, err := s.exec(ctx, `INSERT INTO single_use (name, used_at, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET used_at = excluded.used_at, expires_at = excluded.expires_at
		WHERE single_use.expires_at <= excluded.used_at`, key, ms(at), ms(expiresAt))
	if err == nil && n != 1 {
		err = store.ErrAlreadyUsed
	}
	return s.fail("use once", err)
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
