package gateway_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store/pgtest"
)

// verifyingUpstream is a POS API that trusts only the gateway: client/identity's middleware (with
// a replay cache) in front of a handler that records each request and its principal.
type verifyingUpstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seenReq
}

type seenReq struct {
	header    http.Header
	principal *identity.Principal
	uri       string
}

func newVerifyingUpstream(t *testing.T, key []byte) *verifyingUpstream {
	iv, err := identity.NewVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	iv.Replay = identity.NewMemoryReplayCache(0)
	u := &verifyingUpstream{}
	u.Server = httptest.NewServer(iv.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := identity.FromContext(r.Context())
		u.mu.Lock()
		u.reqs = append(u.reqs, seenReq{header: r.Header.Clone(), principal: p, uri: r.RequestURI})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})))
	t.Cleanup(u.Close)
	return u
}

func (u *verifyingUpstream) seen() []seenReq {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seenReq(nil), u.reqs...)
}

func newKey(t *testing.T) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func routesFor(up string, key []byte, routes ...config.Route) func(*config.Config) {
	return func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": up}
		c.Gateway.SigningSecret = base64.StdEncoding.EncodeToString(key)
		c.Routes = routes
	}
}

// clientToken creates a client_credentials client with scopes and returns a token for it and the
// client's internal id.
func clientToken(t *testing.T, inst *servertest.Instance, scopes ...string) (tok, clientID string) {
	t.Helper()
	return inst.ClientToken(t, "gw-"+strings.Join(scopes, "-"), "pos-api", scopes...)
}

func call(t *testing.T, inst *servertest.Instance, method, path, authz string, body string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, inst.URL+path, rd)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, b
}

// TestEndToEndPosgateTokenRoute (paths under /e2e/: metrics are process-wide) runs the complete posgate (every module, SQLite, middleware) in
// front of an upstream that verifies the identity with client/identity.
func TestEndToEndPosgateTokenRoute(t *testing.T) {
	key := newKey(t)
	up := newVerifyingUpstream(t, key)
	inst := servertest.Start(t, servertest.Options{Configure: routesFor(up.URL, key,
		config.Route{Path: "/e2e/api/", Methods: []string{"GET", "POST"}, Auth: []string{"posgate"}, Scopes: []string{"orders"}, Upstream: "pos"},
		config.Route{Path: "/e2e/reserve", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"},
	)})
	tok, clientID := clientToken(t, inst, "orders")

	st, _, body := call(t, inst, "GET", "/e2e/api/orders/7?expand=lines", "Bearer "+tok, "")
	if st != 200 {
		t.Fatalf("forwarded call: %d %s", st, body)
	}
	seen := up.seen()
	if len(seen) != 1 || seen[0].principal == nil {
		t.Fatalf("upstream saw %d requests", len(seen))
	}
	p := seen[0].principal
	if p.Means != "posgate" || p.Client != clientID || !p.HasScope("orders") || seen[0].uri != "/e2e/api/orders/7?expand=lines" {
		t.Fatalf("principal %+v at %q", p, seen[0].uri)
	}
	if seen[0].header.Get("Authorization") != "" || strings.Contains(strings.Join(headerValues(seen[0].header), " "), tok) {
		t.Fatal("the token reached the upstream")
	}

	// A token without the scope: 403 insufficient_scope, RFC 6750 shape, nothing forwarded.
	tokNoScope, _ := clientToken(t, inst)
	st, h, body := call(t, inst, "GET", "/e2e/api/orders/7", "Bearer "+tokNoScope, "")
	if st != 403 || !strings.Contains(h.Get("WWW-Authenticate"), `error="insufficient_scope"`) || !strings.Contains(string(body), "insufficient_scope") {
		t.Fatalf("missing scope: %d %q %s", st, h.Get("WWW-Authenticate"), body)
	}
	// No token: 401 with a bare challenge.
	if st, h, _ := call(t, inst, "GET", "/e2e/api/orders/7", "", ""); st != 401 || h.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d", st)
	}
	// Unrouted: 404 JSON.
	if st, _, body := call(t, inst, "GET", "/no/such/route", "Bearer "+tok, ""); st != 404 || !json.Valid(body) {
		t.Fatalf("unrouted: %d %s", st, body)
	}
	// Consume: a 2xx answer revokes the token; the next call on any route is 401.
	if st, _, body := call(t, inst, "POST", "/e2e/reserve", "Bearer "+tok, "{}"); st != 200 {
		t.Fatalf("reserve: %d %s", st, body)
	}
	for _, path := range []string{"/e2e/reserve", "/e2e/api/orders/7"} {
		if st, _, body := call(t, inst, map[string]string{"/e2e/reserve": "POST", "/e2e/api/orders/7": "GET"}[path], path, "Bearer "+tok, "{}"); st != 401 {
			t.Fatalf("%s after consumption: %d %s", path, st, body)
		}
	}
	if n := len(up.seen()); n != 2 {
		t.Fatalf("upstream saw %d requests, want 2", n)
	}

	// Metrics by route and outcome.
	st, _, metrics := call(t, inst, "GET", "/metrics", "", "")
	if st != 200 || !bytes.Contains(metrics, []byte(`posgate_gateway_outcomes_total{outcome="forwarded",route="GET /e2e/api/"} 1`)) ||
		!bytes.Contains(metrics, []byte(`posgate_gateway_outcomes_total{outcome="insufficient_scope",route="GET /e2e/api/"} 1`)) ||
		!bytes.Contains(metrics, []byte(`posgate_upstream_duration_seconds_count{route="POST /e2e/reserve"} 1`)) {
		t.Fatalf("metrics: %d\n%s", st, grepLines(metrics, "gateway_outcomes", "upstream_duration_seconds_count"))
	}
	// The admin API lists the route table.
	if st, resp := inst.Admin(t, "GET", "/gateway/routes", nil); st != 200 || len(resp["routes"].([]any)) != 2 {
		t.Fatalf("route listing: %d %v", st, resp)
	}
	// No token in the logs.
	if strings.Contains(inst.Logs(), tok) {
		t.Fatal("a token was logged")
	}
}

// TestConsumeIsSeenByEveryReplica: two posgate processes share one PostgreSQL database; a token
// consumed through one is refused by the other.
func TestConsumeIsSeenByEveryReplica(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	key := newKey(t)
	up := newVerifyingUpstream(t, key)
	dataDir := t.TempDir() // one master key for both replicas
	routes := routesFor(up.URL, key, config.Route{Path: "/reserve", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"},
		config.Route{Path: "/read", Methods: []string{"GET"}, Auth: []string{"posgate"}, Upstream: "pos"})
	conf := func(c *config.Config) {
		routes(c)
		c.Server.Issuer = "http://posgate.replicas.test" // replicas of one deployment share the issuer
		c.Keys.RevocationResync = 300                    // only the LISTEN/NOTIFY event can tell b in time
	}
	a := servertest.Start(t, servertest.Options{DSN: dsn, DataDir: filepath.Join(dataDir, "a"), Configure: conf})
	copyMasterKey(t, a.DataDir, filepath.Join(dataDir, "b"))
	b := servertest.Start(t, servertest.Options{DSN: dsn, DataDir: filepath.Join(dataDir, "b"), Configure: conf, AdminToken: a.AdminToken})
	tok, _ := clientToken(t, a)
	if st, _, body := call(t, b, "GET", "/read", "Bearer "+tok, ""); st != 200 { // b has it cached as valid
		t.Fatalf("replica b before: %d %s", st, body)
	}
	if st, _, body := call(t, a, "POST", "/reserve", "Bearer "+tok, "{}"); st != 200 {
		t.Fatalf("reserve on a: %d %s", st, body)
	}
	// The revocation reaches b by NOTIFY, asynchronously: allow it a moment (the resync, minutes
	// away, cannot be what delivers it).
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, _, body := call(t, b, "GET", "/read", "Bearer "+tok, "")
		if st == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica b after consumption on a: %d %s", st, body)
		}
		time.Sleep(20 * time.Millisecond) // polling for the event's delivery, not for an expiry
	}
}

// holdingUpstream is a POS API whose /hold answers only when the test releases it (so a call can
// be kept in flight) and /refuse answers 409; it counts what it receives, by path.
type holdingUpstream struct {
	*httptest.Server
	arrived chan string
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	count   map[string]int
}

// releaseAll lets every held call (and every later one) answer.
func (u *holdingUpstream) releaseAll() { u.once.Do(func() { close(u.release) }) }

func newHoldingUpstream(t *testing.T) *holdingUpstream {
	u := &holdingUpstream{arrived: make(chan string, 64), release: make(chan struct{}), count: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.count[r.URL.Path]++
		u.mu.Unlock()
		select {
		case u.arrived <- r.URL.Path:
		default:
		}
		switch r.URL.Path {
		case "/hold":
			select {
			case <-u.release:
			case <-r.Context().Done():
				return
			}
		case "/refuse":
			w.WriteHeader(http.StatusConflict)
			return
		}
		_, _ = w.Write([]byte(`{"reserved":true}`))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *holdingUpstream) calls(path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.count[path]
}

// TestConsumeIsSingleUseAcrossReplicas: the single use of a consuming route is decided by the
// shared PostgreSQL store, not by each replica's memory. While a call with a session token is in
// flight on replica a, the same token on replica b is refused (409) and never reaches the
// upstream; a burst with one token on both replicas reaches it exactly once; an answer the
// upstream refused gives the token back, on every replica.
func TestConsumeIsSingleUseAcrossReplicas(t *testing.T) {
	up := newHoldingUpstream(t)
	key := newKey(t)
	conf := routesFor(up.URL, key,
		config.Route{Path: "/hold", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"},
		config.Route{Path: "/refuse", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"},
		config.Route{Path: "/reserve", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"})
	a := servertest.Start(t, servertest.Options{Driver: "postgres", Configure: conf})
	b := servertest.Start(t, servertest.Options{ReplicaOf: a, Configure: conf, AdminToken: a.AdminToken})
	t.Cleanup(up.releaseAll) // runs before the instances stop: nothing stays held if the test fails

	type result struct {
		status int
		body   []byte
	}
	send := func(inst *servertest.Instance, path, tok string) <-chan result {
		ch := make(chan result, 1)
		go func() { // no t.Fatal off the test's goroutine: a transport error is status 0
			req, _ := http.NewRequest("POST", inst.URL+path, strings.NewReader("{}"))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			res, err := inst.Client.Do(req)
			if err != nil {
				ch <- result{0, []byte(err.Error())}
				return
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			ch <- result{res.StatusCode, body}
		}()
		return ch
	}
	waitArrival := func(want string) {
		t.Helper()
		select {
		case got := <-up.arrived:
			if got != want {
				t.Fatalf("upstream received %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("upstream never received %s", want)
		}
	}

	// 1. A call in flight on a; the same token on b.
	tok, _ := clientToken(t, a)
	first := send(a, "/hold", tok)
	waitArrival("/hold")
	select {
	case r := <-send(b, "/hold", tok):
		if r.status != 409 || !strings.Contains(string(r.body), "consume_in_progress") {
			t.Fatalf("replica b while a's call is in flight: %d %s", r.status, r.body)
		}
	case got := <-up.arrived:
		t.Fatalf("replica b forwarded the same single-use token (%s) while a's call was in flight", got)
	case <-time.After(10 * time.Second):
		t.Fatal("replica b did not answer")
	}
	up.releaseAll()
	if r := <-first; r.status != 200 {
		t.Fatalf("replica a: %d %s", r.status, r.body)
	}
	<-send(b, "/hold", tok) // refused (409 by the claim, or 401 once the revocation arrived)
	if n := up.calls("/hold"); n != 1 {
		t.Fatalf("upstream received %d calls with one single-use token", n)
	}

	// 2. A burst with a fresh token on both replicas at once: exactly one reaches the upstream.
	tok2, _ := clientToken(t, b)
	const n = 16
	results := make([]<-chan result, n)
	for i := range results {
		results[i] = send([]*servertest.Instance{a, b}[i%2], "/reserve", tok2)
	}
	ok := 0
	for _, ch := range results {
		switch r := <-ch; r.status {
		case 200:
			ok++
		case 401, 409:
		default:
			t.Errorf("burst: unexpected %d %s", r.status, r.body)
		}
	}
	if got := up.calls("/reserve"); ok != 1 || got != 1 {
		t.Fatalf("burst on two replicas: %d successes, %d upstream calls; want exactly 1", ok, got)
	}

	// 3. The upstream refuses the call (409): the token is given back, and works on the other
	// replica.
	tok3, _ := clientToken(t, a)
	if r := <-send(a, "/refuse", tok3); r.status != 409 {
		t.Fatalf("refused by the upstream: %d %s", r.status, r.body)
	}
	if r := <-send(b, "/reserve", tok3); r.status != 200 {
		t.Fatalf("after the upstream refused, the token is still good on b: %d %s", r.status, r.body)
	}
	if strings.Contains(a.Logs()+b.Logs(), tok) {
		t.Fatal("a token was logged")
	}
}

func copyMasterKey(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(from, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(to, "master.key"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDocsConfigOnRealServer starts posgate with the routes and upstreams of docs/gateway.md:
// every authenticator name in it is one the dialects really register.
func TestDocsConfigOnRealServer(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "gateway.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(data), "<!-- gateway-example -->")
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, _ := strings.Cut(rest, "```")
	doc, err := config.Parse([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) {
		c.Upstreams, c.Routes, c.Gateway = doc.Upstreams, doc.Routes, doc.Gateway
	}})
	st, resp := inst.Admin(t, "GET", "/gateway/routes", nil)
	if st != 200 || len(resp["routes"].([]any)) != len(doc.Routes) {
		t.Fatalf("%d %v", st, resp)
	}
}

func headerValues(h http.Header) []string {
	var out []string
	for _, v := range h {
		out = append(out, v...)
	}
	return out
}

func grepLines(b []byte, subs ...string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}
