package sqlstore

import (
	"context"
	"time"
)

// DefaultTimeout bounds every statement (and every transaction as a whole) when Config.Timeout is
// zero: a database that hangs — a stopped process, a network partition, a full disk stalling
// fsync — turns into store.ErrUnavailable after this long instead of holding the caller, and
// whatever the caller holds, for as long as the stall lasts.
const DefaultTimeout = 5 * time.Second

// Option adjusts the Config an engine's Open builds.
type Option func(*Config)

// WithTimeout sets Config.Timeout (see there).
func WithTimeout(d time.Duration) Option { return func(c *Config) { c.Timeout = d } }

// The deadline adapters wrap an engine's DB so that each statement runs under a context that
// ends Timeout after it started (or earlier, with the caller's), and a transaction under one that
// ends Timeout after Begin. The driver sees an ordinary expired context — database/sql and pgx
// both abandon the statement and the connection — and the classifier reports it as
// unavailability, the answer callers already map to 503 + Retry-After. Putting the deadline here
// instead of in each Store method covers every statement, present and future, in one place.

type deadlineDB struct {
	db DB
	d  time.Duration
}

func withDeadline(db DB, d time.Duration) DB {
	if db == nil || d <= 0 {
		return db
	}
	return deadlineDB{db, d}
}

func (x deadlineDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, x.d)
	defer cancel()
	return x.db.Exec(ctx, q, args...)
}

func (x deadlineDB) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	ctx, cancel := context.WithTimeout(ctx, x.d)
	rows, err := x.db.Query(ctx, q, args...)
	if err != nil {
		cancel()
		return nil, err
	}
	return deadlineRows{rows, cancel}, nil
}

func (x deadlineDB) QueryRow(ctx context.Context, q string, args ...any) Row {
	ctx, cancel := context.WithTimeout(ctx, x.d)
	return deadlineRow{x.db.QueryRow(ctx, q, args...), cancel}
}

func (x deadlineDB) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, x.d)
	defer cancel()
	return x.db.Ping(ctx)
}

// Begin starts a transaction whose every statement, and Commit, must finish Timeout after Begin.
// The context handed to the driver's Begin lives until Commit or Rollback (database/sql rolls the
// transaction back when it ends).
func (x deadlineDB) Begin(ctx context.Context) (Tx, error) {
	end := time.Now().Add(x.d)
	ctx, cancel := context.WithDeadline(ctx, end)
	tx, err := x.db.Begin(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return &deadlineTx{tx: tx, end: end, cancel: cancel}, nil
}

type deadlineTx struct {
	tx     Tx
	end    time.Time
	cancel context.CancelFunc
}

func (t *deadlineTx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	ctx, cancel := context.WithDeadline(ctx, t.end)
	defer cancel()
	return t.tx.Exec(ctx, q, args...)
}

func (t *deadlineTx) Query(ctx context.Context, q string, args ...any) (Rows, error) {
	ctx, cancel := context.WithDeadline(ctx, t.end)
	rows, err := t.tx.Query(ctx, q, args...)
	if err != nil {
		cancel()
		return nil, err
	}
	return deadlineRows{rows, cancel}, nil
}

func (t *deadlineTx) QueryRow(ctx context.Context, q string, args ...any) Row {
	ctx, cancel := context.WithDeadline(ctx, t.end)
	return deadlineRow{t.tx.QueryRow(ctx, q, args...), cancel}
}

func (t *deadlineTx) Commit(ctx context.Context) error {
	ctx, cancel := context.WithDeadline(ctx, t.end)
	defer cancel()
	defer t.cancel()
	return t.tx.Commit(ctx)
}

// Rollback is not bounded by the transaction's deadline: it runs after a failure, often after the
// deadline itself, and only needs the time the caller's context gives it.
func (t *deadlineTx) Rollback(ctx context.Context) error {
	defer t.cancel()
	ctx, cancel := context.WithTimeout(ctx, max(time.Until(t.end), 0)+time.Second)
	defer cancel()
	return t.tx.Rollback(ctx)
}

type deadlineRows struct {
	Rows
	cancel context.CancelFunc
}

func (r deadlineRows) Close() {
	r.Rows.Close()
	r.cancel()
}

type deadlineRow struct {
	row    Row
	cancel context.CancelFunc
}

func (r deadlineRow) Scan(dest ...any) error {
	defer r.cancel()
	return r.row.Scan(dest...)
}
