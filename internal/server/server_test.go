package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/oauth"
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
	// Requests are counted by route pattern — admin routes with their full path — never by raw path.
	inst.Admin(t, "GET", "/clients/cl_doesnotexist", nil)
	get(t, inst.Client, inst.URL+"/random/scan/path/123")
	_, _, body = get(t, inst.Client, inst.URL+"/metrics")
	for _, want := range []string{`route="GET /healthz"`, `route="GET /admin/api/v1/clients/{id}",status="404"`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s:\n%.3000s", want, body)
		}
	}
	if strings.Contains(body, "cl_doesnotexist") || strings.Contains(body, "/random/scan") {
		t.Error("metrics hold a raw path")
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

func TestReadyzIs503WhenTheStoreIsDown(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	if status, _, _ := get(t, inst.Client, inst.URL+"/readyz"); status != 200 {
		t.Fatalf("readyz %d", status)
	}
	inst.Svc.Store.Close()
	status, h, body := get(t, inst.Client, inst.URL+"/readyz")
	if status != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "unavailable") {
		t.Errorf("readyz with the store down: %d %v %s", status, h, body)
	}
	// Liveness is not readiness.
	if status, _, _ := get(t, inst.Client, inst.URL+"/healthz"); status != 200 {
		t.Errorf("healthz %d", status)
	}
}

func TestAdminAPIRefusals(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	do := func(method, path, auth, ctype, body string) (int, http.Header, map[string]any) {
		req, _ := http.NewRequest(method, inst.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, resp.Header, m
	}
	bearer := "Bearer " + inst.AdminToken
	for _, tc := range []struct {
		name, method, path, auth, ctype, body string
		status                                int
		code                                  string
	}{
		{"no token", "GET", "/admin/api/v1/clients", "", "", "", 401, "unauthorized"},
		{"wrong token", "GET", "/admin/api/v1/clients", "Bearer pg_at_nope", "", "", 401, "invalid_token"},
		{"basic scheme", "GET", "/admin/api/v1/clients", "Basic " + inst.AdminToken, "", "", 401, "invalid_request"},
		{"unknown resource", "GET", "/admin/api/v1/nothing", bearer, "", "", 404, "not_found"},
		{"unknown client", "GET", "/admin/api/v1/clients/cl_nope", bearer, "", "", 404, "not_found"},
		{"not json", "POST", "/admin/api/v1/clients", bearer, "text/plain", `{"name":"x","grant_types":["password"]}`, 400, "invalid_request"},
		{"duplicate keys", "POST", "/admin/api/v1/clients", bearer, "application/json", `{"name":"x","name":"y","grant_types":["password"]}`, 400, "invalid_request"},
		{"unknown field", "POST", "/admin/api/v1/clients", bearer, "application/json", `{"name":"x","grant_types":["password"],"secret":"s"}`, 400, "invalid_request"},
		{"bad grant", "POST", "/admin/api/v1/clients", bearer, "application/json", `{"name":"x","grant_types":["implicit"]}`, 400, "invalid_request"},
		{"too large", "POST", "/admin/api/v1/clients", bearer, "application/json", `{"name":"` + strings.Repeat("x", 70000) + `","grant_types":["password"]}`, 413, "invalid_request"},
		{"revoke garbage", "POST", "/admin/api/v1/tokens/revoke", bearer, "application/json", `{"token":"abc"}`, 400, "invalid_token"},
		{"audit limit", "GET", "/admin/api/v1/audit?limit=0", bearer, "", "", 400, "invalid_request"},
	} {
		status, h, m := do(tc.method, tc.path, tc.auth, tc.ctype, tc.body)
		if status != tc.status || m["error"] != tc.code || m["error_description"] == "" {
			t.Errorf("%s: %d %v, want %d %s", tc.name, status, m, tc.status, tc.code)
		}
		if status == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, h.Get("WWW-Authenticate"))
		}
		// RFC 6750 §3.1: no credential, no error in the challenge; a wrong one is named as such.
		if ch := h.Get("WWW-Authenticate"); tc.auth == "" && strings.Contains(ch, "error") {
			t.Errorf("%s: challenge %q carries an error although no credential was sent", tc.name, ch)
		}
		if tc.name == "wrong token" && m["error_description"] != "the admin token is wrong" {
			t.Errorf("wrong token: %v", m)
		}
	}
	// Nothing was created by the refused requests; the refusals are audited.
	_, list := inst.Admin(t, "GET", "/clients", nil)
	if cl, _ := list["clients"].([]any); len(cl) != 0 {
		t.Errorf("refused requests created clients: %v", cl)
	}
	_, audit := inst.Admin(t, "GET", "/audit?limit=100", nil)
	text, _ := json.Marshal(audit)
	for _, want := range []string{`"action":"admin.auth"`, `"outcome":"denied"`, `"action":"client.create"`} {
		if !strings.Contains(string(text), want) {
			t.Errorf("audit lacks %s: %s", want, text)
		}
	}
	if strings.Contains(string(text), inst.AdminToken) {
		t.Error("audit holds the admin token")
	}
}

func TestDemoPrintsCurlLines(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Demo: true})
	out := inst.Output()
	if !strings.Contains(out, "posgate demo credentials") || !strings.Contains(out, "curl ") {
		t.Fatalf("demo output:\n%s", out)
	}
	// The posgate demo credentials work.
	i := strings.Index(out, "-u '")
	if i < 0 {
		t.Fatalf("no posgate demo line:\n%s", out)
	}
	cred := out[i+4:]
	cred = cred[:strings.IndexByte(cred, '\'')]
	id, sec, _ := strings.Cut(cred, ":")
	cc := clientcredentials.Config{ClientID: id, ClientSecret: sec, TokenURL: inst.URL + "/oauth/token", Scopes: []string{oauth.DemoScope},
		EndpointParams: url.Values{"audience": {oauth.DemoAudience}}}
	if _, err := cc.Token(context.WithValue(context.Background(), oauth2HTTPClient, inst.Client)); err != nil {
		t.Errorf("demo client: %v", err)
	}
	// Demo secrets go to the terminal only, never to the logs.
	for _, line := range strings.Split(out, "\n") {
		for _, f := range strings.Fields(line) {
			for _, prefix := range []string{"pg_cs_", "pg_ck_", "pg_as_", "pg_vk_"} {
				if i := strings.Index(f, prefix); i >= 0 && len(f[i:]) > 40 && strings.Contains(inst.Logs(), f[i:i+40]) {
					t.Errorf("demo secret %.12s… is in the logs", f[i:])
				}
			}
		}
	}
}

// POST /admin/api/v1/tokens/revoke takes refresh tokens too: the whole family goes, and with it
// the access tokens minted from it.
func TestAdminRevokesARefreshFamily(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	_, cl := inst.Admin(t, "POST", "/clients", map[string]any{"name": "app", "grant_types": []string{"password", "refresh_token"},
		"scopes": []string{"rentals", "offline_access"}, "audiences": []string{"rentals"}})
	id, sec := cl["client_id"].(string), cl["client_secret"].(string)
	inst.Admin(t, "POST", "/users", map[string]any{"username": "bob", "password": "a long enough password 1"})
	post := func(path string, v url.Values) map[string]any {
		req, _ := http.NewRequest("POST", inst.URL+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, sec)
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	tok := post("/oauth/token", url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"a long enough password 1"},
		"scope": {"rentals offline_access"}, "audience": {"rentals"}})
	at, rt := tok["access_token"].(string), tok["refresh_token"].(string)
	if rt == "" {
		t.Fatalf("token: %v", tok)
	}
	status, res := inst.Admin(t, "POST", "/tokens/revoke", map[string]any{"token": rt})
	if status != 200 || res["kind"] != "refresh_family" {
		t.Fatalf("revoke refresh: %d %v", status, res)
	}
	if m := post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}); m["error"] != "invalid_grant" {
		t.Errorf("refresh after revocation: %v", m)
	}
	if m := post("/oauth/introspect", url.Values{"token": {at}}); m["active"] != false {
		t.Errorf("access token of a revoked family: %v", m)
	}
	if status, res := inst.Admin(t, "POST", "/tokens/revoke", map[string]any{"token": "pg_rt_unknownunknownunknownunknownunknown0000"}); status != 400 {
		t.Errorf("unknown refresh token: %d %v", status, res)
	}
}

// The same posgate on PostgreSQL; two replicas sharing one database see each other's writes and
// revocations (LISTEN/NOTIFY bus).
func TestPostgresReplicas(t *testing.T) {
	a := servertest.Start(t, servertest.Options{Driver: "postgres"})
	b := servertest.Start(t, servertest.Options{ReplicaOf: a})
	status, cl := a.Admin(t, "POST", "/clients", map[string]any{"name": "pg", "grant_types": []string{"client_credentials"}, "scopes": []string{"s"}})
	if status != 201 {
		t.Fatalf("create on a: %d %v", status, cl)
	}
	id, sec := cl["client_id"].(string), cl["client_secret"].(string)
	if status, got := b.Admin(t, "GET", "/clients/"+cl["id"].(string), nil); status != 200 || got["name"] != "pg" {
		t.Fatalf("read on b: %d %v", status, got)
	}
	cc := clientcredentials.Config{ClientID: id, ClientSecret: sec, TokenURL: b.URL + "/oauth/token", Scopes: []string{"s"}}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2HTTPClient, b.Client))
	if err != nil {
		t.Fatal(err)
	}
	if status, res := a.Admin(t, "POST", "/tokens/revoke", map[string]any{"token": tok.AccessToken}); status != 200 {
		t.Fatalf("revoke on a: %d %v", status, res)
	}
	if _, err := a.Svc.Verifier.Verify(context.Background(), tok.AccessToken, tokenOpts()); err == nil {
		t.Error("a still accepts the revoked token")
	}
	// b hears of it on the bus, or at the latest on its next resync.
	deadline := time.Now().Add(time.Duration(b.Config.Keys.RevocationResync+5) * time.Second)
	for {
		if _, err := b.Svc.Verifier.Verify(context.Background(), tok.AccessToken, tokenOpts()); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b still accepts the revoked token after the resync period")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, _, body := get(t, b.Client, b.URL+"/readyz"); status != 200 {
		t.Errorf("readyz on postgres: %d %s", status, body)
	}
}

// Wrong admin tokens are throttled per address: after throttle.per_address failures the address
// gets 429 with Retry-After, even with the right token, until the window ends.
func TestAdminTokenGuessingIsThrottled(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) {
		c.Throttle.PerAddress, c.Throttle.PerAddressIdent = 3, 3
	}})
	try := func(tok string) (int, string) {
		req, _ := http.NewRequest("GET", inst.URL+"/admin/api/v1/keys", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if s, _ := try(inst.AdminToken); s != 200 {
		t.Fatalf("right token: %d", s)
	}
	for i := 0; i < 3; i++ {
		if s, _ := try("pg_at_guess" + strconv.Itoa(i)); s != 401 {
			t.Fatalf("guess %d: %d", i, s)
		}
	}
	s, retry := try(inst.AdminToken)
	if s != 429 || retry == "" || retry == "0" {
		t.Errorf("after 3 failures: %d, Retry-After %q", s, retry)
	}
}

// The keyring keeps retired keys as long as the longest token any module mints may be accepted:
// each module reports its own (app.TokenLifetimer), so raising one dialect's lifetime raises it.
func TestMaxTokenLifetimeComesFromTheModules(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(*config.Config)
		want      time.Duration
	}{
		{"oauth", func(c *config.Config) { c.OAuth.AccessLifetime = 7 * 3600 }, 7 * time.Hour},
		{"chimpy audience", func(c *config.Config) { c.Chimpy.AudienceLifetimes = map[string]int{"api": 8 * 3600} }, 8 * time.Hour},
		{"jackpot", func(c *config.Config) { c.Jackpot.M2MLifetime = 9 * 3600 }, 9 * time.Hour},
		{"chef renewal", func(c *config.Config) { c.Chef.TokenLifetime, c.Chef.RenewWindow = 3600, 9*3600 }, 10 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) {
				c.Chef.RenewWindow = 0
				tc.configure(c)
			}})
			if got := inst.Server.Keyring().MaxTokenLifetime(); got != tc.want {
				t.Fatalf("keyring max token lifetime %v, want %v", got, tc.want)
			}
		})
	}
}
