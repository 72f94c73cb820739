package auth_test

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
)

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"192.0.2.2", "192.0.2.2"},
		{"::ffff:192.0.2.1", "192.0.2.1"}, // IPv4-mapped counts as the IPv4 address
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"2001:DB8:1:2::abcd", "2001:db8:1:2::/64"}, // spelling does not matter
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
		{"not-an-ip", "not-an-ip"},
		{"", ""},
	} {
		if got := auth.AddrKey(tc.in); got != tc.want {
			t.Errorf("AddrKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Failures from many addresses of one IPv6 /64 share one per-address budget; a neighbouring /64
// and IPv4 addresses keep their own.
func TestThrottleCountsIPv6By64(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := clock.NewFake(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	th := auth.NewThrottle(st, clk, auth.ThrottleLimits{Window: time.Minute, PerAddress: 3, PerAddressIdent: 100,
		PerIdentity: 1000, IdentityBackoff: time.Minute}, nil)
	ctx := t.Context()
	const scope = "test.scope"

	// Three failures, each from a different address of 2001:db8:1:2::/64.
	for _, a := range []string{"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:aaaa::3"} {
		if err := th.Check(ctx, scope, a, ""); err != nil {
			t.Fatalf("Check(%s) before the limit: %v", a, err)
		}
		if err := th.Fail(ctx, scope, a, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := th.Check(ctx, scope, "2001:db8:1:2:ffff::9", ""); err == nil {
		t.Error("a fresh address of the same /64 is not blocked")
	}
	if err := th.Check(ctx, scope, "2001:db8:1:3::1", ""); err != nil {
		t.Errorf("the neighbouring /64 is blocked: %v", err)
	}

	// IPv4 counts by the full address.
	for range 3 {
		if err := th.Fail(ctx, scope, "192.0.2.1", ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := th.Check(ctx, scope, "192.0.2.1", ""); err == nil {
		t.Error("192.0.2.1 is not blocked after 3 failures")
	}
	if err := th.Check(ctx, scope, "::ffff:192.0.2.1", ""); err == nil {
		t.Error("192.0.2.1 written IPv4-mapped is not blocked")
	}
	if err := th.Check(ctx, scope, "192.0.2.2", ""); err != nil {
		t.Errorf("192.0.2.2 is blocked by its neighbour's failures: %v", err)
	}

	// The block ends with the window.
	clk.Advance(time.Minute)
	if err := th.Check(ctx, scope, "2001:db8:1:2::1", ""); err != nil {
		t.Errorf("still blocked after the window: %v", err)
	}
}

// FuzzAddrKey: never panics; keying is idempotent; every IPv6 address keys to its /64 (so two
// addresses share a key exactly when their first 64 bits are equal) and every IPv4 address to
// itself, however it is written.
func FuzzAddrKey(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "fe80::1%eth0", "::", "x", "", "1.2.3.4.5", "2001:db8::/64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := auth.AddrKey(s)
		if auth.AddrKey(k) != k {
			t.Fatalf("AddrKey(%q) = %q, but AddrKey(%q) = %q", s, k, k, auth.AddrKey(k))
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			if k != s {
				t.Fatalf("not an address %q keyed as %q", s, k)
			}
			return
		}
		ip = ip.WithZone("").Unmap()
		if ip.Is4() {
			if k != ip.String() {
				t.Fatalf("IPv4 %q keyed as %q", s, k)
			}
			return
		}
		p, err := netip.ParsePrefix(k)
		if err != nil || p.Bits() != 64 || !p.Contains(ip) || p.Masked() != p {
			t.Fatalf("IPv6 %q keyed as %q", s, k)
		}
	})
}

// When the store cannot count failures (a full disk, a stopped database: here a closed store,
// which fails every call with ErrUnavailable), the throttle counts in memory and still blocks at
// the limits: it never fails open. Fail reports the store's error so the caller can log it.
func TestThrottleFailsClosedWithoutStore(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	clk := clock.NewFake(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	var identityBlocks int
	th := auth.NewThrottle(st, clk, auth.ThrottleLimits{Window: time.Minute, PerAddress: 10, PerAddressIdent: 3,
		PerIdentity: 5, IdentityBackoff: time.Minute}, func(context.Context, string, string, string) { identityBlocks++ })
	ctx := t.Context()
	const scope = "test.scope"
	for i := range 3 {
		if err := th.Check(ctx, scope, "192.0.2.1", "alice"); err != nil {
			t.Fatalf("attempt %d blocked before the limit: %v", i, err)
		}
		if err := th.Fail(ctx, scope, "192.0.2.1", "alice"); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Fail on a store that cannot count: %v, want the store's ErrUnavailable", err)
		}
	}
	if err := th.Check(ctx, scope, "192.0.2.1", "alice"); err == nil {
		t.Fatal("address+identity not blocked after its limit while the store cannot count")
	}
	if err := th.Check(ctx, scope, "192.0.2.1", "bob"); err != nil {
		t.Errorf("another identity from the same address is blocked: %v", err)
	}
	// The identity-wide limit counts in memory too, and its audit hook fires once.
	for _, a := range []string{"192.0.2.2", "192.0.2.3"} {
		_ = th.Fail(ctx, scope, a, "alice")
	}
	if err := th.Check(ctx, scope, "192.0.2.9", "alice"); err == nil {
		t.Error("identity not blocked after the identity-wide limit while the store cannot count")
	}
	if identityBlocks != 1 {
		t.Errorf("identity block hook called %d times, want 1", identityBlocks)
	}
	// A new window starts afresh.
	clk.Advance(2 * time.Minute)
	if err := th.Check(ctx, scope, "192.0.2.1", "alice"); err != nil {
		t.Errorf("still blocked in the next window: %v", err)
	}
	_ = th.Fail(ctx, scope, "192.0.2.1", "alice")
	if err := th.Check(ctx, scope, "192.0.2.1", "alice"); err != nil {
		t.Errorf("one failure in a new window blocks: %v", err)
	}
}

// writeCounter counts the store writes a throttle makes.
type writeCounter struct {
	store.Store
	writes int
}

func (w *writeCounter) IncrCounter(ctx context.Context, key string, start, exp time.Time) (int, error) {
	w.writes++
	return w.Store.IncrCounter(ctx, key, start, exp)
}

func (w *writeCounter) CountFailure(ctx context.Context, incs []store.CounterIncrement, e *store.AuditEvent) ([]store.FailureCount, error) {
	w.writes++
	return w.Store.CountFailure(ctx, incs, e)
}

func (w *writeCounter) AppendAudit(ctx context.Context, e *store.AuditEvent) error {
	w.writes++
	return w.Store.AppendAudit(ctx, e)
}

// A failed attempt with its audit event is one store write: its three counters and the event
// are stored together, and the limits still apply to the counts it returns.
func TestThrottleFailAuditedIsOneWrite(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := &writeCounter{Store: st}
	clk := clock.NewFake(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	var identityBlocks int
	th := auth.NewThrottle(w, clk, auth.ThrottleLimits{Window: time.Minute, PerAddress: 10, PerAddressIdent: 3,
		PerIdentity: 4, IdentityBackoff: 5 * time.Minute}, func(context.Context, string, string, string) { identityBlocks++ })
	ctx := t.Context()
	const scope = "test.scope"
	for i := range 3 {
		if err := th.Check(ctx, scope, "192.0.2.1", "alice"); err != nil {
			t.Fatalf("attempt %d blocked before the limit: %v", i, err)
		}
		e := &store.AuditEvent{At: clk.Now(), Actor: "anonymous", Action: "login.failed", Outcome: "denied", Detail: "attempt"}
		if err := th.FailAudited(ctx, scope, "192.0.2.1", "alice", e); err != nil {
			t.Fatal(err)
		}
		if w.writes != i+1 {
			t.Fatalf("after %d failed attempts the store saw %d writes, want one each", i+1, w.writes)
		}
		if e.ID == 0 {
			t.Fatal("the audit event was not stored")
		}
	}
	if err := th.Check(ctx, scope, "192.0.2.1", "alice"); err == nil {
		t.Fatal("address+identity not blocked after its limit")
	}
	start := clk.Now().Truncate(time.Minute)
	for key, want := range map[string]int{"a|" + scope + "|192.0.2.1": 3, "ai|" + scope + "|alice|192.0.2.1": 3, "i|" + scope + "|alice": 3} {
		// A key's rows alternate between two names, one per parity of the window.
		n0, err0 := st.GetCounter(ctx, key+"#0", start)
		n1, err1 := st.GetCounter(ctx, key+"#1", start)
		if err := errors.Join(err0, err1); err != nil || n0+n1 != want {
			t.Errorf("counter %s = %d+%d, %v; want %d", key, n0, n1, err, want)
		}
	}
	l, err := st.ListAudit(ctx, 10)
	if err != nil || len(l) != 3 {
		t.Fatalf("audit events: %d, %v; want 3", len(l), err)
	}
	// The identity-wide limit, from another address, fires the hook once.
	_ = th.FailAudited(ctx, scope, "192.0.2.2", "alice", nil)
	if err := th.Check(ctx, scope, "192.0.2.9", "alice"); err == nil || identityBlocks != 1 {
		t.Errorf("identity-wide limit: check %v, hook called %d times; want blocked, once", err, identityBlocks)
	}
}
