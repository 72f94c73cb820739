package oauth_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store"
)

// env is one posgate under test with helpers for the token endpoint.
type env struct {
	inst *servertest.Instance
	clk  *clock.Fake // nil with the real clock
}

type envOptions struct {
	driver     string
	dsn        string
	dataDir    string
	adminToken string
	realClock  bool
	clk        *clock.Fake // share a fake clock with another instance
	configure  func(*config.Config)
}

// The fake clock starts at a fixed, recent instant so tokens and windows are reproducible.
var epoch = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{}
	opts := servertest.Options{Driver: o.driver, DSN: o.dsn, DataDir: o.dataDir, AdminToken: o.adminToken, Configure: o.configure}
	if !o.realClock {
		e.clk = o.clk
		if e.clk == nil {
			e.clk = clock.NewFake(epoch)
		}
		opts.Clock = e.clk
	}
	e.inst = servertest.Start(t, opts)
	return e
}

// advance moves the fake clock (the server's time).
func (e *env) advance(d time.Duration) { e.clk.Advance(d) }

type client struct {
	ID, Secret, Internal string
}

// createClient creates a client through the admin API.
func (e *env) createClient(t *testing.T, grants, scopes, audiences []string) client {
	t.Helper()
	status, body := e.inst.Admin(t, "POST", "/clients", map[string]any{
		"name": "test client", "grant_types": grants, "scopes": scopes, "audiences": audiences,
	})
	if status != http.StatusCreated && status != http.StatusOK {
		t.Fatalf("create client: %d %v", status, body)
	}
	c := client{ID: str(body["client_id"]), Secret: str(body["client_secret"]), Internal: str(body["id"])}
	if c.ID == "" || c.Secret == "" {
		t.Fatalf("create client: %v", body)
	}
	return c
}

// createUser creates a user through the admin API and returns its id.
func (e *env) createUser(t *testing.T, username, password string) string {
	t.Helper()
	status, body := e.inst.Admin(t, "POST", "/users", map[string]any{"username": username, "password": password})
	if status != http.StatusCreated {
		t.Fatalf("create user: %d %v", status, body)
	}
	return str(body["id"])
}

func str(v any) string { s, _ := v.(string); return s }

// answer is one HTTP response, decoded.
type answer struct {
	Status int
	Header http.Header
	Raw    string
	JSON   map[string]any
}

func (a answer) str(k string) string { return str(a.JSON[k]) }

func (e *env) do(t *testing.T, method, path string, h http.Header, body []byte) answer {
	t.Helper()
	req, err := http.NewRequest(method, e.inst.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := e.inst.Client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Header: resp.Header, Raw: string(data)}
	_ = json.Unmarshal(data, &a.JSON)
	return a
}

// auth says how a request authenticates its client.
type authStyle int

const (
	inBody  authStyle = iota // client_id/client_secret in the body
	inBasic                  // HTTP Basic
)

// post sends params to path as a form (form=true) or JSON body, with the client's credentials
// added per style (c may be nil for none).
func (e *env) post(t *testing.T, path string, params map[string]string, c *client, style authStyle, form bool) answer {
	t.Helper()
	p := map[string]string{}
	for k, v := range params {
		p[k] = v
	}
	h := http.Header{}
	if c != nil {
		if style == inBasic {
			h.Set("Authorization", basicAuth(c.ID, c.Secret))
		} else {
			p["client_id"] = c.ID
			if c.Secret != "" {
				p["client_secret"] = c.Secret
			}
		}
	}
	var body []byte
	if form {
		v := url.Values{}
		for k, x := range p {
			v.Set(k, x)
		}
		body = []byte(v.Encode())
		h.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		body, _ = json.Marshal(p)
		h.Set("Content-Type", "application/json")
	}
	return e.do(t, "POST", path, h, body)
}

func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func (e *env) token(t *testing.T, params map[string]string, c *client) answer {
	t.Helper()
	return e.post(t, "/oauth/token", params, c, inBody, false)
}

// login runs the password grant and fails the test unless it succeeds.
func (e *env) login(t *testing.T, c *client, username, password, scope string) answer {
	t.Helper()
	a := e.token(t, map[string]string{"grant_type": "password", "username": username, "password": password, "scope": scope}, c)
	if a.Status != http.StatusOK {
		t.Fatalf("login: %d %s", a.Status, a.Raw)
	}
	return a
}

func (e *env) refresh(t *testing.T, c *client, rt string) answer {
	t.Helper()
	return e.token(t, map[string]string{"grant_type": "refresh_token", "refresh_token": rt}, c)
}

// introspect asks whether tok is active, as client c.
func (e *env) introspect(t *testing.T, c *client, tok string) answer {
	t.Helper()
	a := e.post(t, "/oauth/introspect", map[string]string{"token": tok}, c, inBasic, true)
	if a.Status != http.StatusOK {
		t.Fatalf("introspect: %d %s", a.Status, a.Raw)
	}
	return a
}

func (e *env) active(t *testing.T, c *client, tok string) bool {
	t.Helper()
	a := e.introspect(t, c, tok)
	v, _ := a.JSON["active"].(bool)
	return v
}

// audit returns the audit events with the given action.
func (e *env) audit(t *testing.T, action string) []*store.AuditEvent {
	t.Helper()
	all, err := e.inst.Svc.Store.ListAudit(t.Context(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []*store.AuditEvent
	for _, a := range all {
		if a.Action == action {
			out = append(out, a)
		}
	}
	return out
}

// claims decodes the payload of a JWT without verifying it (the server verified it; tests look).
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func header(t *testing.T, jwt string) map[string]any {
	t.Helper()
	data, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return m
}

// drivers runs f on SQLite and on PostgreSQL.
func drivers(t *testing.T, f func(t *testing.T, driver string)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) { t.Parallel(); f(t, d) })
	}
}
