package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/token"
)

func TestForwardAddsVerifiableIdentityAndStripsCredentials(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/api/v2/", Methods: []string{"GET", "POST"}, Auth: []string{"posgate"}, Upstream: "pos"},
	})
	authz := e.bearer("tok-1", &token.Claims{Subject: "us_1", ClientID: "cl_1", Scope: "a b", JTI: "j1",
		Audience: []string{"api"}, Extra: map[string]any{"gty": "password"}})
	target := "/api/v2/items/a%20b?x=1&y=%C3%A9"
	r := e.do("POST", target, `{"hello":"world"}`,
		"Authorization", authz,
		"apikey", "pg_ck_secret", "Vendor", "acme",
		"X-Posgate-Principal", "spoofed", "x-posgate-signature", "t=1,n=a,v1=b", "X-Posgate-Anything", "evil",
		"Connection", "X-Hop", "X-Hop", "hop-value", "Keep-Alive", "timeout=5", "Te", "trailers",
		"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Host", "evil.example", "X-Real-Ip", "6.6.6.6",
		"X-Forwarded-Prefix", "/admin", "x-forwarded-port", "1",
		"Content-Type", "application/json", "X-Custom", "kept", "Cookie", "session=s3cret")
	if r.Status != 200 || string(r.Body) != `{"ok":true}` || r.Header.Get("X-Upstream") != "yes" {
		t.Fatalf("got %d %s", r.Status, r.Body)
	}
	got := e.up.last(t)
	if got.RequestURI != target {
		t.Errorf("upstream saw %q, want the path and query unchanged %q", got.RequestURI, target)
	}
	if string(got.Body) != `{"hello":"world"}` || got.Header.Get("X-Custom") != "kept" {
		t.Errorf("body or custom header not forwarded: %q %q", got.Body, got.Header.Get("X-Custom"))
	}
	for _, h := range []string{"Authorization", "Apikey", "Vendor", "X-Posgate-Anything", "X-Hop", "Keep-Alive", "X-Real-Ip", "X-Forwarded-Prefix", "X-Forwarded-Port", "Cookie"} {
		if v, ok := got.Header[h]; ok {
			t.Errorf("upstream received %s: %q", h, v)
		}
	}
	if v := got.Header.Values("X-Posgate-Principal"); len(v) != 1 || v[0] == "spoofed" {
		t.Fatalf("principal header %q", v)
	}
	if got.Header.Get("X-Forwarded-For") != "127.0.0.1" || got.Header.Get("X-Forwarded-Proto") != "http" ||
		got.Header.Get("X-Forwarded-Host") != strings.TrimPrefix(e.srv.URL, "http://") {
		t.Errorf("X-Forwarded-*: %q %q %q", got.Header.Get("X-Forwarded-For"), got.Header.Get("X-Forwarded-Proto"), got.Header.Get("X-Forwarded-Host"))
	}
	p, err := e.ident.VerifyValues(got.Method, got.RequestURI, got.Header.Get("X-Posgate-Principal"), got.Header.Get("X-Posgate-Signature"))
	if err != nil {
		t.Fatalf("identity does not verify: %v", err)
	}
	if p.Dialect != "posgate" || p.Means != "posgate" || p.Subject != "us_1" || p.Client != "cl_1" ||
		strings.Join(p.Scopes, " ") != "a b" || p.Claims["gty"] != "password" {
		t.Errorf("principal %+v", p)
	}
	// The signature binds method and target: replaying the headers on another path fails.
	if _, err := e.ident.VerifyValues("GET", "/api/v2/other", got.Header.Get("X-Posgate-Principal"), got.Header.Get("X-Posgate-Signature")); !errors.Is(err, identity.ErrSignature) {
		t.Errorf("replay on another target: %v", err)
	}
	// jti, sid and expiry stay inside posgate.
	raw, _ := identity.DecodePrincipal(got.Header.Get("X-Posgate-Principal"))
	doc, _ := json.Marshal(raw)
	if strings.Contains(string(doc), "j1") {
		t.Errorf("principal leaks the token id: %s", doc)
	}
}

func TestIdentityMiddlewareOnRealUpstream(t *testing.T) {
	// An upstream using client/identity's middleware accepts what the gateway sends and refuses a
	// direct call.
	var seen *identity.Principal
	iv, _ := identity.NewVerifier(testKey)
	iv.Replay = identity.NewMemoryReplayCache(0)
	e := newEnv(t, []config.Route{{Path: "/api/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Upstream: "pos"}})
	upstream := newMiddlewareUpstream(t, iv, &seen)
	e.fwd.upstreams["pos"] = e.fwd.newUpstream("pos", mustURL(t, upstream))
	iv.Now = e.clock.Now
	authz := e.bearer("tok-m", &token.Claims{Subject: "us_9", JTI: "jm"})
	if r := e.do("GET", "/api/x", "", "Authorization", authz); r.Status != 200 {
		t.Fatalf("through the gateway: %d %s", r.Status, r.Body)
	}
	if seen == nil || seen.Subject != "us_9" {
		t.Fatalf("upstream principal %+v", seen)
	}
	res, err := http.Get(upstream + "/api/x")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Errorf("direct call: %d", res.StatusCode)
	}
}

func TestStreamingResponseAndHopByHop(t *testing.T) {
	e := newEnv(t, []config.Route{{Path: "/stream", Methods: []string{"GET"}, Auth: []string{"test.key"}, Upstream: "pos"}})
	r := e.do("GET", "/stream", "", "apikey", "key-s")
	if r.Status != 200 || strings.Count(string(r.Body), "data: tick") != 3 {
		t.Fatalf("got %d %q", r.Status, r.Body)
	}
	if r.Header.Get("X-Upstream-Hop") != "" {
		t.Errorf("hop-by-hop response header forwarded")
	}
}

func TestNonCanonicalPathRefusedBeforeAnything(t *testing.T) {
	e := newEnv(t, []config.Route{{Path: "/api/", Methods: []string{"GET"}, Auth: []string{"test.key"}, Upstream: "pos"}})
	for _, p := range []string{"/api/a%2fb", "/api/%2e%2e/admin", "/api/a%5cb", "/api/a%00"} {
		if r := e.do("GET", p, "", "apikey", "key-a"); r.Status != 400 {
			t.Errorf("%s: %d %s", p, r.Status, r.Body)
		}
	}
	if n := len(e.up.requests()); n != 0 {
		t.Errorf("upstream got %d requests", n)
	}
}

func TestUnroutedIs404AndWrongMethod405(t *testing.T) {
	e := newEnv(t, []config.Route{{Path: "/v2/stores", Methods: []string{"GET"}, Auth: []string{"test.key"}, Upstream: "pos"}})
	r := e.do("GET", "/nothing/here", "", "apikey", "key-a")
	if r.Status != 404 || r.json(t)["error"] != "not_found" {
		t.Fatalf("unrouted: %d %s", r.Status, r.Body)
	}
	r = e.do("DELETE", "/v2/stores", "", "apikey", "key-a")
	if r.Status != 405 || !strings.Contains(r.Header.Get("Allow"), "GET") {
		t.Fatalf("wrong method: %d %s %q", r.Status, r.Body, r.Header.Get("Allow"))
	}
	if n := len(e.up.requests()); n != 0 {
		t.Errorf("upstream got %d requests", n)
	}
}

func TestMeansAreExactlyTheListedOnes(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/v2/stores", Methods: []string{"GET"}, Auth: []string{"test.key"}, Upstream: "pos"},
		{Path: "/v2/session/", Methods: []string{"POST"}, Auth: []string{"posgate"}, Upstream: "pos"},
		{Path: "/both", Methods: []string{"GET"}, Auth: []string{"test.venue", "test.key"}, Upstream: "pos"},
	})
	authz := e.bearer("tok-s", &token.Claims{Subject: "s", JTI: "js"})
	cases := []struct {
		name, method, path string
		headers            []string
		status             int
		shape              string // a key the body must have
	}{
		{"api key on a session route", "POST", "/v2/session/x", []string{"apikey", "key-a"}, 403, "error"},
		{"session token on an api-key route", "GET", "/v2/stores", []string{"Authorization", authz}, 403, "statusCode"},
		{"venue token on an api-key route", "GET", "/v2/stores", []string{"Authorization", "Bearer loc:L1", "vendor", "acme"}, 403, "statusCode"},
		{"nothing on an api-key route", "GET", "/v2/stores", nil, 401, "statusCode"},
		{"nothing on a session route", "POST", "/v2/session/x", nil, 401, "error"},
		{"bad api key", "GET", "/v2/stores", []string{"apikey", "nope"}, 401, "statusCode"},
		{"second listed means accepted", "GET", "/both", []string{"apikey", "key-b"}, 200, "ok"},
		{"first listed means accepted", "GET", "/both", []string{"Authorization", "Bearer loc:L1", "vendor", "acme"}, 200, "ok"},
		{"nothing on a two-means route: first means' shape", "GET", "/both", nil, 401, "message"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(e.up.requests())
			r := e.do(c.method, c.path, "", c.headers...)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if _, ok := r.json(t)[c.shape]; !ok {
				t.Errorf("body %s lacks %q", r.Body, c.shape)
			}
			forwarded := len(e.up.requests()) - before
			if (c.status == 200) != (forwarded == 1) {
				t.Errorf("forwarded %d", forwarded)
			}
		})
	}
	r := e.do("POST", "/v2/session/x", "")
	if got := r.Header.Get("WWW-Authenticate"); got != `Bearer realm="posgate"` {
		t.Errorf("401 without a token: challenge %q", got)
	}
}

func TestScopesAndAudience(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/rentals/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Scopes: []string{"rentals", "read"}, Upstream: "pos"},
		{Path: "/aud/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Audience: "https://api.example", Upstream: "pos"},
	})
	good := e.bearer("tok-g", &token.Claims{Subject: "u", Scope: "read rentals extra", JTI: "g", Audience: []string{"https://api.example"}})
	less := e.bearer("tok-l", &token.Claims{Subject: "u", Scope: "read", JTI: "l", Audience: []string{"other"}})
	if r := e.do("GET", "/rentals/1", "", "Authorization", good); r.Status != 200 {
		t.Fatalf("good: %d %s", r.Status, r.Body)
	}
	r := e.do("GET", "/rentals/1", "", "Authorization", less)
	if r.Status != 403 || r.json(t)["error"] != "insufficient_scope" ||
		!strings.Contains(r.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) ||
		!strings.Contains(r.Header.Get("WWW-Authenticate"), `scope="rentals read"`) {
		t.Fatalf("insufficient scope: %d %s %q", r.Status, r.Body, r.Header.Get("WWW-Authenticate"))
	}
	if r := e.do("GET", "/aud/1", "", "Authorization", good); r.Status != 200 {
		t.Fatalf("right audience: %d %s", r.Status, r.Body)
	}
	r = e.do("GET", "/aud/1", "", "Authorization", less)
	if r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("wrong audience: %d %s", r.Status, r.Body)
	}
	if n := len(e.up.requests()); n != 2 {
		t.Errorf("upstream got %d requests, want 2", n)
	}
}

func TestTenantBindingRefusesAndForwardsNothing(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/pos/v3/locations/{location}/orders", Methods: []string{"GET", "POST"}, Auth: []string{"test.venue"}, Upstream: "pos"},
		{Path: "/pos/v3/orders", Methods: []string{"POST", "GET"}, Auth: []string{"test.venue"}, Upstream: "pos", TenantHeader: "X-Site"},
		{Path: "/platform/locations/{location}", Methods: []string{"GET", "POST"}, Auth: []string{"test.key"}, Upstream: "pos"},
	})
	me := []string{"Authorization", "Bearer loc:L1", "vendor", "acme"}
	const bom = "\ufeff"
	multipart := "--x\r\nContent-Disposition: form-data; name=\"locationId\"\r\n\r\nL2\r\n--x--\r\n"
	with := func(h ...string) []string { return append(append([]string(nil), me...), h...) }
	cases := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
	}{
		{"own location in path", "GET", "/pos/v3/locations/L1/orders", "", me, 200},
		{"other location in path", "GET", "/pos/v3/locations/L2/orders", "", me, 403},
		{"own location percent-encoded", "GET", "/pos/v3/locations/%4C1/orders", "", me, 200},
		{"own header", "GET", "/pos/v3/orders", "", with("doshii-location-id", "L1"), 200},
		{"other header", "GET", "/pos/v3/orders", "", with("doshii-location-id", "L2"), 403},
		{"header repeated with another", "GET", "/pos/v3/orders", "", with("doshii-location-id", "L1", "Doshii-Location-Id", "L2"), 403},
		{"route tenant header", "GET", "/pos/v3/orders", "", with("X-Site", "L2"), 403},
		{"own body", "POST", "/pos/v3/orders", `{"locationId":"L1","items":[]}`, with("Content-Type", "application/json"), 200},
		{"other body", "POST", "/pos/v3/orders", `{"locationId":"L2"}`, with("Content-Type", "application/json"), 403},
		{"other body, other case", "POST", "/pos/v3/orders", `{"LocationID":"L2"}`, with("Content-Type", "application/json"), 403},
		{"duplicate key, second other", "POST", "/pos/v3/orders", `{"locationId":"L1","locationId":"L2"}`, with("Content-Type", "application/json"), 403},
		{"nested other", "POST", "/pos/v3/orders", `{"order":{"lines":[{"locationId":"L2"}]}}`, with("Content-Type", "application/json"), 403},
		{"array body", "POST", "/pos/v3/orders", `[{"locationId":"L1"},{"locationId":"L2"}]`, with("Content-Type", "application/json"), 403},
		{"numeric id", "POST", "/pos/v3/orders", `{"locationId":1}`, with("Content-Type", "application/json"), 403},
		{"JSON with a media type suffix", "POST", "/pos/v3/orders", `{"locationId":"L1"}`, with("Content-Type", "application/vnd.order+json; charset=utf-8"), 200},
		{"JSON sent as text/plain", "POST", "/pos/v3/orders", ` {"locationId":"L2"}`, with("Content-Type", "text/plain"), 415},
		{"own JSON sent as text/plain", "POST", "/pos/v3/orders", `{"locationId":"L1"}`, with("Content-Type", "text/plain"), 415},
		{"JSON without Content-Type", "POST", "/pos/v3/orders", `{"locationId":"L2"}`, me, 415},
		{"BOM JSON as text/plain", "POST", "/pos/v3/orders", bom + `{"locationId":"L2"}`, with("Content-Type", "text/plain"), 415},
		{"BOM JSON as JSON", "POST", "/pos/v3/orders", bom + `{"locationId":"L2"}`, with("Content-Type", "application/json"), 400},
		{"multipart", "POST", "/pos/v3/orders", multipart, with("Content-Type", "multipart/form-data; boundary=x"), 415},
		{"JSON in UTF-16", "POST", "/pos/v3/orders", `{"locationId":"L1"}`, with("Content-Type", "application/json; charset=utf-16"), 415},
		{"compressed", "POST", "/pos/v3/orders", `{"locationId":"L1"}`, with("Content-Type", "application/json", "Content-Encoding", "gzip"), 415},
		{"two Content-Types", "POST", "/pos/v3/orders", `{"locationId":"L1"}`, with("Content-Type", "application/json", "Content-Type", "text/plain"), 400},
		{"form body", "POST", "/pos/v3/orders", `locationId=L2`, with("Content-Type", "application/x-www-form-urlencoded"), 403},
		{"own form body", "POST", "/pos/v3/orders", `locationId=L1&x=1`, with("Content-Type", "application/x-www-form-urlencoded"), 200},
		{"form body, array syntax", "POST", "/pos/v3/orders", `locationId[]=L2`, with("Content-Type", "application/x-www-form-urlencoded"), 403},
		{"form body, nested syntax", "POST", "/pos/v3/orders", `order[lines][0][LocationId]=L2`, with("Content-Type", "application/x-www-form-urlencoded"), 403},
		{"BOM form", "POST", "/pos/v3/orders", bom + `locationId=L2`, with("Content-Type", "application/x-www-form-urlencoded"), 400},
		{"query", "GET", "/pos/v3/orders?locationid=L2", "", me, 403},
		{"query, array syntax", "GET", "/pos/v3/orders?locationId%5B%5D=L2", "", me, 403},
		{"invalid JSON", "POST", "/pos/v3/orders", `{"locationId":`, with("Content-Type", "application/json"), 400},
		{"unbound principal may name any location", "GET", "/platform/locations/L9", "", []string{"apikey", "key-p"}, 200},
		{"unbound principal, body unchecked", "POST", "/platform/locations/L9", multipart, []string{"apikey", "key-p", "Content-Type", "multipart/form-data; boundary=x"}, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(e.up.requests())
			r := e.do(c.method, c.path, c.body, c.headers...)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			after := e.up.requests()
			if c.status != 200 {
				if len(after) != before {
					t.Fatalf("refused request was forwarded")
				}
				if _, ok := r.json(t)["message"]; !ok {
					t.Errorf("refusal not in the route's dialect shape: %s", r.Body)
				}
				return
			}
			if len(after) != before+1 {
				t.Fatalf("not forwarded")
			}
			if got := after[len(after)-1]; string(got.Body) != c.body {
				t.Errorf("body after inspection %q, want %q", got.Body, c.body)
			}
		})
	}
}

// TestHeaderNamesWithUnderscoresRefused: CGI-style upstreams (and nginx, Apache, PHP, WSGI behind
// them) read `doshii_location_id` as HTTP_DOSHII_LOCATION_ID, the same variable as
// Doshii-Location-Id, so a header name with an underscore could name another tenant, or pose as
// an identity or forwarding header, under a spelling the checks do not compare. Such requests are
// refused with 400 in the route's dialect before anything else; nothing is forwarded.
func TestHeaderNamesWithUnderscoresRefused(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/pos/v3/orders", Methods: []string{"GET"}, Auth: []string{"test.venue"}, Upstream: "pos", TenantHeader: "X-Site"},
		{Path: "/api/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Upstream: "pos"},
	})
	venue := []string{"Authorization", "Bearer loc:L1", "vendor", "acme"}
	tok := e.bearer("tok-u", &token.Claims{Subject: "u", JTI: "ju"})
	cases := []struct {
		name, path, header string
		auth               []string
	}{
		{"other location, underscores", "/pos/v3/orders", "doshii_location_id", venue},
		{"other location, mixed", "/pos/v3/orders", "Doshii_Location-Id", venue},
		{"route tenant header", "/pos/v3/orders", "X_Site", venue},
		{"spoofed identity", "/api/x", "X_Posgate_Principal", []string{"Authorization", tok}},
		{"spoofed forwarding", "/api/x", "X_Forwarded_For", []string{"Authorization", tok}},
		{"spoofed credential", "/api/x", "Proxy_Authorization", []string{"Authorization", tok}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(e.up.requests())
			r := e.do("GET", c.path, "", append(append([]string(nil), c.auth...), c.header, "L2")...)
			if r.Status != 400 {
				t.Fatalf("%s: %d %s", c.header, r.Status, r.Body)
			}
			if len(e.up.requests()) != before {
				t.Fatal("forwarded")
			}
			if c.auth[1] == tok {
				if r.json(t)["error"] != "invalid_request" {
					t.Errorf("not in the route's dialect: %s", r.Body)
				}
			} else if _, ok := r.json(t)["message"]; !ok {
				t.Errorf("not in the route's dialect: %s", r.Body)
			}
		})
	}
	if r := e.do("GET", "/pos/v3/orders", "", append(venue, "Doshii-Location-Id", "L1", "X-Custom-Header", "ok")...); r.Status != 200 {
		t.Fatalf("hyphenated headers: %d %s", r.Status, r.Body)
	}
}

func TestConsumeRevokesAfterSuccessOnly(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/v2/stores/{store}/offers/{offer}/reserve", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"},
		{Path: "/status/409", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"},
		{Path: "/v2/read", Methods: []string{"GET"}, Auth: []string{"posgate"}, Upstream: "pos"},
		{Path: "/v2/key-consume", Methods: []string{"POST"}, Auth: []string{"test.key"}, Consume: true, Upstream: "pos"},
	})
	authz := e.bearer("tok-c", &token.Claims{Subject: "c", JTI: "jc"})
	if r := e.do("POST", "/status/409", "{}", "Authorization", authz); r.Status != 409 {
		t.Fatalf("upstream 409: %d", r.Status)
	}
	if r := e.do("GET", "/v2/read", "", "Authorization", authz); r.Status != 200 {
		t.Fatalf("a failed reservation must not consume: %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", "/v2/stores/s1/offers/o1/reserve", "{}", "Authorization", authz); r.Status != 200 {
		t.Fatalf("reserve: %d %s", r.Status, r.Body)
	}
	if e.tokens.revokes != 1 || !e.tokens.revoked["jc"] {
		t.Fatalf("token not revoked: %v", e.tokens.revoked)
	}
	before := len(e.up.requests())
	for _, p := range []string{"/v2/read", "/v2/stores/s1/offers/o1/reserve"} {
		r := e.do(map[bool]string{true: "GET", false: "POST"}[p == "/v2/read"], p, "{}", "Authorization", authz)
		if r.Status != 401 {
			t.Fatalf("%s after consumption: %d %s", p, r.Status, r.Body)
		}
	}
	if len(e.up.requests()) != before {
		t.Errorf("consumed token was forwarded")
	}
	// An API key has no token id: it cannot be consumed, so the route refuses it.
	r := e.do("POST", "/v2/key-consume", "{}", "apikey", "key-k")
	if r.Status != 403 || !strings.Contains(string(r.Body), "cannot be consumed") {
		t.Fatalf("unconsumable credential: %d %s", r.Status, r.Body)
	}
}

// TestConsumeSurvivesRevokerFailureOnEveryReplica: the revocation after a 2xx fails (the store
// write, say). This replica still refuses the token on every route (its local record), and every
// other replica refuses it on consuming routes: the store claim taken before forwarding stays.
func TestConsumeSurvivesRevokerFailureOnEveryReplica(t *testing.T) {
	e := newEnv(t, []config.Route{{Path: "/reserve", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"}})
	other := e.replica()
	e.tokens.fail = errors.New("store down")
	authz := e.bearer("tok-f", &token.Claims{Subject: "c", JTI: "jf"})
	if r := e.do("POST", "/reserve", "{}", "Authorization", authz); r.Status != 200 {
		t.Fatalf("first: %d", r.Status)
	}
	if r := e.do("POST", "/reserve", "{}", "Authorization", authz); r.Status != 401 {
		t.Fatalf("second call on the same replica: %d %s", r.Status, r.Body)
	}
	r := other.do("POST", "/reserve", "{}", "Authorization", authz)
	if r.Status != 409 || !strings.Contains(string(r.Body), "already been used") {
		t.Fatalf("second call on another replica: %d %s", r.Status, r.Body)
	}
	if n := len(e.up.requests()); n != 1 {
		t.Fatalf("upstream got %d calls with one single-use token", n)
	}
}

// TestConsumeConcurrentCallsForwardOnce: calls with one token at once on two replicas of one
// store: exactly one reaches the upstream.
func TestConsumeConcurrentCallsForwardOnce(t *testing.T) {
	e := newEnv(t, []config.Route{{Path: "/reserve", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"}})
	replicas := []*env{e, e.replica()}
	authz := e.bearer("tok-cc", &token.Claims{Subject: "c", JTI: "jcc"})
	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = replicas[i%2].do("POST", "/reserve", "{}", "Authorization", authz).Status
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		switch s {
		case 200:
			ok++
		case 401, 409:
		default:
			t.Errorf("unexpected status %d", s)
		}
	}
	if ok != 1 || len(e.up.requests()) != 1 {
		t.Fatalf("%d successes, %d forwarded: %v", ok, len(e.up.requests()), statuses)
	}
}

// TestConsumeStoreDownRefusesWithRetryAfter: when the store cannot take the claim, the call is
// refused with 503 and Retry-After in the route's dialect, and nothing is forwarded.
func TestConsumeStoreDownRefusesWithRetryAfter(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/reserve", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"},
		{Path: "/read", Methods: []string{"GET"}, Auth: []string{"posgate"}, Upstream: "pos"},
	})
	authz := e.bearer("tok-sd", &token.Claims{Subject: "c", JTI: "jsd"})
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/reserve", "{}", "Authorization", authz)
	if r.Status != 503 || r.Header.Get("Retry-After") == "" || r.json(t)["error"] != "temporarily_unavailable" {
		t.Fatalf("store down: %d %q %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	if n := len(e.up.requests()); n != 0 {
		t.Fatalf("forwarded %d calls without a claim", n)
	}
	if r := e.do("GET", "/read", "", "Authorization", authz); r.Status != 200 { // other routes need no claim
		t.Fatalf("read: %d %s", r.Status, r.Body)
	}
}

// TestConsumeClaimAfterUpstreamFailures: a call that never reached the upstream (no connection)
// gives the claim back; one whose outcome is unknown (timeout: the upstream may have reserved)
// keeps it, so the token cannot reserve twice.
func TestConsumeClaimAfterUpstreamFailures(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/reserve", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"},
		{Path: "/slow", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "pos"},
		{Path: "/down", Methods: []string{"POST"}, Auth: []string{"posgate"}, Consume: true, Upstream: "down"},
	})
	e.fwd.transport.ResponseHeaderTimeout = 300 * time.Millisecond
	down := e.bearer("tok-down", &token.Claims{Subject: "c", JTI: "jdown"})
	if r := e.do("POST", "/down", "{}", "Authorization", down); r.Status != 502 {
		t.Fatalf("unreachable: %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", "/reserve", "{}", "Authorization", down); r.Status != 200 {
		t.Fatalf("after an unreachable upstream the token is still good: %d %s", r.Status, r.Body)
	}
	slow := e.bearer("tok-slow", &token.Claims{Subject: "c", JTI: "jslow"})
	if r := e.do("POST", "/slow", "{}", "Authorization", slow); r.Status != 504 {
		t.Fatalf("timeout: %d %s", r.Status, r.Body)
	}
	before := len(e.up.requests())
	if r := e.do("POST", "/reserve", "{}", "Authorization", slow); r.Status != 409 {
		t.Fatalf("after a timeout the token stays used: %d %s", r.Status, r.Body)
	}
	if len(e.up.requests()) != before {
		t.Fatal("forwarded after a timeout")
	}
}

func TestAmountCap(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/reserve", Methods: []string{"POST"}, Auth: []string{"posgate"}, MaxAmountField: "price", Upstream: "pos"},
	})
	authz := e.bearer("tok-a", &token.Claims{Subject: "c", JTI: "ja", Extra: map[string]any{"amount": 25.1}})
	noAmount := e.bearer("tok-n", &token.Claims{Subject: "c", JTI: "jn"})
	const json = "application/json"
	cases := []struct {
		name, body, authz, ct string
		status                int
	}{
		{"below", `{"price":10}`, authz, json, 200},
		{"equal, other spelling", `{"price":25.10}`, authz, json, 200},
		{"equal with exponent", `{"price":2.51e1}`, authz, json, 200},
		{"just above", `{"price":25.1000001}`, authz, json, 403},
		{"far above", `{"price":1e300}`, authz, json, 403},
		{"case variant alone, above", `{"PRICE":30}`, authz, json, 403},
		// An upstream's parser keeps one of repeated keys (often the last, case-insensitively in
		// Go): a repeated or case-varied amount field is refused outright (jsonx strictness).
		{"case variant above", `{"price":1,"PRICE":30}`, authz, json, 400},
		{"duplicate key, second above", `{"price":1,"price":30}`, authz, json, 400},
		{"duplicate key, first above", `{"price":30,"price":1}`, authz, json, 400},
		{"escaped duplicate above", `{"price":1,"pr\u0069ce":30}`, authz, json, 400},
		{"duplicate elsewhere", `{"price":1,"x":{"a":1,"A":2}}`, authz, json, 400},
		{"string", `{"price":"30"}`, authz, json, 400},
		{"missing", `{"value":1}`, authz, json, 400},
		{"huge exponent", `{"price":1e999999999}`, authz, json, 400},
		{"not JSON", `price=30`, authz, json, 400},
		{"array", `[{"price":30}]`, authz, json, 400},
		{"BOM", "\ufeff" + `{"price":30}`, authz, json, 400},
		{"JSON as text/plain", `{"price":30}`, authz, "text/plain", 415},
		{"form", `price=30`, authz, "application/x-www-form-urlencoded", 415},
		{"empty", ``, authz, json, 400},
		{"no amount claim", `{"price":1}`, noAmount, json, 403},
		{"nested does not count", `{"x":{"price":1}}`, authz, json, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(e.up.requests())
			r := e.do("POST", "/reserve", c.body, "Authorization", c.authz, "Content-Type", c.ct)
			if r.Status != c.status {
				t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
			}
			if forwarded := len(e.up.requests()) - before; (c.status == 200) != (forwarded == 1) {
				t.Fatalf("forwarded %d", forwarded)
			}
		})
	}
}

// TestOversizedBodyIs413: a body the policy must read but that is over server.max_body_bytes is
// refused with 413 in the route's dialect, nothing forwarded.
func TestOversizedBodyIs413(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/reserve", Methods: []string{"POST"}, Auth: []string{"posgate"}, MaxAmountField: "price", Upstream: "pos"},
		{Path: "/orders", Methods: []string{"POST"}, Auth: []string{"test.venue"}, Upstream: "pos"},
	}, func(c *config.Config) { c.Server.MaxBodyBytes = 64 })
	authz := e.bearer("tok-big", &token.Claims{Subject: "c", JTI: "jbig", Extra: map[string]any{"amount": 10}})
	big := `{"price":1,"pad":"` + strings.Repeat("x", 100) + `"}`
	r := e.do("POST", "/reserve", big, "Authorization", authz, "Content-Type", "application/json")
	if r.Status != 413 || r.json(t)["error"] == nil {
		t.Fatalf("amount route: %d %s", r.Status, r.Body)
	}
	r = e.do("POST", "/orders", big, "Authorization", "Bearer loc:L1", "vendor", "acme", "Content-Type", "application/json")
	if r.Status != 413 || r.json(t)["message"] == nil {
		t.Fatalf("tenant route: %d %s", r.Status, r.Body)
	}
	if n := len(e.up.requests()); n != 0 {
		t.Fatalf("forwarded %d", n)
	}
	if r := e.do("POST", "/reserve", `{"price":1}`, "Authorization", authz, "Content-Type", "application/json"); r.Status != 200 {
		t.Fatalf("small body: %d %s", r.Status, r.Body)
	}
}

func TestUpstreamFailuresMapTo502And504InTheRouteDialect(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/slow", Methods: []string{"GET"}, Auth: []string{"test.key"}, Upstream: "pos"},
		{Path: "/down", Methods: []string{"GET"}, Auth: []string{"test.venue"}, Upstream: "down"},
		{Path: "/down-rfc", Methods: []string{"GET"}, Auth: []string{"posgate"}, Upstream: "down"},
	})
	e.fwd.transport.ResponseHeaderTimeout = 300 * time.Millisecond
	r := e.do("GET", "/slow", "", "apikey", "key-t")
	if r.Status != 504 || r.json(t)["statusCode"] != float64(504) {
		t.Fatalf("timeout: %d %s", r.Status, r.Body)
	}
	r = e.do("GET", "/down", "", "Authorization", "Bearer loc:L1", "vendor", "acme")
	if r.Status != 502 || r.json(t)["message"] == nil {
		t.Fatalf("unreachable: %d %s", r.Status, r.Body)
	}
	authz := e.bearer("tok-d", &token.Claims{Subject: "d", JTI: "jd"})
	r = e.do("GET", "/down-rfc", "", "Authorization", authz)
	if r.Status != 502 || r.json(t)["error"] != "upstream_unreachable" {
		t.Fatalf("unreachable (posgate): %d %s", r.Status, r.Body)
	}
}

func TestRateLimitPerRouteAndPrincipal(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/limited", Methods: []string{"GET"}, Auth: []string{"test.key"}, RateLimit: 1, RateBurst: 2, Upstream: "pos"},
		{Path: "/free", Methods: []string{"GET"}, Auth: []string{"test.key"}, Upstream: "pos"},
	})
	for i := 0; i < 2; i++ {
		if r := e.do("GET", "/limited", "", "apikey", "key-a"); r.Status != 200 {
			t.Fatalf("within burst: %d", r.Status)
		}
	}
	r := e.do("GET", "/limited", "", "apikey", "key-a")
	if r.Status != 429 || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("over the limit: %d %q %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	if r := e.do("GET", "/limited", "", "apikey", "key-b"); r.Status != 200 {
		t.Fatalf("another principal: %d", r.Status)
	}
	if r := e.do("GET", "/free", "", "apikey", "key-a"); r.Status != 200 {
		t.Fatalf("another route: %d", r.Status)
	}
	e.clock.Advance(time.Second)
	if r := e.do("GET", "/limited", "", "apikey", "key-a"); r.Status != 200 {
		t.Fatalf("after refill: %d", r.Status)
	}
}

func TestLimiterMapIsBounded(t *testing.T) {
	l := newLimiters(1000)
	now := time.Now()
	for i := 0; i < 20000; i++ {
		l.allow(fmt.Sprint("k", i), 1, 1, now)
	}
	if n := l.len(); n > 1000+limiterShards {
		t.Fatalf("%d buckets kept, bound is about 1000", n)
	}
}

func TestForwarderServesDialectsDirectly(t *testing.T) {
	// The chef module calls Forward itself; it must get the same stripping and identity.
	e := newEnv(t, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rpc", func(w http.ResponseWriter, r *http.Request) {
		p, err := keyAuth{}.Authenticate(r)
		if err != nil {
			t.Error(err)
			return
		}
		e.fwd.Forward(w, r, "pos", p, keyAuth{}.WriteError, nil)
	})
	srv := newServer(t, mux)
	req, _ := http.NewRequest("POST", srv+"/rpc", strings.NewReader(`{"jsonrpc":"2.0"}`))
	req.Header.Set("apikey", "key-dev")
	req.Header["X_Posgate_Principal"] = []string{"spoofed"} // CGI-style upstreams read it as HTTP_X_POSGATE_PRINCIPAL
	req.Header["x_forwarded_for"] = []string{"6.6.6.6"}
	req.Header["Doshii_location_id"] = []string{"L2"}
	req.Header.Set("Cookie", "session=s3cret")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	got := e.up.last(t)
	if res.StatusCode != 200 || got.Header.Get("Apikey") != "" || got.RequestURI != "/rpc" {
		t.Fatalf("%d %+v", res.StatusCode, got.Header)
	}
	for k := range got.Header {
		if strings.Contains(k, "_") || k == "Cookie" {
			t.Errorf("forwarded %s: %q", k, got.Header[k])
		}
	}
	p, err := e.ident.VerifyValues("POST", "/rpc", got.Header.Get("X-Posgate-Principal"), got.Header.Get("X-Posgate-Signature"))
	if err != nil || p.Subject != "dev" {
		t.Fatalf("%v %+v", err, p)
	}
}
