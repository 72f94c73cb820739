package doshii

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/token"
)

// maxLocationToken caps the locationToken claim: posgate's tokens are 49 bytes; anything much
// longer is not one and is refused before it is hashed.
const maxLocationToken = 256

// maxAPIName caps a vendor's API name (the `vendor` header and the cloud-POS JWT claim).
const maxAPIName = 64

// Window is the accepted range of a JWT's timestamp around now: now-Past ≤ timestamp ≤ now+Future.
type Window struct {
	Past   time.Duration
	Future time.Duration
}

// claimError is a problem in the claims of a correctly signed JWT. It came from the key holder
// (a clock or encoding bug in the POS), not from a key guesser, so it does not count towards the
// throttle.
type claimError struct{ msg string }

func (e *claimError) Error() string { return e.msg }

// LocationClaims are the claims of a verified location JWT.
type LocationClaims struct {
	LocationToken string
	Timestamp     time.Time
}

// VendorClaims are the claims of a verified cloud-POS vendor JWT.
type VendorClaims struct {
	Vendor    string
	Timestamp time.Time
}

// VerifyLocationJWT checks a location JWT against the vendor's unexpired keys: the shared HS256
// front door first (size cap, strict parse, alg exactly HS256 before any key is touched, HMAC in
// constant time against each key), then the claims: locationToken a non-empty string, timestamp
// an integer or float number of epoch seconds within w of now. Other claims are ignored (JWT
// libraries add their own, such as iat). It does not look the location up.
func VerifyLocationJWT(raw string, keys [][]byte, now time.Time, w Window) (*LocationClaims, error) {
	payload, err := token.VerifyHS256(raw, keys)
	if err != nil {
		return nil, err
	}
	return parseLocationClaims(payload, now, w)
}

// VerifyVendorJWT checks a cloud-POS vendor JWT {"vendor","timestamp"} the same way; the vendor
// claim must equal apiName (the vendor whose keys were used).
func VerifyVendorJWT(raw string, keys [][]byte, apiName string, now time.Time, w Window) (*VendorClaims, error) {
	payload, err := token.VerifyHS256(raw, keys)
	if err != nil {
		return nil, err
	}
	return parseVendorClaims(payload, apiName, now, w)
}

func parseLocationClaims(payload []byte, now time.Time, w Window) (*LocationClaims, error) {
	m, err := claimMap(payload)
	if err != nil {
		return nil, err
	}
	lt, err := stringClaim(m, "locationToken", maxLocationToken)
	if err != nil {
		return nil, err
	}
	ts, err := timestampClaim(m, now, w)
	if err != nil {
		return nil, err
	}
	if err := registeredTimes(m, now); err != nil {
		return nil, err
	}
	return &LocationClaims{LocationToken: lt, Timestamp: ts}, nil
}

func parseVendorClaims(payload []byte, apiName string, now time.Time, w Window) (*VendorClaims, error) {
	m, err := claimMap(payload)
	if err != nil {
		return nil, err
	}
	v, err := stringClaim(m, "vendor", maxAPIName)
	if err != nil {
		return nil, err
	}
	if v != apiName {
		return nil, &claimError{"JWT claim vendor does not name the vendor in the request"}
	}
	ts, err := timestampClaim(m, now, w)
	if err != nil {
		return nil, err
	}
	if err := registeredTimes(m, now); err != nil {
		return nil, err
	}
	return &VendorClaims{Vendor: v, Timestamp: ts}, nil
}

// claimMap splits the payload into its members. VerifyHS256 has already refused anything but a
// JSON object without duplicate keys; names are matched exactly (not case-insensitively).
func claimMap(payload []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil || m == nil {
		return nil, &claimError{"JWT payload is not a JSON object"}
	}
	return m, nil
}

func stringClaim(m map[string]json.RawMessage, name string, max int) (string, error) {
	raw, ok := m[name]
	if !ok || string(raw) == "null" {
		return "", &claimError{fmt.Sprintf("JWT claim %s is required", name)}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &claimError{fmt.Sprintf("JWT claim %s must be a string", name)}
	}
	if s == "" || len(s) > max || !utf8.ValidString(s) {
		return "", &claimError{fmt.Sprintf("JWT claim %s must be a non-empty string of at most %d bytes", name, max)}
	}
	return s, nil
}

// registeredTimes honours exp and nbf when the JWT carries them (Doshii's JWTs need neither, but
// a POS that sets them means them): RFC 7519 §4.1.4–5, checked after the timestamp window.
func registeredTimes(m map[string]json.RawMessage, now time.Time) error {
	if err := token.CheckExpNbf(string(m["exp"]), string(m["nbf"]), now); err != nil {
		return &claimError{"JWT claim " + err.Error()}
	}
	return nil
}

// timestampClaim reads timestamp: a JSON number of epoch seconds, integer or float
// (1700000000 or 1700000000.0 — .NET clients send the latter), that must satisfy
// now-w.Past ≤ timestamp ≤ now+w.Future. Both bounds are inclusive. The comparison is done in
// float64 seconds, exact for whole seconds and within a microsecond for fractions.
func timestampClaim(m map[string]json.RawMessage, now time.Time, w Window) (time.Time, error) {
	raw, ok := m["timestamp"]
	if !ok || string(raw) == "null" {
		return time.Time{}, &claimError{"JWT claim timestamp is required"}
	}
	if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return time.Time{}, &claimError{"JWT claim timestamp must be a number of seconds since the epoch"}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil { // out of float64 range
		return time.Time{}, &claimError{"JWT timestamp is outside the accepted window"}
	}
	nowF := float64(now.Unix()) + float64(now.Nanosecond())/1e9
	if f < nowF-w.Past.Seconds() {
		return time.Time{}, &claimError{"JWT has expired (timestamp is too old)"}
	}
	if f > nowF+w.Future.Seconds() {
		return time.Time{}, &claimError{"JWT timestamp is in the future"}
	}
	sec := int64(f)
	nsec := int64((f - float64(sec)) * 1e9)
	if nsec < 0 { // negative fractional part: a timestamp before 1970 inside a huge window
		sec--
		nsec += 1e9
	}
	return time.Unix(sec, nsec), nil
}

// verifyErrorMessage turns the shared front door's refusal into a secret-free message.
func verifyErrorMessage(err error) string {
	var ve *token.VerifyError
	if !errors.As(err, &ve) {
		return "invalid JWT"
	}
	switch ve.Reason {
	case token.ReasonAlg, token.ReasonMissingAlg:
		return "JWT must be signed with HS256"
	case token.ReasonSignature, token.ReasonUnknownKey:
		return "JWT signature does not verify with this vendor's key"
	case token.ReasonTooLarge:
		return "JWT is too large"
	default:
		return "malformed JWT"
	}
}
