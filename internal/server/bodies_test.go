package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/server/servertest"
)

// surface is one JSON endpoint and the shape its errors take.
type surface struct {
	name, path string
	header     map[string]string
	// check reports what is wrong with an error answer in the surface's shape ("" = fine).
	shape func(body map[string]any) string
	// rpc: protocol faults are answered 200 with a JSON-RPC error object (JSON-RPC over HTTP).
	rpc bool
}

// refused reports whether status and body refuse the request in s's way.
func (s surface) refused(status int, m map[string]any) bool {
	if s.shape(m) != "" {
		return false
	}
	if s.rpc && status == http.StatusOK {
		return true
	}
	return status >= 400 && status < 500
}

func oauthShape(m map[string]any) string {
	d, _ := m["error_description"].(string)
	if e, _ := m["error"].(string); e == "" || d == "" {
		return "want {error, error_description}"
	}
	if strings.ContainsAny(d, "\"\\") || strings.IndexFunc(d, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 {
		return "error_description holds a character RFC 6749 §5.2 forbids: " + d
	}
	if strings.Contains(d, "Go struct") || strings.Contains(d, "json: ") {
		return "error_description shows Go internals: " + d
	}
	return ""
}

func doshiiShape(m map[string]any) string {
	if s, _ := m["message"].(string); s == "" || len(m) != 1 {
		return `want {"message"}`
	}
	return ""
}

func chefShape(m map[string]any) string {
	if m["jsonrpc"] != "2.0" || m["error"] == nil {
		return "want a JSON-RPC error response"
	}
	return ""
}

// jsonSurfaces lists every JSON body surface of a plain posgate (no routes configured): the admin
// API of each module, the token endpoints, doshii onboarding and chef's JSON-RPC endpoint.
func jsonSurfaces(t *testing.T, inst *servertest.Instance) []surface {
	admin := map[string]string{"Authorization": "Bearer " + inst.AdminToken}
	_, v := inst.Admin(t, "POST", "/doshii/vendors", map[string]any{"api_name": "bodies-test"})
	vendorKey, _ := v["vendor_key"].(string)
	if vendorKey == "" {
		t.Fatalf("vendor: %v", v)
	}
	return []surface{
		{"admin clients", "/admin/api/v1/clients", admin, oauthShape, false},
		{"admin users (chimpy)", "/admin/api/v1/users", admin, oauthShape, false},
		{"admin doshii vendors", "/admin/api/v1/doshii/vendors", admin, oauthShape, false},
		{"oauth token", "/oauth/token", nil, oauthShape, false},
		{"jackpot token", "/v2/token", nil, oauthShape, false},
		{"doshii onboarding", "/pos/v3/organisations", map[string]string{"vendor": "bodies-test", "Authorization": "Bearer " + vendorKey}, doshiiShape, false},
		{"chef json-rpc", "/api/json-rpc/v1", nil, chefShape, true},
	}
}

func post(t *testing.T, inst *servertest.Instance, s surface, ctype, body string) (int, map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", inst.URL+s.path, strings.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	for k, v := range s.header {
		req.Header.Set(k, v)
	}
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m, string(raw)
}

// TestBodyRefusalsOnEverySurface: a body over the limit is 413, text that is not UTF-8 and a
// charset other than UTF-8 are refused (never stored with U+FFFD), and every refusal keeps the
// surface's error shape — with an error_description RFC 6749 allows and no Go internals.
func TestBodyRefusalsOnEverySurface(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	big := `{"name":"` + strings.Repeat("x", 2<<20) + `"}`
	for _, s := range jsonSurfaces(t, inst) {
		t.Run(s.name, func(t *testing.T) {
			if st, m, raw := post(t, inst, s, "application/json", big); st != http.StatusRequestEntityTooLarge || s.shape(m) != "" {
				t.Errorf("oversized body: %d %.200s (%s)", st, raw, s.shape(m))
			}
			for _, bad := range []string{"{\"name\":\"caf\xe9\"}", "{\"username\":\"\xff\xfe\",\"password\":\"long enough password\"}"} {
				st, m, raw := post(t, inst, s, "application/json", bad)
				if !s.refused(st, m) {
					t.Errorf("non-UTF-8 body %q: %d %s (%s)", bad, st, raw, s.shape(m))
				}
			}
			if st, m, raw := post(t, inst, s, "application/json; charset=iso-8859-1", `{"name":"x"}`); st != http.StatusBadRequest && st != http.StatusUnsupportedMediaType || s.shape(m) != "" {
				t.Errorf("charset iso-8859-1: %d %s (%s)", st, raw, s.shape(m))
			}
			for _, bad := range []string{`{"name" "x"}`, `{"name":5,"api_name":5,"username":5,"grant_type":5}`, `{"nope\"\\":1}`} {
				st, m, raw := post(t, inst, s, "application/json", bad)
				if !s.refused(st, m) {
					t.Errorf("body %s: %d %s (%s)", bad, st, raw, s.shape(m))
				}
			}
		})
	}
	// Nothing was created by any of the refused bodies.
	for path, key := range map[string]string{"/clients": "clients", "/users": "users"} {
		if _, m := inst.Admin(t, "GET", path, nil); len(m[key].([]any)) != 0 {
			t.Errorf("refused bodies created %s: %v", key, m[key])
		}
	}
}
