package server_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

// adminCall sends one admin API request and returns the status, headers and raw answer.
func adminCall(t *testing.T, inst *servertest.Instance, method, path, auth, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, inst.URL+"/admin/api/v1"+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

// goInternals are fragments of encoding/json's and Go's own error texts.
var goInternals = regexp.MustCompile(`Go struct|json: |cannot unmarshal|invalid character|unexpected end of JSON|\*[a-z]+\.[A-Z]|runtime error|strconv\.`)

// Every admin route that mounts — new ones included, as the list comes from the running server —
// answers malformed and mistyped bodies in the admin shape, without Go internals and never 5xx.
func TestEveryAdminRouteRefusesBadBodiesPlainly(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Demo: true})
	ids := adminIDs(t, inst)
	bodies := []string{
		`{"name" "x"}`,
		`{"name":5,"api_name":5,"username":5,"password":5,"token":5,"auth_secret":5,"provider_id":"x","grant_types":"password"}`,
		`[1,2]`,
		`{"token":"x"`,
		"{\"password\":\"caf\xe9 au lait long enough\"}",
	}
	routes := inst.Server.AdminRoutes()
	checked := 0
	for _, route := range routes {
		method, path, _ := strings.Cut(route, " ")
		if method != "POST" {
			continue
		}
		path = fillIDs(t, path, ids)
		for _, body := range bodies {
			status, _, raw := adminCall(t, inst, method, path, "Bearer "+inst.AdminToken, body)
			if status >= 500 || goInternals.MatchString(raw) {
				t.Errorf("%s with %q: %d %s", route, body, status, raw)
			}
			if status >= 400 && (!strings.Contains(raw, `"error"`) || !strings.Contains(raw, `"error_description"`)) {
				t.Errorf("%s with %q: %d %s is not the admin error shape", route, body, status, raw)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Fatalf("only %d requests checked over %v", checked, routes)
	}
}

// adminIDs creates one resource of each kind the admin routes name by id.
func adminIDs(t *testing.T, inst *servertest.Instance) map[string]string {
	t.Helper()
	ids := map[string]string{}
	_, c := inst.Admin(t, "POST", "/clients", map[string]any{"name": "ids", "grant_types": []string{"client_credentials"}})
	_, u := inst.Admin(t, "POST", "/users", map[string]any{"username": "ids", "password": "a long enough password"})
	_, v := inst.Admin(t, "POST", "/doshii/vendors", map[string]any{"api_name": "ids"})
	_, o := inst.Admin(t, "POST", "/orderpay/outlets", map[string]any{"provider_outlet_id": "ids", "pos_remote_id": "ids", "provider_id": 1, "provider_name": "ids"})
	_, l := inst.Admin(t, "GET", "/doshii/locations", nil)
	ids["clients"], ids["users"], ids["vendors"], ids["outlets"] = str(c["id"]), str(u["id"]), str(v["id"]), str(o["id"])
	if locs, _ := l["locations"].([]any); len(locs) > 0 {
		ids["locations"] = str(locs[0].(map[string]any)["id"])
	}
	ids["devices"] = "dev_none" // no device has paired: these routes answer 404 after reading the body
	for k, id := range ids {
		if id == "" {
			t.Fatalf("no %s id: %v", k, ids)
		}
	}
	return ids
}

// fillIDs replaces each {id} with the id of the resource the segment before it names.
func fillIDs(t *testing.T, path string, ids map[string]string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			id, ok := ids[segs[i-1]]
			if !ok {
				t.Fatalf("no id for %s", path)
			}
			segs[i] = id
		}
	}
	return strings.Join(segs, "/")
}

// A wrong admin token is told it is wrong on every admin route, and the lock-out that follows
// too many says when it ends (and holds even for the right token).
func TestWrongAdminTokenAndLockOutOnEveryRoute(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) { c.Throttle.PerAddress = 1000 }})
	for _, route := range inst.Server.AdminRoutes() {
		method, path, _ := strings.Cut(route, " ")
		path = strings.NewReplacer("{id}", "x").Replace(path)
		status, h, raw := adminCall(t, inst, method, path, "Bearer pg_at_wrongwrongwrongwrongwrong", "")
		if status != 401 || !strings.Contains(raw, `"the admin token is wrong"`) || !strings.Contains(h.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s with a wrong token: %d %s %q", route, status, raw, h.Get("WWW-Authenticate"))
		}
	}

	locked := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) { c.Throttle.PerAddress = 3 }})
	var status int
	var h http.Header
	var raw string
	for i := 0; i < 10 && status != 429; i++ {
		status, h, raw = adminCall(t, locked, "GET", "/keys", "Bearer pg_at_wrongwrongwrongwrongwrong", "")
	}
	if status != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("no lock-out: %d %s", status, raw)
	}
	m := regexp.MustCompile(`try again in (\d+) s \(at ([0-9TZ:-]+)\)`).FindStringSubmatch(raw)
	if m == nil || m[1] != h.Get("Retry-After") {
		t.Fatalf("the lock-out does not say when it ends: %s (Retry-After %s)", raw, h.Get("Retry-After"))
	}
	if at, err := time.Parse(time.RFC3339, m[2]); err != nil || at.Before(time.Now()) {
		t.Errorf("lock-out end %q: %v", m[2], err)
	}
	if st, _, raw := adminCall(t, locked, "GET", "/keys", "Bearer "+locked.AdminToken, ""); st != 429 {
		t.Errorf("the right token during the lock-out: %d %s", st, raw)
	}
}

func str(v any) string { s, _ := v.(string); return s }
