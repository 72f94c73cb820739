package doshii_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/dialect/doshii"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/testutil/fakeupstream"
)

// gatewayRoutes are the venue routes of the tests (the same as docs/dialects/doshii.md).
var gatewayRoutes = []config.Route{
	{Path: "/pos/v3/orders", Methods: []string{"GET", "POST"}, Auth: []string{doshii.AuthVenue}, Upstream: "pos"},
	{Path: "/pos/v3/venues/{location}/menu", Methods: []string{"GET"}, Auth: []string{doshii.AuthVenue}, Upstream: "pos"},
}

type e2e struct {
	t    *testing.T
	inst *servertest.Instance
	up   *fakeupstream.Server
}

func startE2E(t *testing.T) *e2e {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	up := fakeupstream.Start(t, key)
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) {
		c.Routes = gatewayRoutes
		c.Upstreams = map[string]string{"pos": up.URL}
		c.Gateway.SigningSecret = base64.StdEncoding.EncodeToString(key)
	}})
	return &e2e{t: t, inst: inst, up: up}
}

type venue struct {
	vendorName, vendorKey string
	org, id, token        string
}

// onboard creates a vendor through the admin API and an organisation with one location.
func (e *e2e) onboard(vendorName, orgName, locName string) venue {
	e.t.Helper()
	st, body := e.inst.Admin(e.t, "POST", "/doshii/vendors", map[string]any{"api_name": vendorName})
	if st != http.StatusCreated {
		e.t.Fatalf("create vendor: %d %v", st, body)
	}
	v := venue{vendorName: vendorName, vendorKey: body["vendor_key"].(string)}
	st, raw, out := e.call("POST", "/pos/v3/organisations", map[string]any{"name": orgName, "location": map[string]any{"name": locName}},
		"vendor", vendorName, "Authorization", "Bearer "+v.vendorKey)
	if st != http.StatusCreated {
		e.t.Fatalf("onboard: %d %s", st, raw)
	}
	loc := out["location"].(map[string]any)
	v.org, v.id, v.token = out["id"].(string), loc["id"].(string), loc["token"].(string)
	return v
}

func (e *e2e) addLocation(v venue, name string) venue {
	e.t.Helper()
	st, raw, out := e.call("POST", "/pos/v3/locations", map[string]any{"name": name, "organisationId": v.org},
		"vendor", v.vendorName, "Authorization", "Bearer "+v.vendorKey)
	if st != http.StatusCreated {
		e.t.Fatalf("add location: %d %s", st, raw)
	}
	w := v
	w.id, w.token = out["id"].(string), out["token"].(string)
	return w
}

func (v venue) jwt() string { return v.jwtAt(time.Now()) }

func (v venue) jwtAt(now time.Time) string {
	b64 := base64.RawURLEncoding.EncodeToString
	in := b64([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
		b64([]byte(fmt.Sprintf(`{"locationToken":%q,"timestamp":%d}`, v.token, now.Unix())))
	mac := hmac.New(sha256.New, []byte(v.vendorKey))
	mac.Write([]byte(in))
	return in + "." + b64(mac.Sum(nil))
}

func (e *e2e) call(method, path string, body any, hdr ...string) (int, []byte, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.inst.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := e.inst.Client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp.StatusCode, raw, out
}

// TestGatewayTenantBinding: a location JWT reaches the upstream bound to its own location, and a
// request naming another location — in the path, the doshii-location-id header or the body — is
// refused with Doshii's 403 and never forwarded.
func TestGatewayTenantBinding(t *testing.T) {
	e := startE2E(t)
	a := e.onboard("vendor-a", "Org A", "Venue A")
	a2 := e.addLocation(a, "Venue A2")
	b := e.onboard("vendor-b", "Org B", "Venue B")
	auth := func(v venue) []string { return []string{"vendor", v.vendorName, "Authorization", "Bearer " + v.jwt()} }

	// Forwarded: own location in the header, path and body.
	for _, c := range []struct {
		method, path string
		body         any
		hdr          []string
	}{
		{"GET", "/pos/v3/orders", nil, []string{doshii.LocationHeader, a.id}},
		{"GET", "/pos/v3/venues/" + a.id + "/menu", nil, nil},
		{"POST", "/pos/v3/orders", map[string]any{"locationId": a.id, "items": []any{}}, nil},
	} {
		before := len(e.up.Requests())
		st, raw, _ := e.call(c.method, c.path, c.body, append(auth(a), c.hdr...)...)
		if st != http.StatusOK {
			t.Fatalf("%s %s: %d %s", c.method, c.path, st, raw)
		}
		reqs := e.up.Requests()
		if len(reqs) != before+1 {
			t.Fatalf("%s %s: upstream saw %d requests", c.method, c.path, len(reqs)-before)
		}
		got := reqs[len(reqs)-1]
		if got.VerifyErr != nil {
			t.Fatalf("identity does not verify: %v", got.VerifyErr)
		}
		p := got.Principal
		if p.Dialect != "doshii" || p.Location != a.id || p.Subject != a.id || p.Organisation != a.org || !strings.HasPrefix(p.Vendor, "dv_") {
			t.Fatalf("principal %+v", p)
		}
		if got.Header.Get("Authorization") != "" || got.Header.Get("Vendor") != "" {
			t.Fatalf("credential forwarded: %v", got.Header)
		}
	}

	// Refused, nothing forwarded.
	before := len(e.up.Requests())
	for _, c := range []struct {
		name, method, path string
		body               any
		hdr                []string
	}{
		{"sibling in doshii-location-id", "GET", "/pos/v3/orders", nil, []string{doshii.LocationHeader, a2.id}},
		{"other vendor's location in doshii-location-id", "GET", "/pos/v3/orders", nil, []string{doshii.LocationHeader, b.id}},
		{"sibling in the path", "GET", "/pos/v3/venues/" + a2.id + "/menu", nil, nil},
		{"other vendor's location in the path", "GET", "/pos/v3/venues/" + b.id + "/menu", nil, nil},
		{"sibling in the body", "POST", "/pos/v3/orders", map[string]any{"locationId": a2.id}, nil},
		{"own and sibling headers", "GET", "/pos/v3/orders", nil, []string{doshii.LocationHeader, a.id, doshii.LocationHeader, a2.id}},
		{"posgate's own location route", "GET", "/pos/v3/locations/" + b.id, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, raw, out := e.call(c.method, c.path, c.body, append(auth(a), c.hdr...)...)
			if st != http.StatusForbidden || len(out) != 1 || out["message"] == "" {
				t.Fatalf("%d %s, want 403 {\"message\"}", st, raw)
			}
		})
	}
	// Bad credentials on a gateway route: Doshii's 401, nothing forwarded.
	for _, hdr := range [][]string{
		{"vendor", b.vendorName, "Authorization", "Bearer " + a.jwt()},     // A's JWT, B named
		{"vendor", a.vendorName, "Authorization", "Bearer " + a.vendorKey}, // the raw key
		{"vendor", a.vendorName}, // no JWT
	} {
		st, raw, out := e.call("GET", "/pos/v3/orders", nil, hdr...)
		if st != http.StatusUnauthorized || len(out) != 1 || out["message"] == "" {
			t.Fatalf("%v: %d %s, want 401 {\"message\"}", hdr[:1], st, raw)
		}
	}
	if n := len(e.up.Requests()); n != before {
		t.Fatalf("%d refused requests reached the upstream", n-before)
	}
	// B's own JWT works on the same route.
	if st, raw, _ := e.call("GET", "/pos/v3/venues/"+b.id+"/menu", nil, auth(b)...); st != http.StatusOK {
		t.Fatalf("vendor B: %d %s", st, raw)
	}
}

// TestDemo runs the curl lines `serve --demo` prints, twice (the demo is idempotent).
func TestDemo(t *testing.T) {
	e := startE2E(t)
	mod, err := doshii.New(e.inst.Svc)
	if err != nil {
		t.Fatal(err)
	}
	demoer, ok := mod.(app.Demoer)
	if !ok {
		t.Fatal("the doshii module is not an app.Demoer")
	}
	for round := 1; round <= 2; round++ {
		lines, err := demoer.Demo(context.Background(), e.inst.URL)
		if err != nil {
			t.Fatal(err)
		}
		script := "set -euo pipefail\n" + strings.Join(lines, "\n") + "\n"
		out, err := exec.Command("bash", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("round %d: %v\n%s", round, err, out)
		}
		text := string(out)
		if !strings.Contains(text, `"id":"dl_demo"`) || !strings.Contains(text, `"apiVersion":"v3"`) {
			t.Fatalf("round %d: the venue call did not answer the demo location:\n%s", round, text)
		}
		// Each round's onboarding line creates a location: the second names one still free
		// rather than failing with 409.
		wantOnboarding := `"name":"Demo Bar"`
		if round == 2 {
			wantOnboarding = `"name":"Demo Bar 2"`
		}
		if !strings.Contains(text, wantOnboarding) || !strings.Contains(text, `"token":"pg_lt_`) {
			t.Fatalf("round %d: onboarding line printed:\n%s", round, text)
		}
	}
}

// TestThrottleRetryAfterShape: on a gateway route, past the per-(address, vendor) threshold even a
// valid JWT is answered 429 with Retry-After in Doshii's {"message"} shape.
func TestThrottleRetryAfterShape(t *testing.T) {
	e := startE2E(t)
	a := e.onboard("vendor-a", "Org A", "Venue A")
	limit := e.inst.Config.Throttle.PerAddressIdent
	if limit <= 0 || limit > 50 {
		t.Skipf("per_address_ident is %d", limit)
	}
	for i := 0; i < limit; i++ {
		st, _, _ := e.call("GET", "/pos/v3/orders", nil, "vendor", a.vendorName, "Authorization", "Bearer x.y.z")
		if st != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, st)
		}
	}
	req, _ := http.NewRequest("GET", e.inst.URL+"/pos/v3/orders", nil)
	req.Header.Set("vendor", a.vendorName)
	req.Header.Set("Authorization", "Bearer "+a.jwt())
	resp, err := e.inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || ra < 1 || !bytes.HasPrefix(raw, []byte(`{"message":`)) {
		t.Fatalf("%d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), raw)
	}
}

// TestReplicas: two posgate servers sharing one PostgreSQL database and a fake clock. A vendor
// key rotated on one is accepted by the other at once, the old key keeps working during the
// overlap, and a location token rotated on one stops working on the other as soon as the
// rotation notice arrives (the cache-lifetime fallback is TestLocationTokenRotationReplicas).
func TestReplicas(t *testing.T) {
	clk := clock.NewFake(time.Now())
	one := servertest.Start(t, servertest.Options{Driver: "postgres", Clock: clk})
	two := servertest.Start(t, servertest.Options{ReplicaOf: one, Clock: clk})
	e1 := &e2e{t: t, inst: one}
	e2 := &e2e{t: t, inst: two}
	a := e1.onboard("vendor-a", "Org A", "Venue A")
	get := func(e *e2e, v venue) int {
		st, _, _ := e.call("GET", "/pos/v3/locations/"+v.id, nil, "vendor", v.vendorName, "Authorization", "Bearer "+v.jwtAt(clk.Now()))
		return st
	}
	if st := get(e2, a); st != http.StatusOK { // replica two caches vendor and location now
		t.Fatalf("replica two, before rotation: %d", st)
	}
	clk.Advance(2 * time.Second)
	st, body := one.Admin(t, "POST", "/doshii/vendors/"+vendorID(t, one, a.vendorName)+"/rotate-key", nil)
	if st != http.StatusOK {
		t.Fatalf("rotate on replica one: %d %v", st, body)
	}
	rotated := a
	rotated.vendorKey = body["vendor_key"].(string)
	if st := get(e2, rotated); st != http.StatusOK {
		t.Fatalf("replica two, new key: %d", st)
	}
	if st := get(e2, a); st != http.StatusOK {
		t.Fatalf("replica two, old key during the overlap: %d", st)
	}

	st, body = one.Admin(t, "POST", "/doshii/locations/"+a.id+"/rotate-token", nil)
	if st != http.StatusOK {
		t.Fatalf("rotate token on replica one: %d %v", st, body)
	}
	fresh := rotated
	fresh.token = body["token"].(string)
	if st := get(e1, rotated); st != http.StatusUnauthorized {
		t.Fatalf("replica one, old token: %d", st)
	}
	if st := get(e2, fresh); st != http.StatusOK {
		t.Fatalf("replica two, new token: %d", st)
	}
	// Replica two hears of the rotation over LISTEN/NOTIFY; the fake clock does not move, so only
	// the notice can make it refuse. Delivery is asynchronous: allow it two seconds.
	deadline := time.Now().Add(2 * time.Second)
	for get(e2, rotated) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("replica two still accepts the rotated location token 2 s after the rotation")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func vendorID(t *testing.T, inst *servertest.Instance, name string) string {
	t.Helper()
	st, body := inst.Admin(t, "GET", "/doshii/vendors", nil)
	if st != http.StatusOK {
		t.Fatalf("list vendors: %d", st)
	}
	for _, v := range body["vendors"].([]any) {
		if m := v.(map[string]any); m["api_name"] == name {
			return m["id"].(string)
		}
	}
	t.Fatalf("vendor %s not listed", name)
	return ""
}
