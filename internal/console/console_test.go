package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/console"
	"github.com/posgate/posgate/internal/dialect/chef/cheftest"
	"github.com/posgate/posgate/internal/store"
)

const wantCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// browserish is an HTTP client that keeps cookies and does not follow redirects.
func browserish(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, u string, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	// What a browser sends on a same-origin request.
	if method != http.MethodGet {
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		pu, _ := url.Parse(u)
		req.Header.Set("Origin", pu.Scheme+"://"+pu.Host)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// signIn signs c in (the cookie jar keeps the session; the jar ignores Secure on http://, as a
// browser does for loopback).
func signIn(t *testing.T, inst *cheftest.Instance, c *http.Client) {
	t.Helper()
	resp, body := do(t, c, http.MethodPost, inst.URL+"/admin/login", "token="+url.QueryEscape(inst.AdminToken))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/pending" {
		t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
}

func TestSignInAndSession(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	c := browserish(t)

	// Not signed in: pages redirect to the sign-in form.
	for _, p := range []string{"/admin/", "/admin/pending", "/admin/devices", "/admin/audit"} {
		resp, _ := do(t, c, http.MethodGet, inst.URL+p, "")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/login" {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp, body := do(t, c, http.MethodGet, inst.URL+"/admin/login", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `name="token"`) {
		t.Fatalf("login page %d", resp.StatusCode)
	}
	h := resp.Header
	if h.Get("Content-Security-Policy") != wantCSP || h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" ||
		h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", h)
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Fatal("inline script/style or external asset in the page")
	}

	// A wrong token: 401, audited, no cookie.
	resp, body = do(t, c, http.MethodPost, inst.URL+"/admin/login", "token=pg_at_wrong")
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, "not the admin token") {
		t.Fatalf("wrong token: %d", resp.StatusCode)
	}
	// The right token: an HttpOnly, Secure, SameSite=Strict session cookie scoped to /admin/.
	resp, _ = do(t, c, http.MethodPost, inst.URL+"/admin/login", "token="+url.QueryEscape(inst.AdminToken))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	ck := cookies[0]
	if ck.Name != console.CookieName || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/admin/" || len(ck.Value) != 43 {
		t.Fatalf("cookie %+v", ck)
	}
	if strings.Contains(ck.Value, inst.AdminToken) {
		t.Fatal("the admin token is the cookie")
	}
	for _, p := range []string{"/admin/pending", "/admin/devices", "/admin/audit"} {
		resp, body := do(t, c, http.MethodGet, inst.URL+p, "")
		if resp.StatusCode != 200 || !strings.Contains(body, "Sign out") {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	// Audit: the failure and the success.
	ev, _ := inst.Svc.Store.ListAudit(context.Background(), 20)
	var denied, ok bool
	for _, e := range ev {
		denied = denied || (e.Action == "console.login" && e.Outcome == "denied" && e.Actor == "anonymous")
		ok = ok || (e.Action == "console.login" && e.Outcome == "ok" && e.Actor == "admin")
		if strings.Contains(e.Detail, inst.AdminToken) || strings.Contains(e.Detail, "pg_at_wrong") {
			t.Fatal("a token in the audit trail")
		}
	}
	if !denied || !ok {
		t.Fatalf("audit %+v", ev)
	}
	// A forged or stale cookie is nobody.
	c2 := browserish(t)
	u, _ := url.Parse(inst.URL + "/admin/")
	c2.Jar.SetCookies(u, []*http.Cookie{{Name: console.CookieName, Value: strings.Repeat("A", 43), Path: "/admin/"}})
	if resp, _ := do(t, c2, http.MethodGet, inst.URL+"/admin/pending", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("forged cookie: %d", resp.StatusCode)
	}
	// Sign out ends the session on the server.
	old := c.Jar.Cookies(u)
	if resp, _ := do(t, c, http.MethodPost, inst.URL+"/admin/logout", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	c.Jar.SetCookies(u, old)
	if resp, _ := do(t, c, http.MethodGet, inst.URL+"/admin/pending", ""); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after logout: %d", resp.StatusCode)
	}
}

// TestCrossOriginRefused: a state-changing request from another origin is refused even with the
// session cookie (CrossOriginProtection), and nothing changes.
func TestCrossOriginRefused(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	c := browserish(t)
	signIn(t, inst, c)
	ch := pairAsync(inst, "X1", "Till")
	d := inst.WaitPending(t, 1)[0]
	for _, hdr := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "", "Origin", "https://evil.example"},
	} {
		resp, _ := do(t, c, http.MethodPost, inst.URL+"/admin/devices/"+d.ID+"/approve", "", hdr...)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%v: %d", hdr, resp.StatusCode)
		}
	}
	// Sign-in itself is protected too (login CSRF).
	if resp, _ := do(t, browserish(t), http.MethodPost, inst.URL+"/admin/login", "token=x", "Sec-Fetch-Site", "cross-site"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site login: %d", resp.StatusCode)
	}
	if dev, _ := inst.Svc.Store.GetChefDevice(context.Background(), d.ID); dev.State != store.DevicePending {
		t.Fatalf("state changed to %s", dev.State)
	}
	// The same request from the console's own origin works (a plain form post: redirect back).
	resp, _ := do(t, c, http.MethodPost, inst.URL+"/admin/devices/"+d.ID+"/approve", "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin/pending" {
		t.Fatalf("same origin: %d", resp.StatusCode)
	}
	if a := <-ch; !strings.Contains(a, `"success":true`) {
		t.Fatalf("device got %s", a)
	}
	// The flash notice says what happened, once.
	_, body := do(t, c, http.MethodGet, inst.URL+"/admin/pending", "")
	if !strings.Contains(body, "Till: approved") {
		t.Fatal("no notice after the decision")
	}
	if _, body := do(t, c, http.MethodGet, inst.URL+"/admin/pending", ""); strings.Contains(body, "Till: approved") {
		t.Fatal("notice shown twice")
	}
}

// TestPagesEscapeDeviceText: what a device calls itself is shown as text, never markup.
func TestPagesEscapeDeviceText(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	c := browserish(t)
	signIn(t, inst, c)
	evil := `<img src=x onerror=alert(1)>`
	pairAsync(inst, `"><script>alert(2)</script>`, evil)
	inst.WaitPending(t, 1)
	for _, p := range []string{"/admin/pending", "/admin/devices"} {
		_, body := do(t, c, http.MethodGet, inst.URL+p, "")
		if strings.Contains(body, "<img") || strings.Contains(body, "<script>alert") {
			t.Fatalf("%s renders device text as markup", p)
		}
		if !strings.Contains(body, "&lt;img src=x onerror=alert(1)&gt;") {
			t.Fatalf("%s: label not shown", p)
		}
	}
}

// TestDecideJSONAndAudit: the page's script posts with Accept: application/json.
func TestDecideJSONAndAudit(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	c := browserish(t)
	signIn(t, inst, c)
	ch := pairAsync(inst, "J1", "Bar")
	d := inst.WaitPending(t, 1)[0]
	resp, body := do(t, c, http.MethodPost, inst.URL+"/admin/devices/"+d.ID+"/decline", "", "Accept", "application/json")
	if resp.StatusCode != 200 || !strings.Contains(body, `"state":"declined"`) {
		t.Fatalf("decline: %d %s", resp.StatusCode, body)
	}
	if a := <-ch; !strings.Contains(a, `"error_num":57`) {
		t.Fatalf("device got %s", a)
	}
	resp, body = do(t, c, http.MethodPost, inst.URL+"/admin/devices/"+d.ID+"/approve", "", "Accept", "application/json")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "declined") {
		t.Fatalf("approve declined: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, c, http.MethodPost, inst.URL+"/admin/devices/"+d.ID+"/explode", "", "Accept", "application/json"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown action: %d", resp.StatusCode)
	}
	ev, _ := inst.Svc.Store.ListAudit(context.Background(), 20)
	found := false
	for _, e := range ev {
		if e.Action == "chef.device.decline" && e.Actor == "admin" && e.Target == d.ID && e.Address == "127.0.0.1" && e.Outcome == "ok" && strings.Contains(e.Detail, "via console") {
			found = true
		}
	}
	if !found {
		t.Fatalf("decision not audited: %+v", ev)
	}
	// The audit page shows it.
	_, page := do(t, c, http.MethodGet, inst.URL+"/admin/audit", "")
	if !strings.Contains(page, "chef.device.decline") {
		t.Fatal("audit page does not list the decision")
	}
}

// TestPendingEvents: the event stream sends the pending list at once and again when it changes.
func TestPendingEvents(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	c := browserish(t)
	signIn(t, inst, c)
	// Without a session: 401, no stream.
	if resp, _ := do(t, browserish(t), http.MethodGet, inst.URL+"/admin/pending/events", "", "Accept", "text/event-stream"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("events without a session: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, inst.URL+"/admin/pending/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	c.Timeout = 0
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %s", resp.Header.Get("Content-Type"))
	}
	events := pendingStream(t, resp.Body)
	next := func() []map[string]any {
		select {
		case e := <-events:
			if e.Total != len(e.Devices) {
				t.Fatalf("total %d for %d devices", e.Total, len(e.Devices))
			}
			return e.Devices
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
			return nil
		}
	}
	if l := next(); len(l) != 0 {
		t.Fatalf("first list %v", l)
	}
	ch := pairAsync(inst, "E1", "Patio")
	l := next()
	if len(l) != 1 || l[0]["label"] != "Patio" || l[0]["device_id"] != "E1" || l[0]["waiting"] != true || l[0]["address"] != "127.0.0.1" {
		t.Fatalf("list %v", l)
	}
	id := l[0]["id"].(string)
	if resp, _ := do(t, c, http.MethodPost, inst.URL+"/admin/devices/"+id+"/approve", "", "Accept", "application/json"); resp.StatusCode != 200 {
		t.Fatalf("approve %d", resp.StatusCode)
	}
	if l := next(); len(l) != 0 {
		t.Fatalf("after approval %v", l)
	}
	<-ch
}

func TestStaticAssets(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	for p, ct := range map[string]string{"/admin/static/app.css": "text/css", "/admin/static/app.js": "text/javascript"} {
		resp, body := do(t, http.DefaultClient, http.MethodGet, inst.URL+p, "")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ct) || len(body) < 100 {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if strings.Contains(body, "innerHTML") || strings.Contains(body, "eval(") {
			t.Fatalf("%s uses innerHTML/eval", p)
		}
	}
	if resp, _ := do(t, http.DefaultClient, http.MethodGet, inst.URL+"/admin/static/", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("listing: %d", resp.StatusCode)
	}
}

// pendingEvent is the data of a "pending" server-sent event.
type pendingEvent struct {
	Devices []map[string]any `json:"devices"`
	Total   int              `json:"total"`
}

// pendingStream decodes the "pending" events of an event stream.
func pendingStream(t *testing.T, body io.Reader) <-chan pendingEvent {
	events := make(chan pendingEvent, 8)
	go func() {
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var name string
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok && name == "pending" {
				var e pendingEvent
				if err := json.Unmarshal([]byte(v), &e); err != nil || e.Devices == nil {
					e = pendingEvent{Total: -1} // fails the reader's checks
				}
				events <- e
			}
		}
		close(events)
	}()
	return events
}

// TestPendingListBounded: with more requests pending than the page shows, the page and its event
// stream show the 200 most recently asked ones, newest first, and say how many there are; the
// devices page and the admin API still list every one; a sweep of stale requests reaches the
// open stream.
func TestPendingListBounded(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	inst := cheftest.Start(t, cheftest.Options{Clock: clk})
	ctx := context.Background()
	const n = 205
	start := clk.Now().Add(-30 * time.Minute) // stale, but within the retention (1 h) until the clock moves
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * time.Second)
		if _, err := inst.Svc.Store.UpsertPendingChefDevice(ctx, &store.ChefDevice{ID: fmt.Sprintf("dev_%03d", i),
			DeviceKey: fmt.Sprintf("k:%03d", i), Label: fmt.Sprintf("till %03d", i), Address: "10.0.0.1",
			UserAgent: "Chef/1", FirstSeen: at, UpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	c := browserish(t)
	signIn(t, inst, c)

	_, page := do(t, c, http.MethodGet, inst.URL+"/admin/pending", "")
	if got := strings.Count(page, `<tr data-id="dev_`); got != 200 {
		t.Fatalf("pending page shows %d rows", got)
	}
	if !strings.Contains(page, `Showing the <span id="shown">200</span> most recent of <span id="total">205</span>`) ||
		!strings.Contains(page, "removed after 1 hour") {
		t.Fatal("the pending page does not say it shows part of the list")
	}
	if i, j := strings.Index(page, `data-id="dev_204"`), strings.Index(page, `data-id="dev_203"`); i < 0 || j < 0 || i > j {
		t.Fatal("the newest request is not first")
	}
	if strings.Contains(page, `data-id="dev_004"`) {
		t.Fatal("an older request beyond the bound is shown")
	}
	_, all := do(t, c, http.MethodGet, inst.URL+"/admin/devices?state=pending", "")
	if got := strings.Count(all, `<tr data-id="dev_`); got != n {
		t.Fatalf("devices page (pending) shows %d rows, want %d", got, n)
	}
	if st, body := inst.Admin(t, http.MethodGet, "/chef/devices?state=pending"); st != http.StatusOK || len(body["devices"].([]any)) != n {
		t.Fatalf("admin API: %d, %d devices", st, len(body["devices"].([]any)))
	}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, inst.URL+"/admin/pending/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	c.Timeout = 0
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := pendingStream(t, resp.Body)
	next := func() pendingEvent {
		select {
		case e := <-events:
			return e
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
			return pendingEvent{}
		}
	}
	e := next()
	if len(e.Devices) != 200 || e.Total != n || e.Devices[0]["id"] != "dev_204" || e.Devices[199]["id"] != "dev_005" {
		t.Fatalf("first event: %d devices of %d, first %v", len(e.Devices), e.Total, e.Devices[0]["id"])
	}
	if e.Devices[0]["waiting"] != false {
		t.Fatal("a stale request is shown as waiting")
	}

	// An hour later the sweeper deletes them all (older than chef.pending_retention); the stream
	// hears of it.
	clk.Advance(time.Hour)
	if deleted, err := inst.Module.SweepNow(ctx); err != nil || deleted != n {
		t.Fatalf("sweep: %d %v", deleted, err)
	}
	if e := next(); len(e.Devices) != 0 || e.Total != 0 {
		t.Fatalf("after the sweep: %d devices of %d", len(e.Devices), e.Total)
	}
}
