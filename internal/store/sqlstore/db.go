// Package sqlstore is the one implementation of store.Store that both SQL engines share. modernc
// SQLite binds `$1` like PostgreSQL, every statement used here (INSERT … ON CONFLICT … DO UPDATE …
// WHERE, UPDATE … RETURNING, partial unique indexes) means the same on both, and both schemas store
// times as integer milliseconds since the Unix epoch, so one SQL text serves both engines.
//
// What differs between engines is kept out of this package and handed in through Config: the
// driver (database/sql for SQLite, a pgx pool for PostgreSQL) behind the small DB interface, the
// connection used for writes (SQLite: one writer connection, so writers queue in Go instead of
// spinning on SQLITE_BUSY; PostgreSQL: the pool), the error classifier that recognises unique
// violations and an unreachable database in the driver's own error types, and the Dialect for the
// rare clause only one engine has (PostgreSQL's FOR UPDATE SKIP LOCKED).
package sqlstore

import (
	"context"
	"errors"
	"time"
)

// ErrNoRows is what an adapter's Row.Scan returns when the query matched nothing.
var ErrNoRows = errors.New("sqlstore: no rows")

// Querier runs statements. Arguments are int64, *int64, string, []byte, bool or nil.
type Querier interface {
	// Exec runs a statement and returns the number of rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Rows is a result set; Close must be called.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is a single-row result; Scan returns ErrNoRows when there was none.
type Row interface {
	Scan(dest ...any) error
}

// Tx is a transaction.
type Tx interface {
	Querier
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// DB is a database handle.
type DB interface {
	Querier
	Begin(ctx context.Context) (Tx, error)
	Ping(ctx context.Context) error
}

// Stmt is one statement of a Batch. With Scan set, the statement returns at most one row, which
// is scanned into Scan; NoRows reports that it returned none. Without Scan, Affected is the
// number of rows it changed.
type Stmt struct {
	SQL      string
	Args     []any
	Scan     []any
	NoRows   bool
	Affected int64
}

// Batcher is an optional capability of Config.Writer: it runs stmts in order as one transaction
// (all or nothing) and sends them together, in one round trip to a database server. Without it
// the store runs a batch as a transaction of one statement after the other, which costs nothing
// more on an embedded database.
type Batcher interface {
	Batch(ctx context.Context, stmts []*Stmt) error
}

// Class is what an engine's classifier makes of a driver error.
type Class int

// Classes of driver errors.
const (
	Other       Class = iota // a defect or an unexpected condition: passed through unchanged
	Unique                   // a unique or primary-key constraint was violated
	ForeignKey               // a referenced row does not exist
	Unavailable              // the database cannot be reached or cannot serve the request now
)

// Dialect names the engine, for the few statements whose text cannot be the same on both.
type Dialect int

// Dialects.
const (
	SQLite     Dialect = iota // one writer at a time: a write statement never races another
	PostgreSQL                // concurrent writers: rows picked for a later update are locked explicitly
)

// Config is what an engine hands the shared implementation.
type Config struct {
	Dialect  Dialect
	Writer   DB // runs every write and every transaction
	Reader   DB // runs single-statement reads (may be Writer)
	Classify func(err error) Class
	Close    func() error // releases the engine's connections
	// Timeout bounds each statement and each transaction as a whole (0: DefaultTimeout; < 0:
	// none). Past it the call fails with store.ErrUnavailable.
	Timeout time.Duration
}
