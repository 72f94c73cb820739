package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// Store implements store.Store over an engine's Config.
type Store struct {
	dialect  Dialect
	w, r     DB
	classify func(error) Class
	closeFn  func() error
	closed   atomic.Bool
	// On a database server, concurrent single-use records and revocations are combined into one
	// statement each (combine.go); nil on SQLite, whose group commit already shares transactions.
	useOnces    *combiner[useOnceReq]
	chains      *combiner[*chainReq]
	revocations *combiner[store.Revocation]
}

var _ store.Store = (*Store)(nil)

// New returns a Store over cfg. The schema must already be migrated.
func New(cfg Config) *Store {
	if cfg.Reader == nil {
		cfg.Reader = cfg.Writer
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	same := cfg.Reader == cfg.Writer
	cfg.Writer = withDeadline(cfg.Writer, cfg.Timeout)
	if same {
		cfg.Reader = cfg.Writer
	} else {
		cfg.Reader = withDeadline(cfg.Reader, cfg.Timeout)
	}
	s := &Store{dialect: cfg.Dialect, w: cfg.Writer, r: cfg.Reader, classify: cfg.Classify, closeFn: cfg.Close}
	if s.dialect == PostgreSQL {
		s.useOnces = &combiner[useOnceReq]{max: maxCombined, send: s.sendUseOnces}
		s.chains = &combiner[*chainReq]{max: maxCombined, send: s.sendChains}
		s.revocations = &combiner[store.Revocation]{max: maxCombined, send: s.sendRevocations}
	}
	return s
}

// maxCombined bounds the requests of one combined statement.
const maxCombined = 32

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return s.fail("ping", errClosed)
	}
	if err := s.r.Ping(ctx); err != nil {
		// A failed ping is unavailability whatever the driver calls it.
		return fmt.Errorf("store: ping: %w: %w", store.ErrUnavailable, err)
	}
	if s.w != s.r {
		if err := s.w.Ping(ctx); err != nil {
			return fmt.Errorf("store: ping: %w: %w", store.ErrUnavailable, err)
		}
	}
	return nil
}

// Close releases the database. Every later call fails with store.ErrUnavailable.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.closeFn != nil {
		return s.closeFn()
	}
	return nil
}

var errClosed = errors.New("store is closed")

// fail wraps err for operation op: sentinel errors already chosen by this package are kept, driver
// errors are classified into the store's sentinels, and after Close everything is unavailable.
func (s *Store) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() {
		return fmt.Errorf("store: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	for _, sentinel := range []error{store.ErrNotFound, store.ErrConflict, store.ErrAlreadyUsed, store.ErrUserChanged, store.ErrClientChanged, store.ErrUnavailable} {
		if errors.Is(err, sentinel) {
			return fmt.Errorf("store: %s: %w", op, err)
		}
	}
	if errors.Is(err, ErrNoRows) {
		return fmt.Errorf("store: %s: %w", op, store.ErrNotFound)
	}
	switch s.classify(err) {
	case Unique:
		return fmt.Errorf("store: %s: %w: %w", op, store.ErrConflict, err)
	case ForeignKey:
		return fmt.Errorf("store: %s: referenced row missing: %w: %w", op, store.ErrNotFound, err)
	case Unavailable:
		return fmt.Errorf("store: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// firstOf is the row a lookup by a unique key found, from a query's rows and error: the first
// row, or ErrNotFound when there is none, with errors wrapped as op's.
func firstOf[T any](s *Store, op string, l []*T, err error) (*T, error) {
	if err != nil {
		return nil, s.fail(op, err)
	}
	if len(l) == 0 {
		return nil, s.fail(op, store.ErrNotFound)
	}
	return l[0], nil
}

// reader and writer refuse work after Close without touching the driver, so a closed store
// answers ErrUnavailable even where the driver would panic or report something else.
func (s *Store) reader() (DB, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	return s.r, nil
}

// query runs a read on the reader.
func (s *Store) query(ctx context.Context, query string, args ...any) (Rows, error) {
	r, err := s.reader()
	if err != nil {
		return nil, err
	}
	return r.Query(ctx, query, args...)
}

func (s *Store) writer() (DB, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	return s.w, nil
}

// inTx runs fn in a write transaction and commits it if fn returns nil.
func (s *Store) inTx(ctx context.Context, op string, fn func(tx Tx) error) error {
	w, err := s.writer()
	if err != nil {
		return s.fail(op, err)
	}
	tx, err := w.Begin(ctx)
	if err != nil {
		return s.fail(op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return s.fail(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return s.fail(op, err)
	}
	return nil
}

// batch runs stmts as one write transaction: through the writer's Batcher (one round trip) when
// it has one, else statement by statement in a transaction.
func (s *Store) batch(ctx context.Context, stmts ...*Stmt) error {
	w, err := s.writer()
	if err != nil {
		return err
	}
	if d, ok := w.(deadlineDB); ok {
		if b, ok := d.db.(Batcher); ok {
			ctx, cancel := context.WithTimeout(ctx, d.d)
			defer cancel()
			return b.Batch(ctx, stmts)
		}
	} else if b, ok := w.(Batcher); ok {
		return b.Batch(ctx, stmts)
	}
	tx, err := w.Begin(ctx)
	if err != nil {
		return err
	}
	for _, st := range stmts {
		if st.Scan != nil {
			err = tx.QueryRow(ctx, st.SQL, st.Args...).Scan(st.Scan...)
			st.NoRows = errors.Is(err, ErrNoRows)
			if st.NoRows {
				err = nil
			}
		} else {
			st.Affected, err = tx.Exec(ctx, st.SQL, st.Args...)
		}
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return nil
}

// exec runs one write statement and returns the rows it changed.
func (s *Store) exec(ctx context.Context, query string, args ...any) (int64, error) {
	w, err := s.writer()
	if err != nil {
		return 0, err
	}
	return w.Exec(ctx, query, args...)
}

// ---------------------------------------------------------------------------------------------
// Value conversions. Times are stored as int64 milliseconds since the Unix epoch and come back in
// UTC; byte strings are stored as NULL when empty and come back nil; string lists as JSON arrays.

func ms(t time.Time) int64 { return t.UnixMilli() }

func msPtr(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	v := t.UnixMilli()
	return &v
}

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromMSPtr(v *int64) *time.Time {
	if v == nil {
		return nil
	}
	t := fromMS(*v)
	return &t
}

func blob(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func blobOut(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func listIn(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, err := json.Marshal(l)
	if err != nil {
		panic(err) // a []string always marshals
	}
	return string(b)
}

func listOut(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("decode stored list: %w", err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// placeholders returns "$first, $first+1, …" for n parameters.
func placeholders(first, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(first + i))
	}
	return b.String()
}

// Writer returns the connection writes go through, for engine-level tests and diagnostics
// (PRAGMA checks, integrity_check). Callers must not write through it.
func (s *Store) Writer() Querier { return s.w }

// Reader returns the connection reads go through, for engine-level tests and diagnostics.
func (s *Store) Reader() Querier { return s.r }
