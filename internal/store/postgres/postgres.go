// Package postgres is posgate's PostgreSQL store (pgx/v5, pooled) behind the shared SQL
// implementation in store/sqlstore, for deployments with several replicas. Open applies the
// embedded migrations under an advisory lock, so replicas starting together on a fresh database
// migrate it exactly once.
//
// Statements use pgx's default extended protocol with its statement cache: parameters travel
// separately from the SQL text and hot statements are prepared once per connection. The simple
// query protocol (client-side interpolation) is refused.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/migrations"
	"github.com/posgate/posgate/internal/store/sqlstore"
)

// Store is a PostgreSQL-backed store.Store.
type Store struct {
	*sqlstore.Store
	pool *pgxpool.Pool
}

// migrationLockID is the advisory lock held while migrating ("posgate" in ASCII), distinct from
// goose's default so another goose-managed schema in the same database does not contend with us.
const migrationLockID = 0x706f7367617465

// defaultConnectTimeout bounds a connection attempt when the DSN sets none, so an unreachable
// server turns into ErrUnavailable instead of a request hanging on a dial.
const defaultConnectTimeout = 5 * time.Second

// defaultMaxConns sizes the pool when the DSN does not: pgx's default (the number of CPUs, at
// least 4) makes requests queue in posgate for a connection while PostgreSQL, which overlaps
// transactions and commits concurrent ones with one WAL flush, could run them: a write spends
// most of its time waiting for the server's WAL flush, not using a CPU here.
func defaultMaxConns() int32 { return int32(max(16, 4*runtime.GOMAXPROCS(0))) }

// Open connects to the database named by dsn (a postgres:// URL or key=value string; pool
// settings such as pool_max_conns are honoured), migrates it and returns the store. opts adjust
// the shared implementation (e.g. sqlstore.WithTimeout).
func Open(ctx context.Context, dsn string, opts ...sqlstore.Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DSN: %w", err) // pgx redacts the password
	}
	if cfg.ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
		return nil, errors.New("postgres: default_query_exec_mode=simple_protocol is refused: parameters must not be interpolated into SQL")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = defaultMaxConns()
	}
	if err := migrate(ctx, cfg.ConnConfig.Copy()); err != nil {
		return nil, wrapOpen("migrate", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, wrapOpen("connect", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, wrapOpen("connect", err)
	}
	db := pgDB{pool}
	sc := sqlstore.Config{
		Dialect:  sqlstore.PostgreSQL,
		Writer:   db,
		Reader:   db,
		Classify: classify,
		Close:    func() error { pool.Close(); return nil },
	}
	for _, o := range opts {
		o(&sc)
	}
	return &Store{Store: sqlstore.New(sc), pool: pool}, nil
}

func wrapOpen(op string, err error) error {
	if classify(err) == sqlstore.Unavailable {
		return fmt.Errorf("postgres: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// migrate runs goose over a short-lived database/sql handle (goose needs one) holding a session
// advisory lock: a second replica waits for the first to finish and then finds nothing to do.
func migrate(ctx context.Context, cc *pgx.ConnConfig) error {
	db := stdlib.OpenDB(*cc)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrationLockID),
		lock.WithLockTimeout(1, 300)) // poll every second, for up to 5 minutes
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.Postgres(),
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true), goose.WithLogger(goose.NopLogger()))
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// classify maps pgx errors to the store's error classes. Unavailable covers everything that says
// "the database cannot serve this now": no connection, a dropped connection, a server shutting
// down or refusing connections, a missing database, exhausted resources, a read-only standby
// after a failover, timeouts and a closed pool.
func classify(err error) sqlstore.Class {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch code := pe.Code; {
		case code == "23505": // unique_violation
			return sqlstore.Unique
		case code == "23503": // foreign_key_violation
			return sqlstore.ForeignKey
		case strings.HasPrefix(code, "08"), // connection exception
			strings.HasPrefix(code, "53"),                     // insufficient resources
			strings.HasPrefix(code, "57P"),                    // admin/crash shutdown, cannot connect now
			strings.HasPrefix(code, "28"),                     // invalid authorization
			code == "3D000",                                   // invalid_catalog_name: the database is gone
			code == "57014",                                   // query_canceled (statement timeout, cancelled context)
			code == "25006",                                   // read_only_sql_transaction: connected to a standby
			code == "40001", code == "40P01", code == "55P03": // serialization, deadlock, lock not available
			return sqlstore.Unavailable
		}
		return sqlstore.Other
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, pgconn.ErrConnClosed), pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return sqlstore.Unavailable
	case strings.Contains(err.Error(), "closed pool"), strings.Contains(err.Error(), "conn closed"):
		return sqlstore.Unavailable
	}
	return sqlstore.Other
}

// pgDB adapts a pgx pool to sqlstore.DB. pgx.Rows already has the shape sqlstore.Rows needs.
type pgDB struct{ p *pgxpool.Pool }

func (d pgDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := d.p.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (d pgDB) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	return d.p.Query(ctx, q, args...)
}

func (d pgDB) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	return pgRow{d.p.QueryRow(ctx, q, args...)}
}

func (d pgDB) Begin(ctx context.Context) (sqlstore.Tx, error) {
	tx, err := d.p.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return pgTx{tx}, nil
}

func (d pgDB) Ping(ctx context.Context) error { return d.p.Ping(ctx) }

// Batch sends stmts in one round trip. The extended protocol runs everything before the batch's
// one Sync as a single implicit transaction: a failing statement rolls back the ones before it
// and the rest do not run.
func (d pgDB) Batch(ctx context.Context, stmts []*sqlstore.Stmt) error {
	var b pgx.Batch
	for _, st := range stmts {
		q := b.Queue(st.SQL, st.Args...)
		if st.Scan != nil {
			q.QueryRow(func(row pgx.Row) error {
				err := row.Scan(st.Scan...)
				if st.NoRows = errors.Is(err, pgx.ErrNoRows); st.NoRows {
					return nil
				}
				return err
			})
		} else {
			q.Exec(func(tag pgconn.CommandTag) error {
				st.Affected = tag.RowsAffected()
				return nil
			})
		}
	}
	return d.p.SendBatch(ctx, &b).Close()
}

type pgTx struct{ tx pgx.Tx }

func (t pgTx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	tag, err := t.tx.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (t pgTx) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	return t.tx.Query(ctx, q, args...)
}

func (t pgTx) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	return pgRow{t.tx.QueryRow(ctx, q, args...)}
}

func (t pgTx) Commit(ctx context.Context) error { return t.tx.Commit(ctx) }

func (t pgTx) Rollback(ctx context.Context) error {
	if err := t.tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return err
	}
	return nil
}

type pgRow struct{ row pgx.Row }

func (r pgRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return sqlstore.ErrNoRows
	}
	return err
}
