package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/store/sqlstore"
)

// countingDB counts the statements containing match and, once armed, holds the next of them
// until gate is closed (reached is closed when it arrives).
type countingDB struct {
	sqlstore.DB
	match         string
	n             atomic.Int64
	armed         atomic.Bool
	gate, reached chan struct{}
	mu            sync.Mutex
	args          [][]any // of every matching statement, in the order sent
}

func (c *countingDB) Query(ctx context.Context, q string, args ...any) (sqlstore.Rows, error) {
	c.count(q, args)
	return c.DB.Query(ctx, q, args...)
}

func (c *countingDB) QueryRow(ctx context.Context, q string, args ...any) sqlstore.Row {
	c.count(q, args)
	return c.DB.QueryRow(ctx, q, args...)
}

func (c *countingDB) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	c.count(q, args)
	return c.DB.Exec(ctx, q, args...)
}

func (c *countingDB) count(q string, args []any) {
	if !strings.Contains(q, c.match) {
		return
	}
	c.n.Add(1)
	c.mu.Lock()
	c.args = append(c.args, args)
	c.mu.Unlock()
	if c.armed.CompareAndSwap(true, false) {
		close(c.reached)
		<-c.gate
	}
}

func openCounting(t *testing.T, match string) (*Store, *countingDB) {
	t.Helper()
	c := &countingDB{match: match, gate: make(chan struct{}), reached: make(chan struct{})}
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
	s, c := openCounting(t, "INSERT INTO single_use")
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
	runShared(t, c, 8, 40, func(w, i int) error {
		keys := []string{fmt.Sprintf("nk:%d:%d", w, i)}
		if i%2 == 1 {
			keys = []string{fmt.Sprintf("jti:%d:%d", w, i), keys[0]}
		}
		n, err := s.UseOnceAsClient(t.Context(), cl.ID, got.Version, keys, base, base.Add(time.Minute))
		if err == nil && n != len(keys) {
			err = fmt.Errorf("%d of %d keys recorded", n, len(keys))
		}
		return err
	})
}

// runShared calls call(w, i) for i < each on each of workers goroutines w, fails the test on the
// first error of a worker, and fails it when no statement counted by c carried two calls.
func runShared(t *testing.T, c *countingDB, workers, each int, call func(w, i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := call(w, i); err != nil {
					errs <- fmt.Errorf("worker %d, call %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := c.n.Load(); n >= int64(workers*each) {
		t.Fatalf("%d statements for %d concurrent calls: none shared", n, workers*each)
	}
}

// TestCombinedChainsDecideAsOneByOne: requests that reach the server in one statement are decided
// as if sent one after the other: a stale client records nothing, a chain stops at its first used
// key and keeps the ones before it, chains of different lengths mix, and of two requests naming
// the same key exactly one records it.
func TestCombinedChainsDecideAsOneByOne(t *testing.T) {
	s, db := openCounting(t, "INSERT INTO single_use")
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

// TestCombinedChainsTakeKeysInOrder: a combined statement takes its requests' first keys in
// one order whatever order they arrived in, so two statements holding some of the same keys (two
// replicas replaying the same assertions) wait for one another instead of deadlocking, which
// would fail every request of the statement PostgreSQL picks as the victim.
func TestCombinedChainsTakeKeysInOrder(t *testing.T) {
	s, db := openCounting(t, "INSERT INTO single_use")
	ctx := t.Context()
	base := time.UnixMilli(1_700_000_000_000)
	exp := base.Add(time.Minute)
	db.armed.Store(true)
	held := make(chan error, 1)
	go func() { _, err := s.UseOnceChain(ctx, []string{"held"}, base, exp); held <- err }()
	<-db.reached
	keys := []string{"k9", "k7", "k8", "k3", "k5", "k1"}
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.UseOnceChain(ctx, []string{k}, base, exp); err != nil {
				t.Error(err)
			}
		}()
		// Best effort: they queue in this order (the check below holds in any order; on a
		// statement that keeps the arrival order it fails).
		time.Sleep(2 * time.Millisecond)
	}
	close(db.gate)
	wg.Wait()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	combined := false
	for _, args := range db.args[1:] {
		var firsts []string
		for _, k := range args[4].([]*string) { // k0, after client, version, at, exp
			if k != nil {
				firsts = append(firsts, *k)
			}
		}
		combined = combined || len(firsts) > 1
		if !slices.IsSorted(firsts) {
			t.Fatalf("a combined statement took its first keys as %v, not in order", firsts)
		}
	}
	if !combined {
		t.Skip("no two requests shared a statement")
	}
}

// openRefreshes opens a store counting the rotations' statements, with user us_1.
func openRefreshes(t *testing.T) (*Store, *countingDB, time.Time) {
	t.Helper()
	s, c := openCounting(t, "UPDATE refresh_tokens")
	base := time.Now().Truncate(time.Millisecond)
	if err := s.CreateUser(t.Context(), &store.User{ID: "us_1", Username: "u1", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}); err != nil {
		t.Fatal(err)
	}
	return s, c, base
}

// addFamily stores family id of client cl_1 and user us_1 (scope "offline_access rentals"), with
// its first token hashing to first.
func addFamily(t *testing.T, s *Store, base time.Time, id, first string) {
	t.Helper()
	fam := &store.RefreshFamily{ID: id, ClientID: "cl_1", UserID: "us_1", Audience: "https://api.example",
		Scope: "offline_access rentals", CreatedAt: base, AbsoluteExpiresAt: base.Add(time.Hour)}
	if err := s.CreateRefreshFamily(t.Context(), fam, &store.RefreshToken{Hash: []byte(first), CreatedAt: base,
		IdleExpiresAt: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

// TestRefreshesShareStatements: concurrent refresh rotations of different families go to the
// server together, several in one statement and one commit, and each rotates its own chain.
func TestRefreshesShareStatements(t *testing.T) {
	s, c, base := openRefreshes(t)
	ctx := t.Context()
	const workers = 8
	fams := make([]string, workers)
	for w := range workers {
		fams[w] = fmt.Sprintf("sid_%d", w)
		addFamily(t, s, base, fams[w], fmt.Sprintf("%d:0", w))
	}
	runShared(t, c, workers, 30, func(w, i int) error {
		at := base.Add(time.Duration(i+1) * time.Millisecond)
		r, err := s.UseRefreshToken(ctx, &store.RefreshUse{Hash: []byte(fmt.Sprintf("%d:%d", w, i)), At: at, ClientID: "cl_1",
			NotAudiences: []string{"jackpot"}, Scope: []string{"offline_access"},
			NextHash: []byte(fmt.Sprintf("%d:%d", w, i+1)), NextIdleExpiresAt: at.Add(time.Hour)})
		if err == nil && (!r.Rotated || !r.UserCurrent || r.Family.ID != fams[w] || r.Token.RotatedAt != nil) {
			err = fmt.Errorf("not rotated: %+v", r)
		}
		return err
	})
}

// TestCombinedRefreshesDecideAsOneByOne: refresh uses that reach the server in one statement are
// decided as if sent one after the other: each sees its own token's rows as they were, a refused
// use changes nothing, a missing token is ErrNotFound, and of two uses of one token exactly one
// rotates it while the other sees it unrotated or rotated by the first (as RefreshUseRace allows).
func TestCombinedRefreshesDecideAsOneByOne(t *testing.T) {
	s, db, base := openRefreshes(t)
	ctx := t.Context()
	for _, f := range []string{"held", "a", "b", "c", "d"} {
		addFamily(t, s, base, "sid_"+f, f)
	}
	at := base.Add(time.Second)
	use := func(hash, next string, edit func(*store.RefreshUse)) (*store.RefreshUsed, error) {
		u := &store.RefreshUse{Hash: []byte(hash), At: at, ClientID: "cl_1", NextHash: []byte(next), NextIdleExpiresAt: at.Add(time.Hour)}
		if edit != nil {
			edit(u)
		}
		return s.UseRefreshToken(ctx, u)
	}
	db.armed.Store(true)
	held := make(chan error, 1)
	go func() { _, err := use("held", "held2", nil); held <- err }()
	<-db.reached
	type call struct {
		hash, next string
		edit       func(*store.RefreshUse)
		r          *store.RefreshUsed
		err        error
	}
	calls := []*call{
		{hash: "a", next: "a2", edit: func(u *store.RefreshUse) { u.Scope = []string{"rentals"} }},
		{hash: "b", next: "b2", edit: func(u *store.RefreshUse) { u.Scope = []string{"admin"} }}, // not granted
		{hash: "c", next: "c2", edit: func(u *store.RefreshUse) { u.ClientID = "cl_2" }},         // another client
		{hash: "missing", next: "m2"},
		{hash: "d", next: "d2"},
		{hash: "d", next: "d3"},
	}
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Add(1)
		go func() { defer wg.Done(); c.r, c.err = use(c.hash, c.next, c.edit) }()
	}
	time.Sleep(50 * time.Millisecond) // best effort: let them queue (the outcomes hold either way)
	close(db.gate)
	wg.Wait()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, false} {
		c := calls[i]
		if c.err != nil || c.r.Rotated != want || c.r.Family.ID != "sid_"+c.hash || c.r.Token.RotatedAt != nil {
			t.Errorf("use of %s: %+v, %v; want rotated %v", c.hash, c.r, c.err, want)
		}
		_, _, err := s.GetRefreshToken(ctx, []byte(c.next))
		if (err == nil) != want {
			t.Errorf("successor of %s: %v, want stored %v", c.hash, err, want)
		}
	}
	if c := calls[3]; !errors.Is(c.err, store.ErrNotFound) {
		t.Errorf("use of a missing token: %+v, %v; want ErrNotFound", c.r, c.err)
	}
	x, y := calls[4], calls[5]
	if x.err != nil || y.err != nil || x.r.Rotated == y.r.Rotated {
		t.Fatalf("two uses of one token: %+v, %v and %+v, %v; want exactly one rotation", x.r, x.err, y.r, y.err)
	}
	winner, loser := x, y
	if y.r.Rotated {
		winner, loser = y, x
	}
	if loser.r.Token.RotatedAt != nil && string(loser.r.Token.SuccessorHash) != winner.next {
		t.Errorf("the second use saw %+v; want the token rotated to %s", loser.r.Token, winner.next)
	}
	if _, _, err := s.GetRefreshToken(ctx, []byte(loser.next)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the losing successor %s: %v, want not stored", loser.next, err)
	}
}
