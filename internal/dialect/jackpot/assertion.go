package jackpot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/token"
)

// Limits of the assertion's claims.
const (
	maxNotificationKey = 128 // characters (spec)
	maxUserID          = 256 // characters; the spec gives no bound, an identity header needs one
	maxJTI             = 256
)

// Assertion is what a verified jwt-bearer assertion asks for.
type Assertion struct {
	Amount          float64
	IssuedAt        time.Time
	NotificationKey string
	// UserID is the optional userId claim as sent: a string or a json.Number; nil when absent.
	UserID any
	// ForceManualConfirm is nil when the claim is absent.
	ForceManualConfirm *bool
	// JTI is the optional jti claim ("" when absent); single use is enforced on it too.
	JTI string
}

// AssertionWindow is the accepted range of an assertion's iat around now.
type AssertionWindow struct {
	Past   time.Duration // iat may be at most this old
	Future time.Duration // iat may be at most this far ahead (clock skew of the caller)
}

// assertionError is a refused assertion. Description is the precise, secret-free text sent as
// error_description. Credential is set when the failure is one a key guesser would produce
// (malformed token, wrong alg, bad signature): those count towards the throttle; a claim problem
// in a correctly signed assertion comes from the key holder and does not.
type assertionError struct {
	Description string
	Credential  bool
	Err         error
}

func (e *assertionError) Error() string { return "invalid assertion: " + e.Description }
func (e *assertionError) Unwrap() error { return e.Err }

func claimError(format string, a ...any) error {
	return &assertionError{Description: fmt.Sprintf(format, a...)}
}

// VerifyAssertion checks a jackpot jwt-bearer assertion, in the order of the spec:
//  1. size cap, strict parse (three canonical base64url segments, JSON objects without duplicate
//     keys) and alg exactly HS256 — all before any key is used (token.VerifyHS256);
//  2. the HMAC against each of keys (the client's unexpired API signatures), in constant time;
//  3. amount a positive number; iat an integer within w of now; exp/nbf honoured when present;
//     notificationKey a non-empty string of at most 128 characters; userId, forceManualConfirm and
//     jti type-checked when present. Unknown claims are ignored.
//
// Single use is not decided here: the caller records the assertion only once every check passed,
// so a refused assertion burns nothing.
func VerifyAssertion(raw string, keys [][]byte, now time.Time, w AssertionWindow) (*Assertion, error) {
	payload, err := token.VerifyHS256(raw, keys)
	if err != nil {
		return nil, describeVerifyError(err)
	}
	return parseAssertionClaims(payload, now, w)
}

// describeVerifyError turns the shared HS256 front door's error into the error_description.
func describeVerifyError(err error) error {
	var ve *token.VerifyError
	if !errors.As(err, &ve) {
		return &assertionError{Description: "assertion could not be verified", Credential: true, Err: err}
	}
	var d string
	switch ve.Reason {
	case token.ReasonTooLarge:
		d = fmt.Sprintf("assertion is larger than %d bytes", token.MaxTokenBytes)
	case token.ReasonMalformed:
		d = "assertion is not a compact JWS (three base64url segments)"
	case token.ReasonMissingAlg:
		d = "assertion header has no alg; it must be HS256"
	case token.ReasonAlg:
		d = "assertion alg must be HS256 (" + ve.Detail + ")"
	case token.ReasonJSON:
		d = "assertion is malformed: " + ve.Detail
	case token.ReasonSignature:
		d = "assertion signature does not verify with the client's API signature"
	case token.ReasonUnknownKey:
		d = "client has no API signature to verify the assertion with"
	default:
		d = "assertion is invalid: " + ve.Detail
	}
	return &assertionError{Description: d, Credential: true, Err: err}
}

// parseAssertionClaims applies the claim rules to a payload already known to be one JSON object
// without duplicate keys.
func parseAssertionClaims(payload []byte, now time.Time, w AssertionWindow) (*Assertion, error) {
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, &assertionError{Description: "assertion claims are not a JSON object", Err: err}
	}
	a := &Assertion{}

	// amount: the most the session may spend.
	v, ok := claims["amount"]
	if !ok || v == nil {
		return nil, claimError("amount is missing")
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return nil, claimError("amount must be a positive number")
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || !(f > 0) {
		return nil, claimError("amount must be a positive number")
	}
	a.Amount = f

	// iat: integer seconds inside the window.
	v, ok = claims["iat"]
	if !ok || v == nil {
		return nil, claimError("iat is missing")
	}
	iat, ok := integerSeconds(v)
	if !ok {
		return nil, claimError("iat must be an integer number of seconds since the epoch")
	}
	// Compare in whole seconds first so an absurd iat cannot overflow time arithmetic, then exactly.
	oldest, newest := now.Add(-w.Past), now.Add(w.Future)
	if iat < oldest.Unix()-1 || (iat <= oldest.Unix()+1 && time.Unix(iat, 0).Before(oldest)) {
		return nil, claimError("iat is more than %d s in the past", int64(w.Past/time.Second))
	}
	if iat > newest.Unix()+1 || (iat >= newest.Unix()-1 && time.Unix(iat, 0).After(newest)) {
		return nil, claimError("iat is more than %d s in the future", int64(w.Future/time.Second))
	}
	a.IssuedAt = time.Unix(iat, 0)

	// exp and nbf are not part of jackpot's assertion, but a caller that sets them means them.
	if err := token.CheckExpNbf(claimText(claims["exp"]), claimText(claims["nbf"]), now); err != nil {
		return nil, claimError("%s", err.Error())
	}

	// notificationKey: the caller's unique transaction key.
	v, ok = claims["notificationKey"]
	if !ok || v == nil {
		return nil, claimError("notificationKey is missing")
	}
	nk, isStr := v.(string)
	if !isStr {
		return nil, claimError("notificationKey must be a string")
	}
	if nk == "" {
		return nil, claimError("notificationKey must not be empty")
	}
	if utf8.RuneCountInString(nk) > maxNotificationKey {
		return nil, claimError("notificationKey must be at most %d characters", maxNotificationKey)
	}
	a.NotificationKey = nk

	// Optional claims: absent and null mean the same.
	if v, ok := claims["userId"]; ok && v != nil {
		switch u := v.(type) {
		case string:
			if u == "" || utf8.RuneCountInString(u) > maxUserID {
				return nil, claimError("userId must be a non-empty string of at most %d characters or a number", maxUserID)
			}
			a.UserID = u
		case json.Number:
			a.UserID = u
		default:
			return nil, claimError("userId must be a string or a number")
		}
	}
	if v, ok := claims["forceManualConfirm"]; ok && v != nil {
		b, isBool := v.(bool)
		if !isBool {
			return nil, claimError("forceManualConfirm must be a boolean")
		}
		a.ForceManualConfirm = &b
	}
	if v, ok := claims["jti"]; ok && v != nil {
		s, isStr := v.(string)
		if !isStr || s == "" || len(s) > maxJTI {
			return nil, claimError("jti must be a non-empty string of at most %d bytes", maxJTI)
		}
		a.JTI = s
	}
	return a, nil
}

// integerSeconds accepts a JSON integer (no fraction, no exponent) that fits in int64.
func integerSeconds(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return 0, false
	}
	return i, true
}

// claimText is the JSON text of a numeric claim decoded with UseNumber ("" when absent or not a
// number, which CheckExpNbf refuses as a malformed date when present).
func claimText(v any) string {
	switch n := v.(type) {
	case nil:
		return ""
	case json.Number:
		return string(n)
	}
	return "x"
}
