package auth

import (
	"context"
	"math/bits"
	"net/netip"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/store"
)

// ThrottleLimits are the thresholds of a Throttle (config.Throttle in seconds).
type ThrottleLimits struct {
	Window          time.Duration // sliding window of the per-address counts
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
// Each limit applies to a sliding window: the failures of the last Window (IdentityBackoff for
// the identity-wide count), not of a fixed clock window, so no window boundary hands a guesser a
// fresh budget. A failure that brings a count to its limit blocks the key for a whole window
// from that failure; Check's RetryAfter is the time left of that block.
//
// Counts live in the store so replicas share them. Check is on the hot path of every credential
// check, so it never reads the store: a replica learns a key is over its limit when its own Fail
// call gets the shared counts back (every replica estimates the same sliding count from them),
// and remembers the block locally until it ends. A distributed guesser therefore gets at most one
// extra attempt per replica per block.
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

// localCount is one fallback counter: its fixed window's start and count, and the count of the
// window before it.
type localCount struct {
	start   time.Time
	n, prev int
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
	slots := []slot{newSlot(a, now, w, t.limits.PerAddress)}
	if identity != "" {
		slots = append(slots, newSlot(ai, now, w, t.limits.PerAddressIdent),
			newSlot(i, now, t.limits.IdentityBackoff, t.limits.PerIdentity))
	}
	incs := make([]store.CounterIncrement, len(slots))
	for j, sl := range slots {
		incs[j] = sl.inc
	}
	counts, err := t.store.CountFailure(ctx, incs, event)
	if err != nil {
		counts = make([]store.FailureCount, len(slots))
		for j, sl := range slots {
			counts[j] = t.countLocal(sl.key, sl.inc.WindowStart, sl.w)
		}
	}
	identityBlock := false
	for j, sl := range slots {
		n := sl.estimate(counts[j], now)
		if sl.limit > 0 && n >= sl.limit {
			t.block(sl.key, now.Add(sl.w))
		}
		if sl.key == i && sl.limit > 0 && n == sl.limit { // the estimate rises by at most 1 a failure
			identityBlock = true
		}
	}
	if identityBlock && t.onIdentityBlock != nil {
		t.onIdentityBlock(ctx, scope, identity, addr)
	}
	return err
}

// slot is one counter of a failure over its sliding window w. The store keeps a fixed-window
// count per row, and the rows of a key alternate between two names, one for the even and one
// for the odd windows, so the window before the current one is still there to read (at most two
// rows per key, each kept for two windows).
type slot struct {
	key   string // the counter's key, by which it is blocked
	w     time.Duration
	limit int
	inc   store.CounterIncrement
}

func newSlot(key string, now time.Time, w time.Duration, limit int) slot {
	start := now.Truncate(w)
	prev := start.Add(-w)
	cur, old := key+"#0", key+"#1"
	if !start.Truncate(2 * w).Equal(start) { // an odd window
		cur, old = old, cur
	}
	return slot{key: key, w: w, limit: limit, inc: store.CounterIncrement{Key: cur, WindowStart: start,
		ExpiresAt: start.Add(2 * w), PrevKey: old, PrevStart: prev}}
}

// estimate is the count over the sliding window (now−w, now]: the current fixed window's count
// plus the previous window's count weighted by the part of that window still inside it, the
// usual two-window estimate, which assumes the previous window's failures were evenly spread.
// The weighted part is rounded up, so the estimate never falls below the exact count of evenly
// spread failures and, just after a boundary, equals the count of the window that just ended: a
// key at its limit just before a boundary is still at it just after. Rounding up costs a legit
// client at most one failure of its budget, while rounding down would hand a guesser one.
func (sl slot) estimate(c store.FailureCount, now time.Time) int {
	rest := sl.inc.WindowStart.Add(sl.w).Sub(now) // the part of the previous window still inside
	if c.Prev <= 0 || rest <= 0 {
		return c.Hits
	}
	if rest > sl.w {
		rest = sl.w
	}
	// ceil(prev × rest / w) without overflow: prev × rest is 128 bits, and its high word is below
	// w because rest ≤ w, so the division cannot overflow.
	hi, lo := bits.Mul64(uint64(c.Prev), uint64(rest))
	q, r := bits.Div64(hi, lo, uint64(sl.w))
	if r != 0 {
		q++
	}
	return c.Hits + int(q)
}

// countLocal is the in-memory fallback of CountFailure: a count per key in fixed windows of w,
// with the count of the window before, so the same sliding estimate applies.
func (t *Throttle) countLocal(key string, start time.Time, w time.Duration) store.FailureCount {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.local[key]
	switch {
	case c.start.Equal(start):
	case c.start.Add(w).Equal(start):
		c = localCount{start: start, prev: c.n}
	default:
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
	return store.FailureCount{Hits: c.n, Prev: c.prev}
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
