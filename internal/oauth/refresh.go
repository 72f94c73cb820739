package oauth

import (
	"context"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// Refresh tokens (chimpy.md "Refresh tokens and sliding sessions"):
//
//   - A refresh token is an opaque value "pg_rt_" + 256 random bits; the store keeps only its
//     SHA-256. Every token belongs to a family (one sign-in); the family id is the `sid` claim of
//     every access token minted from it.
//   - Every use rotates: the presented token is marked rotated and a successor stored, in one
//     conditional update (store.RotateRefreshToken), so of two concurrent uses — on one replica or
//     two — exactly one wins.
//   - A token's idle lifetime (chimpy.refresh_idle) starts again with each successor; the family's
//     absolute lifetime (chimpy.refresh_absolute) is fixed at sign-in and caps every idle expiry.
//   - A rotated token presented again is reuse (RFC 9700 §4.14): the family is revoked in the
//     store and by `sid` in the token revocation set (so its access tokens die at once), audited,
//     and answered 403 invalid_grant. Within chimpy.refresh_grace of the rotation, a client that
//     retries the same refresh (it lost the answer) gets the same successor again; to give it back,
//     the successor is kept sealed with the master key on the rotated row while grace > 0.
//   - Disabling a user or changing their password revokes every family of the user.

// RefreshTokenPrefix starts every refresh token.
const RefreshTokenPrefix = "pg_rt_"

// refreshLifetimes reads chimpy's refresh lifetimes, with the documented defaults for zero values.
func refreshLifetimes(cfg *config.Config) (idle, absolute, grace time.Duration) {
	idle, absolute = config.Seconds(cfg.Chimpy.RefreshIdle), config.Seconds(cfg.Chimpy.RefreshAbsolute)
	if idle <= 0 {
		idle = 30 * 24 * time.Hour
	}
	if absolute <= 0 {
		absolute = 365 * 24 * time.Hour
	}
	grace = max(config.Seconds(cfg.Chimpy.RefreshGrace), 0)
	return idle, absolute, grace
}

// wellFormedRefreshToken rejects, without a store read, values that cannot be refresh tokens.
func wellFormedRefreshToken(v string) bool {
	if !strings.HasPrefix(v, RefreshTokenPrefix) || len(v) > 128 || len(v) < len(RefreshTokenPrefix)+32 {
		return false
	}
	for i := len(RefreshTokenPrefix); i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// newFamily starts a refresh family for a user sign-in and returns its first token.
func (s *Server) newFamily(ctx context.Context, c *store.Client, userID, aud string, scope []string, now time.Time) (string, *store.RefreshFamily, error) {
	idle, absolute, _ := refreshLifetimes(s.svc.Config)
	fam := &store.RefreshFamily{
		ID:                secret.NewID("rf_"),
		ClientID:          c.ID,
		UserID:            userID,
		Audience:          aud,
		Scope:             joinScope(scope),
		CreatedAt:         now,
		AbsoluteExpiresAt: now.Add(absolute),
	}
	value := secret.Generate(RefreshTokenPrefix)
	first := &store.RefreshToken{
		Hash:          secret.Hash(value),
		FamilyID:      fam.ID,
		CreatedAt:     now,
		IdleExpiresAt: minTime(now.Add(idle), fam.AbsoluteExpiresAt),
	}
	if err := s.svc.Store.CreateRefreshFamily(ctx, fam, first); err != nil {
		return "", nil, storeFailure(err)
	}
	return value, fam, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// successorAD binds a sealed successor to the row of the token it replaced.
func successorAD(oldHash []byte) []byte {
	return []byte("refresh-successor:" + hex.EncodeToString(oldHash))
}

// rotation is the outcome of presenting a refresh token.
type rotation struct {
	value string // the refresh token to hand out (a new successor, or the same one again in grace)
	fam   *store.RefreshFamily
}

var errBadRefresh = Fail(CodeInvalidGrant, "the refresh token is invalid, expired or revoked")

// refreshWant is what a refresh request asks of the presented token's family: its audience
// (when not empty) and every one of scope.
type refreshWant struct {
	audience string
	scope    []string
}

// familyRefusal is the refusal of a request asking want of family fam, nil when it may proceed.
// The store applies the same conditions inside the rotation (store.RefreshUse), so a request
// refused here never rotated the token.
func (s *Server) familyRefusal(fam *store.RefreshFamily, want refreshWant) error {
	if want.audience != "" && want.audience != fam.Audience {
		return Fail(CodeAccessDenied, "the refresh token was not issued for this audience")
	}
	if s.svc.Reserved.Has(fam.Audience) { // a family from before reserved audiences were refused
		return errReservedAudience(fam.Audience)
	}
	famScope := strings.Fields(fam.Scope)
	for _, sc := range want.scope {
		if !slices.Contains(famScope, sc) {
			return Fail(CodeAccessDenied, "the scope "+sc+" was not granted to this session")
		}
	}
	return nil
}

// rotate checks a presented refresh token for client c and replaces it by a successor, in one
// store write (store.UseRefreshToken): the store rotates the token only when every check below
// holds — the client, the family's state and expiry, want, the token's state and expiry, and
// that the user is still allowed in (not disabled, and unchanged since the sign-in: a family
// older than the user's last password change or disable was revoked with it) — and answers with
// the rows as they were, from which a refusal is told here. A refused request never costs the
// client its refresh token.
func (s *Server) rotate(ctx context.Context, c *store.Client, value, addr string, now time.Time, want refreshWant) (*rotation, error) {
	if !wellFormedRefreshToken(value) {
		return nil, errBadRefresh
	}
	hash := secret.Hash(value)
	idle, _, grace := refreshLifetimes(s.svc.Config)
	nextValue := secret.Generate(RefreshTokenPrefix)
	var sealed []byte
	if grace > 0 {
		if s.svc.Sealer == nil {
			return nil, storeFailure(errors.New("oauth: refresh grace needs a sealer"))
		}
		var err error
		if sealed, err = s.svc.Sealer.Seal([]byte(nextValue), successorAD(hash)); err != nil {
			return nil, storeFailure(err)
		}
	}
	used, err := s.svc.Store.UseRefreshToken(ctx, &store.RefreshUse{Hash: hash, At: now, ClientID: c.ID,
		Audience: want.audience, NotAudiences: s.svc.Reserved, Scope: want.scope,
		NextHash: secret.Hash(nextValue), NextIdleExpiresAt: now.Add(idle), SuccessorSealed: sealed})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errBadRefresh
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	tok, fam := used.Token, used.Family
	if used.Rotated {
		return &rotation{value: nextValue, fam: fam}, nil
	}
	if fam.ClientID != c.ID {
		// RFC 6749 §6: a refresh token is bound to its client. Another client holding it is a leak,
		// but revoking here would let any client kill a session by sending a token it saw; refuse.
		s.audit(ctx, store.AuditEvent{At: now, Actor: "client:" + c.ID, Action: "token.refresh_wrong_client",
			Target: "family:" + fam.ID, Address: addr, Outcome: "denied", Detail: "refresh token of another client"})
		return nil, errBadRefresh
	}
	if fam.RevokedAt != nil || !now.Before(fam.AbsoluteExpiresAt) {
		return nil, errBadRefresh
	}
	if err := s.familyRefusal(fam, want); err != nil {
		return nil, err
	}
	if tok.RotatedAt != nil {
		return s.replayed(ctx, c, tok, fam, addr, now)
	}
	if !now.Before(tok.IdleExpiresAt) {
		return nil, errBadRefresh
	}
	if !used.UserCurrent {
		if err := s.revokeFamily(ctx, fam, now, "user changed or disabled"); err != nil {
			return nil, err
		}
		return nil, errBadRefresh
	}
	// Every check held on the rows as read, yet the token was not rotated: another request
	// rotated it first (a concurrent retry, or a thief racing the client), a replay like any other.
	tok, fam, err = s.svc.Store.GetRefreshToken(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errBadRefresh
	}
	if err != nil {
		return nil, storeFailure(err)
	}
	if tok.RotatedAt == nil {
		// The rows changed back in between (a user re-enabled): nothing was rotated; retry later.
		return nil, storeFailure(errors.New("oauth: refresh token neither rotated nor refused"))
	}
	return s.replayed(ctx, c, tok, fam, addr, now)
}

// replayed answers a refresh token presented after it was rotated: within the grace period, while
// its successor is still unused, the same successor again; otherwise reuse, which revokes the
// whole family.
func (s *Server) replayed(ctx context.Context, c *store.Client, tok *store.RefreshToken, fam *store.RefreshFamily, addr string, now time.Time) (*rotation, error) {
	_, _, grace := refreshLifetimes(s.svc.Config)
	if fam.RevokedAt != nil {
		return nil, errBadRefresh
	}
	if grace > 0 && tok.RotatedAt != nil && now.Before(tok.RotatedAt.Add(grace)) && len(tok.SuccessorSealed) > 0 && s.svc.Sealer != nil {
		succ, err := s.svc.Sealer.Open(tok.SuccessorSealed, successorAD(tok.Hash))
		if err == nil {
			st, _, err := s.svc.Store.GetRefreshToken(ctx, secret.Hash(string(succ)))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, storeFailure(err)
			}
			if st != nil && st.RotatedAt == nil && now.Before(st.IdleExpiresAt) {
				return &rotation{value: string(succ), fam: fam}, nil
			}
			// The successor was used already: the client had it, so this is a replay after all.
		} else {
			s.svc.Log.WarnContext(ctx, "sealed refresh successor does not open", "family", fam.ID)
		}
	}
	if err := s.revokeFamily(ctx, fam, now, "refresh token reuse"); err != nil {
		return nil, err
	}
	s.audit(ctx, store.AuditEvent{At: now, Actor: "client:" + c.ID, Action: "token.refresh_reuse",
		Target: "user:" + fam.UserID, Address: addr, Outcome: "denied",
		Detail: "rotated refresh token presented again; family " + fam.ID + " revoked"})
	return nil, errBadRefresh
}

// revokeFamily revokes a family in the store and every access token minted from it (by `sid`).
func (s *Server) revokeFamily(ctx context.Context, fam *store.RefreshFamily, now time.Time, reason string) error {
	return revokeFamilies(ctx, s.svc, []string{fam.ID}, now, reason, true)
}

func revokeFamilies(ctx context.Context, svc *app.Services, ids []string, now time.Time, reason string, inStore bool) error {
	ctx, cancel := detach(ctx)
	defer cancel()
	until := now.Add(maxAccessLifetime(svc.Config) + time.Minute)
	for _, id := range ids {
		if inStore {
			if err := svc.Store.RevokeRefreshFamily(ctx, id, now, reason); err != nil {
				return storeFailure(err)
			}
		}
		if err := svc.Revoker.Revoke(ctx, "sid", id, until, reason); err != nil {
			return storeFailure(err)
		}
	}
	return nil
}

// RevokeUserSessions revokes every refresh family of a user, and by `sid` every access token minted
// from them. The admin API calls it when a user is disabled or their password changes.
func RevokeUserSessions(ctx context.Context, svc *app.Services, userID, reason string) ([]string, error) {
	now := svc.Clock.Now()
	ctx, cancel := detach(ctx)
	defer cancel()
	ids, err := svc.Store.RevokeUserRefreshFamilies(ctx, userID, now, reason)
	if err != nil {
		return nil, storeFailure(err)
	}
	if err := revokeFamilies(ctx, svc, ids, now, reason, false); err != nil {
		return ids, err
	}
	return ids, nil
}

// RevokeRefreshToken revokes the family of a refresh token (RFC 7009; the admin API's
// /tokens/revoke). clientID, when not empty, must own the family; otherwise nothing happens.
// It reports whether a family was revoked.
func RevokeRefreshToken(ctx context.Context, svc *app.Services, value, clientID, reason string) (bool, error) {
	if !wellFormedRefreshToken(value) {
		return false, nil
	}
	_, fam, err := svc.Store.GetRefreshToken(ctx, secret.Hash(value))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, storeFailure(err)
	}
	if clientID != "" && fam.ClientID != clientID {
		return false, nil
	}
	if fam.RevokedAt != nil {
		return false, nil
	}
	if err := revokeFamilies(ctx, svc, []string{fam.ID}, svc.Clock.Now(), reason, true); err != nil {
		return false, err
	}
	return true, nil
}
