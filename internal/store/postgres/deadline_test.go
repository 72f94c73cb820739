package postgres

import (
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/store/sqlstore"
	"github.com/posgate/posgate/internal/testutil/faultproxy"
)

// TestHungServerDeadline puts a proxy that can freeze (connections accepted, nothing forwarded —
// a SIGSTOPped server or a partition) between the store and PostgreSQL: every kind of call —
// read, write, transaction, ping — fails with ErrUnavailable once the store's timeout has passed,
// instead of waiting for the stall to end, and the store recovers by itself after the thaw.
func TestHungServerDeadline(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	u, _ := url.Parse(dsn)
	p := faultproxy.Start(t, u.Host)
	u.Host = p.Addr
	const timeout = 500 * time.Millisecond
	s, err := Open(t.Context(), u.String(), sqlstore.WithTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkDeadline(t, s, p.Freeze, p.Thaw, timeout)
}

// checkDeadline freezes the database, checks each call gives up with ErrUnavailable within the
// timeout (plus generous slack for a loaded machine: the stall it replaces is unbounded), then
// thaws it and waits for the store to answer again.
func checkDeadline(t *testing.T, s store.Store, freeze, thaw func(), timeout time.Duration) {
	t.Helper()
	ctx := t.Context()
	now := time.Now()
	if err := s.UseOnce(ctx, "before", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	freeze()
	calls := map[string]func() error{
		"Ping":    func() error { return s.Ping(ctx) },
		"UseOnce": func() error { return s.UseOnce(ctx, "during", now, now.Add(time.Hour)) },
		"IsRevoked": func() error {
			_, err := s.IsRevoked(ctx, "jti", "x")
			return err
		},
		"RotateRefreshToken": func() error { // a transaction
			return s.RotateRefreshToken(ctx, []byte("x"), now, &store.RefreshToken{Hash: []byte("y"), FamilyID: "f", CreatedAt: now, IdleExpiresAt: now}, nil, false)
		},
	}
	const slack = 10 * time.Second
	for name, call := range calls {
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- call() }()
		select {
		case err := <-done:
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s on a hung database: %v, want ErrUnavailable", name, err)
			}
			t.Logf("%s gave up after %v", name, time.Since(start).Round(time.Millisecond))
		case <-time.After(timeout + slack):
			thaw() // let the blocked call and the store's Close finish
			t.Fatalf("%s still blocked %v after the database hung (timeout %v)", name, timeout+slack, timeout)
		}
	}
	thaw()
	var err error
	for range 200 { // dead connections are replaced on demand
		if err = s.UseOnce(ctx, "before", now, now.Add(time.Hour)); errors.Is(err, store.ErrAlreadyUsed) {
			return
		}
		time.Sleep(25 * time.Millisecond) // polling for reconnection, not waiting for an expiry
	}
	t.Fatalf("store did not recover after the thaw: %v", err)
}
