package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/server/servertest"
)

// TestWrongMethodOnEveryEndpoint: every dialect endpoint, posgate's own OAuth endpoints and the
// admin API answer a method they do not serve with 405, an Allow header, and their own error shape
// — never a 404 from the catch-all.
func TestWrongMethodOnEveryEndpoint(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	for _, tc := range []struct {
		method, path, allow string
		shape               func(map[string]any) string
	}{
		{"GET", "/oauth/token", "POST", oauthShape},
		{"PUT", "/oauth/introspect", "POST", oauthShape},
		{"GET", "/oauth/revoke", "POST", oauthShape},
		{"POST", "/.well-known/oauth-authorization-server", "GET, HEAD", oauthShape},
		{"GET", "/v2/token", "POST", oauthShape},
		{"DELETE", "/v2/token", "POST", oauthShape},
		{"GET", "/pos/v3/organisations", "POST", doshiiShape},
		{"DELETE", "/pos/v3/locations/do_x", "GET, HEAD", doshiiShape},
		{"GET", "/api/json-rpc/v1", "POST", chefShape},
		{"GET", "/pcu/server/public/index.php/api/customer/json-rpc/v1", "POST", chefShape},
		{"DELETE", "/admin/api/v1/clients", "GET, HEAD, POST", oauthShape},
		{"GET", "/admin/api/v1/clients/cl_x/disable", "POST", oauthShape},
		{"GET", "/admin/api/v1/doshii/vendors/dv_x/rotate-key", "POST", oauthShape},
		{"GET", "/admin/api/v1/chef/devices/dev_x/approve", "POST", oauthShape},
		{"PUT", "/admin/api/v1/users/us_x", "GET, HEAD", oauthShape},
	} {
		req, _ := http.NewRequest(tc.method, inst.URL+tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+inst.AdminToken)
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow || tc.shape(m) != "" {
			t.Errorf("%s %s: %d Allow %q %s (%s); want 405 Allow %q", tc.method, tc.path, resp.StatusCode,
				resp.Header.Get("Allow"), raw, tc.shape(m), tc.allow)
		}
	}
}

// TestCredentialSentTwice: two Authorization headers are refused on every surface that reads
// one — posgate's token endpoint, the admin API, chef's JSON-RPC endpoint and doshii onboarding —
// in the surface's shape; nothing is accepted. (Gateway routes: gateway.TestCredentialOnlyOnce…)
func TestCredentialSentTwice(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	bearer := "Bearer " + inst.AdminToken
	for _, tc := range []struct {
		method, path, ctype, body string
		auth                      [2]string
		shape                     func(map[string]any) string
	}{
		{"POST", "/oauth/token", "application/x-www-form-urlencoded", "grant_type=client_credentials", [2]string{"Basic YTpi", "Basic Yzpk"}, oauthShape},
		{"GET", "/admin/api/v1/clients", "", "", [2]string{bearer, bearer}, oauthShape},
		{"POST", "/api/json-rpc/v1", "application/json", `{"jsonrpc":"2.0","id":1,"method":"Orders.list"}`, [2]string{"Bearer a.b.c", "Bearer d.e.f"}, chefShape},
		// doshii's vendor check refuses it as an authentication failure (401, its documented status).
		{"POST", "/pos/v3/organisations", "application/json", `{"name":"x"}`, [2]string{"Bearer a", "Bearer b"}, doshiiShape},
	} {
		req, _ := http.NewRequest(tc.method, inst.URL+tc.path, strings.NewReader(tc.body))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		req.Header.Add("Authorization", tc.auth[0])
		req.Header.Add("Authorization", tc.auth[1])
		req.Header.Set("vendor", "nobody")
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		want := http.StatusBadRequest
		if strings.HasPrefix(tc.path, "/pos/") {
			want = http.StatusUnauthorized
		}
		if resp.StatusCode != want || tc.shape(m) != "" {
			t.Errorf("%s %s with two Authorization headers: %d %s (%s), want 400", tc.method, tc.path, resp.StatusCode, raw, tc.shape(m))
		}
	}
}
