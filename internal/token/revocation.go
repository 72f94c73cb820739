package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/store"
)

// Revocation kinds.
const (
	RevokeJTI = "jti" // one token
	RevokeSID = "sid" // every token of a refresh family or device pairing
)

// resyncOverlap is how far before the previous resync each resync looks again. RevokedAt comes
// from the clock of the replica that revoked, and a slow transaction may commit after a later
// query ran, so consecutive windows overlap generously; re-applying an entry is harmless.
const resyncOverlap = 5 * time.Minute

// maxRevocationValue bounds a jti/sid. posgate's are 22–40 characters.
const maxRevocationValue = 256

// Revocation is the payload of events.TopicRevocation.
type Revocation struct {
	Kind      string    `json:"kind"`
	Value     string    `json:"value"`
	RevokedAt time.Time `json:"revoked_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Revoke makes every token with jti (kind "jti") or sid (kind "sid") equal to value invalid, until
// expiresAt (when all of them have expired anyway). It applies the revocation in this process
// first — so it holds here even if what follows fails — then writes it to the store, then
// announces it on the bus for the other replicas. A store failure is returned (an *errs.Error of
// kind Unavailable): the revocation is then not durable and the caller should answer 503. A bus
// failure is only logged: the other replicas' resync picks the revocation up from the store.
func (v *PosgateVerifier) Revoke(ctx context.Context, kind, value string, expiresAt time.Time, reason string) error {
	if kind != RevokeJTI && kind != RevokeSID {
		return errs.New(errs.BadInput, "invalid_request", fmt.Sprintf("revocation kind must be %q or %q", RevokeJTI, RevokeSID))
	}
	if value == "" || len(value) > maxRevocationValue {
		return errs.New(errs.BadInput, "invalid_request", "revocation value is empty or too long")
	}
	if expiresAt.IsZero() {
		return errs.New(errs.BadInput, "invalid_request", "a revocation needs the time its tokens expire")
	}
	now := v.clk.Now()
	if !now.Before(expiresAt) {
		return nil // every token it could match has expired already
	}
	r := Revocation{Kind: kind, Value: value, RevokedAt: now, ExpiresAt: expiresAt}
	v.apply(r, now)
	err := v.st.AddRevocation(ctx, store.Revocation{Kind: kind, Value: value, RevokedAt: now, ExpiresAt: expiresAt, Reason: reason})
	if err != nil {
		return errs.Wrap(errs.Unavailable, "unavailable", "the revocation could not be stored", err)
	}
	if v.bus != nil {
		payload, _ := json.Marshal(r)
		if err := v.bus.Publish(ctx, events.TopicRevocation, payload); err != nil {
			v.log.LogAttrs(ctx, slog.LevelWarn, "revocation event not published; other replicas pick it up at their next resync",
				slog.String("kind", kind), slog.String("error", err.Error()))
		}
	}
	return nil
}

// apply adds r to the in-memory set (keeping the later expiry if it is there already).
func (v *PosgateVerifier) apply(r Revocation, now time.Time) {
	if !now.Before(r.ExpiresAt) {
		return
	}
	k := revKey{r.Kind, r.Value}
	v.revMu.Lock()
	if old, ok := v.revoked[k]; !ok || r.ExpiresAt.After(old) {
		v.revoked[k] = r.ExpiresAt
	}
	v.revMu.Unlock()
}

// isRevoked reports whether c's jti or sid is in the revocation set.
func (v *PosgateVerifier) isRevoked(c *Claims, now time.Time) bool {
	v.revMu.RLock()
	defer v.revMu.RUnlock()
	if len(v.revoked) == 0 {
		return false
	}
	if exp, ok := v.revoked[revKey{RevokeJTI, c.JTI}]; ok && now.Before(exp) {
		return true
	}
	if c.SessionID != "" {
		if exp, ok := v.revoked[revKey{RevokeSID, c.SessionID}]; ok && now.Before(exp) {
			return true
		}
	}
	return false
}

// IsRevoked reports whether a token with these claims has been revoked (for introspection of
// claims obtained elsewhere). Verify already checks it.
func (v *PosgateVerifier) IsRevoked(c *Claims) bool { return v.isRevoked(c, v.clk.Now()) }

// onEvent applies a revocation announced by another replica (or by this one: a database bus
// delivers our own notices too, which is harmless).
func (v *PosgateVerifier) onEvent(payload []byte) {
	var r Revocation
	if err := json.Unmarshal(payload, &r); err != nil || (r.Kind != RevokeJTI && r.Kind != RevokeSID) || r.Value == "" {
		v.log.Warn("ignoring a malformed revocation event")
		return
	}
	v.apply(r, v.clk.Now())
}

// Resync re-reads the revocations recorded since shortly before the previous resync (all unexpired
// ones the first time) and drops entries that have expired. Start calls it periodically; a missed
// event is therefore applied within one resync interval.
func (v *PosgateVerifier) Resync(ctx context.Context) error {
	now := v.clk.Now()
	v.revMu.RLock()
	since := v.lastSync
	v.revMu.RUnlock()
	if !since.IsZero() {
		since = since.Add(-resyncOverlap)
	}
	list, err := v.st.ListRevocationsSince(ctx, since, now)
	if err != nil {
		return fmt.Errorf("token: revocation resync: %w", err)
	}
	v.revMu.Lock()
	defer v.revMu.Unlock()
	for _, r := range list {
		if !now.Before(r.ExpiresAt) {
			continue
		}
		k := revKey{r.Kind, r.Value}
		if old, ok := v.revoked[k]; !ok || r.ExpiresAt.After(old) {
			v.revoked[k] = r.ExpiresAt
		}
	}
	for k, exp := range v.revoked {
		if !now.Before(exp) {
			delete(v.revoked, k)
		}
	}
	if now.After(v.lastSync) {
		v.lastSync = now
	}
	return nil
}

// ErrStarted is returned by a second call to Start.
var ErrStarted = errors.New("token: verifier already started")

// Start subscribes to revocation events, loads the unexpired revocations from the store, and runs
// the resync loop (every SetResyncInterval, default 5 s) in a goroutine until ctx ends. It returns
// at once; its error is the first load's (the loop keeps retrying, and failures are logged).
func (v *PosgateVerifier) Start(ctx context.Context) error {
	if !v.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	var cancel func()
	if v.bus != nil {
		// Subscribe before the first load, so nothing revoked in between is missed.
		cancel = v.bus.Subscribe(events.TopicRevocation, v.onEvent)
	}
	first := v.Resync(ctx)
	go func() {
		if cancel != nil {
			defer cancel()
		}
		t := time.NewTicker(v.resync)
		defer t.Stop()
		failing := first != nil
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				err := v.Resync(ctx)
				if err != nil && ctx.Err() == nil && !failing {
					v.log.Warn("revocation resync failed; will retry", slog.String("error", err.Error()))
				} else if err == nil && failing {
					v.log.Info("revocation resync recovered")
				}
				failing = err != nil
			}
		}
	}()
	return first
}
