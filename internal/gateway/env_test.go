package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/store/sqlite"
	"github.com/posgate/posgate/internal/token"
)

// ---------------------------------------------------------------------------------------------
// A recording upstream.

type received struct {
	Method     string
	RequestURI string
	Header     http.Header
	Body       []byte
	Host       string
}

type recorder struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []received
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.got = append(rec.got, received{Method: r.Method, RequestURI: r.RequestURI, Header: r.Header.Clone(), Body: body, Host: r.Host})
		rec.mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/slow"):
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
		case strings.HasPrefix(r.URL.Path, "/status/409"):
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"conflict":true}`))
			return
		case strings.HasPrefix(r.URL.Path, "/stream"):
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Connection", "X-Upstream-Hop")
			w.Header().Set("X-Upstream-Hop", "1")
			for i := 0; i < 3; i++ {
				_, _ = w.Write([]byte("data: tick\n\n"))
				http.NewResponseController(w).Flush()
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "yes")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (r *recorder) last(t *testing.T) received {
	t.Helper()
	got := r.requests()
	if len(got) == 0 {
		t.Fatal("upstream received nothing")
	}
	return got[len(got)-1]
}

// ---------------------------------------------------------------------------------------------
// Token verifier and revoker fakes (the contract of internal/token), sharing one revocation set.

type fakeTokens struct {
	mu      sync.Mutex
	claims  map[string]*token.Claims
	revoked map[string]bool
	revokes int
	fail    error
	next    *fakeTokens // another replica's verifier: knows the same tokens (not the revocations)
}

func newFakeTokens() *fakeTokens {
	return &fakeTokens{claims: map[string]*token.Claims{}, revoked: map[string]bool{}}
}

func (f *fakeTokens) add(raw string, c *token.Claims) {
	f.mu.Lock()
	f.claims[raw] = c
	next := f.next
	f.mu.Unlock()
	if next != nil {
		next.add(raw, c)
	}
}

func (f *fakeTokens) Verify(_ context.Context, raw string, opts token.VerifyOptions) (*token.Claims, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.claims[raw]
	if !ok {
		return nil, &token.VerifyError{Reason: token.ReasonSignature, Detail: "signature"}
	}
	if c.JTI != "" && f.revoked[c.JTI] {
		return nil, &token.VerifyError{Reason: token.ReasonRevoked, Detail: "revoked"}
	}
	if opts.Audience != "" {
		found := false
		for _, a := range c.Audience {
			found = found || a == opts.Audience
		}
		if !found {
			return nil, &token.VerifyError{Reason: token.ReasonClaims, Detail: "aud"}
		}
	}
	return c, nil
}

func (f *fakeTokens) Revoke(_ context.Context, kind, value string, _ time.Time, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	if kind == "jti" {
		f.revoked[value] = true
		f.revokes++
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Test authenticators standing in for dialects.

// keyAuth is an API-key means (like jackpot.apikey): header `apikey: key-<subject>`; errors in a
// jackpot-like shape {"statusCode","error","message"}.
type keyAuth struct{}

func (keyAuth) Authenticate(r *http.Request) (*auth.Principal, error) {
	v := r.Header.Get("apikey")
	if v == "" {
		return nil, auth.ErrNoCredential
	}
	sub, ok := strings.CutPrefix(v, "key-")
	if !ok {
		return nil, errs.New(errs.Unauthenticated, "invalid_key", "Invalid API key")
	}
	return &auth.Principal{Dialect: "test", Means: "test.key", Client: "cl_" + sub, Subject: sub}, nil
}

func (keyAuth) WriteError(w http.ResponseWriter, _ *http.Request, err error) {
	e, ok := errs.As(err)
	if !ok {
		e = errs.New(errs.Internal, "", "internal")
	}
	st := errs.HTTPStatus(e.Kind)
	switch e.Code {
	case "upstream_timeout":
		st = 504
	case "upstream_unreachable":
		st = 502
	}
	httpx.WriteJSON(w, st, map[string]any{"statusCode": st, "error": http.StatusText(st), "message": e.Message})
}

// venueAuth is a location-bound means (like doshii.venue): `Authorization: Bearer loc:<location>`
// plus a `vendor` header; errors as {"message"}.
type venueAuth struct{}

func (venueAuth) HasCredential(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("Authorization"), "Bearer loc:")
}

func (venueAuth) Authenticate(r *http.Request) (*auth.Principal, error) {
	h := r.Header.Get("Authorization")
	loc, ok := strings.CutPrefix(h, "Bearer loc:")
	if !ok {
		return nil, auth.ErrNoCredential
	}
	if r.Header.Get("vendor") != "acme" {
		return nil, errs.New(errs.Unauthenticated, "bad_vendor", "vendor header is wrong")
	}
	return &auth.Principal{Dialect: "doshii", Means: "test.venue", Subject: loc, Location: loc, Vendor: "acme"}, nil
}

func (venueAuth) WriteError(w http.ResponseWriter, _ *http.Request, err error) {
	e, _ := errs.As(err)
	st := 500
	msg := "internal"
	if e != nil {
		st, msg = errs.HTTPStatus(e.Kind), e.Message
		switch e.Code {
		case "upstream_timeout":
			st = 504
		case "upstream_unreachable":
			st = 502
		}
	}
	httpx.WriteJSON(w, st, map[string]any{"message": msg})
}

// ---------------------------------------------------------------------------------------------
// The environment: gateway mounted on a mux behind a real loopback server.

var testKey = bytes.Repeat([]byte{0x42}, 32)

type env struct {
	t      *testing.T
	up     *recorder
	tokens *fakeTokens
	clock  *clock.Fake
	gw     *Gateway
	fwd    *Forwarder
	srv    *httptest.Server
	ident  *identity.Verifier
	svc    *app.Services
	st     *sqlite.Store
}

func newEnv(t *testing.T, routes []config.Route, tweak ...func(*config.Config)) *env {
	t.Helper()
	up := newRecorder(t)
	dead := deadAddr(t)
	cfg := config.Default()
	cfg.Upstreams = map[string]string{"pos": up.srv.URL, "down": "http://" + dead}
	cfg.Routes = routes
	cfg.Gateway.SigningSecret = base64.StdEncoding.EncodeToString(testKey)
	for _, f := range tweak {
		f(cfg)
	}
	clk := clock.NewFake(time.Now())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, err := NewForwarder(cfg, nil, log, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gateway.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	iv, err := identity.NewVerifier(testKey)
	if err != nil {
		t.Fatal(err)
	}
	iv.Now = clk.Now
	e := &env{t: t, up: up, clock: clk, fwd: fwd, ident: iv, st: st}
	e.start(cfg, log, newFakeTokens())
	return e
}

// start builds the gateway over e's store, forwarder and clock with its own token verifier, and
// serves it on loopback.
func (e *env) start(cfg *config.Config, log *slog.Logger, tokens *fakeTokens) {
	t := e.t
	reg := auth.NewRegistry()
	reg.Register("test.key", keyAuth{})
	reg.Register("test.venue", venueAuth{})
	svc := &app.Services{Config: cfg, Clock: e.clock, Log: log, Store: e.st, Verifier: tokens, Revoker: tokens, Auth: reg, Upstream: e.fwd}
	gw, err := NewGateway(svc)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	admin := http.NewServeMux()
	if err := gw.Mount(mux, admin); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e.tokens, e.gw, e.srv, e.svc = tokens, gw, srv, svc
}

// replica is a second gateway on the same store and upstream, as another posgate process of the
// deployment would be, whose verifier knows e's tokens but never hears of e's revocations (as if
// the revocation write had failed). Tokens registered with e.bearer afterwards are known to both.
func (e *env) replica() *env {
	r := &env{t: e.t, up: e.up, clock: e.clock, fwd: e.fwd, ident: e.ident, st: e.st}
	tokens := newFakeTokens()
	e.tokens.mu.Lock()
	for raw, c := range e.tokens.claims {
		tokens.claims[raw] = c
	}
	e.tokens.next = tokens
	e.tokens.mu.Unlock()
	r.start(e.svc.Config, e.svc.Log, tokens)
	return r
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", r.Body, err)
	}
	return m
}

// do sends a request to the gateway. headers are name/value pairs (a name may repeat).
func (e *env) do(method, target, body string, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+target, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// bearer registers a posgate token with claims and returns its Authorization header value.
func (e *env) bearer(raw string, c *token.Claims) string {
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = e.clock.Now().Add(time.Hour)
	}
	e.tokens.add(raw, c)
	return "Bearer " + raw
}

func newServer(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func mustURL(t *testing.T, raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// newMiddlewareUpstream is an upstream that uses client/identity's middleware.
func newMiddlewareUpstream(t *testing.T, iv *identity.Verifier, seen **identity.Principal) string {
	return newServer(t, iv.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := identity.FromContext(r.Context())
		*seen = p
		_, _ = w.Write([]byte("ok"))
	})))
}
