package jackpot

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
)

// BenchmarkAssertionCheck measures the whole assertion check (front door, HMAC, claim rules)
// against its physical limit in the same run: one HMAC-SHA256 over the same signing input.
//
//	go test -run '^$' -bench 'AssertionCheck|APIKeyLookup' -benchmem ./internal/dialect/jackpot/
func BenchmarkAssertionCheck(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	w := AssertionWindow{Past: 300 * time.Second, Future: 60 * time.Second}
	raw := signRaw(testKey, hs256Header, fmt.Sprintf(`{"amount":25.5,"iat":%d,"notificationKey":"order-1","userId":"cashier-7","forceManualConfirm":false}`, now.Unix()))
	dot := strings.LastIndexByte(raw, '.')
	in, sigPart := raw[:dot], raw[dot+1:]
	b.Run("baseline-hmac-sha256", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mac := hmac.New(sha256.New, testKey)
			mac.Write([]byte(in))
			sig, _ := base64.RawURLEncoding.DecodeString(sigPart)
			if !hmac.Equal(mac.Sum(nil), sig) {
				b.Fatal("baseline does not verify")
			}
		}
	})
	b.Run("verify-1-key", func(b *testing.B) {
		keys := [][]byte{testKey}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := VerifyAssertion(raw, keys, now, w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify-2-keys-overlap", func(b *testing.B) {
		keys := [][]byte{[]byte("pg_as_" + strings.Repeat("n", 43)), testKey}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := VerifyAssertion(raw, keys, now, w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("claim-rules-only", func(b *testing.B) {
		payload := []byte(fmt.Sprintf(`{"amount":25.5,"iat":%d,"notificationKey":"order-1","userId":"cashier-7","forceManualConfirm":false}`, now.Unix()))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseAssertionClaims(payload, now, w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("refuse-alg-none", func(b *testing.B) {
		none := signRaw(testKey, `{"alg":"none"}`, `{"amount":1}`)
		keys := [][]byte{testKey}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := VerifyAssertion(none, keys, now, w); err == nil {
				b.Fatal("accepted")
			}
		}
	})
}

// BenchmarkAPIKeyLookup measures the apikey authenticator: the cached path (what a gateway call
// costs), the store read on a cache miss (SQLite on disk, one indexed read by hash), and as the
// baseline the SHA-256 every lookup needs anyway.
func BenchmarkAPIKeyLookup(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	now := time.Now()
	var apiKey string
	for i := range 1000 { // a realistic table, not a single row
		k := secret.Generate(secret.PrefixClientID)
		c := &store.Client{ID: secret.NewID("cl_"), Name: fmt.Sprintf("c%d", i), ClientIDHash: secret.Hash(k),
			ClientIDHint: "pg_ck_…", SecretHash: secret.Hash("x"), GrantTypes: []string{GrantClientCredentials},
			APIKey: true, CreatedAt: now, UpdatedAt: now}
		if err := st.CreateClient(ctx, c); err != nil {
			b.Fatal(err)
		}
		apiKey = k
	}
	clk := clock.System{}
	svc := &app.Services{Store: st, Clock: clk, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Throttle: auth.NewThrottle(st, clk, auth.ThrottleLimits{Window: time.Minute, PerAddress: 20, PerAddressIdent: 5, PerIdentity: 100, IdentityBackoff: time.Minute}, nil)}

	b.Run("baseline-sha256", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = sha256.Sum256([]byte(apiKey))
		}
	})
	b.Run("cached", func(b *testing.B) {
		cc := newClientCache(clk, time.Hour, cacheMax)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cc.byAPIKeyHash(ctx, st, sha256.Sum256([]byte(apiKey))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store-read-sqlite", func(b *testing.B) {
		cc := newClientCache(clk, 0, cacheMax) // TTL 0: every lookup reads the store
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cc.byAPIKeyHash(ctx, st, sha256.Sum256([]byte(apiKey))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("authenticate-cached", func(b *testing.B) {
		m := &Module{svc: svc, clients: newClientCache(clk, time.Hour, cacheMax)}
		a := &apiKeyAuth{m: m}
		r := httptest.NewRequest("GET", "/v2/stores", nil)
		r.Header.Set("apikey", apiKey)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Authenticate(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
