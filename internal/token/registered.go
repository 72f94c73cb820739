package token

import (
	"math"
	"strconv"
	"time"
)

// CheckExpNbf applies RFC 7519 §4.1.4–5 to a JWT posgate verifies from another party (a doshii
// location or vendor JWT, a jackpot assertion), whatever that dialect's own timestamp rules: an
// exp in the past or an nbf in the future refuses the token even inside the dialect's window.
// exp and nbf are the JSON text of each claim; "" or "null" means absent. The error's text is
// safe to show.
func CheckExpNbf(exp, nbf string, now time.Time) error {
	if exp != "" && exp != "null" {
		t, ok := NumericDate(exp)
		if !ok {
			return &ClaimTimeError{"exp must be a number of seconds since the epoch"}
		}
		if !now.Before(t) {
			return &ClaimTimeError{"the JWT has expired (exp)"}
		}
	}
	if nbf != "" && nbf != "null" {
		t, ok := NumericDate(nbf)
		if !ok {
			return &ClaimTimeError{"nbf must be a number of seconds since the epoch"}
		}
		if now.Before(t) {
			return &ClaimTimeError{"the JWT is not valid yet (nbf)"}
		}
	}
	return nil
}

// ClaimTimeError is CheckExpNbf's refusal.
type ClaimTimeError struct{ Msg string }

func (e *ClaimTimeError) Error() string { return e.Msg }

// NumericDate parses a JWT NumericDate (RFC 7519 §2): the JSON text of a number of seconds since
// the epoch, fractions allowed. A value that is not a finite number within ±1e15 is refused.
func NumericDate(text string) (time.Time, bool) {
	if text == "" || !(text[0] == '-' || (text[0] >= '0' && text[0] <= '9')) {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || math.Abs(f) > 1e15 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}
