package token

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/posgate/posgate/internal/keys"
)

// Benchmarks of posgate token issuance and verification, with raw Ed25519 in the same run as the
// baseline (docs/BENCHMARKS.md, "Token issuance and verification"):
//
//	go test -run '^$' -bench . -benchmem ./internal/token/

// benchClaims are a typical client_credentials/chimpy access token.
var benchClaims = Claims{
	Subject: "us_k3v9q2m8x7w4t6r5", Audience: []string{"https://api.example.com"}, ClientID: "cl_abcdefghijklmnop",
	Scope: "orders:read orders:write menu:read", SessionID: "fam_qwertyuiopasdfgh",
}

func benchEnv(b *testing.B) (*env, string) {
	b.Helper()
	e := newEnv(b, keys.AlgEdDSA)
	e.clk.Set(time.Now())
	raw, _, err := e.iss.Issue(ctx, benchClaims, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return e, raw
}

// signingInput returns the part of raw a signature covers: the reference message for raw
// ed25519.Sign/Verify is exactly what posgate signs.
func signingInput(raw string) []byte { return []byte(raw[:strings.LastIndexByte(raw, '.')]) }

func BenchmarkEd25519Sign(b *testing.B) {
	_, raw := benchEnv(b)
	msg := signingInput(raw)
	_, priv, _ := ed25519.GenerateKey(nil)
	for b.Loop() {
		ed25519.Sign(priv, msg)
	}
}

func BenchmarkEd25519Verify(b *testing.B) {
	_, raw := benchEnv(b)
	msg := signingInput(raw)
	pub, priv, _ := ed25519.GenerateKey(nil)
	sig := ed25519.Sign(priv, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify failed")
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	e, _ := benchEnv(b)
	for b.Loop() {
		if _, _, err := e.iss.Issue(ctx, benchClaims, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify is a cold verification: the cache is off, so every iteration does the whole
// job (front door, header, key lookup, signature, payload, claims, revocation set).
func BenchmarkVerify(b *testing.B) {
	e, raw := benchEnv(b)
	e.v.SetCacheSize(0)
	opts := VerifyOptions{Audience: "https://api.example.com"}
	for b.Loop() {
		if _, err := e.v.Verify(ctx, raw, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached is a repeated token: hash, cache hit, time/audience/revocation checks.
func BenchmarkVerifyCached(b *testing.B) {
	e, raw := benchEnv(b)
	opts := VerifyOptions{Audience: "https://api.example.com"}
	if _, err := e.v.Verify(ctx, raw, opts); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := e.v.Verify(ctx, raw, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGolangJWTVerify is the same token verified by golang-jwt/v5 configured as strictly as
// it allows (one method, exp/iss/aud/iat required, strict decoding), for comparison: it does
// less than BenchmarkVerify (no duplicate-key checks, no typ, no revocation set).
func BenchmarkGolangJWTVerify(b *testing.B) {
	e, raw := benchEnv(b)
	s, _ := e.kr.Active()
	pk, _ := e.kr.Lookup(s.KID)
	pub := pk.Key()
	p := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithExpirationRequired(), jwt.WithIssuer(testIssuer),
		jwt.WithAudience("https://api.example.com"), jwt.WithIssuedAt(), jwt.WithStrictDecoding(), jwt.WithLeeway(0))
	keyFunc := func(*jwt.Token) (any, error) { return pub, nil }
	for b.Loop() {
		if _, err := p.Parse(raw, keyFunc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHMACSHA256 is the floor of a shared-key check: one HMAC over the signing input.
func BenchmarkHMACSHA256(b *testing.B) {
	raw := hs256(hsKey, `{"alg":"HS256","typ":"JWT"}`, `{"sub":"loc_abcdefghijklmnop","vendor":"acme","timestamp":1767225600}`)
	msg := signingInput(raw)
	for b.Loop() {
		m := hmac.New(sha256.New, hsKey)
		m.Write(msg)
		m.Sum(nil)
	}
}

// BenchmarkVerifyHS256 is the shared-key front door on a typical doshii location JWT.
func BenchmarkVerifyHS256(b *testing.B) {
	raw := hs256(hsKey, `{"alg":"HS256","typ":"JWT"}`, `{"sub":"loc_abcdefghijklmnop","vendor":"acme","timestamp":1767225600}`)
	keys := [][]byte{hsKey}
	for b.Loop() {
		if _, err := VerifyHS256(raw, keys); err != nil {
			b.Fatal(err)
		}
	}
}

// paired times base and subject alternately, one call each per iteration, and reports the ratio
// of their median times ("x-base"), with the medians themselves. On a shared, loaded machine the
// two see the same load, and medians ignore the calls during which the process was descheduled,
// so the ratio holds still where separate benchmarks' ns/op scatter by 2–3×.
func paired(b *testing.B, base, subject func()) {
	b.Helper()
	var tb, ts []time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 { // alternate the order so neither always runs with warmer caches
			t := time.Now()
			base()
			t2 := time.Now()
			subject()
			tb, ts = append(tb, t2.Sub(t)), append(ts, time.Since(t2))
		} else {
			t := time.Now()
			subject()
			t2 := time.Now()
			base()
			ts, tb = append(ts, t2.Sub(t)), append(tb, time.Since(t2))
		}
		i++
	}
	mb, ms := median(tb), median(ts)
	b.ReportMetric(float64(ms)/float64(mb), "x-base")
	b.ReportMetric(float64(mb), "base-ns")
	b.ReportMetric(float64(ms), "subject-ns")
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkPairedIssue: Issue against raw ed25519.Sign of the same signing input.
func BenchmarkPairedIssue(b *testing.B) {
	e, raw := benchEnv(b)
	msg := signingInput(raw)
	_, priv, _ := ed25519.GenerateKey(nil)
	paired(b, func() { ed25519.Sign(priv, msg) }, func() {
		if _, _, err := e.iss.Issue(ctx, benchClaims, time.Hour); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkPairedVerify: cold Verify (cache off) against raw ed25519.Verify of the same token.
func BenchmarkPairedVerify(b *testing.B) {
	e, raw := benchEnv(b)
	e.v.SetCacheSize(0)
	s, _ := e.kr.Active()
	pk, _ := e.kr.Lookup(s.KID)
	pub := pk.Key().(ed25519.PublicKey)
	msg := signingInput(raw)
	sig, _ := base64.RawURLEncoding.DecodeString(raw[len(msg)+1:])
	opts := VerifyOptions{Audience: "https://api.example.com"}
	paired(b, func() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("raw verify failed")
		}
	}, func() {
		if _, err := e.v.Verify(ctx, raw, opts); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkPairedVerifyCached: a repeated token against raw ed25519.Verify.
func BenchmarkPairedVerifyCached(b *testing.B) {
	e, raw := benchEnv(b)
	s, _ := e.kr.Active()
	pk, _ := e.kr.Lookup(s.KID)
	pub := pk.Key().(ed25519.PublicKey)
	msg := signingInput(raw)
	sig, _ := base64.RawURLEncoding.DecodeString(raw[len(msg)+1:])
	opts := VerifyOptions{Audience: "https://api.example.com"}
	paired(b, func() { ed25519.Verify(pub, msg, sig) }, func() {
		if _, err := e.v.Verify(ctx, raw, opts); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkPairedGolangJWT: golang-jwt/v5 (configured as in BenchmarkGolangJWTVerify) against raw
// ed25519.Verify, for the record of why posgate assembles and checks its JWS by hand.
func BenchmarkPairedGolangJWT(b *testing.B) {
	e, raw := benchEnv(b)
	s, _ := e.kr.Active()
	pk, _ := e.kr.Lookup(s.KID)
	pub := pk.Key().(ed25519.PublicKey)
	msg := signingInput(raw)
	sig, _ := base64.RawURLEncoding.DecodeString(raw[len(msg)+1:])
	p := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithExpirationRequired(), jwt.WithIssuer(testIssuer),
		jwt.WithAudience("https://api.example.com"), jwt.WithIssuedAt(), jwt.WithStrictDecoding(), jwt.WithLeeway(0))
	keyFunc := func(*jwt.Token) (any, error) { return pub, nil }
	paired(b, func() { ed25519.Verify(pub, msg, sig) }, func() {
		if _, err := p.Parse(raw, keyFunc); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkPairedVerifyHS256: the shared-key front door against a bare HMAC-SHA256.
func BenchmarkPairedVerifyHS256(b *testing.B) {
	raw := hs256(hsKey, `{"alg":"HS256","typ":"JWT"}`, `{"sub":"loc_abcdefghijklmnop","vendor":"acme","timestamp":1767225600}`)
	msg := signingInput(raw)
	keys := [][]byte{hsKey}
	paired(b, func() {
		m := hmac.New(sha256.New, hsKey)
		m.Write(msg)
		m.Sum(nil)
	}, func() {
		if _, err := VerifyHS256(raw, keys); err != nil {
			b.Fatal(err)
		}
	})
}
