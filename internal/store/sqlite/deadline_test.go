package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlstore"
	"github.com/posgate/posgate/internal/testutil/goroutines"
)

// TestWriteLockDeadline: another process holding the write lock is what a hung SQLite store
// looks like (busy_timeout would make writers wait 10 s each). With the store's timeout a write
// and a transaction give up with ErrUnavailable after it instead, reads go on (WAL), and writes
// succeed again once the lock is gone.
func TestWriteLockDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s, _, path := openPath(t, sqlstore.WithTimeout(timeout))
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	ctx := t.Context()
	now := time.Now()
	if err := s.UseOnce(ctx, "before", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
				t.Error(err)
			}
		}
	}
	defer unlock()

	calls := map[string]func() error{
		"UseOnce": func() error { return s.UseOnce(ctx, "during", now, now.Add(time.Hour)) },
		"RotateRefreshToken": func() error { // a transaction
			return s.RotateRefreshToken(ctx, []byte("x"), now, &store.RefreshToken{Hash: []byte("y"), FamilyID: "f", CreatedAt: now, IdleExpiresAt: now}, nil, false)
		},
	}
	const slack = 5 * time.Second // busy_timeout, the stall this replaces, is 10 s
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s while another process holds the write lock: %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > timeout+slack {
			t.Errorf("%s gave up after %v (timeout %v)", name, d, timeout)
		}
	}
	if _, err := s.IsRevoked(ctx, "jti", "x"); err != nil {
		t.Errorf("read while the write lock is held: %v", err)
	}
	unlock()
	if err := s.UseOnce(ctx, "before", now, now.Add(time.Hour)); !errors.Is(err, store.ErrAlreadyUsed) {
		t.Fatalf("after the lock is released: %v, want ErrAlreadyUsed", err)
	}
}

// TestWriterWaitsForLock: a write that finds another process holding the write lock waits for it
// (the busy timeout, as long as the caller's context allows) and succeeds once the lock is
// released, although the writer connection runs its batches with no busy timeout.
func TestWriterWaitsForLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posgate.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := t.Context()
	now := time.Now()
	if err := s.UseOnce(ctx, "before", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.UseOnce(ctx, "during", now, now.Add(time.Hour)) }()
	time.Sleep(200 * time.Millisecond) // lets the write reach its BEGIN; not a deadline
	select {
	case err := <-errc:
		t.Fatalf("write returned while another process held the lock: %v", err)
	default:
	}
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write while another process held the lock for a moment: %v", err)
	}
	if err := s.UseOnce(ctx, "during", now, now.Add(time.Hour)); !errors.Is(err, store.ErrAlreadyUsed) {
		t.Fatalf("the waiting write is not stored: %v", err)
	}
	var timeout string
	if err := s.Store.Writer().QueryRow(ctx, "PRAGMA busy_timeout").Scan(&timeout); err != nil || timeout != "0" {
		t.Fatalf("writer busy timeout after the wait: %q, %v; want 0", timeout, err)
	}
}

// TestReadsStartNoGoroutines: a read through the reader pool starts no goroutine. database/sql
// starts one per query to watch its context and the driver one per statement, each a thread
// wake-up at the read's start and end; the store's reads run under a context that never ends and
// are bounded by the reader connections' busy timeout instead (TestReadBusyTimeout).
func TestReadsStartNoGoroutines(t *testing.T) {
	s, _ := openFile(t)
	ctx := t.Context()
	msg := &store.OutboxMessage{Queue: "q", ID: "m", BodyHash: []byte("h"), Payload: []byte("{}"),
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if _, _, err := s.EnqueueOutbox(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOutbox(ctx, "q", "m"); err != nil { // prepares the statement
		t.Fatal(err)
	}
	goroutines.StartNone(t, "pairs of reads", 50, func(int) {
		if _, err := s.GetOutbox(ctx, "q", "m"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.IsRevoked(ctx, "jti", "x"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestReadBusyTimeout: the reader connections wait for a lock another process holds no longer
// than the store's timeout (reads run under a context that never ends, so the busy timeout is
// what bounds that wait).
func TestReadBusyTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posgate.db")
	s, err := Open(t.Context(), path, sqlstore.WithTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ms int
	if err := s.Store.Reader().QueryRow(t.Context(), "PRAGMA busy_timeout").Scan(&ms); err != nil || ms != 300 {
		t.Fatalf("reader busy timeout %d, %v; want 300 (the store's timeout)", ms, err)
	}
}

// TestReadStopsAtDeadline: a result read row by row ends with ErrUnavailable once the store's
// timeout has passed, and a read whose context has ended does not start.
func TestReadStopsAtDeadline(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s, _, _ := openPath(t, sqlstore.WithTimeout(timeout))
	start := time.Now()
	rows, err := s.Store.Reader().Query(t.Context(), `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	err = rows.Err()
	rows.Close()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an endless result after %d rows: %v, want the deadline", n, err)
	}
	if d := time.Since(start); d > timeout+5*time.Second {
		t.Fatalf("an endless result ended after %v (timeout %v)", d, timeout)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.IsRevoked(ctx, "jti", "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a read with an ended context: %v, want ErrUnavailable", err)
	}
}
