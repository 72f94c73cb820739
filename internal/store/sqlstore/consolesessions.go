package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// CreateConsoleSession stores a new session; ErrConflict when its hash exists.
func (s *Store) CreateConsoleSession(ctx context.Context, cs *store.ConsoleSession) error {
	const op = "create console session"
	if len(cs.Hash) == 0 || len(cs.Binding) == 0 {
		return s.fail(op, errors.New("empty session hash or binding"))
	}
	_, err := s.exec(ctx, `INSERT INTO console_sessions (hash, binding, created_at, seen_at, idle_expires_at, expires_at, flash)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		cs.Hash, cs.Binding, ms(cs.CreatedAt), ms(cs.SeenAt), ms(cs.IdleExpiresAt), ms(cs.ExpiresAt), cs.Flash)
	return s.fail(op, err)
}

// GetConsoleSession returns the session with that hash when it is live at now.
func (s *Store) GetConsoleSession(ctx context.Context, hash []byte, now time.Time) (*store.ConsoleSession, error) {
	const op = "get console session"
	r, err := s.reader()
	if err != nil {
		return nil, s.fail(op, err)
	}
	cs := store.ConsoleSession{Hash: hash}
	var created, seen, idle, expires int64
	err = r.QueryRow(ctx, `SELECT binding, created_at, seen_at, idle_expires_at, expires_at, flash FROM console_sessions
		WHERE hash = $1 AND idle_expires_at > $2 AND expires_at > $2`, hash, ms(now)).
		Scan(&cs.Binding, &created, &seen, &idle, &expires, &cs.Flash)
	if err != nil {
		return nil, s.fail(op, err)
	}
	cs.Binding = blobOut(cs.Binding)
	cs.CreatedAt, cs.SeenAt, cs.IdleExpiresAt, cs.ExpiresAt = fromMS(created), fromMS(seen), fromMS(idle), fromMS(expires)
	return &cs, nil
}

// TouchConsoleSession extends a live session's idle expiry, never past its absolute one.
func (s *Store) TouchConsoleSession(ctx context.Context, hash []byte, at, idleExpiresAt time.Time) error {
	n, err := s.exec(ctx, `UPDATE console_sessions SET seen_at = $2,
			idle_expires_at = CASE WHEN $3 < expires_at THEN $3 ELSE expires_at END
		WHERE hash = $1 AND idle_expires_at > $2 AND expires_at > $2`, hash, ms(at), ms(idleExpiresAt))
	if err == nil && n != 1 {
		err = store.ErrNotFound
	}
	return s.fail("touch console session", err)
}

// SetConsoleFlash sets the session's one-time notice.
func (s *Store) SetConsoleFlash(ctx context.Context, hash []byte, flash string) error {
	n, err := s.exec(ctx, `UPDATE console_sessions SET flash = $2 WHERE hash = $1`, hash, flash)
	if err == nil && n != 1 {
		err = store.ErrNotFound
	}
	return s.fail("set console flash", err)
}

// ClearConsoleFlash clears the notice if it is still flash; true when this call cleared it.
func (s *Store) ClearConsoleFlash(ctx context.Context, hash []byte, flash string) (bool, error) {
	if flash == "" {
		return false, nil
	}
	n, err := s.exec(ctx, `UPDATE console_sessions SET flash = '' WHERE hash = $1 AND flash = $2`, hash, flash)
	return n == 1, s.fail("clear console flash", err)
}

// DeleteConsoleSession ends a session.
func (s *Store) DeleteConsoleSession(ctx context.Context, hash []byte) error {
	_, err := s.exec(ctx, `DELETE FROM console_sessions WHERE hash = $1`, hash)
	return s.fail("delete console session", err)
}

// DeleteConsoleSessionsExpiredBefore deletes the sessions not live at t.
func (s *Store) DeleteConsoleSessionsExpiredBefore(ctx context.Context, t time.Time) (int, error) {
	n, err := s.exec(ctx, `DELETE FROM console_sessions WHERE idle_expires_at <= $1 OR expires_at <= $1`, ms(t))
	return int(n), s.fail("delete expired console sessions", err)
}
