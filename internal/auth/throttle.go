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
type Throttle struct {
	store           store.Counters
	clock           clock.Clock
	limits          ThrottleLimits
	onIdentityBlock func(ctx context.Context, scope, identity, addr string)

	mu      sync.Mutex
	blocked map[string]time.Time // counter key → blocked until
}

// NewThrottle returns a throttle over counters. onIdentityBlock (may be nil) is called once when an
// identity-wide block starts, so the caller can audit it.
func NewThrottle(c store.Counters, clk clock.Clock, l ThrottleLimits, onIdentityBlock func(ctx context.Context, scope, identity, addr string)) *Throttle {
	return &Throttle{store: c, clock: clk, limits: l, onIdentityBlock: onIdentityBlock, blocked: map[string]time.Time{}}
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

// Fail records one failed check. Store errors are returned (the caller usually only logs them).
func (t *Throttle) Fail(ctx context.Context, scope, addr, identity string) error {
	now := t.clock.Now()
	a, ai, i := throttleKeys(scope, addr, identity)
	w := t.limits.Window
	start := now.Truncate(w)
	if err := t.count(ctx, a, start, w, t.limits.PerAddress); err != nil {
		return err
	}
	if identity == "" {
		return nil
	}
	if err := t.count(ctx, ai, start, w, t.limits.PerAddressIdent); err != nil {
		return err
	}
	iw := t.limits.IdentityBackoff
	istart := now.Truncate(iw)
	n, err := t.store.IncrCounter(ctx, i, istart, istart.Add(2*iw))
	if err != nil {
		return err
	}
	if t.limits.PerIdentity > 0 && n >= t.limits.PerIdentity {
		t.block(i, istart.Add(iw))
		if n == t.limits.PerIdentity && t.onIdentityBlock != nil {
			t.onIdentityBlock(ctx, scope, identity, addr)
		}
	}
	return nil
}

func (t *Throttle) count(ctx context.Context, key string, start time.Time, w time.Duration, limit int) error {
	n, err := t.store.IncrCounter(ctx, key, start, start.Add(2*w))
	if err != nil {
		return err
	}
	if limit > 0 && n >= limit {
		t.block(key, start.Add(w))
	}
	return nil
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
