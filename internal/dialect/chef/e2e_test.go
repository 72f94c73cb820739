package chef_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/server/servertest"
)

// upstreamRecorder is a POS API that records what it receives and checks the identity signature.
type upstreamRecorder struct {
	mu   sync.Mutex
	srv  *httptest.Server
	seen []*identity.Principal
	errs []error
	v    *identity.Verifier
}

func newUpstream(t *testing.T) *upstreamRecorder {
	u := &upstreamRecorder{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		u.mu.Lock()
		if u.v != nil {
			p, err := u.v.Verify(r)
			u.seen = append(u.seen, p)
			u.errs = append(u.errs, err)
		}
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":42,"result":{"success":true,"data":{"rows":3},"error_num":0,"error_message":""}}`))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// trust makes the recorder verify identity signatures of inst.
func (u *upstreamRecorder) trust(t *testing.T, inst *servertest.Instance) {
	master, err := keys.LoadMasterKey(inst.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := gateway.SigningKey(inst.Config, master)
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewVerifier(k)
	if err != nil {
		t.Fatal(err)
	}
	u.mu.Lock()
	u.v = v
	u.mu.Unlock()
}

func (u *upstreamRecorder) last(t *testing.T) *identity.Principal {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("upstream saw nothing")
	}
	if err := u.errs[len(u.errs)-1]; err != nil {
		t.Fatalf("identity signature: %v", err)
	}
	return u.seen[len(u.seen)-1]
}

func (u *upstreamRecorder) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// srvPost posts to a servertest instance.
func srvPost(t *testing.T, inst *servertest.Instance, body string, hdr ...string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, inst.URL+rpcPath, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "chef-e2e/1")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 90 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return answer{status: -1, body: []byte(err.Error())}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func srvAsync(t *testing.T, inst *servertest.Instance, body string, hdr ...string) <-chan answer {
	ch := make(chan answer, 1)
	go func() { ch <- srvPost(t, inst, body, hdr...) }()
	return ch
}

// srvPending waits until the instance lists n pending devices (admin API) and returns their ids.
func srvPending(t *testing.T, inst *servertest.Instance, n int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st, body := inst.Admin(t, http.MethodGet, "/chef/devices?state=pending", nil)
		if st != http.StatusOK {
			t.Fatalf("list: %d %v", st, body)
		}
		list, _ := body["devices"].([]any)
		if len(list) >= n {
			var ids []string
			for _, d := range list {
				ids = append(ids, d.(map[string]any)["id"].(string))
			}
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pending, want %d", len(list), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEndToEndServer runs the whole dialect on the real server (every module, its middleware, its
// admin API): pairing held until approval, a data call forwarded with a verifiable identity,
// revocation, the console's headers, and the demo line.
func TestEndToEndServer(t *testing.T) {
	up := newUpstream(t)
	inst := servertest.Start(t, servertest.Options{Demo: true, Configure: func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": up.srv.URL}
	}})
	up.trust(t, inst)

	ch := srvAsync(t, inst, authBody("1", "E2E-1", "Office"))
	id := srvPending(t, inst, 1)[0]
	if st, body := inst.Admin(t, http.MethodPost, "/chef/devices/"+id+"/approve", nil); st != http.StatusOK || body["state"] != "approved" {
		t.Fatalf("approve: %d %v", st, body)
	}
	tok := tokenOf(t, receive(t, ch)).Token

	a := srvPost(t, inst, dataCall, "Authorization", tok)
	if a.status != http.StatusOK || !strings.Contains(string(a.body), `"rows":3`) {
		t.Fatalf("data call: %d %s", a.status, a.body)
	}
	if p := up.last(t); p.Device != id || p.Dialect != "chef" {
		t.Fatalf("principal %+v", p)
	}
	// The real server's path rule still applies in front of the endpoint.
	req, _ := http.NewRequest(http.MethodPost, inst.URL+"/api/./json-rpc/v1", strings.NewReader(dataCall))
	req.URL.Opaque = "/api/./json-rpc/v1"
	req.Header.Set("Content-Type", "application/json")
	if resp, err := inst.Client.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("dot segment: %d", resp.StatusCode)
		}
	}

	if st, _ := inst.Admin(t, http.MethodPost, "/chef/devices/"+id+"/revoke", nil); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	n := up.count()
	failureOf(t, srvPost(t, inst, dataCall, "Authorization", tok), 57, "Device authentication process is declined by user.")
	if up.count() != n {
		t.Fatal("revoked call forwarded")
	}

	// The console is served by the real server with its headers.
	resp, err := inst.Client.Get(inst.URL + "/admin/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("console: %d %v", resp.StatusCode, resp.Header)
	}
	// serve --demo printed the pairing curl line.
	if out := inst.Output(); !strings.Contains(out, "Authentication.authenticateClient") {
		t.Fatalf("demo output lacks the chef line:\n%s", out)
	}
	// The held call of a device still pending when the server stops is answered at once (503),
	// not after the approval window.
	held := srvAsync(t, inst, authBody("2", "E2E-2", ""))
	srvPending(t, inst, 1)
	start := time.Now()
	inst.Stop()
	h := receive(t, held)
	if h.status != http.StatusServiceUnavailable || h.header.Get("Retry-After") == "" || time.Since(start) > 8*time.Second {
		t.Fatalf("held call at shutdown: %d %s after %v", h.status, h.body, time.Since(start))
	}
}

// TestReplicasPostgres: two posgate processes' worth of servers on one PostgreSQL database with
// LISTEN/NOTIFY: a call held on B is answered when a person approves on A; a revocation on B stops
// the token on A at once.
func TestReplicasPostgres(t *testing.T) {
	up := newUpstream(t)
	conf := func(c *config.Config) { c.Upstreams = map[string]string{"pos": up.srv.URL} }
	a := servertest.Start(t, servertest.Options{Driver: "postgres", Configure: conf})
	b := servertest.Start(t, servertest.Options{ReplicaOf: a, Configure: conf})
	up.trust(t, a)

	ch := srvAsync(t, b, authBody("1", "PG-1", "Replica test"))
	id := srvPending(t, a, 1)[0]
	start := time.Now()
	if st, _ := a.Admin(t, http.MethodPost, "/chef/devices/"+id+"/approve", nil); st != http.StatusOK {
		t.Fatalf("approve on a: %d", st)
	}
	approveTook := time.Since(start)
	tok := tokenOf(t, receive(t, ch)).Token
	t.Logf("approval on replica A (admin call %v) answered the call held on replica B after %v", approveTook, time.Since(start))

	if r := srvPost(t, a, dataCall, "Authorization", tok); r.status != http.StatusOK || !strings.Contains(string(r.body), "rows") {
		t.Fatalf("data call on a: %s", r.body)
	}
	if st, _ := b.Admin(t, http.MethodPost, "/chef/devices/"+id+"/revoke", nil); st != http.StatusOK {
		t.Fatalf("revoke on b: %d", st)
	}
	// The revocation reaches A over LISTEN/NOTIFY: within milliseconds, long before the periodic
	// resync (5 s) would catch it. Poll for it, then hold A to the exact answer.
	revokedAt := time.Now()
	for {
		r := srvPost(t, a, dataCall, "Authorization", tok)
		if strings.Contains(string(r.body), `"error_num":57`) {
			failureOf(t, r, 57, "Device authentication process is declined by user.")
			break
		}
		if time.Since(revokedAt) > 3*time.Second {
			t.Fatalf("revocation on B not effective on A after %v: %s", time.Since(revokedAt), r.body)
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("revocation on replica B effective on replica A after %v", time.Since(revokedAt))

	// One device calling both replicas at once: one pending request, one approval answers both.
	c1 := srvAsync(t, a, authBody("7", "PG-2", ""))
	c2 := srvAsync(t, b, authBody("8", "PG-2", ""))
	id2 := srvPending(t, a, 1)[0]
	if st, _ := b.Admin(t, http.MethodPost, "/chef/devices/"+id2+"/approve", nil); st != http.StatusOK {
		t.Fatalf("approve: %d", st)
	}
	tokenOf(t, receive(t, c1))
	tokenOf(t, receive(t, c2))
	if st, body := a.Admin(t, http.MethodGet, "/chef/devices", nil); st != http.StatusOK || len(body["devices"].([]any)) != 2 {
		t.Fatalf("devices: %v", body)
	}
}
