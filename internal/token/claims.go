package token

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/posgate/posgate/internal/jsonx"
)

// registered are the claim names posgate itself writes; Claims.Extra may not use them. Names are
// compared after jsonx.FoldKey, exactly as jsonx.CheckObject compares keys, so the issuer never
// signs a claim set the verifier would refuse as a duplicate (e.g. "ſub" folds to "sub").
var registered = foldedSet("iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "sid")

func foldedSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[jsonx.FoldKey(n)] = true
	}
	return m
}

// checkExtra refuses Extra claims that would override a registered claim or collide with each
// other once case is folded (which the verifier's duplicate-key check would refuse).
func checkExtra(extra map[string]any) error {
	if len(extra) == 0 {
		return nil
	}
	seen := make(map[string]string, len(extra))
	for k := range extra {
		f := jsonx.FoldKey(k)
		if registered[f] {
			return fmt.Errorf("token: extra claim %q would override a registered claim", k)
		}
		if other, dup := seen[f]; dup {
			return fmt.Errorf("token: extra claims %q and %q differ only in case", k, other)
		}
		seen[f] = k
	}
	return nil
}

// encodeClaims renders c as the JWT payload: registered claims in a fixed order, then Extra in key
// order. Times are NumericDates in whole seconds. aud is a string for one audience and an array
// for several (RFC 7519 §4.1.3).
func encodeClaims(c *Claims) ([]byte, error) {
	b := make([]byte, 0, 320)
	b = append(b, '{')
	b = appendStringClaim(b, "iss", c.Issuer, true)
	b = appendStringClaim(b, "sub", c.Subject, false)
	switch len(c.Audience) {
	case 0:
	case 1:
		b = appendStringClaim(b, "aud", c.Audience[0], false)
	default:
		b = append(b, `,"aud":[`...)
		for i, a := range c.Audience {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonx.AppendString(b, a)
		}
		b = append(b, ']')
	}
	b = appendStringClaim(b, "client_id", c.ClientID, false)
	b = appendStringClaim(b, "scope", c.Scope, false)
	b = appendStringClaim(b, "jti", c.JTI, false)
	b = appendTimeClaim(b, "iat", c.IssuedAt)
	if !c.NotBefore.IsZero() {
		b = appendTimeClaim(b, "nbf", c.NotBefore)
	}
	b = appendTimeClaim(b, "exp", c.ExpiresAt)
	b = appendStringClaim(b, "sid", c.SessionID, false)
	if len(c.Extra) > 0 {
		if err := checkExtra(c.Extra); err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(c.Extra))
		for k := range c.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v, err := json.Marshal(c.Extra[k])
			if err != nil {
				return nil, fmt.Errorf("token: extra claim %q: %w", k, err)
			}
			if v[0] == '{' || v[0] == '[' {
				// A nested object may hold keys equal up to case (a map[string]any{"a":1,"A":2});
				// refuse here what every verifier would refuse later.
				if err := jsonx.CheckObject(append(append([]byte(`{"v":`), v...), '}')); err != nil {
					return nil, fmt.Errorf("token: extra claim %q: %w", k, err)
				}
			}
			b = append(b, ',')
			b = jsonx.AppendString(b, k)
			b = append(b, ':')
			b = append(b, v...)
		}
	}
	return append(b, '}'), nil
}

func appendStringClaim(b []byte, name, v string, first bool) []byte {
	if v == "" && !first {
		return b
	}
	if !first {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `":`...)
	return jsonx.AppendString(b, v)
}

func appendTimeClaim(b []byte, name string, t time.Time) []byte {
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return strconv.AppendInt(b, t.Unix(), 10)
}

// decodeClaims reads a payload that already passed jsonx.CheckObject (one object, no duplicate
// keys even up to case). Registered claims must have their registered types; a registered name
// in another case ("EXP") is refused as ambiguous; every other top-level member goes into Extra,
// numbers as json.Number.
func decodeClaims(payload []byte) (*Claims, *VerifyError) {
	c := &Claims{}
	var ve *VerifyError
	str := func(name string, dst *string, val []byte) {
		var ok bool
		if *dst, ok = jsonString(val); !ok {
			ve = verr(ReasonClaims, "claim %s is not a string", name)
		}
	}
	date := func(name string, dst *time.Time, val []byte) {
		t, err := numericDate(val)
		if err != nil {
			ve = verr(ReasonClaims, "claim %s is not a NumericDate", name)
		}
		*dst = t
	}
	ok := members(payload, func(key []byte, escaped bool, val []byte) bool {
		name, ok := memberKey(key, escaped)
		if !ok {
			ve = verr(ReasonJSON, "payload: invalid key")
			return false
		}
		switch name {
		case "iss":
			str(name, &c.Issuer, val)
		case "sub":
			str(name, &c.Subject, val)
		case "client_id":
			str(name, &c.ClientID, val)
		case "scope":
			str(name, &c.Scope, val)
		case "jti":
			str(name, &c.JTI, val)
		case "sid":
			str(name, &c.SessionID, val)
		case "iat":
			date(name, &c.IssuedAt, val)
		case "nbf":
			date(name, &c.NotBefore, val)
		case "exp":
			date(name, &c.ExpiresAt, val)
		case "aud":
			aud, err := audience(val)
			if err != nil {
				ve = verr(ReasonClaims, "claim aud is not a string or an array of strings")
			}
			c.Audience = aud
		default:
			if registered[jsonx.FoldKey(name)] {
				ve = verr(ReasonClaims, "claim %q differs from a registered claim name only in case", name)
				return false
			}
			dec := json.NewDecoder(bytes.NewReader(val))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				ve = &VerifyError{Reason: ReasonJSON, Detail: "payload: " + err.Error(), Err: err}
				return false
			}
			if c.Extra == nil {
				c.Extra = map[string]any{}
			}
			c.Extra[name] = v
		}
		return ve == nil
	})
	if ve != nil {
		return nil, ve
	}
	if !ok {
		return nil, verr(ReasonJSON, "payload: invalid JSON")
	}
	return c, nil
}

func audience(raw []byte) ([]string, error) {
	if len(raw) > 0 && raw[0] == '"' {
		s, ok := jsonString(raw)
		if !ok {
			return nil, fmt.Errorf("not a string")
		}
		return []string{s}, nil
	}
	if len(raw) == 0 || raw[0] != '[' {
		return nil, fmt.Errorf("not a string or array")
	}
	var a []string
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, err
	}
	if a == nil {
		return nil, fmt.Errorf("null") // json.Unmarshal cannot produce this from '[', but be exact
	}
	return a, nil
}

// maxNumericDate bounds NumericDates to the year 9999, so conversions cannot overflow.
const maxNumericDate = 253402300799

// numericDate parses a JSON number of seconds since the epoch (RFC 7519 §2; fractions allowed).
func numericDate(raw []byte) (time.Time, error) {
	s := string(raw)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > maxNumericDate {
			return time.Time{}, fmt.Errorf("out of range")
		}
		return time.Unix(n, 0), nil
	}
	if s == "" || !(s[0] >= '0' && s[0] <= '9') { // not a JSON number (string, null, true, object…)
		return time.Time{}, fmt.Errorf("not a number")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, fmt.Errorf("not a number in range")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
