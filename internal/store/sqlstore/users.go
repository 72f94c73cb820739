package sqlstore

import (
	"context"
	"time"

	"github.com/posgate/posgate/internal/store"
)

const userSelect = `SELECT id, username, password_hash, disabled, created_at, updated_at FROM users`

// CreateUser stores u; ErrConflict on a duplicate id or username.
func (s *Store) CreateUser(ctx context.Context, u *store.User) error {
	_, err := s.exec(ctx, `INSERT INTO users (id, username, password_hash, disabled, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, u.ID, u.Username, u.PasswordHash, u.Disabled, ms(u.CreatedAt), ms(u.UpdatedAt))
	return s.fail("create user", err)
}

// GetUser returns the user with id id.
func (s *Store) GetUser(ctx context.Context, id string) (*store.User, error) {
	return s.oneUser(ctx, "get user", userSelect+` WHERE id = $1`, id)
}

// GetUserByUsername returns the user called username (compared exactly).
func (s *Store) GetUserByUsername(ctx context.Context, username string) (*store.User, error) {
	return s.oneUser(ctx, "get user by username", userSelect+` WHERE username = $1`, username)
}

func (s *Store) oneUser(ctx context.Context, op, query string, arg any) (*store.User, error) {
	l, err := s.queryUsers(ctx, query, arg)
	return firstOf(s, op, l, err)
}

// ListUsers returns every user, oldest first.
func (s *Store) ListUsers(ctx context.Context) ([]*store.User, error) {
	l, err := s.queryUsers(ctx, userSelect+` ORDER BY created_at, id`)
	return l, s.fail("list users", err)
}

func (s *Store) queryUsers(ctx context.Context, query string, args ...any) ([]*store.User, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*store.User
	for rows.Next() {
		var u store.User
		var created, updated int64
		if err := rows.Scan(&u.ID, &u.Username, &u.PasswordHash, &u.Disabled, &created, &updated); err != nil {
			return nil, err
		}
		u.CreatedAt, u.UpdatedAt = fromMS(created), fromMS(updated)
		out = append(out, &u)
	}
	return out, rows.Err()
}

// SetUserPassword replaces the user's password hash.
func (s *Store) SetUserPassword(ctx context.Context, id, passwordHash string, at time.Time) error {
	n, err := s.exec(ctx, `UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1`, id, passwordHash, ms(at))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("set user password", err)
}

// SetUserDisabled enables or disables the user.
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool, at time.Time) error {
	n, err := s.exec(ctx, `UPDATE users SET disabled = $2, updated_at = $3 WHERE id = $1`, id, disabled, ms(at))
	if err == nil && n == 0 {
		err = store.ErrNotFound
	}
	return s.fail("set user disabled", err)
}
