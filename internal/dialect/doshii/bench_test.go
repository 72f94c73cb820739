package doshii

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"

	"github.com/posgate/posgate/internal/token"
)

// Benchmarks of the venue check, against baselines run in the same process:
//
//	go test -run='^$' -bench=. -benchmem ./internal/dialect/doshii/
//
// BenchmarkBaselineHMAC is the physical floor (one HMAC-SHA256 over the signing input);
// BenchmarkBaselineVerifyHS256 adds the shared front door's parsing; BenchmarkAuthenticateVenue is
// the whole check a gateway route pays per request (throttle lookups, cached vendor keys,
// claims, cached location lookup).

func benchVenue(b *testing.B) (*env, vendor, location, string) {
	e := newEnv(b)
	a := e.createVendor("bench")
	l := e.onboard(a, "Org", "Venue")
	return e, a, l, locationJWT(a.key, l.token, unix(e.clk.Now()))
}

func BenchmarkAuthenticateVenue(b *testing.B) {
	e, a, l, jwt := benchVenue(b)
	v := e.mod.Verifier()
	ctx := b.Context()
	if _, err := v.AuthenticateVenue(ctx, "192.0.2.1", a.name, jwt); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		venue, err := v.AuthenticateVenue(ctx, "192.0.2.1", a.name, jwt)
		if err != nil || venue.Location.ID != l.id {
			b.Fatal(err)
		}
	}
}

func BenchmarkBaselineVerifyHS256(b *testing.B) {
	_, a, _, jwt := benchVenue(b)
	keys := [][]byte{[]byte(a.key)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := token.VerifyHS256(jwt, keys); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBaselineHMAC(b *testing.B) {
	_, a, _, jwt := benchVenue(b)
	in := []byte(jwt[:len(jwt)-44])
	b.ReportAllocs()
	for b.Loop() {
		m := hmac.New(sha256.New, []byte(a.key))
		m.Write(in)
		_ = m.Sum(nil)
	}
}
