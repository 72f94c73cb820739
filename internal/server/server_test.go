package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/posgate/posgate/internal/server/servertest"
)

func get(t *testing.T, c *http.Client, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestStandardEndpoints(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	for _, tc := range []struct {
		path, want string
	}{
		{"/healthz", `"status":"ok"`},
		{"/readyz", `"store":"ok"`},
		{"/.well-known/jwks.json", `"keys"`},
		{"/metrics", "posgate_http_requests_total"},
	} {
		status, h, body := get(t, inst.Client, inst.URL+tc.path)
		if status != 200 || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %q", tc.path, status, body)
		}
		if h.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id", tc.path)
		}
	}
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	_, _, body := get(t, inst.Client, inst.URL+"/.well-known/jwks.json")
	if err := json.Unmarshal([]byte(body), &jwks); err != nil || len(jwks.Keys) < 2 {
		t.Errorf("jwks: %v %s (want active and next)", err, body)
	}
	// Requests are counted by route pattern.
	_, _, body = get(t, inst.Client, inst.URL+"/metrics")
	if !strings.Contains(body, `route="GET /healthz"`) {
		t.Errorf("metrics lack the healthz route:\n%.2000s", body)
	}
}

// A client_credentials token through the HTTP server end to end, with golang.org/x/oauth2 as the
// client, then introspected.
func TestClientCredentialsEndToEnd(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	status, cl := inst.Admin(t, "POST", "/clients", map[string]any{
		"name": "e2e", "grant_types": []string{"client_credentials"}, "scopes": []string{"orders:read", "orders:write"},
	})
	if status != 201 {
		t.Fatalf("create client: %d %v", status, cl)
	}
	id, secret := cl["client_id"].(string), cl["client_secret"].(string)
	if !strings.HasPrefix(id, "pg_ck_") || !strings.HasPrefix(secret, "pg_cs_") {
		t.Fatalf("credentials %q %q", id, secret)
	}
	for _, style := range []struct {
		name string
		s    int
	}{{"basic", 1}, {"post", 2}} {
		cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: inst.URL + "/oauth/token",
			Scopes: []string{"orders:read"}}
		cc.AuthStyle = authStyle(style.s)
		tok, err := cc.Token(context.WithValue(context.Background(), oauth2HTTPClient, inst.Client))
		if err != nil {
			t.Fatalf("%s: token: %v", style.name, err)
		}
		if tok.AccessToken == "" || tok.RefreshToken != "" || tok.TokenType != "Bearer" {
			t.Fatalf("%s: token %+v", style.name, tok)
		}
		form := url.Values{"token": {tok.AccessToken}}
		req, _ := http.NewRequest("POST", inst.URL+"/oauth/introspect", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var in map[string]any
		json.NewDecoder(resp.Body).Decode(&in)
		resp.Body.Close()
		if in["active"] != true || in["scope"] != "orders:read" {
			t.Fatalf("%s: introspection %v", style.name, in)
		}
	}
}
