// Package sqlite is posgate's embedded store: a single SQLite file (modernc.org/sqlite, pure Go)
// behind the shared SQL implementation in store/sqlstore. Open applies the embedded migrations.
//
// Connection layout. SQLite runs one writer at a time. Instead of letting many pooled connections
// race for the write lock (each loser sleeping in the busy handler, a "SQLITE_BUSY storm"), every
// write and every transaction goes through one dedicated writer connection, so writers queue in Go
// for their turn, honour their context, and take the lock in order; the writes waiting at one
// moment share one transaction and one fsync (group commit, group.go). Reads use a separate pool
// of read-only connections; in WAL mode they never wait for the writer. BEGIN is
// IMMEDIATE (_txlock=immediate) so a transaction takes the write lock at its start instead of
// failing to upgrade halfway, and busy_timeout covers a second process opening the same file.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/pressly/goose/v3"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/posgate/posgate/internal/store/migrations"
	"github.com/posgate/posgate/internal/store/sqlstore"
)

// Store is a SQLite-backed store.Store.
type Store struct {
	*sqlstore.Store
	group *groupDB // the writer, for engine tests
}

// Durability: journal_mode=WAL with synchronous=FULL. In WAL mode a commit appends to the WAL
// file; with FULL the WAL is fsynced before the commit returns. A kill -9 cannot lose an
// acknowledged write even with NORMAL (the bytes are already in the OS page cache and the WAL is
// replayed on the next open), but NORMAL may lose the last commits on power loss or an OS crash.
// posgate's writes include revocations and single-use records whose loss would re-open a replay
// window, so we pay the fsync per commit and choose FULL: an answered write survives kill -9 and
// power loss alike. The writer connection's VFS (walvfs.go) is SQLite's unix VFS with the log's
// writes of a commit gathered into one; it writes them out before the COMMIT's fsync.
const (
	busyTimeoutMS = "10000"
	writerParams  = "_txlock=immediate&_pragma=busy_timeout(" + busyTimeoutMS + ")&_pragma=foreign_keys(1)" +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&vfs=" + walVFSName
	readerParams = "_pragma=foreign_keys(1)&_query_only=1"
)

// Open opens (creating it if needed, mode 0600) the SQLite database at path, applies the
// migrations, and returns the store. path ":memory:" gives a private in-memory database on one
// connection (tests only: it is lost on Close). opts adjust the shared implementation (e.g.
// sqlstore.WithTimeout).
func Open(ctx context.Context, path string, opts ...sqlstore.Option) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: database path %q must not contain '?' or '#'", path)
	}
	memory := path == ":memory:"
	if !memory {
		if err := prepareFile(path); err != nil {
			return nil, err
		}
	}
	if err := registerWALVFS(); err != nil {
		return nil, err
	}
	writer, err := sql.Open("sqlite", path+"?"+writerParams)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	if err := migrate(ctx, writer); err != nil {
		writer.Close()
		return nil, fmt.Errorf("sqlite: migrate %s: %w", path, err)
	}
	reader := writer
	if !memory {
		reader, err = sql.Open("sqlite", path+"?"+readerParams+readerBusyTimeout(opts))
		if err != nil {
			writer.Close()
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		n := max(4, runtime.GOMAXPROCS(0))
		reader.SetMaxOpenConns(n)
		reader.SetMaxIdleConns(n)
		reader.SetConnMaxIdleTime(0)
		if err := reader.PingContext(ctx); err != nil {
			writer.Close()
			reader.Close()
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
	}
	w := newGroupDB(writer)
	var r sqlstore.DB = &readerDB{sqlDB{db: reader, stmts: map[string]*sql.Stmt{}}}
	if memory {
		r = w // the one connection is the writer's: reads take turns with the writes
	}
	cfg := sqlstore.Config{
		Dialect:  sqlstore.SQLite,
		Writer:   w,
		Reader:   r,
		Classify: classify,
		Close: func() error {
			w.close()
			err := writer.Close()
			if reader != writer {
				err = errors.Join(err, reader.Close())
			}
			return err
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	return &Store{Store: sqlstore.New(cfg), group: w}, nil
}

// readerBusyTimeout is the busy_timeout parameter of the reader connections: the store's
// timeout (see readerDB), at most the writer's.
func readerBusyTimeout(opts []sqlstore.Option) string {
	var cfg sqlstore.Config
	for _, o := range opts {
		o(&cfg)
	}
	d := cfg.Timeout
	if d <= 0 {
		d = sqlstore.DefaultTimeout
	}
	ms, _ := strconv.Atoi(busyTimeoutMS)
	return "&_pragma=busy_timeout(" + strconv.FormatInt(min(d.Milliseconds(), int64(ms)), 10) + ")"
}

// prepareFile creates the directory and an empty database file readable only by its owner:
// it holds password hashes and sealed keys. SQLite gives the -wal and -shm files the same mode.
func prepareFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("sqlite: create directory for %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		return f.Close()
	case errors.Is(err, os.ErrExist):
		return nil
	default:
		return fmt.Errorf("sqlite: create %s: %w", path, err)
	}
}

// migrate applies the embedded migrations. Every migration runs in one transaction (SQLite DDL
// is transactional), so when two processes open a fresh file at once the loser's attempt rolls back
// completely ("table … already exists"); it then finds the migrations applied and succeeds. A
// genuine failure still has pending migrations after the retries and is returned.
func migrate(ctx context.Context, db *sql.DB) error {
	var err error
	for range 5 {
		var p *goose.Provider
		p, err = goose.NewProvider(goose.DialectSQLite3, db, migrations.SQLite(),
			goose.WithDisableGlobalRegistry(true), goose.WithLogger(goose.NopLogger()))
		if err != nil {
			return err
		}
		if _, err = p.Up(ctx); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
	}
	return err
}

// classify maps SQLite result codes (extended codes are on) to the store's error classes.
func classify(err error) sqlstore.Class {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch code := se.Code(); code {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return sqlstore.Unique
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return sqlstore.ForeignKey
		default:
			switch code & 0xff {
			case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
				sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_INTERRUPT,
				sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_READONLY:
				return sqlstore.Unavailable
			}
		}
		return sqlstore.Other
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, sql.ErrConnDone), errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		return sqlstore.Unavailable
	case strings.Contains(err.Error(), "sql: database is closed"):
		return sqlstore.Unavailable
	}
	return sqlstore.Other
}

// sqlDB adapts database/sql to sqlstore.DB for the readers. Statements are prepared once per
// connection and kept: SQLite compiles a statement on every prepare, which costs a read about as
// much as running it.
type sqlDB struct {
	db    *sql.DB
	mu    sync.RWMutex
	stmts map[string]*sql.Stmt
}

// maxCachedStmts bounds the statement cache; the store's statements are a fixed set well below
// it, and a query beyond it simply runs unprepared.
const maxCachedStmts = 256

func (d *sqlDB) stmt(ctx context.Context, q string) *sql.Stmt {
	d.mu.RLock()
	st := d.stmts[q]
	d.mu.RUnlock()
	if st != nil {
		return st
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if st = d.stmts[q]; st != nil || len(d.stmts) >= maxCachedStmts {
		return st
	}
	st, err := d.db.PrepareContext(ctx, q)
	if err != nil {
		return nil // the unprepared call reports the error
	}
	d.stmts[q] = st
	return st
}

func (d *sqlDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return execResult(d.db.ExecContext(ctx, q, args...))
}

func (d *sqlDB) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	var rows *sql.Rows
	var err error
	if st := d.stmt(ctx, q); st != nil {
		rows, err = st.QueryContext(ctx, args...)
	} else {
		rows, err = d.db.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (d *sqlDB) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	if st := d.stmt(ctx, q); st != nil {
		return sqlRow{st.QueryRowContext(ctx, args...)}
	}
	return sqlRow{d.db.QueryRowContext(ctx, q, args...)}
}

func (d *sqlDB) Begin(ctx context.Context) (sqlstore.Tx, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &sqlTx{tx}, nil
}

func (d *sqlDB) Ping(ctx context.Context) error { return d.db.PingContext(ctx) }

// readerDB runs the reads of the reader pool under a context that never ends, so a read starts
// no goroutine: database/sql watches a query's context in a goroutine of its own (Rows.awaitDone)
// and so does the driver (it interrupts the statement when the context ends), each a thread
// wake-up at the read's start and at its end, for reads that take microseconds.
//
// The store's timeout still bounds a read. What makes a SQLite read wait is a lock another
// process holds (in WAL mode only recovery or an exclusive locking mode blocks a reader): the
// reader connections' busy timeout is the store's timeout, after which the read fails with
// SQLITE_BUSY (ErrUnavailable). A read does not start once its context has ended, and a result
// read row by row stops at the first row after its context ended. What is no longer interrupted
// is a single statement computing for longer than the timeout before its next row: the store's
// reads are index lookups and bounded scans (TestHotPathsUseIndexes).
type readerDB struct{ sqlDB }

func (d *readerDB) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rows, err := d.sqlDB.Query(context.WithoutCancel(ctx), q, args...)
	if err != nil {
		return nil, err
	}
	return &ctxRows{Rows: rows, ctx: ctx}, nil
}

func (d *readerDB) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	if err := ctx.Err(); err != nil {
		return errRow{err}
	}
	return d.sqlDB.QueryRow(context.WithoutCancel(ctx), q, args...)
}

// ctxRows ends a result at the first row asked for after ctx ended; Err then reports ctx's error.
type ctxRows struct {
	sqlstore.Rows
	ctx context.Context
	err error
}

func (r *ctxRows) Next() bool {
	if r.err != nil {
		return false
	}
	if err := r.ctx.Err(); err != nil {
		r.err = err
		return false
	}
	return r.Rows.Next()
}

func (r *ctxRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.Rows.Err()
}

type sqlTx struct{ tx *sql.Tx }

func (t *sqlTx) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return execResult(t.tx.ExecContext(ctx, q, args...))
}

func (t *sqlTx) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	rows, err := t.tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (t *sqlTx) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	return sqlRow{t.tx.QueryRowContext(ctx, q, args...)}
}

func (t *sqlTx) Commit(context.Context) error { return t.tx.Commit() }

func (t *sqlTx) Rollback(context.Context) error {
	if err := t.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

func execResult(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

type sqlRow struct{ row *sql.Row }

func (r sqlRow) Scan(dest ...any) error {
	err := r.row.Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return sqlstore.ErrNoRows
	}
	return err
}
