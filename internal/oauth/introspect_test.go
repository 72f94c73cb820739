package oauth_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/secret"
)

// TestIntrospection (RFC 7662): the caller authenticates as a client; a token is active only for
// its own client or a client listing its audience; anything else is exactly {"active":false}.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{configure: lifetimes(3600, 86400, 0)})
	s := signIn(t, e)
	rs := e.createClient(t, []string{"client_credentials"}, nil, []string{apiAudience})    // the API (resource server)
	stranger := e.createClient(t, []string{"client_credentials"}, nil, []string{otherAud}) // unrelated

	a := e.introspect(t, &s.c, s.at)
	if a.JSON["active"] != true || a.str("sub") != s.uid || a.str("aud") != apiAudience || a.str("token_type") != "Bearer" ||
		a.str("scope") != "offline_access rentals" || a.str("sid") != s.sid || a.str("iss") != e.inst.Server.Issuer() ||
		a.JSON["exp"] != float64(epoch.Unix()+60) || a.str("gty") != "password" || a.str("azp") != s.c.ID || a.str("client_id") == "" {
		t.Fatalf("introspection of an access token: %s", a.Raw)
	}
	if a.Header.Get("Cache-Control") != "no-store" {
		t.Fatal("introspection answer may be cached")
	}
	if b := e.introspect(t, &rs, s.at); b.JSON["active"] != true {
		t.Fatalf("the resource server of the audience: %s", b.Raw)
	}
	r := e.introspect(t, &s.c, s.rt)
	if r.JSON["active"] != true || r.str("token_type") != "refresh_token" || r.str("sid") != s.sid || r.str("sub") != s.uid {
		t.Fatalf("introspection of a refresh token: %s", r.Raw)
	}

	inactive := func(name string, c *client, tok string) {
		t.Helper()
		a := e.introspect(t, c, tok)
		if a.Raw != "{\"active\":false}\n" {
			t.Fatalf("%s: %s", name, a.Raw)
		}
	}
	inactive("another client's access token", &stranger, s.at)
	inactive("another client's refresh token", &rs, s.rt)
	inactive("garbage", &s.c, "garbage")
	inactive("unknown refresh token", &s.c, secret.Generate("pg_rt_"))
	inactive("tampered JWT", &s.c, tamper(s.at))
	inactive("huge", &s.c, strings.Repeat("a", 8000))
	e.advance(61 * time.Second)
	inactive("expired access token", &s.c, s.at)

	// The caller must authenticate.
	checkError(t, e.post(t, "/oauth/introspect", map[string]string{"token": s.rt}, &client{ID: s.c.ID, Secret: "pg_cs_nope"}, inBasic, true), 401, "invalid_client", true)
	// No client credentials at all: 401 invalid_client with a challenge (RFC 7662 §2.1, RFC 6749 §5.2),
	// in either body format, also when only a secret is sent.
	checkError(t, e.post(t, "/oauth/introspect", map[string]string{"token": s.rt}, nil, inBody, true), 401, "invalid_client", true)
	checkError(t, e.post(t, "/oauth/introspect", map[string]string{"token": s.rt}, nil, inBody, false), 401, "invalid_client", true)
	checkError(t, e.post(t, "/oauth/introspect", map[string]string{"token": s.rt, "client_secret": s.c.Secret}, nil, inBody, true), 401, "invalid_client", true)
	// A public client (client_id alone) may not introspect: 401, without a challenge as it did not use the header.
	checkError(t, e.post(t, "/oauth/introspect", map[string]string{"token": s.rt}, &client{ID: s.c.ID}, inBody, true), 401, "invalid_client", false)
	checkError(t, e.post(t, "/oauth/introspect", map[string]string{}, &s.c, inBasic, true), 400, "invalid_request", false)
}

// TestRevocation (RFC 7009): access tokens by jti, refresh tokens with their family; 200 for
// anything, changing nothing for tokens of other clients or unknown tokens.
func TestRevocation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{configure: lifetimes(3600, 86400, 0)})
	s := signIn(t, e)
	other := e.createClient(t, []string{"password", "refresh_token"}, []string{"rentals", "offline_access"}, []string{apiAudience})
	revoke := func(c *client, tok string) {
		t.Helper()
		a := e.post(t, "/oauth/revoke", map[string]string{"token": tok}, c, inBasic, true)
		if a.Status != http.StatusOK || a.Raw != "" {
			t.Fatalf("revoke: %d %q", a.Status, a.Raw)
		}
	}
	// Another client's attempts change nothing.
	revoke(&other, s.at)
	revoke(&other, s.rt)
	if !e.active(t, &s.c, s.at) || !e.active(t, &s.c, s.rt) {
		t.Fatal("another client revoked a token")
	}
	revoke(&s.c, "garbage")
	revoke(&s.c, secret.Generate("pg_rt_"))

	// Access token by jti: the refresh token lives on.
	revoke(&s.c, s.at)
	if e.active(t, &s.c, s.at) || !e.active(t, &s.c, s.rt) {
		t.Fatal("revoking the access token")
	}
	at2, _ := s.rotate(t)
	// Refresh token: the whole family, its access tokens included.
	revoke(&s.c, s.rt)
	if e.active(t, &s.c, s.rt) || e.active(t, &s.c, at2) {
		t.Fatal("revoking the refresh token left the family alive")
	}
	wantInvalidGrant(t, e.refresh(t, &s.c, s.rt))
	// Revoking twice is fine.
	revoke(&s.c, s.rt)
	checkError(t, e.post(t, "/oauth/revoke", map[string]string{"token": s.rt}, &client{ID: s.c.ID, Secret: "pg_cs_nope"}, inBasic, true), 401, "invalid_client", true)
	checkError(t, e.post(t, "/oauth/revoke", map[string]string{}, &s.c, inBasic, true), 400, "invalid_request", false)
	// No client credentials at all: 401 invalid_client with a challenge (RFC 7009 §2.1, RFC 6749 §5.2).
	checkError(t, e.post(t, "/oauth/revoke", map[string]string{"token": s.rt}, nil, inBody, true), 401, "invalid_client", true)
	checkError(t, e.post(t, "/oauth/revoke", map[string]string{"token": s.rt}, nil, inBody, false), 401, "invalid_client", true)
}

// TestMetadata (RFC 8414).
func TestMetadata(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	a := e.do(t, "GET", "/.well-known/oauth-authorization-server", nil, nil)
	iss := e.inst.Server.Issuer()
	if a.Status != 200 || a.str("issuer") != iss || a.str("token_endpoint") != iss+"/oauth/token" ||
		a.str("jwks_uri") != iss+"/.well-known/jwks.json" || a.str("introspection_endpoint") != iss+"/oauth/introspect" ||
		a.str("revocation_endpoint") != iss+"/oauth/revoke" {
		t.Fatalf("metadata %s", a.Raw)
	}
	want := map[string][]string{
		"grant_types_supported": {"client_credentials", "password", "refresh_token"},
		// Only what a client created through the admin API can use: no public clients, so no "none".
		"token_endpoint_auth_methods_supported":      {"client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported": {"client_secret_basic", "client_secret_post"},
		// Required by RFC 8414 and refused when empty by authlib; posgate has no authorization endpoint.
		"response_types_supported": {"none"},
	}
	for k, v := range want {
		got, ok := a.JSON[k].([]any)
		if !ok || len(got) != len(v) {
			t.Fatalf("%s = %v, want %v", k, a.JSON[k], v)
		}
		for i := range v {
			if got[i] != v[i] {
				t.Fatalf("%s = %v, want %v", k, got, v)
			}
		}
	}
	// The endpoints it names exist.
	if j := e.do(t, "GET", "/.well-known/jwks.json", nil, nil); j.Status != 200 {
		t.Fatalf("jwks_uri: %d", j.Status)
	}
}

// tamper changes one character in the middle of a JWT's signature (deterministically different;
// a change of the last character could leave the decoded signature unchanged).
func tamper(jwt string) string {
	i := len(jwt) - 10
	c := byte('A')
	if jwt[i] == 'A' {
		c = 'B'
	}
	return jwt[:i] + string(c) + jwt[i+1:]
}
