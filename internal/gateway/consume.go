package gateway

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// Bounds of the single-use decision.
const (
	consumeRevokeTimeout  = 5 * time.Second
	consumedEntriesMax    = 100_000
	defaultConsumedExpiry = 24 * time.Hour
	// claimMargin keeps a consume claim past the token's expiry, so a verifier that tolerates
	// some clock skew on exp can never accept the token once its claim has lapsed.
	claimMargin = 10 * time.Minute
	// storeRetryAfter is the Retry-After of a 503 when the store cannot decide a claim.
	storeRetryAfter = 2 * time.Second
)

// singleUse decides the single use of consumable tokens on consuming routes: a claim in the
// store before forwarding, released when the upstream refused the call, and a revocation on every
// replica after a 2xx answer.
type singleUse struct {
	log     *slog.Logger
	clock   clock.Clock
	revoker token.Revoker
	// claims is the store, shared by every replica (never memory alone: two replicas would each
	// let one call through).
	claims   store.SingleUse
	consumed consumedSet // tokens consumed through this replica: refused on every route at once
}

// tokenExpiry is how long p's token can be presented: its expiry, or a day when it has none.
func tokenExpiry(p *auth.Principal, now time.Time) time.Time {
	if exp := p.ExpiresAt; !exp.IsZero() && exp.After(now) {
		return exp
	}
	return now.Add(defaultConsumedExpiry)
}

// claimKey names the store record of a consumable token's single use.
func claimKey(jti string) string { return "consume:" + jti }

// claim takes p's token's single use in the store. Exactly one caller on any replica gets it
// until it is released or the token has expired; the others get 409. A store that cannot decide
// is 503 with Retry-After: nothing is forwarded on a guess.
func (su *singleUse) claim(ctx context.Context, route string, p *auth.Principal) (string, error) {
	now := su.clock.Now()
	err := su.claims.UseOnce(ctx, claimKey(p.TokenID), now, tokenExpiry(p, now).Add(claimMargin))
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, store.ErrAlreadyUsed):
		return outcomeInProgress, errs.New(errs.Conflict, "consume_in_progress",
			"this token has already been used on this route, or another call with it is in progress")
	default:
		su.log.LogAttrs(ctx, slog.LevelError, "gateway: single-use claim failed; call refused",
			slog.String("route", route), slog.String("means", p.Means), slog.String("client", p.Client),
			slog.String("error", err.Error()))
		return outcomeUnavailable, &errs.Error{Kind: errs.Unavailable, Code: "store_unavailable",
			Message: "the service is temporarily unavailable; retry later", RetryAfter: storeRetryAfter, Err: err}
	}
}

// release gives p's claim back after the upstream refused the call (a non-2xx answer, or no
// connection at all), so the token may be used again. It runs before the answer is written to
// the caller. If the store cannot release it, the token stays used until it expires: the safe
// side (the caller needs a new token), logged.
func (su *singleUse) release(ctx context.Context, route string, p *auth.Principal) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), consumeRevokeTimeout)
	defer cancel()
	if err := su.claims.ReleaseOnce(ctx, claimKey(p.TokenID)); err != nil {
		su.log.LogAttrs(ctx, slog.LevelWarn, "gateway: single-use claim not released; the token stays used until it expires",
			slog.String("route", route), slog.String("means", p.Means), slog.String("client", p.Client),
			slog.String("error", err.Error()))
	}
}

// consume revokes p's token after a 2xx answer on a consuming route, on every replica (the
// revoker writes the store and announces it), so it is refused on every route, not only the
// consuming ones (which the store claim already closes). It runs before the answer is written to
// the caller. The token is also remembered locally, so this replica refuses it on every route
// even if the revocation failed.
func (su *singleUse) consume(ctx context.Context, route string, p *auth.Principal) {
	now := su.clock.Now()
	exp := tokenExpiry(p, now)
	su.consumed.add(p.TokenID, exp, now)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), consumeRevokeTimeout)
	defer cancel()
	if err := su.revoker.Revoke(ctx, "jti", p.TokenID, exp, "consumed by "+route); err != nil {
		su.log.LogAttrs(ctx, slog.LevelError, "gateway: consumed token could not be revoked on every replica",
			slog.String("route", route), slog.String("means", p.Means), slog.String("client", p.Client),
			slog.String("error", err.Error()))
	}
}

// consumedSet remembers tokens consumed on this replica until they expire.
type consumedSet struct {
	n  atomic.Int64
	mu sync.RWMutex
	m  map[string]time.Time
}

func (c *consumedSet) has(jti string, now time.Time) bool {
	if c.n.Load() == 0 {
		return false
	}
	c.mu.RLock()
	exp, ok := c.m[jti]
	c.mu.RUnlock()
	return ok && exp.After(now)
}

func (c *consumedSet) add(jti string, exp, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]time.Time{}
	}
	if len(c.m) >= consumedEntriesMax {
		for k, e := range c.m {
			if !e.After(now) {
				delete(c.m, k)
			}
		}
	}
	if len(c.m) < consumedEntriesMax { // when still full, the durable revocation alone protects
		c.m[jti] = exp
	}
	c.n.Store(int64(len(c.m)))
}
