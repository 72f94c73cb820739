package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// Setting reads name's value.
func (s *Store) Setting(ctx context.Context, name string) (string, error) {
	v, err := s.setting(ctx, name)
	return v, s.fail("get setting", err)
}

// InitSetting inserts name's value unless one is there and returns the stored value. The insert
// and the read are two statements: a value is never deleted, so the read sees the first
// replica's value or a later deliberate swap, both of which are the answer.
func (s *Store) InitSetting(ctx context.Context, name, value string, at time.Time) (string, error) {
	const op = "init setting"
	if name == "" || value == "" {
		return "", s.fail(op, errors.New("empty setting name or value"))
	}
	if _, err := s.exec(ctx, `INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO NOTHING`, name, value, ms(at)); err != nil {
		return "", s.fail(op, err)
	}
	v, err := s.setting(ctx, name)
	return v, s.fail(op, err)
}

// SwapSetting replaces name's value by value if it is old, in one conditional update.
func (s *Store) SwapSetting(ctx context.Context, name, old, value string, at time.Time) error {
	const op = "swap setting"
	if name == "" || value == "" {
		return s.fail(op, errors.New("empty setting name or value"))
	}
	n, err := s.exec(ctx, `UPDATE settings SET value = $3, updated_at = $4 WHERE name = $1 AND value = $2`,
		name, old, value, ms(at))
	if err != nil || n == 1 {
		return s.fail(op, err)
	}
	if _, err := s.setting(ctx, name); err != nil {
		return s.fail(op, err) // ErrNotFound: no value at all
	}
	return s.fail(op, store.ErrConflict)
}

// setting reads name's value (ErrNoRows when it has none, which fail turns into ErrNotFound).
func (s *Store) setting(ctx context.Context, name string) (string, error) {
	r, err := s.reader()
	if err != nil {
		return "", err
	}
	var v string
	err = r.QueryRow(ctx, `SELECT value FROM settings WHERE name = $1`, name).Scan(&v)
	return v, err
}
