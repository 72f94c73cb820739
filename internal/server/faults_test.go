package server_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

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
	if s, _, body := get(t, inst.Client, inst.URL+"/readyz"); s != 200 {
		t.Errorf("readyz after the thaw: %d %s", s, body)
	}
}
