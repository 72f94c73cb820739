// Package token issues and verifies posgate's own JWTs (RFC 9068 profile) and verifies third-party
// shared-key (HS256) JWTs for the dialects that use them (doshii, jackpot). Other packages code
// against the Issuer, Verifier and Revoker interfaces below.
package token

import (
	"context"
	"fmt"
	"time"
)

// MaxTokenBytes caps any JWT before it is parsed (golang-jwt decodes claims before it checks the
// signature, so an unbounded token is an unbounded allocation).
const MaxTokenBytes = 8 << 10

// Claims are the claims of a posgate token. Issue fills Issuer, JTI, IssuedAt, ExpiresAt.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	ClientID  string // internal client id ("cl_…"), the RFC 9068 client_id claim
	Scope     string // space-separated
	JTI       string
	SessionID string // `sid`: refresh family or device pairing; revoking it revokes the token
	IssuedAt  time.Time
	NotBefore time.Time
	ExpiresAt time.Time
	// Extra holds dialect claims (e.g. "gty", "azp", "amount", "notificationKey"). Registered names
	// above may not be overridden through Extra.
	Extra map[string]any
}

// Reason says why a token was refused; chef maps each to its own error number.
type Reason int

const (
	ReasonMalformed   Reason = iota + 1 // not three segments, or empty (chef 50)
	ReasonTooLarge                      // over MaxTokenBytes
	ReasonMissingAlg                    // header has no alg (chef 22)
	ReasonAlg                           // alg not the one pinned for this kind (chef 20)
	ReasonJSON                          // header or claims not a JSON object, duplicate keys, bad base64 (chef 40)
	ReasonExpired                       // exp passed (chef 52)
	ReasonNotYetValid                   // nbf/iat in the future (chef 54)
	ReasonSignature                     // signature does not verify (chef 60)
	ReasonUnknownKey                    // kid not among this kind's keys (chef 70)
	ReasonClaims                        // iss/aud/typ/required claim wrong
	ReasonRevoked                       // jti or sid revoked
)

// VerifyError is the error every verifier returns. Detail is safe to show (never the token).
type VerifyError struct {
	Reason Reason
	Detail string // e.g. the offending alg, or the JSON error
	Err    error
}

func (e *VerifyError) Error() string { return fmt.Sprintf("token: %s", e.Detail) }
func (e *VerifyError) Unwrap() error { return e.Err }

// VerifyOptions select what a caller accepts.
type VerifyOptions struct {
	Audience string        // required audience ("" = any audience)
	Leeway   time.Duration // clock skew tolerated on exp/nbf/iat
	// AllowExpiredFor accepts a token whose exp passed less than this long ago (chef renewal). The
	// returned claims still show the real ExpiresAt.
	AllowExpiredFor time.Duration
}

// Verifier verifies posgate's own tokens; see verifier.go.
type Verifier interface {
	Verify(ctx context.Context, raw string, opts VerifyOptions) (*Claims, error)
}

// Issuer mints posgate tokens with the keyring's active key.
type Issuer interface {
	// Issue signs c with a lifetime; it fills Issuer, JTI (if empty), IssuedAt, ExpiresAt and returns
	// the compact JWT and the claims as signed.
	Issue(ctx context.Context, c Claims, lifetime time.Duration) (string, *Claims, error)
}

// Revoker makes revocations durable and immediate on every replica.
type Revoker interface {
	// Revoke writes the revocation to the store, applies it to this process at once and announces it
	// on the event bus. kind is "jti" or "sid"; expiresAt is when every token it matches has expired.
	Revoke(ctx context.Context, kind, value string, expiresAt time.Time, reason string) error
}

var reasonNames = [...]string{
	ReasonMalformed: "malformed", ReasonTooLarge: "too_large", ReasonMissingAlg: "missing_alg",
	ReasonAlg: "alg", ReasonJSON: "json", ReasonExpired: "expired", ReasonNotYetValid: "not_yet_valid",
	ReasonSignature: "signature", ReasonUnknownKey: "unknown_key", ReasonClaims: "claims", ReasonRevoked: "revoked",
}

// String names the reason (stable, lowercase; suitable as a metrics label).
func (r Reason) String() string {
	if r > 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}
