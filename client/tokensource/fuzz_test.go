package tokensource_test

import (
	"testing"
	"time"

	"github.com/posgate/posgate/client/tokensource"
)

// FuzzParseToken: any answer of a token endpoint is either refused or a token with an access
// token and an expiry that is not in the past.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"a","token_type":"Bearer","expires_in":3600}`,
		`{"access_token":"a","refresh_token":"r","expires_in":"3600","scope":"x"}`,
		`{"access_token":"a","expires_in":3600.0}`,
		`{"access_token":"a","expires_in":1e3}`,
		`{"access_token":"","expires_in":1}`,
		`{"access_token":"a","expires_in":-5}`,
		`{"access_token":"a","expires_in":99999999999999999999}`,
		`{"access_token":"a","expires_in":9223372036854775807}`,
		`not json`, `[]`, `null`,
	} {
		f.Add([]byte(s))
	}
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, raw []byte) {
		tok, err := tokensource.ParseToken(raw, now)
		if err != nil {
			return
		}
		if tok.AccessToken == "" || (!tok.Expiry.IsZero() && tok.Expiry.Before(now)) {
			t.Fatalf("%q → %+v", raw, tok)
		}
	})
}

// FuzzParseRetryAfter: a Retry-After value never means a negative wait.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", "-1", "Wed, 21 Oct 2015 07:28:00 GMT", "Sun, 06 Dec 2099 05:00:00 GMT", "", "soon", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, v string) {
		if d := tokensource.ParseRetryAfter(v, now); d < 0 {
			t.Fatalf("%q → %v", v, d)
		}
	})
}
