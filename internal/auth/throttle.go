package auth

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/store"
)

// ThrottleLimits are the thresholds of a Throttle (config.Throttle in seconds).
type ThrottleLimits struct {
	Window          time.Duration // fixed window for per-address counts
	PerAddress      int           // failures from one address, any identity
	PerAddressIdent int           // failures from one address against one identity
	PerIdentity     int           // failures against one identity from all addresses (much higher)
	IdentityBackoff time.Duration // window (and so the longest block) of the identity-wide count
}

// Throttle limits failed credential checks. It counts per client address first, and per address
// and identity; an identity-wide limit (a vendor, a user, an outlet) applies only at a much higher
// threshold, for a short window, and is audited — otherwise anyone who knows a vendor's name could
// lock its traffic out.
//
// Counts live in the store so replicas share them. Check is on the hot path of every credential
// check, so it never reads the store: a replica learns a key is over its limit when its own Fail
// call gets the shared count back, and remembers the block locally until the window ends. A
// distributed guesser therefore gets at most one extra attempt per replica per window.
//
// When the store cannot count (a full disk, a hung or stopped database), the failure is counted
// in this replica's memory instead, with the same limits and windows, so throttling never fails
// open: a guesser is blocked on this replica as if it were the only one.
type Throttle struct {
	store           store.Counters
	clock           clock.Clock
	limits          ThrottleLimits
	onIdentityBlock func(ctx context.Context, scope, identity, addr string)

	mu      sync.Mutex
	blocked map[string]time.Time  // counter key → blocked until
	local   map[string]localCount // counter key → count kept while the store could not count
}

// localCount is one fallback counter: its window start and count.
type localCount struct {
	start time.Time
	n     int
}

// NewThrottle returns a throttle over counters. onIdentityBlock (may be nil) is called once when an
// identity-wide block starts, so the caller can audit it.
func NewThrottle(c store.Counters, clk clock.Clock, l ThrottleLimits, onIdentityBlock func(ctx context.Context, scope, identity, addr string)) *Throttle {
	return &Throttle{store: c, clock: clk, limits: l, onIdentityBlock: onIdentityBlock, blocked: map[string]time.Time{}, local: map[string]localCount{}}
}

func throttleKeys(scope, addr, identity string) (a, ai, i string) {
	addr = AddrKey(addr)
	a = "a|" + scope + "|" + addr
	if identity != "" {
		ai = "ai|" + scope + "|" + identity + "|" + addr
		i = "i|" + scope + "|" + identity
	}
	return
}

// AddrKey is the part of a client address the throttle counts by. An IPv4 address (also one
// written IPv4-mapped, ::ffff:a.b.c.d) counts as itself. An IPv6 address counts by its /64: that
// is what one subscriber, one host or one VM is given (RFC 6177, SLAAC), so keying on the full
// address would hand anyone with a /64 2^64 fresh per-address budgets. The zone is dropped. A
// string that is not an IP address (a test's made-up name, a unix socket) counts as itself.
func AddrKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

// Check returns a Throttled error (with RetryAfter) when addr, or addr against identity, or identity
// as a whole is blocked in scope (e.g. "chimpy.login", "doshii.vendor"). identity may be "".
func (t *Throttle) Check(_ context.Context, scope, addr, identity string) error {
	now := t.clock.Now()
	a, ai, i := throttleKeys(scope, addr, identity)
	t.mu.Lock()
	defer t.mu.Unlock()
	var until time.Time
	for _, k := range []string{a, ai, i} {
		if k == "" {
			continue
		}
		if u, ok := t.blocked[k]; ok {
			if !u.After(now) {
				delete(t.blocked, k)
				continue
			}
			if u.After(until) {
				until = u
			}
		}
	}
	if until.IsZero() {
		return nil
	}
	retry := until.Sub(now)
	if retry < time.Second {
		retry = time.Second
	}
	return &errs.Error{Kind: errs.Throttled, Code: "too_many_attempts", Message: "too many failed attempts; try again later", RetryAfter: retry.Round(time.Second)}
}

// Fail records one failed check. Every counter is counted even when the store fails (in memory
// then); the store error is returned so the caller can log it.
func (t *Throttle) Fail(ctx context.Context, scope, addr, identity string) error {
	return t.FailAudited(ctx, scope, addr, identity, nil)
}

// FailAudited is Fail that also stores event (when not nil) in the same store write as the
// counts: a failed attempt costs one write, not one per counter and one for its audit event. An
// error means neither the counts nor the event reached the store (the counts are then kept in
// memory; the caller should log the event).
func (t *Throttle) FailAudited(ctx context.Context, scope, addr, identity string, event *store.AuditEvent) error {
	now := t.clock.Now()
	a, ai, i := throttleKeys(scope, addr, identity)
	w := t.limits.Window
	start := now.Truncate(w)
	incs := []store.CounterIncrement{{Key: a, WindowStart: start, ExpiresAt: start.Add(2 * w)}}
	limits := []int{t.limits.PerAddress}
	windows := []time.Duration{w}
	if identity != "" {
		iw := t.limits.IdentityBackoff
		istart := now.Truncate(iw)
		incs = append(incs,
			store.CounterIncrement{Key: ai, WindowStart: start, ExpiresAt: start.Add(2 * w)},
			store.CounterIncrement{Key: i, WindowStart: istart, ExpiresAt: istart.Add(2 * iw)})
		limits = append(limits, t.limits.PerAddressIdent, t.limits.PerIdentity)
		windows = append(windows, w, iw)
	}
	counts, err := t.store.CountFailure(ctx, incs, event)
	if err != nil {
		counts = make([]int, len(incs))
		for j, c := range incs {
			counts[j] = t.countLocal(c.Key, c.WindowStart)
		}
	}
	for j, n := range counts {
		if limit := limits[j]; limit > 0 && n >= limit {
			t.block(incs[j].Key, incs[j].WindowStart.Add(windows[j]))
		}
	}
	if identity != "" && counts[2] == t.limits.PerIdentity && t.limits.PerIdentity > 0 && t.onIdentityBlock != nil {
		t.onIdentityBlock(ctx, scope, identity, addr)
	}
	return err
}

// countLocal is the in-memory fallback of IncrCounter: a count per key in a fixed window,
// restarting when the window moves on.
func (t *Throttle) countLocal(key string, start time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.local[key]
	if !c.start.Equal(start) {
		c = localCount{start: start}
	}
	c.n++
	t.local[key] = c
	// Keep the map bounded: windows are at most a day, so entries two days old are over.
	if len(t.local) > 100_000 {
		old := t.clock.Now().Add(-48 * time.Hour)
		for k, v := range t.local {
			if v.start.Before(old) {
				delete(t.local, k)
			}
		}
	}
	return c.n
}

func (t *Throttle) block(key string, until time.Time) {
	t.mu.Lock()
	if until.After(t.blocked[key]) {
		t.blocked[key] = until
	}
	// Keep the map bounded: drop expired entries when it grows.
	if len(t.blocked) > 100_000 {
		now := t.clock.Now()
		for k, u := range t.blocked {
			if !u.After(now) {
				delete(t.blocked, k)
			}
		}
	}
	t.mu.Unlock()
}
