package oauth_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/posgate/posgate/internal/oauth"
	"github.com/posgate/posgate/internal/server/servertest"
)

// BenchmarkReferenceSign is the baseline: signing one EdDSA JWT with claims of the size posgate's
// carry (what bench/load's reference handler does per request).
func BenchmarkReferenceSign(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		var jti [16]byte
		_, _ = rand.Read(jti[:])
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
			"iss": "http://127.0.0.1:8080", "sub": "cl_aaaaaaaaaaaaaaaa", "aud": "https://api.example.com",
			"client_id": "cl_aaaaaaaaaaaaaaaa", "scope": "read", "azp": "pg_ck_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
			"gty": "client_credentials", "jti": base64.RawURLEncoding.EncodeToString(jti[:]), "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		})
		tok.Header["typ"] = "at+jwt"
		tok.Header["kid"] = "reference"
		if _, err := tok.SignedString(priv); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenEndpoint runs POST /oauth/token (client_credentials, Basic, form) through posgate's
// whole handler chain (middleware, routing, parsing, client authentication, signing), without the
// network, with and without the brief client cache.
func BenchmarkTokenEndpoint(b *testing.B) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration
	}{{"cached client", time.Second}, {"store read per request", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			defer oauth.SetClientCacheTTL(tc.ttl)()
			inst := servertest.Start(b, servertest.Options{})
			_, c := inst.Admin(b, "POST", "/clients", map[string]any{"name": "bench", "grant_types": []string{"client_credentials"},
				"scopes": []string{"read"}, "audiences": []string{"https://api.bench.test"}})
			form := url.Values{"grant_type": {"client_credentials"}, "audience": {"https://api.bench.test"}, "scope": {"read"}}.Encode()
			basic := basicAuth(c["client_id"].(string), c["client_secret"].(string))
			h := inst.Server.Handler()
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(form))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", basic)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body)
				}
			}
		})
	}
}
