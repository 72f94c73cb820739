package token

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
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

// BenchmarkGolangJWTVerify is the same token verified by golang-jwt/v5 configured as DESIGN.md
// prescribes (one method, exp/iss/aud/iat required, strict decoding), for comparison: it does
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
