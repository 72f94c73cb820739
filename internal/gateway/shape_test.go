package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/token"
)

// TestQueryForwardedAsSent: the upstream receives the query byte for byte (order, escapes and
// repeated keys kept), the identity signature covers exactly that target, and a query posgate
// cannot parse the way an upstream would is refused with 400 instead of being rewritten.
func TestQueryForwardedAsSent(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/api/v2/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Upstream: "pos"},
	})
	authz := e.bearer("tok-q", &token.Claims{Subject: "us_1", ClientID: "cl_1", JTI: "jq", Audience: []string{"api"}})
	for _, q := range []string{"b=2&a=1&c=3", "x=%41&x=%61&y=", "q=100%25&b=2", "flag&z=%E2%82%AC&a=1"} {
		target := "/api/v2/items?" + q
		r := e.do("GET", target, "", "Authorization", authz)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", q, r.Status, r.Body)
		}
		got := e.up.last(t)
		if got.RequestURI != target {
			t.Errorf("upstream saw %q, want %q", got.RequestURI, target)
		}
		if _, err := e.ident.VerifyValues(got.Method, got.RequestURI, got.Header.Get("X-Posgate-Principal"), got.Header.Get("X-Posgate-Signature")); err != nil {
			t.Errorf("%s: the signature does not cover the forwarded target: %v", q, err)
		}
	}
	before := len(e.up.requests())
	for _, q := range []string{"b=2&a=1&c=3;d", "q=100%&b=2", "a=%E2%82;b=1", "a=%zz"} {
		r := e.do("GET", "/api/v2/items?"+q, "", "Authorization", authz)
		if r.Status != http.StatusBadRequest || r.json(t)["error"] != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", q, r.Status, r.Body)
		}
	}
	if n := len(e.up.requests()); n != before {
		t.Errorf("an unparseable query reached the upstream (%d requests)", n-before)
	}
}

// TestCredentialOnlyOnceAndOnlyInTheHeader: RFC 6750 §2 — a token in the query (with or without
// the header) and two Authorization headers are 400 invalid_request, and nothing is forwarded.
func TestCredentialOnlyOnceAndOnlyInTheHeader(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/api/v2/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Upstream: "pos"},
	})
	authz := e.bearer("tok-c", &token.Claims{Subject: "us_1", ClientID: "cl_1", JTI: "jc", Audience: []string{"api"}})
	for name, tc := range map[string]struct {
		target  string
		headers []string
	}{
		"query and header":       {"/api/v2/items?access_token=tok-c", []string{"Authorization", authz}},
		"query only":             {"/api/v2/items?a=1&access_token=tok-c", nil},
		"query, other case":      {"/api/v2/items?Access_Token=tok-c", nil},
		"two headers":            {"/api/v2/items", []string{"Authorization", authz, "Authorization", authz}},
		"two headers, one bogus": {"/api/v2/items", []string{"Authorization", authz, "Authorization", "Bearer other"}},
	} {
		r := e.do("GET", tc.target, "", tc.headers...)
		if r.Status != http.StatusBadRequest || r.json(t)["error"] != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", name, r.Status, r.Body)
		}
	}
	if n := len(e.up.requests()); n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}
}

// TestNoUpgradeThroughAnOrdinaryRoute: an Upgrade (websocket, h2c) is never passed to the upstream
// of a plain route — the request goes on as plain HTTP, so an upstream that would accept the
// upgrade cannot turn the connection into an unchecked tunnel.
func TestNoUpgradeThroughAnOrdinaryRoute(t *testing.T) {
	e := newEnv(t, []config.Route{
		{Path: "/api/v2/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Upstream: "pos"},
	})
	authz := e.bearer("tok-u", &token.Claims{Subject: "us_1", ClientID: "cl_1", JTI: "ju", Audience: []string{"api"}})
	for _, up := range []string{"websocket", "h2c"} {
		// A raw request: net/http's client would not send these headers on its own.
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /api/v2/items HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", authz, up)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 200 {
			t.Errorf("%s: %d", up, res.StatusCode)
		}
		got := e.up.last(t)
		if got.Header.Get("Upgrade") != "" || strings.Contains(strings.ToLower(got.Header.Get("Connection")), "upgrade") {
			t.Errorf("%s: the upstream was asked to upgrade: Upgrade %q Connection %q", up, got.Header.Get("Upgrade"), got.Header.Get("Connection"))
		}
	}
}
