package chimpy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/dialect/chimpy"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/token"
)

const apiAudience = "https://api.chimpy.test"

type env struct {
	inst *servertest.Instance
	clk  *clock.Fake
	hits int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{clk: clock.NewFake(time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits++
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(up.Close)
	e.inst = servertest.Start(t, servertest.Options{Clock: e.clk, Configure: func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": up.URL}
		c.Routes = []config.Route{
			{Path: "/api/", Methods: []string{"GET"}, Auth: []string{"chimpy"}, Scopes: []string{"rentals"}, Audience: apiAudience, Upstream: "pos"},
		}
		c.Chimpy.AccessLifetime = 60
	}})
	return e
}

type answer struct {
	Status int
	Header http.Header
	Raw    string
	JSON   map[string]any
}

func (a answer) str(k string) string { s, _ := a.JSON[k].(string); return s }

func (e *env) do(t *testing.T, method, path string, h http.Header, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, e.inst.URL+path, strings.NewReader(body))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := e.inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Header: resp.Header, Raw: string(data)}
	_ = json.Unmarshal(data, &a.JSON)
	return a
}

// tokenFor gets a client_credentials token for apiAudience with the given scope.
func (e *env) tokenFor(t *testing.T, scope, audience string) string {
	t.Helper()
	st, c := e.inst.Admin(t, "POST", "/clients", map[string]any{"name": "api client", "grant_types": []string{"client_credentials"},
		"scopes": []string{"rentals", "read"}, "audiences": []string{apiAudience, "https://other.test"}})
	if st != http.StatusCreated {
		t.Fatalf("create client: %d %v", st, c)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c["client_id"].(string)}, "client_secret": {c["client_secret"].(string)},
		"scope": {scope}, "audience": {audience}}
	a := e.do(t, "POST", "/oauth/token", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form.Encode())
	if a.Status != 200 {
		t.Fatalf("token: %s", a.Raw)
	}
	return a.str("access_token")
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// check6750 checks a refusal: status, RFC 6750 challenge with the error code, JSON body with error
// and error_description, and that nothing reached the upstream.
func (e *env) check6750(t *testing.T, a answer, status int, code, descPart string) {
	t.Helper()
	if a.Status != status || a.str("error") != code || a.str("error_description") == "" {
		t.Fatalf("got %d %s; want %d %s", a.Status, a.Raw, status, code)
	}
	if !strings.Contains(strings.ToLower(a.str("error_description")), descPart) {
		t.Fatalf("error_description %q lacks %q", a.str("error_description"), descPart)
	}
	ch := a.Header.Get("WWW-Authenticate")
	if !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `error="`+code+`"`) || !strings.Contains(ch, `error_description="`) {
		t.Fatalf("WWW-Authenticate %q", ch)
	}
}

// TestProtectedAPIAnswers: every refusal of a chimpy route in RFC 6750's shape, nothing forwarded.
func TestProtectedAPIAnswers(t *testing.T) {
	e := newEnv(t)
	good := e.tokenFor(t, "rentals", apiAudience)
	if a := e.do(t, "GET", "/api/rentals", bearer(good), ""); a.Status != 200 || e.hits != 1 {
		t.Fatalf("valid token: %d %s", a.Status, a.Raw)
	}
	// RFC 6750 §3.1: no credential, so the challenge names no error.
	if a := e.do(t, "GET", "/api/rentals", nil, ""); a.Status != 401 || a.Header.Get("WWW-Authenticate") != `Bearer realm="posgate"` {
		t.Fatalf("no token: %d %q %s", a.Status, a.Header.Get("WWW-Authenticate"), a.Raw)
	}
	e.check6750(t, e.do(t, "GET", "/api/rentals", bearer("abc.def"), ""), 401, "invalid_token", "malformed")
	e.check6750(t, e.do(t, "GET", "/api/rentals", bearer(tamper(good)), ""), 401, "invalid_token", "signature")
	e.check6750(t, e.do(t, "GET", "/api/rentals", bearer(e.tokenFor(t, "rentals", "https://other.test")), ""), 401, "invalid_token", "")
	narrow := e.tokenFor(t, "read", apiAudience)
	a := e.do(t, "GET", "/api/rentals", bearer(narrow), "")
	e.check6750(t, a, 403, "insufficient_scope", "scope")
	if !strings.Contains(a.Header.Get("WWW-Authenticate"), `scope="rentals"`) {
		t.Fatalf("insufficient_scope challenge without the scope attribute: %q", a.Header.Get("WWW-Authenticate"))
	}
	// Revoked (RFC 7009 by the client would need its secret; the admin API revokes any token).
	revoked := e.tokenFor(t, "rentals", apiAudience)
	if st, body := e.inst.Admin(t, "POST", "/tokens/revoke", map[string]any{"token": revoked}); st != 200 {
		t.Fatalf("revoke: %d %v", st, body)
	}
	e.check6750(t, e.do(t, "GET", "/api/rentals", bearer(revoked), ""), 401, "invalid_token", "revoked")
	// Expired (client_credentials tokens live oauth.access_lifetime, 3600 s by default).
	e.clk.Advance(3601 * time.Second)
	e.check6750(t, e.do(t, "GET", "/api/rentals", bearer(good), ""), 401, "invalid_token", "expired")
	if e.hits != 1 {
		t.Fatalf("%d calls reached the upstream, want 1", e.hits)
	}
}

// TestAuthenticatorDirect: the authenticator itself — absent vs wrong credentials, tokens of other
// dialects, ForAudience, the principal it builds.
func TestAuthenticatorDirect(t *testing.T) {
	e := newEnv(t)
	a, ok := e.inst.Svc.Auth.Get("chimpy")
	if !ok {
		t.Fatal("chimpy authenticator not registered")
	}
	req := func(h ...string) *http.Request {
		r := httptest.NewRequest("GET", "/api/x", nil)
		for i := 0; i < len(h); i += 2 {
			r.Header.Add(h[i], h[i+1])
		}
		return r
	}
	if _, err := a.Authenticate(req()); !auth.IsNoCredential(err) {
		t.Fatalf("no header: %v", err)
	}
	if _, err := a.Authenticate(req("Authorization", "Basic YTpi")); !auth.IsNoCredential(err) {
		t.Fatalf("Basic: %v", err)
	}
	hc := a.(interface{ HasCredential(*http.Request) bool })
	if hc.HasCredential(req()) || hc.HasCredential(req("Authorization", "Basic YTpi")) || !hc.HasCredential(req("Authorization", "Bearer x")) {
		t.Fatal("HasCredential")
	}
	for _, h := range [][]string{{"Authorization", "Bearer "}, {"Authorization", "Bearer x", "Authorization", "Bearer y"}, {"Authorization", "Bearer not-a-jwt"}} {
		if _, err := a.Authenticate(req(h...)); err == nil || auth.IsNoCredential(err) || errs.KindOf(err) != errs.Unauthenticated {
			t.Fatalf("%v: %v", h, err)
		}
	}
	tok := e.tokenFor(t, "rentals read", apiAudience)
	p, err := a.Authenticate(req("Authorization", "bearer "+tok))
	if err != nil {
		t.Fatal(err)
	}
	if p.Dialect != "chimpy" || p.Means != "chimpy" || p.Subject == "" || p.Client != p.Subject || p.TokenID == "" ||
		!slices.Equal(p.Claims["aud"].([]string), []string{apiAudience}) || p.Claims["gty"] != "client_credentials" || !p.HasScope("read") || p.ExpiresAt.IsZero() {
		t.Fatalf("principal %+v", p)
	}
	fa := a.(interface {
		ForAudience(string) auth.Authenticator
	})
	if _, err := fa.ForAudience(apiAudience).Authenticate(req("Authorization", "Bearer "+tok)); err != nil {
		t.Fatalf("ForAudience(right): %v", err)
	}
	if _, err := fa.ForAudience("https://other.test").Authenticate(req("Authorization", "Bearer "+tok)); errs.KindOf(err) != errs.Unauthenticated {
		t.Fatalf("ForAudience(wrong): %v", err)
	}
	// A valid posgate token of another dialect (jackpot session, chef device) is not a chimpy token.
	for _, c := range []token.Claims{
		{Subject: "x", Audience: []string{"jackpot"}, ClientID: "cl_x", Extra: map[string]any{"gty": "jwt-bearer"}},
		{Subject: "x", Audience: []string{"jackpot"}, ClientID: "cl_x", Extra: map[string]any{"gty": "client_credentials"}},
		{Subject: "dev_x", Audience: []string{"chef"}, Extra: map[string]any{"gty": "device"}},
		{Subject: "x", Audience: []string{apiAudience}, Extra: map[string]any{"gty": "device"}},
	} {
		raw, _, err := e.inst.Svc.Issuer.Issue(t.Context(), c, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(req("Authorization", "Bearer "+raw)); errs.KindOf(err) != errs.Unauthenticated {
			t.Fatalf("token of another kind %+v accepted: %v", c, err)
		}
	}
}

// TestWriteError: the RFC 6750 writer for each kind of error the gateway hands it.
func TestWriteError(t *testing.T) {
	cases := []struct {
		err       error
		status    int
		code      string
		challenge string
	}{
		{auth.ErrNoCredential, 401, "invalid_token", `Bearer realm="posgate"`},
		{errs.New(errs.Unauthenticated, "invalid_token", `The access token expired.`), 401, "invalid_token", `Bearer realm="posgate", error="invalid_token", error_description="The access token expired."`},
		{chimpy.InsufficientScope("rentals", "write"), 403, "insufficient_scope", `Bearer realm="posgate", error="insufficient_scope", error_description="The access token does not grant the scope this call needs.", scope="rentals write"`},
		{errs.New(errs.Forbidden, "tenant_mismatch", "not yours"), 403, "tenant_mismatch", ""},
		{errs.New(errs.BadInput, "invalid_body", "bad"), 400, "invalid_request", `Bearer realm="posgate", error="invalid_request", error_description="bad"`},
		{&errs.Error{Kind: errs.Throttled, Code: "rate_limited", Message: "slow down", RetryAfter: 1500 * time.Millisecond}, 429, "too_many_requests", ""},
		{errs.New(errs.Unavailable, "upstream_timeout", "timeout"), 504, "upstream_timeout", ""},
		{errs.New(errs.Unavailable, "upstream_unreachable", "down"), 502, "upstream_unreachable", ""},
		{io.EOF, 500, "server_error", ""},
	}
	for _, c := range cases {
		w := httptest.NewRecorder()
		chimpy.WriteError(w, httptest.NewRequest("GET", "/", nil), c.err)
		var body map[string]string
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != c.status || body["error"] != c.code || body["error_description"] == "" {
			t.Fatalf("%v: %d %s", c.err, w.Code, w.Body)
		}
		if got := w.Header().Get("WWW-Authenticate"); got != c.challenge {
			t.Fatalf("%v: challenge %q, want %q", c.err, got, c.challenge)
		}
		if c.status == 429 && w.Header().Get("Retry-After") != "2" {
			t.Fatalf("Retry-After %q", w.Header().Get("Retry-After"))
		}
	}
}

// TestUsersAdmin: the users admin routes.
func TestUsersAdmin(t *testing.T) {
	e := newEnv(t)
	st, u := e.inst.Admin(t, "POST", "/users", map[string]any{"username": "ann@example.com", "password": "correct horse battery"})
	if st != 201 || !strings.HasPrefix(u["id"].(string), "us_") || u["username"] != "ann@example.com" || u["disabled"] != false {
		t.Fatalf("create: %d %v", st, u)
	}
	if _, has := u["password_hash"]; has || strings.Contains(strings.ToLower(jsonOf(u)), "argon") {
		t.Fatal("the answer shows the password hash")
	}
	id := u["id"].(string)
	bad := []struct {
		body   any
		status int
	}{
		{map[string]any{"username": "ann@example.com", "password": "another long one"}, 409},
		{map[string]any{"username": "bob"}, 400},
		{map[string]any{"username": "bob", "password": "short"}, 400},
		{map[string]any{"username": " bob", "password": "long enough"}, 400},
		{map[string]any{"username": "bo\nb", "password": "long enough"}, 400},
		{map[string]any{"username": "bob", "password": "long\x00enough"}, 400},
		{map[string]any{"username": strings.Repeat("b", 300), "password": "long enough"}, 400},
		{map[string]any{"username": "bob", "password": strings.Repeat("p", 2000)}, 400},
		{map[string]any{"username": "bob", "password": "long enough", "admin": true}, 400},
	}
	for _, b := range bad {
		if st, body := e.inst.Admin(t, "POST", "/users", b.body); st != b.status || body["error"] == nil || body["error_description"] == nil {
			t.Fatalf("%v: %d %v", b.body, st, body)
		}
	}
	dup := e.do(t, "POST", "/admin/api/v1/users", http.Header{"Authorization": {"Bearer " + e.inst.AdminToken}, "Content-Type": {"application/json"}},
		`{"username":"x","username":"y","password":"long enough"}`)
	if dup.Status != 400 {
		t.Fatalf("duplicate keys: %d %s", dup.Status, dup.Raw)
	}
	if st, body := e.inst.Admin(t, "GET", "/users", nil); st != 200 || len(body["users"].([]any)) != 1 {
		t.Fatalf("list: %d %v", st, body)
	}
	if st, body := e.inst.Admin(t, "GET", "/users/"+id, nil); st != 200 || body["id"] != id {
		t.Fatalf("get: %d %v", st, body)
	}
	for _, p := range []string{"/users/us_nope", "/users/us_nope/disable", "/users/us_nope/enable"} {
		method := "POST"
		if !strings.Contains(p[1:], "/") || strings.Count(p, "/") == 2 {
			method = "GET"
		}
		if st, body := e.inst.Admin(t, method, p, nil); st != 404 || body["error"] != "not_found" {
			t.Fatalf("%s %s: %d %v", method, p, st, body)
		}
	}
	if st, _ := e.inst.Admin(t, "POST", "/users/us_nope/password", map[string]any{"password": "long enough"}); st != 404 {
		t.Fatalf("password of unknown user: %d", st)
	}
	if st, _ := e.inst.Admin(t, "POST", "/users/"+id+"/password", map[string]any{"password": "short"}); st != 400 {
		t.Fatalf("short password: %d", st)
	}
	if st, body := e.inst.Admin(t, "POST", "/users/"+id+"/disable", nil); st != 200 || body["disabled"] != true || body["revoked_sessions"] != float64(0) {
		t.Fatalf("disable: %d %v", st, body)
	}
	// Without the admin token: 401.
	if a := e.do(t, "GET", "/admin/api/v1/users", nil, ""); a.Status != 401 {
		t.Fatalf("unauthenticated admin call: %d", a.Status)
	}
	// Audited, never with the password.
	events, _ := e.inst.Svc.Store.ListAudit(t.Context(), 100)
	seen := map[string]bool{}
	for _, ev := range events {
		seen[ev.Action] = true
		if strings.Contains(jsonOf(ev), "correct horse") {
			t.Fatal("a password reached the audit trail")
		}
	}
	if !seen["user.create"] || !seen["user.disable"] {
		t.Fatalf("audit actions %v", seen)
	}
	if strings.Contains(e.inst.Logs(), "correct horse") {
		t.Fatal("a password reached the logs")
	}
}

func jsonOf(v any) string {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	return b.String()
}

// tamper changes one character in the middle of a JWT's signature.
func tamper(jwt string) string {
	i := len(jwt) - 10
	c := byte('A')
	if jwt[i] == 'A' {
		c = 'B'
	}
	return jwt[:i] + string(c) + jwt[i+1:]
}
