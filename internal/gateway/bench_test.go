package gateway

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/store/sqlite"
	"github.com/posgate/posgate/internal/token"
)

// realTokens builds the real keyring, issuer and verifier (with its verification cache) over a
// SQLite store, as the server does.
func realTokens(tb testing.TB) (token.Issuer, *token.PosgateVerifier) {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "bench.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	sealer, err := keys.NewSealer(bytes.Repeat([]byte{9}, 32))
	if err != nil {
		tb.Fatal(err)
	}
	clk := clock.System{}
	kr := keys.NewKeyring(st, sealer, clk, "EdDSA", 0, time.Hour)
	if err := kr.Load(ctx); err != nil {
		tb.Fatal(err)
	}
	const iss = "https://posgate.bench"
	return token.NewIssuer(kr, clk, iss), token.NewVerifier(kr, st, events.NewLocal(), clk, iss, nil)
}

// benchGateway is a gateway with one posgate-token route (scopes required) over the real verifier.
func benchGateway(b *testing.B, v token.Verifier, rc config.Route) (*Gateway, *route) {
	b.Helper()
	cfg := config.Default()
	cfg.Upstreams = map[string]string{"pos": "http://127.0.0.1:9"}
	cfg.Routes = []config.Route{rc}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, err := NewForwarder(cfg, testKey, log, clock.System{})
	if err != nil {
		b.Fatal(err)
	}
	reg := auth.NewRegistry()
	reg.Register("test.venue", venueAuth{})
	g, err := NewGateway(&app.Services{Config: cfg, Log: log, Auth: reg, Verifier: v, Upstream: fwd})
	if err != nil {
		b.Fatal(err)
	}
	return g, g.routes[0]
}

// BenchmarkAuthorize is the gateway's per-request decision for a repeated posgate token:
// authenticate (verification cache hit) and authorize (audience, scopes, rate limit, tenant).
func BenchmarkAuthorize(b *testing.B) {
	iss, v := realTokens(b)
	raw, _, err := iss.Issue(context.Background(), token.Claims{Subject: "cl_bench", ClientID: "cl_bench",
		Audience: []string{"https://api"}, Scope: "orders:read orders:write"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name  string
		route config.Route
	}{
		{"scopes", config.Route{Path: "/api/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Scopes: []string{"orders:read"}, Audience: "https://api", Upstream: "pos"}},
		{"scopes+ratelimit", config.Route{Path: "/api/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Scopes: []string{"orders:read"}, RateLimit: 1e9, Upstream: "pos"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			g, rt := benchGateway(b, v, c.route)
			req := httptest.NewRequest("GET", "/api/orders/1", nil)
			req.Header.Set("Authorization", "Bearer "+raw)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p, _, _ := g.authenticate(w, req, rt)
				if p == nil {
					b.Fatal("refused")
				}
				if _, err := g.policy.authorize(req, rt, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAuthorizeUncached is the same decision with the verification cache off: a signature
// check on every request (what the cache saves).
func BenchmarkAuthorizeUncached(b *testing.B) {
	iss, v := realTokens(b)
	v.SetCacheSize(0)
	raw, _, err := iss.Issue(context.Background(), token.Claims{Subject: "cl_bench", Scope: "orders:read"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	g, rt := benchGateway(b, v, config.Route{Path: "/api/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Scopes: []string{"orders:read"}, Upstream: "pos"})
	req := httptest.NewRequest("GET", "/api/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+raw)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p, _, _ := g.authenticate(w, req, rt)
		if p == nil {
			b.Fatal("refused")
		}
		if _, err := g.policy.authorize(req, rt, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTenantBody is the decision for a location-bound principal posting a JSON body (the
// body is read, scanned for tenant ids and restored).
func BenchmarkTenantBody(b *testing.B) {
	g, rt := benchGateway(b, newFakeTokens(), config.Route{Path: "/pos/v3/locations/{location}/orders", Methods: []string{"POST"}, Auth: []string{"test.venue"}, Upstream: "pos"})
	body := []byte(`{"locationId":"L1","items":[{"posId":"a","quantity":2,"price":1250},{"posId":"b","quantity":1,"price":300}],"notes":"no onions"}`)
	mux := http.NewServeMux()
	var p *auth.Principal
	mux.HandleFunc("POST /pos/v3/locations/{location}/orders", func(w http.ResponseWriter, r *http.Request) {
		p, _, _ = g.authenticate(w, r, rt)
		if _, err := g.policy.authorize(r, rt, p); err != nil {
			b.Fatal(err)
		}
	})
	w := httptest.NewRecorder()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest("POST", "/pos/v3/locations/L1/orders", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer loc:L1")
		req.Header.Set("Vendor", "acme")
		req.Header.Set("Content-Type", "application/json")
		mux.ServeHTTP(w, req)
	}
}

// BenchmarkIdentityHeaders is the cost of the identity the forwarder adds to each request:
// principal JSON, base64url, nonce and HMAC.
func BenchmarkIdentityHeaders(b *testing.B) {
	p := &auth.Principal{Dialect: "jackpot", Means: "jackpot.session", Subject: "cl_x", Client: "cl_x",
		Scopes: []string{"a"}, Claims: map[string]any{"amount": 25.5, "notificationKey": "order-7", "userId": "u-1"}}
	now := time.Now()
	signer, err := identity.NewSigner(testKey)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ph, err := encodePrincipal(p)
		if err != nil {
			b.Fatal(err)
		}
		_ = signer.Sign("POST", "/v2/stores/1/offers/2/reserve-voucher-by-price", now, ph)
	}
}

// cannedTransport answers every request at once without a network, so BenchmarkProxy measures the
// proxies' own CPU cost.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: 2,
		Body: io.NopCloser(strings.NewReader("{}")), Request: r}, nil
}

// BenchmarkProxy compares, in one process and without a network, the whole gateway request path
// (route handler, cached token verification, policy, identity, ReverseProxy) with a bare
// httputil.ReverseProxy with the same buffer pool: the difference is what the gateway adds per
// request.
func BenchmarkProxy(b *testing.B) {
	iss, v := realTokens(b)
	raw, _, err := iss.Issue(context.Background(), token.Claims{Subject: "cl_bench", ClientID: "cl_bench", Scope: "bench"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	target, _ := url.Parse("http://127.0.0.1:9")
	run := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			req := httptest.NewRequest("GET", "/bench/orders/42?expand=lines", nil)
			req.Header.Set("Authorization", "Bearer "+raw)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	}
	b.Run("bare", func(b *testing.B) {
		run(b, &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
			Transport: cannedTransport{}, BufferPool: bufferPool{}})
	})
	b.Run("gateway", func(b *testing.B) {
		g, _ := benchGateway(b, v, config.Route{Path: "/bench/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Scopes: []string{"bench"}, Upstream: "pos"})
		g.fwd.upstreams["pos"].proxy.Transport = cannedTransport{}
		mux := http.NewServeMux()
		if err := g.Mount(mux, nil); err != nil {
			b.Fatal(err)
		}
		run(b, mux)
	})
}
