package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlstore"
	"github.com/posgate/posgate/internal/testutil/goroutines"
)

func openFile(t *testing.T) (*Store, *groupDB) {
	s, g, _ := openPath(t)
	return s, g
}

func openPath(t *testing.T, opts ...sqlstore.Option) (*Store, *groupDB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "posgate.db")
	s, err := Open(t.Context(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	g := s.group
	return s, g, path
}

// inOneBatch holds the writer's turn, starts n callers of fn, waits until all of them wait for a
// turn, and lets them go: they then share one transaction (the first n-1 see others waiting and
// leave the batch open; the last sees none and commits). It returns their errors by index.
func inOneBatch(t *testing.T, g *groupDB, n int, fn func(i int) error) []error {
	t.Helper()
	g.turn <- struct{}{}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = fn(i) }()
	}
	for g.waiting.Load() < int64(n) {
		time.Sleep(time.Millisecond) // polling for goroutines to block, not waiting for a deadline
	}
	before := g.commits.Load()
	g.release()
	wg.Wait()
	if got := g.commits.Load() - before; got != 1 {
		t.Fatalf("%d callers made %d commits, want 1 (one group transaction)", n, got)
	}
	return errs
}

// TestGroupCommitSerialSemantics: callers racing for one single-use key or one refresh token in
// the same group transaction still have exactly one winner, because each unit sees the writes of
// the units before it.
func TestGroupCommitSerialSemantics(t *testing.T) {
	s, g := openFile(t)
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)

	errs := inOneBatch(t, g, 16, func(int) error { return s.UseOnce(ctx, "key", now, now.Add(time.Hour)) })
	if w := winners(t, errs, store.ErrAlreadyUsed); w != 1 {
		t.Fatalf("UseOnce: %d winners in one batch, want 1", w)
	}

	fam := &store.RefreshFamily{ID: "rf_1", ClientID: "cl_1", UserID: "us_1", Audience: "a", Scope: "s",
		CreatedAt: now, AbsoluteExpiresAt: now.Add(time.Hour)}
	if err := s.CreateRefreshFamily(ctx, fam, &store.RefreshToken{Hash: []byte("h0"), CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	errs = inOneBatch(t, g, 16, func(i int) error {
		next := &store.RefreshToken{Hash: fmt.Appendf(nil, "h1-%d", i), CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)}
		return s.RotateRefreshToken(ctx, []byte("h0"), now, next, nil, false)
	})
	win := -1
	for i, err := range errs {
		if err == nil {
			win = i
		}
	}
	if w := winners(t, errs, store.ErrAlreadyUsed); w != 1 {
		t.Fatalf("RotateRefreshToken: %d winners in one batch, want 1", w)
	}
	old, _, err := s.GetRefreshToken(ctx, []byte("h0"))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("h1-%d", win); string(old.SuccessorHash) != want {
		t.Fatalf("successor %q, want the winner's %q", old.SuccessorHash, want)
	}
	for i := range errs {
		_, _, err := s.GetRefreshToken(ctx, fmt.Appendf(nil, "h1-%d", i))
		if (i == win) != (err == nil) {
			t.Fatalf("successor of caller %d (winner %d): %v", i, win, err)
		}
	}
}

func winners(t *testing.T, errs []error, loser error) int {
	t.Helper()
	n := 0
	for _, err := range errs {
		switch {
		case err == nil:
			n++
		case !errors.Is(err, loser):
			t.Fatalf("unexpected error: %v", err)
		}
	}
	return n
}

// TestGroupCommitFailureIsolated: a unit that fails in a group transaction (a duplicate
// username, a unique violation inside its transaction) fails its caller only; the other units
// of the same transaction are committed, and the failed one left nothing behind.
func TestGroupCommitFailureIsolated(t *testing.T) {
	s, g, path := openPath(t)
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	user := func(id, name string) *store.User {
		return &store.User{ID: id, Username: name, PasswordHash: "x", CreatedAt: now, UpdatedAt: now}
	}
	if err := s.CreateUser(ctx, user("us_taken", "taken")); err != nil {
		t.Fatal(err)
	}
	const n = 8
	errs := inOneBatch(t, g, n, func(i int) error {
		if i == 3 {
			return s.CreateUser(ctx, user("us_dup", "taken"))
		}
		if i == 5 { // a transaction whose first statement succeeds and whose second fails
			return s.CreateRefreshFamily(ctx, &store.RefreshFamily{ID: "rf_dup", ClientID: "c", UserID: "u",
				Audience: "a", Scope: "s", CreatedAt: now, AbsoluteExpiresAt: now.Add(time.Hour)},
				&store.RefreshToken{Hash: []byte("tok"), FamilyID: "another family", CreatedAt: now, IdleExpiresAt: now.Add(time.Hour)})
		}
		return s.CreateUser(ctx, user(fmt.Sprintf("us_%d", i), fmt.Sprintf("user%d", i)))
	})
	for i, err := range errs {
		switch i {
		case 3:
			if !errors.Is(err, store.ErrConflict) {
				t.Fatalf("duplicate username: %v, want ErrConflict", err)
			}
		case 5:
			if err == nil {
				t.Fatal("family with a mismatched first token succeeded")
			}
		default:
			if err != nil {
				t.Fatalf("caller %d failed with its batch neighbour: %v", i, err)
			}
		}
	}
	// Reopen: what the callers were told is what is on disk.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for i := range n {
		_, err := s2.GetUser(ctx, fmt.Sprintf("us_%d", i))
		if (i == 3 || i == 5) != errors.Is(err, store.ErrNotFound) {
			t.Fatalf("user %d after reopen: %v", i, err)
		}
	}
	if _, err := s2.GetUser(ctx, "us_dup"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("failed caller's user: %v, want ErrNotFound", err)
	}
	if _, err := s2.GetRefreshFamily(ctx, "rf_dup"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("failed transaction's family: %v, want ErrNotFound (rolled back to its savepoint)", err)
	}
}

// TestGroupCommitCancelledWhileWaiting: a caller whose context ends while it waits for its turn
// gets an error and nothing of its write happens.
func TestGroupCommitCancelledWhileWaiting(t *testing.T) {
	s, g := openFile(t)
	now := time.Now()
	g.turn <- struct{}{}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.UseOnce(ctx, "k", now, now.Add(time.Hour)) }()
	for g.waiting.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	err := <-errc
	g.release()
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v, want ErrUnavailable wrapping context.Canceled", err)
	}
	if err := s.UseOnce(t.Context(), "k", now, now.Add(time.Hour)); err != nil {
		t.Fatalf("the cancelled caller's record exists: %v", err)
	}
}

// TestGroupCommitCancelledBeforeStatement: a context that ends inside a transaction fails that
// transaction at its next statement; its first statement is rolled back with it.
func TestGroupCommitCancelledBeforeStatement(t *testing.T) {
	s, g := openFile(t)
	ctx, cancel := context.WithCancel(t.Context())
	tx, err := g.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO single_use (name, used_at, expires_at) VALUES ('k', 1, 2)`); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := tx.Exec(ctx, `INSERT INTO single_use (name, used_at, expires_at) VALUES ('k2', 1, 2)`); !errors.Is(err, context.Canceled) {
		t.Fatalf("statement after cancel: %v", err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	var n int64
	if err := s.Writer().QueryRow(t.Context(), `SELECT COUNT(*) FROM single_use`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows after rollback: %d, %v", n, err)
	}
}

// TestGroupWriteStartsNoGoroutines: a write through the group writer starts no goroutine when no
// other process holds the lock. database/sql's Tx starts one per transaction and one per query
// inside it, and the driver one per statement run under a context that can end: each is a thread
// wake-up on an idle processor, for nothing, since a batch's statements run under a context that
// never ends.
func TestGroupWriteStartsNoGoroutines(t *testing.T) {
	s, _ := openFile(t)
	ctx := t.Context()
	now := time.Now()
	if err := s.UseOnce(ctx, "warm", now, now.Add(time.Hour)); err != nil { // prepares the statements
		t.Fatal(err)
	}
	goroutines.StartNone(t, "pairs of writes", 50, func(i int) {
		if err := s.UseOnce(ctx, fmt.Sprint("k", i), now, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		var name string
		if err := s.Writer().QueryRow(ctx, `INSERT INTO single_use (name, used_at, expires_at) VALUES (?, 1, 2) RETURNING name`,
			fmt.Sprint("r", i)).Scan(&name); err != nil {
			t.Fatal(err)
		}
	})
}

// TestGroupCommitLastWaiterCommits: a batch left open for the callers waiting at that moment is
// committed by the last of them, in one commit, without a goroutine started for it.
func TestGroupCommitLastWaiterCommits(t *testing.T) {
	s, g := openFile(t)
	now := time.Now()
	const rounds, n = 10, 4
	var started uint64
	for r := range rounds {
		g.turn <- struct{}{}
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.UseOnce(t.Context(), fmt.Sprint(r, "-", i), now, now.Add(time.Hour))
			}()
		}
		for g.waiting.Load() < n {
			time.Sleep(time.Millisecond) // polling for goroutines to block, not waiting for a deadline
		}
		before, gs := g.commits.Load(), goroutines.Created()
		g.release()
		wg.Wait()
		started += goroutines.Created() - gs
		if got := g.commits.Load() - before; got != 1 {
			t.Fatalf("round %d: %d callers made %d commits, want 1", r, n, got)
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, caller %d: %v", r, i, err)
			}
		}
	}
	// A flusher per batch would be one each round; the runtime may start a few of its own.
	if started >= rounds/2 {
		t.Fatalf("%d batches started %d goroutines", rounds, started)
	}
}

// TestGroupCommitWaiterGivesUp: a batch left open for the callers waiting at that moment is
// committed even when one of them gives up waiting (its context ends) instead of taking its turn.
func TestGroupCommitWaiterGivesUp(t *testing.T) {
	s, g := openFile(t)
	now := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a broken version hangs
	defer cancel()
	a, err := g.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, `INSERT INTO single_use (name, used_at, expires_at) VALUES ('a', 1, 2)`); err != nil {
		t.Fatal(err)
	}
	units := make(chan sqlstore.Tx, 1)
	go func() { // c queues first
		u, err := g.Begin(ctx)
		if err != nil {
			t.Error(err)
		}
		units <- u
	}()
	for g.waiting.Load() < 1 {
		time.Sleep(time.Millisecond) // polling for a goroutine to block, not waiting for a deadline
	}
	bctx, bcancel := context.WithCancel(ctx)
	berr := make(chan error, 1)
	go func() { berr <- s.UseOnce(bctx, "b", now, now.Add(time.Hour)) }()
	for g.waiting.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	aerr := make(chan error, 1)
	go func() { aerr <- a.Commit(ctx) }() // released; the batch waits for c and b
	c := <-units
	bcancel()
	if err := <-berr; !errors.Is(err, context.Canceled) {
		t.Fatalf("b gave up: %v", err)
	}
	if err := c.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-aerr; err != nil {
		t.Fatalf("a's commit, with b gone: %v", err)
	}
	var n int
	if err := s.Writer().QueryRow(ctx, `SELECT COUNT(*) FROM single_use WHERE name = 'a'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("a's row after its commit: %d, %v", n, err)
	}
}

// TestGroupCommitterHandsTheTurnOver: a caller that commits a batch while others wait for a turn
// lets the next of them start before it goes back to its own request. On one P, without the
// hand-over, the committer runs on until it blocks somewhere else and the writer sits idle.
//
// The order is the scheduler's: the race detector's scheduling, or a preemption at the wrong
// moment, may reorder one run. So the scenario runs up to five times and must show the
// hand-over once; without it the committer keeps running and no run shows it.
func TestGroupCommitterHandsTheTurnOver(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	want := []string{"next holder began", "committer returned"}
	var order []string
	for range 5 {
		if order = handOverOrder(t); slices.Equal(order, want) {
			return
		}
	}
	t.Fatalf("order %q in five runs, want %q", order, want)
}

// handOverOrder runs one committer with a next holder waiting and returns which of the two
// went on first.
func handOverOrder(t *testing.T) []string {
	_, g := openFile(t)
	ctx := t.Context()
	var mu sync.Mutex
	var order []string
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	waitFor := func(n int64) {
		for g.waiting.Load() < n {
			time.Sleep(time.Millisecond) // polling for a goroutine to block, not waiting for a deadline
		}
	}

	a, err := g.begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := make(chan *unit)
	go func() {
		u, err := g.begin(ctx)
		if err != nil {
			t.Error(err)
		}
		next <- u
	}()
	waitFor(1)
	aDone := make(chan error)
	go func() { aDone <- a.Commit(ctx) }() // leaves the batch open for the waiting caller
	b := <-next
	if b == nil {
		t.FailNow()
	}
	cDone := make(chan error)
	go func() {
		u, err := g.begin(ctx)
		if err != nil {
			cDone <- err
			return
		}
		note("next holder began")
		cDone <- u.Commit(ctx)
	}()
	waitFor(1)
	if err := b.Commit(ctx); err != nil { // the last the batch waited for: commits it
		t.Fatal(err)
	}
	note("committer returned")
	for _, ch := range []chan error{aDone, cDone} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	return order
}

// TestGroupExecHasNoSavepoint: a unit of one statement runs that statement alone on the writer,
// in one batch with others, and its failure still fails only its caller
// (TestGroupCommitFailureIsolated covers that with a unique violation).
func TestGroupExecHasNoSavepoint(t *testing.T) {
	s, g := openFile(t)
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	errs := inOneBatch(t, g, 4, func(i int) error {
		return s.UseOnce(ctx, fmt.Sprintf("key%d", i%3), now, now.Add(time.Hour))
	})
	if w := winners(t, errs, store.ErrAlreadyUsed); w != 3 {
		t.Fatalf("%d of 4 callers recorded their key, want 3 (one key twice)", w)
	}
	g.turn <- struct{}{}
	_, prepared := g.stmts["SAVEPOINT "+savepoint]
	g.release()
	if prepared {
		t.Fatal("single statements ran inside savepoints")
	}
}

// TestGroupInTransaction: after a failed statement the writer tells an open batch transaction
// from one SQLite rolled back (then the batch fails as a whole).
func TestGroupInTransaction(t *testing.T) {
	_, g := openFile(t)
	g.turn <- struct{}{}
	defer g.release()
	if err := g.open(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := g.batch
	if !g.inTransaction() {
		t.Fatal("an open batch reported as rolled back")
	}
	if _, err := g.exec("ROLLBACK"); err != nil { // as SQLite does after a full disk
		t.Fatal(err)
	}
	if g.inTransaction() {
		t.Fatal("a rolled back batch reported as open")
	}
	if g.inTransaction() { // the probe left no transaction behind
		t.Fatal("the probe's own transaction was left open")
	}
	g.batch = nil
	close(b.done)
}
