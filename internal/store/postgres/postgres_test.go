package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(t.Context(), pgtest.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() }) // before pgtest drops the database
		return s
	})
}

// TestConcurrentOpens: replicas starting together on one fresh database all succeed, the
// schema is migrated once, and they share state.
func TestConcurrentOpens(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(t.Context(), dsn)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	now := time.Now()
	if err := stores[0].UseOnce(t.Context(), "k", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, s := range stores[1:] {
		if err := s.UseOnce(t.Context(), "k", now, now.Add(time.Hour)); !errors.Is(err, store.ErrAlreadyUsed) {
			t.Fatalf("another replica: %v, want ErrAlreadyUsed", err)
		}
	}
	// Each migration was applied once: no version recorded twice.
	var dup int
	if err := stores[0].pool.QueryRow(t.Context(), `SELECT COUNT(*) FROM (SELECT version_id FROM goose_db_version
		WHERE is_applied GROUP BY version_id HAVING COUNT(*) > 1) d`).Scan(&dup); err != nil {
		t.Fatal(err)
	}
	if dup != 0 {
		t.Fatalf("%d migrations recorded more than once", dup)
	}
}

func TestRefusesSimpleProtocol(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	u, _ := url.Parse(dsn)
	q := u.Query()
	q.Set("default_query_exec_mode", "simple_protocol")
	u.RawQuery = q.Encode()
	if s, err := Open(t.Context(), u.String()); err == nil {
		s.Close()
		t.Fatal("Open accepted the simple query protocol")
	}
}

// TestUnavailableDatabaseDropped: once the database is gone (connections terminated, the
// database dropped) every call answers ErrUnavailable rather than some other error.
func TestUnavailableDatabaseDropped(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	now := time.Now()
	if err := s.UseOnce(ctx, "before", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dsn)
	admin, err := pgx.Connect(ctx, pgtest.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{u.Path[1:]}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	checkUnavailable(t, s)
}

// TestUnavailableServerUnreachable puts a TCP relay between the store and PostgreSQL and cuts
// it: calls answer ErrUnavailable (connection reset, then connection refused), and when the
// relay comes back on the same address the store recovers by itself.
func TestUnavailableServerUnreachable(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	u, _ := url.Parse(dsn)
	r := newRelay(t, u.Host)
	u.Host = r.addr
	s, err := Open(t.Context(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	now := time.Now()
	if err := s.UseOnce(ctx, "before", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	r.stop()
	checkUnavailable(t, s)
	// A deadline while the server is unreachable is unavailability too.
	short, cancel := context.WithTimeout(ctx, time.Millisecond)
	defer cancel()
	<-short.Done()
	if _, err := s.IsRevoked(short, "jti", "x"); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("IsRevoked past its deadline: %v, want ErrUnavailable", err)
	}

	r.start(t)
	var lastErr error
	for range 100 { // the pool reconnects on demand; a few calls may still see dead connections
		if lastErr = s.UseOnce(ctx, "before", now, now.Add(time.Hour)); errors.Is(lastErr, store.ErrAlreadyUsed) {
			break
		}
		if !errors.Is(lastErr, store.ErrUnavailable) {
			t.Fatalf("while recovering: %v, want ErrUnavailable", lastErr)
		}
		time.Sleep(20 * time.Millisecond) // polling for reconnection, not waiting for an expiry
	}
	if !errors.Is(lastErr, store.ErrAlreadyUsed) {
		t.Fatalf("store did not recover: %v", lastErr)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after recovery: %v", err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	_, err = Open(t.Context(), "postgres://postgres@"+addr+"/posgate?sslmode=disable")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open against a closed port: %v, want ErrUnavailable", err)
	}
}

func checkUnavailable(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	now := time.Now()
	calls := map[string]func() error{
		"Ping":    func() error { return s.Ping(ctx) },
		"UseOnce": func() error { return s.UseOnce(ctx, "after", now, now.Add(time.Hour)) },
		"IsRevoked": func() error {
			_, err := s.IsRevoked(ctx, "jti", "x")
			return err
		},
		"GetClientByIDHash": func() error {
			_, err := s.GetClientByIDHash(ctx, []byte("x"))
			return err
		},
		"RotateRefreshToken": func() error {
			return s.RotateRefreshToken(ctx, []byte("x"), now, &store.RefreshToken{Hash: []byte("y"), CreatedAt: now, IdleExpiresAt: now}, nil, false)
		},
		"IncrCounter": func() error {
			_, err := s.IncrCounter(ctx, "c", now, now.Add(time.Minute))
			return err
		},
	}
	for name, call := range calls {
		for i := range 3 { // the first call may meet a pooled connection that just died
			if err := call(); !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s (call %d): %v, want ErrUnavailable", name, i, err)
			}
		}
	}
}

// relay forwards TCP connections from a loopback address to target and can be cut and restored.
type relay struct {
	target, addr string
	mu           sync.Mutex
	l            net.Listener
	conns        map[net.Conn]bool
}

func newRelay(t *testing.T, target string) *relay {
	r := &relay{target: target, conns: map[net.Conn]bool{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	r.serve(l)
	t.Cleanup(r.stop)
	return r
}

func (r *relay) start(t *testing.T) {
	l, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	r.serve(l)
}

func (r *relay) serve(l net.Listener) {
	r.mu.Lock()
	r.l = l
	r.mu.Unlock()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", r.target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns[c], r.conns[up] = true, true
			r.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

// stop closes the listener (new connections are refused) and every relayed connection.
func (r *relay) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.l != nil {
		r.l.Close()
		r.l = nil
	}
	for c := range r.conns {
		c.Close()
		delete(r.conns, c)
	}
}

func BenchmarkHotPaths(b *testing.B) {
	storetest.Bench(b, func(b *testing.B) store.Store {
		s, err := Open(b.Context(), pgtest.NewDatabase(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}
