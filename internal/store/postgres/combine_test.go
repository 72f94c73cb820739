package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/store/sqlstore"
)

// countingDB counts the statements that write single-use records and, once armed, holds the next
// of them until gate is closed (reached is closed when it arrives).
type countingDB struct {
	sqlstore.DB
	n             atomic.Int64
	armed         atomic.Bool
	gate, reached chan struct{}
}

func (c *countingDB) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	c.count(q)
	return c.DB.Query(ctx, q, args...)
}

func (c *countingDB) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	c.count(q)
	return c.DB.QueryRow(ctx, q, args...)
}

func (c *countingDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	c.count(q)
	return c.DB.Exec(ctx, q, args...)
}

func (c *countingDB) count(q string) {
	if !strings.Contains(q, "INSERT INTO single_use") {
		return
	}
	c.n.Add(1)
	if c.armed.CompareAndSwap(true, false) {
		close(c.reached)
		<-c.gate
	}
}

func openCounting(t *testing.T) (*Store, *countingDB) {
	t.Helper()
	c := &countingDB{gate: make(chan struct{}), reached: make(chan struct{})}
	s, err := Open(t.Context(), pgtest.NewDatabase(t), func(cfg *sqlstore.Config) {
		c.DB = cfg.Writer
		cfg.Writer = c
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, c
}

// TestChainsShareStatements: concurrent UseOnceAsClient calls (jackpot's jwt-bearer) go to the
// server together, several in one statement and one commit, and each is decided as alone.
func TestChainsShareStatements(t *testing.T) {
	s, c := openCounting(t)
	base := time.UnixMilli(1_700_000_000_000)
	cl := &store.Client{ID: "cl_1", Name: "c", ClientIDHash: []byte("h1"), GrantTypes: []string{"urn:ietf:params:oauth:grant-type:jwt-bearer"},
		APIKey: true, CreatedAt: base, UpdatedAt: base}
	if err := s.CreateClient(t.Context(), cl); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetClient(t.Context(), cl.ID)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				keys := []string{fmt.Sprintf("nk:%d:%d", w, i)}
				if i%2 == 1 {
					keys = []string{fmt.Sprintf("jti:%d:%d", w, i), keys[0]}
				}
				n, err := s.UseOnceAsClient(t.Context(), cl.ID, got.Version, keys, base, base.Add(time.Minute))
				if err == nil && n != len(keys) {
					err = fmt.Errorf("%d of %d keys recorded", n, len(keys))
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := c.n.Load(); n >= workers*each {
		t.Fatalf("%d statements for %d concurrent calls: none shared", n, workers*each)
	}
}

// TestCombinedChainsDecideAsOneByOne: requests that reach the server in one statement are decided
// as if sent one after the other: a stale client records nothing, a chain stops at its first used
// key and keeps the ones before it, chains of different lengths mix, and of two requests naming
// the same key exactly one records it.
func TestCombinedChainsDecideAsOneByOne(t *testing.T) {
	s, db := openCounting(t)
	ctx := t.Context()
	base := time.UnixMilli(1_700_000_000_000)
	exp := base.Add(time.Minute)
	cl := &store.Client{ID: "cl_1", Name: "c", ClientIDHash: []byte("h1"), CreatedAt: base, UpdatedAt: base}
	if err := s.CreateClient(ctx, cl); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetClient(ctx, cl.ID)
	if err != nil {
		t.Fatal(err)
	}
	v := got.Version

	if err := s.UseOnce(ctx, "used", base, exp); err != nil {
		t.Fatal(err)
	}
	// A statement is held, so the requests below queue behind it and most likely share the next
	// statement; their outcomes must not depend on it.
	db.armed.Store(true)
	held := make(chan error, 1)
	go func() { _, err := s.UseOnceChain(ctx, []string{"held"}, base, exp); held <- err }()
	<-db.reached
	type call struct {
		guard bool
		v     int64
		keys  []string
		n     int
		err   error
	}
	calls := []*call{
		{guard: true, v: v, keys: []string{"a1", "a2", "a3"}},
		{guard: true, v: v + 1, keys: []string{"b1"}},           // stale version
		{guard: true, v: v, keys: []string{"c1", "used", "c3"}}, // stops at its second key
		{keys: []string{"d1", "d2"}},                            // no client check
		{keys: []string{"used"}},                                // already used
		{guard: true, v: v, keys: []string{"dup"}},              // one of these two records dup
		{keys: []string{"e1", "dup"}},                           // (e1 either way)
	}
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.guard {
				c.n, c.err = s.UseOnceAsClient(ctx, cl.ID, c.v, c.keys, base, exp)
			} else {
				c.n, c.err = s.UseOnceChain(ctx, c.keys, base, exp)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // best effort: let them queue (the outcomes hold either way)
	close(db.gate)
	wg.Wait()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	want := []struct {
		n   int
		err error
	}{{3, nil}, {0, store.ErrClientChanged}, {1, store.ErrAlreadyUsed}, {2, nil}, {0, store.ErrAlreadyUsed}}
	for i, w := range want {
		if c := calls[i]; c.n != w.n || !errors.Is(c.err, w.err) || (w.err == nil) != (c.err == nil) {
			t.Errorf("call %d %v: %d recorded, %v; want %d, %v", i, c.keys, c.n, c.err, w.n, w.err)
		}
	}
	x, y := calls[5], calls[6]
	switch {
	case x.err == nil && x.n == 1 && errors.Is(y.err, store.ErrAlreadyUsed) && y.n == 1:
	case y.err == nil && y.n == 2 && errors.Is(x.err, store.ErrAlreadyUsed) && x.n == 0:
	default:
		t.Errorf("two requests for one key: %d, %v and %d, %v; want exactly one to record it", x.n, x.err, y.n, y.err)
	}
	// What each refused chain did not record stays free; what it recorded stays used.
	for _, k := range []string{"b1", "c3"} {
		if err := s.UseOnce(ctx, k, base, exp); err != nil {
			t.Errorf("%s: %v, want it free", k, err)
		}
	}
	for _, k := range []string{"a3", "c1", "d2", "e1", "dup"} {
		if err := s.UseOnce(ctx, k, base, exp); !errors.Is(err, store.ErrAlreadyUsed) {
			t.Errorf("%s: %v, want it used", k, err)
		}
	}
}
