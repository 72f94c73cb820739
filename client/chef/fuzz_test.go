package chef

import (
	"encoding/base64"
	"testing"
)

// FuzzExpiry: reading exp from any token never panics, and a token without a positive exp has
// no expiry (it is then renewed only when the server refuses it).
func FuzzExpiry(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	for _, claims := range []string{`{"exp":1700000000}`, `{"exp":1.7e9}`, `{"exp":-1}`, `{"exp":"soon"}`, `{}`, `[`, `{"exp":1e300}`} {
		f.Add("eyJhbGciOiJFZERTQSJ9." + enc([]byte(claims)) + ".sig")
	}
	f.Add("not.a.jwt")
	f.Add("")
	f.Fuzz(func(t *testing.T, jwt string) {
		if e := expiry(jwt); !e.IsZero() && e.Unix() <= 0 {
			t.Fatalf("%q → %v", jwt, e)
		}
	})
}
