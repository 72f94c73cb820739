package token

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/jsonx"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/store"
)

// DefaultResyncInterval is how often the revocation set is re-read from the store, so a missed
// event cannot keep a revoked token alive longer than this.
const DefaultResyncInterval = 5 * time.Second

// PosgateVerifier verifies posgate's own tokens; it implements the Verifier and Revoker interfaces.
// (The name Verifier is the interface of contract.go, so the concrete type carries a longer name.)
//
// A token is checked in this order, each failure a *VerifyError with its Reason:
//  1. at most MaxTokenBytes (ReasonTooLarge); three segments (ReasonMalformed); strict base64url
//     and a header that is one JSON object without duplicate keys (ReasonJSON);
//  2. the header's alg is present (ReasonMissingAlg) and is one posgate signs with (ReasonAlg);
//     its kid names a published key (ReasonUnknownKey) whose pinned algorithm is that alg
//     (ReasonAlg) — the header never chooses how a token is verified;
//  3. the signature (ReasonSignature); only then is the payload parsed (ReasonJSON, or
//     ReasonClaims for a registered claim of the wrong type);
//  4. exp (ReasonExpired), nbf and iat (ReasonNotYetValid), with the caller's leeway;
//  5. iss, typ "at+jwt", the required claims exp/iat/jti, and the caller's audience (ReasonClaims;
//     a missing exp or iat is reported before step 4, which needs them);
//  6. the revocation set, by jti and by sid (ReasonRevoked).
//
// Steps 1–3 and the iss/typ/jti part of 5 depend only on the token, so their result is cached
// (keyed by the token string itself, until its exp): a repeated token costs a map lookup and
// steps 4–6.
// The revocation set is in memory — applied at once on Revoke, on events from other replicas, and
// re-read from the store every resync interval — so verification never waits for the store and
// keeps working while it is down.
type PosgateVerifier struct {
	kr     *keys.Keyring
	st     store.Revocations
	bus    events.Bus
	clk    clock.Clock
	issuer string
	log    *slog.Logger

	resync time.Duration
	cache  *verifyCache // nil: disabled

	revMu    sync.RWMutex
	revoked  map[revKey]time.Time // → when every token it matches has expired
	lastSync time.Time            // start of the last successful resync (zero: never)
	started  atomic.Bool

	headers headerMemo // headers of tokens whose signature verified
}

type revKey struct{ kind, value string }

// NewVerifier returns a PosgateVerifier of tokens issued by issuerURL with keys from kr. st and bus carry
// revocations between replicas (bus may be nil for a single process); log may be nil.
func NewVerifier(kr *keys.Keyring, st store.Revocations, bus events.Bus, clk clock.Clock, issuerURL string, log *slog.Logger) *PosgateVerifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &PosgateVerifier{
		kr: kr, st: st, bus: bus, clk: clk, issuer: issuerURL, log: log,
		resync:  DefaultResyncInterval,
		cache:   newVerifyCache(DefaultCacheSize),
		revoked: map[revKey]time.Time{},
	}
}

// SetResyncInterval changes how often Start's loop re-reads the revocation set (call before Start).
func (v *PosgateVerifier) SetResyncInterval(d time.Duration) {
	if d > 0 {
		v.resync = d
	}
}

// SetCacheSize bounds the verification cache to n tokens; 0 disables it (call before use).
func (v *PosgateVerifier) SetCacheSize(n int) {
	if n <= 0 {
		v.cache = nil
		return
	}
	v.cache = newVerifyCache(n)
}

// Verify checks raw and returns its claims. The returned Claims are the caller's, but their
// Audience slice and Extra map may be shared with the cache: read them, do not modify them.
func (v *PosgateVerifier) Verify(_ context.Context, raw string, opts VerifyOptions) (*Claims, error) {
	if len(raw) > MaxTokenBytes { // before hashing or parsing anything
		return nil, verr(ReasonTooLarge, "token longer than %d bytes", MaxTokenBytes)
	}
	now := v.clk.Now()
	if v.cache != nil && raw != "" {
		if e := v.cache.get(raw, now); e != nil {
			if _, ok := v.kr.Lookup(e.kid); ok {
				if ve := v.checkDynamic(e.claims, now, opts, nil); ve != nil {
					return nil, ve
				}
				c := *e.claims
				return &c, nil
			}
			// Its key is no longer published: the full check below says so.
		}
	}
	c, kid, claimsErr, ve := v.verifyStatic(raw)
	if ve != nil {
		return nil, ve
	}
	if ve := v.checkDynamic(c, now, opts, claimsErr); ve != nil {
		return nil, ve
	}
	if v.cache != nil && now.Before(c.ExpiresAt) {
		v.cache.put(raw, &cacheEntry{claims: c, kid: kid, exp: c.ExpiresAt}, now)
	}
	out := *c
	return &out, nil
}

// supportedAlg is the set of algorithms posgate keys can be pinned to.
func supportedAlg(alg string) bool {
	return alg == keys.AlgEdDSA || alg == keys.AlgES256 || alg == keys.AlgRS256
}

// verifyStatic runs the checks that depend on the token alone: steps 1–3, and the static claim
// checks of step 5, whose failure it returns separately (claimsErr) because the time checks of
// step 4 come first. Without exp or iat the time checks cannot run: that is reported at once.
func (v *PosgateVerifier) verifyStatic(raw string) (c *Claims, kid string, claimsErr, ve *VerifyError) {
	hSeg, pSeg, sSeg, ve := splitSegments(raw)
	if ve != nil {
		return nil, "", nil, ve
	}
	// A header already seen on a token whose signature verified is not parsed again: posgate
	// signs with a handful of keys, so nearly every token carries one of a handful of headers.
	h, known := v.headers.get(hSeg)
	if !known {
		header, ve := decodeHeaderSegment(hSeg)
		if ve != nil {
			return nil, "", nil, ve
		}
		if h, ve = parseHeader(header); ve != nil {
			return nil, "", nil, ve
		}
	}
	payload, sig, ve := decodeBody(pSeg, sSeg)
	if ve != nil {
		return nil, "", nil, ve
	}
	signingInput := raw[:len(hSeg)+1+len(pSeg)]
	if !supportedAlg(h.Alg) {
		return nil, "", nil, verr(ReasonAlg, "unsupported algorithm %s", quoteAlg(h.Alg))
	}
	if h.Kid == "" {
		return nil, "", nil, verr(ReasonUnknownKey, "header has no kid")
	}
	pk, ok := v.kr.Lookup(h.Kid)
	if !ok {
		return nil, "", nil, verr(ReasonUnknownKey, "unknown key id")
	}
	if pk.Alg != h.Alg {
		return nil, "", nil, verr(ReasonAlg, "unsupported algorithm %s for this key", quoteAlg(h.Alg))
	}
	if !pk.Verify([]byte(signingInput), sig) {
		return nil, "", nil, verr(ReasonSignature, "signature does not verify")
	}
	if !known {
		v.headers.put(hSeg, h)
	}
	if err := jsonx.CheckObject(payload); err != nil {
		return nil, "", nil, &VerifyError{Reason: ReasonJSON, Detail: "payload: " + err.Error(), Err: err}
	}
	c, ve = decodeClaims(payload)
	if ve != nil {
		return nil, "", nil, ve
	}
	switch {
	case c.ExpiresAt.IsZero():
		return nil, "", nil, verr(ReasonClaims, "claim exp is missing")
	case c.IssuedAt.IsZero():
		return nil, "", nil, verr(ReasonClaims, "claim iat is missing")
	case c.Issuer != v.issuer:
		claimsErr = verr(ReasonClaims, "token was not issued by this server (iss)")
	case !h.HasTyp || !isAccessTokenType(h.Typ):
		claimsErr = verr(ReasonClaims, "header typ is not %s", TypeAccessToken)
	case c.JTI == "":
		claimsErr = verr(ReasonClaims, "claim jti is missing")
	}
	return c, h.Kid, claimsErr, nil
}

// isAccessTokenType accepts "at+jwt" and its full media type, case-insensitively (RFC 7515
// §4.1.9, RFC 9068 §2.1).
func isAccessTokenType(typ string) bool {
	return strings.EqualFold(typ, TypeAccessToken) || strings.EqualFold(typ, "application/"+TypeAccessToken)
}

// checkDynamic runs the checks that depend on the moment and the caller, in the documented order:
// times (with leeway), then the static claim failure found earlier (if any), the audience, and
// revocation.
func (v *PosgateVerifier) checkDynamic(c *Claims, now time.Time, opts VerifyOptions, claimsErr *VerifyError) *VerifyError {
	leeway := max(opts.Leeway, 0)
	if !now.Before(c.ExpiresAt.Add(leeway)) &&
		!(opts.AllowExpiredFor > 0 && now.Before(c.ExpiresAt.Add(leeway+opts.AllowExpiredFor))) {
		return verr(ReasonExpired, "token expired")
	}
	if !c.NotBefore.IsZero() && now.Add(leeway).Before(c.NotBefore) {
		return verr(ReasonNotYetValid, "token not valid yet (nbf)")
	}
	if now.Add(leeway).Before(c.IssuedAt) {
		return verr(ReasonNotYetValid, "token issued in the future (iat)")
	}
	if claimsErr != nil {
		return claimsErr
	}
	if opts.Audience != "" && !hasAudience(c.Audience, opts.Audience) {
		return verr(ReasonClaims, "token is not meant for this audience")
	}
	if v.isRevoked(c, now) {
		return verr(ReasonRevoked, "token revoked")
	}
	return nil
}

func hasAudience(aud []string, want string) bool {
	for _, a := range aud {
		if a == want {
			return true
		}
	}
	return false
}
