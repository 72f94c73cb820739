package server_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/testutil/faultproxy"
)

// TestHungPostgres: PostgreSQL hangs (a proxy in front of it accepts connections and forwards
// nothing, as with SIGSTOP or a partition). Token requests and admin writes answer 503 with
// Retry-After once store.timeout has passed — concurrent ones too, none is held for the stall —
// /readyz says unavailable, and everything recovers by itself when the proxy thaws.
func TestHungPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	u, _ := url.Parse(dsn)
	p := faultproxy.Start(t, u.Host)
	u.Host = p.Addr
	const timeout = 1 // second
	inst := servertest.Start(t, servertest.Options{DSN: u.String(), Configure: func(c *config.Config) {
		c.Store.Timeout = timeout
	}})
	t.Cleanup(p.Thaw) // runs before the instance stops: its store closes through the proxy

	// Two clients: a token for "cached" is fetched before the hang, so its client record may be in
	// the token endpoint's cache; "fresh" is looked up in the store first during the hang.
	creds := map[string][2]string{}
	for _, name := range []string{"cached", "fresh"} {
		status, cl := inst.Admin(t, "POST", "/clients", map[string]any{"name": name, "grant_types": []string{"client_credentials"}, "scopes": []string{"s"}})
		if status != 201 {
			t.Fatalf("create client: %d %v", status, cl)
		}
		creds[name] = [2]string{cl["client_id"].(string), cl["client_secret"].(string)}
	}
	tokenReq := func(name string) (int, string) {
		req, _ := http.NewRequest("POST", inst.URL+"/oauth/token", strings.NewReader("grant_type=client_credentials&scope=s"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(creds[name][0]), url.QueryEscape(creds[name][1]))
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Errorf("token request: %v", err)
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	adminWrite := func(name string) (int, string) {
		req, _ := http.NewRequest("POST", inst.URL+"/admin/api/v1/clients", strings.NewReader(`{"name":"`+name+`","grant_types":["client_credentials"]}`))
		req.Header.Set("Authorization", "Bearer "+inst.AdminToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Errorf("admin write: %v", err)
			return 0, ""
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if s, _ := tokenReq("cached"); s != 200 {
		t.Fatalf("token before the hang: %d", s)
	}

	p.Freeze()
	// A request makes a few store calls in a row (a lookup, an audit append), each bounded by the
	// timeout; the slack covers a loaded machine. What this replaces is unbounded.
	limit := 6*time.Duration(timeout)*time.Second + 10*time.Second
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			var s int
			var retry, what string
			if i%3 == 0 {
				what = "admin write"
				s, retry = adminWrite("during-" + string(rune('a'+i)))
			} else {
				what = "token request"
				s, retry = tokenReq("fresh")
			}
			d := time.Since(start)
			if s != 503 || retry == "" {
				t.Errorf("%s %d on a hung store: %d, Retry-After %q; want 503 with Retry-After", what, i, s, retry)
			}
			if d > limit {
				t.Errorf("%s %d answered after %v", what, i, d)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * limit):
		p.Thaw()
		t.Fatalf("requests still blocked %v after PostgreSQL hung", 2*limit)
	}
	if s, _, body := get(t, inst.Client, inst.URL+"/readyz"); s != 503 {
		t.Errorf("readyz on a hung store: %d %s", s, body)
	}

	p.Thaw()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, _ := tokenReq("fresh")
		if s == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("token requests did not recover after the thaw: %d", s)
		}
		time.Sleep(50 * time.Millisecond) // polling for reconnection, not waiting for an expiry
	}
	if s, _ := adminWrite("after"); s != 201 {
		t.Errorf("admin write after the thaw: %d", s)
	}
	// Readiness comes back with the next write probe (at most every few seconds), not at once.
	for deadline := time.Now().Add(30 * time.Second); ; {
		s, _, body := get(t, inst.Client, inst.URL+"/readyz")
		if s == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz after the thaw: %d %s", s, body)
		}
		time.Sleep(100 * time.Millisecond) // polling for the next probe, not waiting for an expiry
	}
}

// TestPostgresWritesFail: PostgreSQL answers reads and pings but refuses every write (the
// database made read-only, as a standby after a failover or a full disk behaves). /readyz
// reports failing writes, failed client secrets are still throttled (in memory), and readiness
// comes back when writes do.
func TestPostgresWritesFail(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	clk := clock.NewFake(time.Now().UTC())
	inst := servertest.Start(t, servertest.Options{DSN: dsn, Clock: clk, Configure: func(c *config.Config) {
		c.Throttle.PerAddress, c.Throttle.PerAddressIdent = 1000, 3
	}})
	status, cl := inst.Admin(t, "POST", "/clients", map[string]any{"name": "pos", "grant_types": []string{"client_credentials"}, "scopes": []string{"s"}})
	if status != 201 {
		t.Fatalf("create client: %d %v", status, cl)
	}
	id := cl["client_id"].(string)
	readyz := func() (int, string) {
		clk.Advance(10 * time.Second) // past the write probe's period
		s, _, body := get(t, inst.Client, inst.URL+"/readyz")
		return s, body
	}
	if s, body := readyz(); s != 200 {
		t.Fatalf("readyz before: %d %s", s, body)
	}

	u, _ := url.Parse(dsn)
	name := pgx.Identifier{u.Path[1:]}.Sanitize()
	admin, err := pgx.Connect(t.Context(), pgtest.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	setReadOnly := func(on bool) {
		t.Helper()
		if _, err := admin.Exec(t.Context(), "ALTER DATABASE "+name+" SET default_transaction_read_only = "+strconv.FormatBool(on)); err != nil {
			t.Fatal(err)
		}
		// Sessions read the setting when they start: end the current ones (the pool reconnects).
		if _, err := admin.Exec(t.Context(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", u.Path[1:]); err != nil {
			t.Fatal(err)
		}
	}
	setReadOnly(true)
	var s int
	var body string
	for range 20 { // the first calls may meet the terminated connections
		if s, body = readyz(); strings.Contains(body, "writes_failing") {
			break
		}
	}
	if s != 503 || !strings.Contains(body, "writes_failing") {
		t.Errorf("readyz on a read-only database: %d %s, want 503 writes_failing", s, body)
	}
	tokenReq := func() int {
		req, _ := http.NewRequest("POST", inst.URL+"/oauth/token", strings.NewReader("grant_type=client_credentials&scope=s"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(id), "wrong-secret")
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		if s := tokenReq(); s != 401 {
			t.Fatalf("wrong secret %d on a read-only database: %d, want 401", i, s)
		}
	}
	if s := tokenReq(); s != 429 {
		t.Errorf("wrong secret past the limit on a read-only database: %d, want 429 (throttling must not fail open)", s)
	}
	if !strings.Contains(inst.Logs(), `"msg":"audit event not stored"`) {
		t.Error(`no "audit event not stored" log line for the failed credential checks`)
	}

	setReadOnly(false)
	for range 20 {
		if s, body = readyz(); s == 200 {
			break
		}
	}
	if s != 200 {
		t.Errorf("readyz after writes work again: %d %s", s, body)
	}
}
