package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"

	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/posgate/posgate/internal/store/sqlstore"
)

// Group commit. With synchronous=FULL every COMMIT waits for an fsync of the WAL, and one writer
// connection means writes commit one after the other: the write rate is at most one transaction
// per fsync, however many callers wait. groupDB lets the write transactions waiting at one moment
// share one SQLite transaction and so one fsync:
//
//   - Callers take turns on the writer connection (turn, a one-slot semaphore whose blocked
//     senders queue in order). The first caller opens a batch (BEGIN IMMEDIATE); each caller runs
//     its unit (a transaction, or one statement) inside its own SAVEPOINT on the batch's
//     transaction, so later units see earlier ones' writes exactly as if they had committed one
//     after the other: a conditional UPDATE or an ON CONFLICT upsert decides against every
//     earlier unit of the batch, and single use or rotation still has exactly one winner.
//   - A unit that fails is rolled back to its savepoint; the rest of the batch is unaffected.
//   - When a unit is released and nobody else waits for a turn (or the batch is full), its caller
//     commits at once. Otherwise the batch stays open for the callers waiting at that moment
//     (they queue in order, newcomers behind them), and the last of them to have its turn
//     commits, so the batch holds exactly those callers' units. No goroutine is started for it;
//     only a caller that gives up waiting starts a flusher, which commits the batch when it gets
//     a turn (the batch may have been counting on that caller).
//   - No caller is answered before the COMMIT of its batch returned (the WAL is fsynced): a
//     caller whose unit was released waits for that commit and gets its error if it fails. If
//     SQLite rolled the whole transaction back (an I/O error, a full disk), every unit of the
//     batch fails: none was acknowledged.
//
// Statements run under a context that is never cancelled: interrupting a statement inside an
// explicit transaction may make SQLite roll back the whole transaction, which would fail the
// other callers' units. A caller's context is honoured everywhere else: while it waits for its
// turn or for the BEGIN of a new batch (it gives up and nothing of it ran), before each of its statements (its unit fails and is
// rolled back), and while it waits for the commit (it gets the context's error; its write may
// or may not be committed, exactly as when a connection is lost during COMMIT).
type groupDB struct {
	db      *sql.DB
	turn    chan struct{} // holding a turn = exclusive use of the writer connection
	waiting atomic.Int64  // callers blocked in acquire
	batch   *batch        // the open transaction; read and written only while holding a turn

	// The writer connection, taken from db once and kept; the transactions are plain BEGIN
	// IMMEDIATE, SAVEPOINT, RELEASE and COMMIT statements on it. database/sql's Tx would start a
	// goroutine per transaction (and per query inside one) to watch its context, each a thread
	// wake-up, for nothing: the statements of a batch run under a context that never ends.
	// conn, closed and stmts are used only while holding a turn.
	conn   *sql.Conn
	closed bool

	commits  atomic.Int64 // committed batches, for tests and diagnostics
	maxUnits atomic.Int64 // the most units one committed batch held

	// Prepared statements on conn, kept across transactions (SQLite compiles a statement on
	// every prepare).
	stmts map[string]*sql.Stmt
}

const maxCachedWriterStmts = 256

// maxBatch bounds the units of one transaction, so a steady stream of writers cannot postpone a
// commit (and the answers waiting for it) indefinitely.
const maxBatch = 64

const (
	savepoint = "posgate_unit"
	beginSQL  = "BEGIN IMMEDIATE"
)

type batch struct {
	units int // released units: work that the commit makes durable
	// remaining counts the turns still to come before the batch commits: the callers that were
	// waiting when it was left open. Zero while the batch is not left open.
	remaining int64
	done      chan struct{}
	err       error // the commit's outcome, readable after done is closed
}

// errWriterClosed is what a write gets after Close; classify reports it as unavailability.
var errWriterClosed = fmt.Errorf("sqlite: the store is closed: %w", sql.ErrConnDone)

func newGroupDB(db *sql.DB) *groupDB {
	return &groupDB{db: db, turn: make(chan struct{}, 1), stmts: map[string]*sql.Stmt{}}
}

func (g *groupDB) acquire(ctx context.Context) error {
	select {
	case g.turn <- struct{}{}:
		return nil
	default:
	}
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case g.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		// A batch left open may be counting on this caller's turn to commit.
		go g.flush()
		return ctx.Err()
	}
}

func (g *groupDB) release() { <-g.turn }

// pass ends the turn of a holder that ran no unit (Ping): it counts as one of the turns a batch
// left open waits for.
func (g *groupDB) pass() {
	if b := g.batch; b != nil && b.remaining > 0 {
		if b.remaining--; b.remaining == 0 {
			g.commit(b)
		}
	}
	g.release()
}

// begin takes a turn and opens a unit on the current batch (opening the batch if none is open).
func (g *groupDB) begin(ctx context.Context) (*unit, error) {
	if err := g.acquire(ctx); err != nil {
		return nil, err
	}
	if g.batch == nil {
		if err := g.open(ctx); err != nil {
			g.release()
			return nil, err
		}
	}
	b := g.batch
	if _, err := g.exec("SAVEPOINT " + savepoint); err != nil {
		g.fail(b, err)
		g.release()
		return nil, err
	}
	return &unit{g: g, b: b}, nil
}

// connect makes sure the turn holder has the writer connection.
func (g *groupDB) connect(ctx context.Context) error {
	if g.closed {
		return errWriterClosed
	}
	if g.conn != nil {
		return nil
	}
	c, err := g.db.Conn(ctx)
	if err != nil {
		return err
	}
	if _, err := c.ExecContext(ctx, noBusyWait); err != nil {
		_ = c.Close()
		return err
	}
	g.conn = c
	return nil
}

// disconnect drops a connection database/sql reports as gone; the next batch takes a new one.
func (g *groupDB) disconnect(err error) {
	if g.conn == nil || !errors.Is(err, sql.ErrConnDone) && !errors.Is(err, driver.ErrBadConn) {
		return
	}
	for q, st := range g.stmts {
		_ = st.Close()
		delete(g.stmts, q)
	}
	_ = g.conn.Close()
	g.conn = nil
}

// open begins the batch's transaction. BEGIN IMMEDIATE waits while another process holds the
// write lock; the caller waits no longer than its context allows, and the wait is the only part
// of a batch that runs under the caller's context: the transaction outlives it (it will hold
// other callers' units).
//
// The writer connection's busy timeout is zero, so a BEGIN first runs without a context and
// fails at once when it would have to wait. The driver watches a statement's context in a
// goroutine of its own (a thread wake-up at its start and at its end), which the usual case —
// no other process writing — does not need. Only when that first BEGIN finds the lock taken does
// a second one wait, under the caller's context, with the busy timeout of the connection string.
// A BEGIN that failed may have opened the transaction after all (interrupted as it returned): it
// is rolled back.
func (g *groupDB) open(ctx context.Context) error {
	if err := g.connect(ctx); err != nil {
		return err
	}
	_, err := g.exec(beginSQL)
	if isBusy(err) {
		err = g.withBusyWait(func() error {
			_, err := g.conn.ExecContext(ctx, beginSQL)
			return err
		})
	}
	if err != nil {
		g.rollback()
		g.disconnect(err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	g.batch = &batch{done: make(chan struct{})}
	return nil
}

// Busy timeouts of the writer connection: none while it runs the batches (see open), the
// connection string's while it waits for a lock on purpose.
const (
	noBusyWait = "PRAGMA busy_timeout = 0"
	busyWait   = "PRAGMA busy_timeout = " + busyTimeoutMS
)

// withBusyWait runs fn with the connection's busy timeout restored, so fn's statements wait for a
// lock another process holds (as long as their contexts allow).
func (g *groupDB) withBusyWait(fn func() error) error {
	if _, err := g.exec(busyWait); err != nil {
		return err
	}
	err := fn()
	if _, rerr := g.exec(noBusyWait); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// rollback ends the connection's transaction, if it has one.
func (g *groupDB) rollback() {
	if g.conn != nil {
		_, _ = g.exec("ROLLBACK") // "no transaction is active" when there is none
	}
}

// stmt returns q prepared on the writer connection, or nil (then q runs unprepared and reports
// why it could not be prepared).
func (g *groupDB) stmt(q string) *sql.Stmt {
	if st := g.stmts[q]; st != nil {
		return st
	}
	if len(g.stmts) >= maxCachedWriterStmts {
		return nil
	}
	st, err := g.conn.PrepareContext(context.Background(), q)
	if err != nil {
		return nil
	}
	g.stmts[q] = st
	return st
}

func (g *groupDB) exec(q string, args ...any) (int64, error) {
	if st := g.stmt(q); st != nil {
		return execResult(st.ExecContext(context.Background(), args...))
	}
	return execResult(g.conn.ExecContext(context.Background(), q, args...))
}

func (g *groupDB) query(q string, args ...any) (*sql.Rows, error) {
	if st := g.stmt(q); st != nil {
		return st.QueryContext(context.Background(), args...)
	}
	return g.conn.QueryContext(context.Background(), q, args...)
}

func (g *groupDB) queryRow(q string, args ...any) *sql.Row {
	if st := g.stmt(q); st != nil {
		return st.QueryRowContext(context.Background(), args...)
	}
	return g.conn.QueryRowContext(context.Background(), q, args...)
}

// fail ends b after SQLite lost its transaction: every unit of it gets err.
func (g *groupDB) fail(b *batch, err error) {
	g.rollback()
	g.disconnect(err)
	g.batch = nil
	b.err = fmt.Errorf("sqlite: the group transaction was rolled back: %w", err)
	close(b.done)
}

// settle decides, holding the turn, what happens to b after one of its units ended: commit now,
// or leave it open for the callers waiting for a turn, the last of whom commits it.
func (g *groupDB) settle(b *batch) {
	switch {
	case g.batch != b:
		// already failed
	case b.remaining > 0:
		// This caller was one of those the batch was left open for.
		if b.remaining--; b.remaining == 0 || b.units >= maxBatch {
			g.commit(b)
		}
	case b.units == 0:
		g.rollback() // nothing to keep: the only units were rolled back
		g.batch = nil
		close(b.done)
	case b.units >= maxBatch:
		g.commit(b)
	default:
		if n := g.waiting.Load(); n > 0 {
			b.remaining = n
		} else {
			g.commit(b)
		}
	}
}

func (g *groupDB) commit(b *batch) {
	g.batch = nil
	_, b.err = g.exec("COMMIT")
	if b.err != nil {
		g.rollback() // a COMMIT that failed may leave the transaction open
		g.disconnect(b.err)
	} else {
		g.commits.Add(1)
		if n := int64(b.units); n > g.maxUnits.Load() {
			g.maxUnits.Store(n) // only the turn holder writes it
		}
	}
	close(b.done)
}

// flush commits the batch left open, if any, once it gets a turn (see acquire).
func (g *groupDB) flush() {
	g.turn <- struct{}{}
	if b := g.batch; b != nil && b.units > 0 {
		g.commit(b)
	}
	g.release()
}

// handOver lets the next turn holder run at once after the caller committed b and released the
// turn. Releasing readies the next holder only to run after the releaser (on the same P); a caller
// that waits for a later commit parks right away, but the committer returns to its request (the
// response, the next request's parsing) and the writer would sit idle meanwhile, with its next
// units ready and their callers not running. The writer's turns are the write path's one
// serial resource, so the committer yields to them: it resumes after the next holder started.
func (g *groupDB) handOver(b *batch) {
	select {
	case <-b.done:
		if g.waiting.Load() > 0 {
			runtime.Gosched()
		}
	default:
	}
}

// wait returns b's commit outcome, or ctx's error if it ends first.
func wait(ctx context.Context, b *batch) error {
	select {
	case <-b.done:
		return b.err
	default:
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return fmt.Errorf("sqlite: stopped waiting for the commit, the write may or may not be durable: %w", ctx.Err())
	}
}

// close commits any open batch, gives the writer connection back and keeps later callers from
// opening a batch.
func (g *groupDB) close() {
	g.turn <- struct{}{}
	if b := g.batch; b != nil {
		if b.units > 0 {
			g.commit(b)
		} else {
			g.batch = nil
			g.rollback()
			close(b.done)
		}
	}
	g.closed = true
	for q, st := range g.stmts {
		_ = st.Close()
		delete(g.stmts, q)
	}
	if g.conn != nil {
		_ = g.conn.Close()
		g.conn = nil
	}
	g.release()
}

// unit is one caller's part of a batch, from begin to commit or rollback; it holds the turn
// until it ends.
type unit struct {
	g     *groupDB
	b     *batch
	ended bool
}

func (u *unit) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	if err := u.usable(ctx); err != nil {
		return 0, err
	}
	return u.g.exec(q, args...)
}

func (u *unit) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	if err := u.usable(ctx); err != nil {
		return nil, err
	}
	rows, err := u.g.query(q, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{rows}, nil
}

func (u *unit) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	if err := u.usable(ctx); err != nil {
		return errRow{err}
	}
	return sqlRow{u.g.queryRow(q, args...)}
}

func (u *unit) usable(ctx context.Context) error {
	if u.ended {
		return sql.ErrTxDone
	}
	return ctx.Err()
}

// Commit releases the unit's savepoint into the batch and returns once the batch is durable.
func (u *unit) Commit(ctx context.Context) error {
	if u.ended {
		return sql.ErrTxDone
	}
	u.ended = true
	g, b := u.g, u.b
	if _, err := g.exec("RELEASE " + savepoint); err != nil {
		if _, rerr := g.exec("ROLLBACK TO " + savepoint); rerr != nil {
			g.fail(b, err)
		} else if _, rerr := g.exec("RELEASE " + savepoint); rerr != nil {
			g.fail(b, err)
		} else {
			g.settle(b)
		}
		g.release()
		return err
	}
	b.units++
	g.settle(b)
	g.release()
	g.handOver(b)
	return wait(ctx, b)
}

// Rollback undoes the unit's work (back to its savepoint); the other units of the batch keep
// theirs. Rolling back an ended unit does nothing.
func (u *unit) Rollback(context.Context) error {
	if u.ended {
		return nil
	}
	u.ended = true
	g, b := u.g, u.b
	var err error
	if _, err = g.exec("ROLLBACK TO " + savepoint); err == nil {
		_, err = g.exec("RELEASE " + savepoint)
	}
	if err != nil {
		g.fail(b, err)
	} else {
		g.settle(b)
	}
	g.release()
	return err
}

// The statements the store runs outside a transaction are units of one statement each.

func (g *groupDB) Begin(ctx context.Context) (sqlstore.Tx, error) { return g.begin(ctx) }

// Exec runs one statement as a unit without a savepoint of its own: SQLite undoes a failed
// statement and nothing else, so the SAVEPOINT and RELEASE around it would only cost the writer
// two more statements per unit. The errors that may make SQLite roll back the whole transaction
// (a full disk, an I/O error) are told apart by asking the connection whether its transaction is
// still open: if not, the batch failed as a whole (see fail).
func (g *groupDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	if err := g.acquire(ctx); err != nil {
		return 0, err
	}
	if g.batch == nil {
		if err := g.open(ctx); err != nil {
			g.release()
			return 0, err
		}
	}
	b := g.batch
	if err := ctx.Err(); err != nil {
		g.settle(b)
		g.release()
		return 0, err
	}
	n, err := g.exec(q, args...)
	if err != nil {
		if g.inTransaction() {
			g.settle(b)
		} else {
			g.fail(b, err)
		}
		g.release()
		return 0, err
	}
	b.units++
	g.settle(b)
	g.release()
	g.handOver(b)
	return n, wait(ctx, b)
}

// inTransaction reports whether the writer connection still has the batch's transaction open,
// after a statement of it failed. BEGIN fails inside a transaction; when it succeeds the batch's
// transaction was gone, and the one BEGIN opened is rolled back.
func (g *groupDB) inTransaction() bool {
	_, err := g.exec("BEGIN")
	if err == nil {
		g.rollback()
		return false
	}
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_ERROR && strings.Contains(se.Error(), "within a transaction")
}

func (g *groupDB) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	return groupRow{g: g, ctx: ctx, q: q, args: args}
}

// Query runs q as a unit whose rows are read before it ends: the unit commits when Next reports
// the end (a commit failure is then what Err returns) or when Close is called.
func (g *groupDB) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	u, err := g.begin(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := g.query(q, args...)
	if err != nil {
		_ = u.Rollback(ctx)
		return nil, err
	}
	return &groupRows{u: u, ctx: ctx, rows: rows}, nil
}

// Ping checks the writer connection answers; it waits for a turn like a write.
func (g *groupDB) Ping(ctx context.Context) error {
	if err := g.acquire(ctx); err != nil {
		return err
	}
	defer g.pass()
	if err := g.connect(ctx); err != nil {
		return err
	}
	err := g.conn.PingContext(ctx)
	g.disconnect(err)
	return err
}

// groupRow runs its statement as a unit when scanned.
type groupRow struct {
	g    *groupDB
	ctx  context.Context
	q    string
	args []any
}

func (r groupRow) Scan(dest ...any) error {
	u, err := r.g.begin(r.ctx)
	if err != nil {
		return err
	}
	err = r.g.queryRow(r.q, r.args...).Scan(dest...)
	noRows := errors.Is(err, sql.ErrNoRows)
	if err != nil && !noRows {
		_ = u.Rollback(r.ctx)
		return err
	}
	if err := u.Commit(r.ctx); err != nil {
		return err
	}
	if noRows {
		return sqlstore.ErrNoRows
	}
	return nil
}

type groupRows struct {
	u    *unit
	ctx  context.Context
	rows *sql.Rows
	err  error
	done bool
}

func (r *groupRows) Next() bool {
	if r.done {
		return false
	}
	if r.rows.Next() {
		return true
	}
	r.finish()
	return false
}

func (r *groupRows) Scan(dest ...any) error { return r.rows.Scan(dest...) }

func (r *groupRows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.rows.Err()
}

func (r *groupRows) Close() { r.finish() }

func (r *groupRows) finish() {
	if r.done {
		return
	}
	r.done = true
	err := r.rows.Err()
	_ = r.rows.Close()
	if err != nil {
		r.err = err
		_ = r.u.Rollback(r.ctx)
		return
	}
	r.err = r.u.Commit(r.ctx)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// outside runs fn on the writer connection outside any transaction: it takes a turn, commits the
// batch left open for the callers waiting (its units are released and only wait for the
// commit), and holds the turn while fn runs. Statements that SQLite refuses inside a transaction
// (a TRUNCATE checkpoint) go through here.
func (g *groupDB) outside(ctx context.Context, fn func(ctx context.Context, conn *sql.Conn) error) error {
	if err := g.acquire(ctx); err != nil {
		return err
	}
	defer g.release()
	if b := g.batch; b != nil {
		g.commit(b)
		if b.err != nil {
			return b.err
		}
	}
	if err := g.connect(ctx); err != nil {
		return err
	}
	err := g.withBusyWait(func() error { return fn(ctx, g.conn) })
	g.disconnect(err)
	return err
}
