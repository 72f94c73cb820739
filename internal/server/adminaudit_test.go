package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store"
)

// adminAuthEvents returns the audit events of refused admin sign-ins.
func adminAuthEvents(t *testing.T, inst *servertest.Instance) []*store.AuditEvent {
	t.Helper()
	all, err := inst.Svc.Store.ListAudit(t.Context(), 10000)
	if err != nil {
		t.Fatal(err)
	}
	var out []*store.AuditEvent
	for _, e := range all {
		if e.Action == "admin.auth" {
			out = append(out, e)
		}
	}
	return out
}

// Admin API requests without any token are failures like wrong tokens: throttled per address, so
// one address cannot write audit rows without limit. Another address is unaffected.
func TestAdminRequestsWithoutTokenAreThrottled(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) {
		c.Throttle.PerAddress = 5
		c.Server.TrustedProxies = []string{"127.0.0.1/32", "::1/128"}
	}})
	anonymous := func(addr string) (int, http.Header) {
		req, _ := http.NewRequest("GET", inst.URL+"/admin/api/v1/clients", nil)
		req.Header.Set("X-Forwarded-For", addr)
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	const n = 60
	statuses := map[int]int{}
	for range n {
		s, h := anonymous("192.0.2.9")
		statuses[s]++
		if s == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
	}
	if statuses[http.StatusUnauthorized] != 5 || statuses[http.StatusTooManyRequests] != n-5 {
		t.Fatalf("%d requests without a token from one address: %v, want 5×401 then 429s", n, statuses)
	}
	if ev := adminAuthEvents(t, inst); len(ev) != 5 {
		t.Fatalf("%d audit rows for %d refused requests, want 5 (throttled requests write none)", len(ev), n)
	}
	// An IPv6 client counts by its /64: another address of the same /64 is blocked as well.
	for i := range 5 {
		if s, _ := anonymous("2001:db8:5:6::" + string(rune('a'+i))); s != http.StatusUnauthorized {
			t.Fatalf("IPv6 request %d: %d", i, s)
		}
	}
	if s, _ := anonymous("2001:db8:5:6:ffff::1"); s != http.StatusTooManyRequests {
		t.Fatalf("a fresh address of a blocked /64: %d, want 429", s)
	}
	// The administrator elsewhere is unaffected.
	if s, body := inst.Admin(t, "GET", "/clients", nil); s != http.StatusOK {
		t.Fatalf("admin from another address: %d %v", s, body)
	}
}

// Audit events older than server.audit_retention are deleted by the maintenance cleanup (which
// also runs at start); newer ones stay.
func TestAuditRetention(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	clk := clock.NewFake(t0)
	dir := t.TempDir()
	retention := func(c *config.Config) { c.Server.AuditRetention = 86400 }
	noToken := func(inst *servertest.Instance) {
		resp, err := inst.Client.Get(inst.URL + "/admin/api/v1/clients")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("no token: %d", resp.StatusCode)
		}
	}

	a := servertest.Start(t, servertest.Options{Clock: clk, DataDir: dir, Configure: retention})
	noToken(a) // audited at t0
	clk.Advance(12 * time.Hour)
	noToken(a) // at t0+12h
	if ev := adminAuthEvents(t, a); len(ev) != 2 {
		t.Fatalf("%d audit rows, want 2", len(ev))
	}
	a.Stop()

	// 25 hours after t0 a restarted posgate keeps one day: the t0 event goes, the t0+12h one stays.
	clk.Advance(13 * time.Hour)
	b := servertest.Start(t, servertest.Options{Clock: clk, DataDir: dir, Configure: retention})
	deadline := time.Now().Add(30 * time.Second)
	for {
		ev := adminAuthEvents(t, b)
		if len(ev) == 1 {
			if !ev[0].At.Equal(t0.Add(12 * time.Hour)) {
				t.Fatalf("kept the event of %v, want the one of %v", ev[0].At, t0.Add(12*time.Hour))
			}
			break
		}
		if len(ev) != 2 || time.Now().After(deadline) {
			t.Fatalf("%d admin.auth events after the start-up cleanup, want 1", len(ev))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
