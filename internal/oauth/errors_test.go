package oauth_test

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// checkError checks an error answer of an /oauth/* endpoint: status, code, exactly error and
// error_description, no-store, JSON, and a Basic challenge exactly when the client used Basic and
// the answer is 401.
func checkError(t *testing.T, a answer, status int, code string, basic bool) {
	t.Helper()
	if a.Status != status || a.str("error") != code {
		t.Fatalf("got %d %s; want %d %s", a.Status, a.Raw, status, code)
	}
	if len(a.JSON) != 2 || a.str("error_description") == "" {
		t.Fatalf("body %s: want exactly error and error_description", a.Raw)
	}
	if a.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(a.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("headers %v", a.Header)
	}
	wantChallenge := status == http.StatusUnauthorized && basic
	if ch := a.Header.Get("WWW-Authenticate"); (ch != "") != wantChallenge || (wantChallenge && !strings.HasPrefix(ch, `Basic realm="posgate"`)) {
		t.Fatalf("WWW-Authenticate %q (want challenge: %v)", ch, wantChallenge)
	}
	if status == http.StatusTooManyRequests && a.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
}

// noThrottle raises the failure limits for tests that fail on purpose many times.
func noThrottle(c *config.Config) {
	c.Throttle.PerAddress, c.Throttle.PerAddressIdent, c.Throttle.PerIdentity = 10000, 10000, 10000
}

// TestTokenErrorTable checks every row of chimpy's error table, in both body formats where the row
// is about the body.
func TestTokenErrorTable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{configure: noThrottle})
	c := e.createClient(t, []string{"password", "refresh_token"}, []string{"rentals", "offline_access"}, []string{apiAudience, otherAud})
	m2m := e.createClient(t, []string{"client_credentials"}, []string{"read"}, []string{apiAudience})
	e.createUser(t, "ann", "correct horse battery")
	unknown := client{ID: secret.Generate(secret.PrefixClientID), Secret: secret.Generate(secret.PrefixClientSecret)}
	wrong := client{ID: c.ID, Secret: secret.Generate(secret.PrefixClientSecret)}
	login := map[string]string{"grant_type": "password", "username": "ann", "password": "correct horse battery", "audience": apiAudience}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}
	// A refresh token that was rotated, one of a revoked family, one past its idle expiry.
	rotated := e.token(t, with(login, "scope", "offline_access"), &c).str("refresh_token")
	if a := e.refresh(t, &c, rotated); a.Status != 200 {
		t.Fatalf("refresh: %s", a.Raw)
	}

	type row struct {
		name   string
		params map[string]string
		c      *client
		style  authStyle
		status int
		code   string
	}
	rows := []row{
		{"wrong password", with(login, "password", "wrong horse battery"), &c, inBody, 403, "invalid_grant"},
		{"unknown username", with(login, "username", "nobody"), &c, inBody, 403, "invalid_grant"},
		{"unknown refresh token", map[string]string{"grant_type": "refresh_token", "refresh_token": secret.Generate("pg_rt_")}, &c, inBody, 403, "invalid_grant"},
		{"malformed refresh token", map[string]string{"grant_type": "refresh_token", "refresh_token": "not-a-token"}, &c, inBody, 403, "invalid_grant"},
		{"unknown client (body)", login, &unknown, inBody, 401, "invalid_client"},
		{"unknown client (basic)", login, &unknown, inBasic, 401, "invalid_client"},
		{"wrong secret (body)", login, &wrong, inBody, 401, "invalid_client"},
		{"wrong secret (basic)", login, &wrong, inBasic, 401, "invalid_client"},
		{"missing secret", login, &client{ID: c.ID}, inBody, 401, "invalid_client"},
		{"grant not allowed", login, &m2m, inBody, 403, "unauthorized_client"},
		{"client_credentials not allowed", map[string]string{"grant_type": "client_credentials", "audience": apiAudience}, &c, inBasic, 403, "unauthorized_client"},
		{"unknown audience", with(login, "audience", "https://nope.test"), &c, inBody, 403, "access_denied"},
		{"unknown audience (client_credentials)", map[string]string{"grant_type": "client_credentials", "audience": otherAud}, &m2m, inBody, 403, "access_denied"},
		{"scope not allowed", with(login, "scope", "rentals admin"), &c, inBody, 403, "access_denied"},
		{"missing username", with(login, "username", ""), &c, inBody, 400, "invalid_request"},
		{"missing password", with(login, "password", ""), &c, inBody, 400, "invalid_request"},
		{"missing refresh token", map[string]string{"grant_type": "refresh_token"}, &c, inBody, 400, "invalid_request"},
		{"missing grant type", with(login, "grant_type", ""), &c, inBody, 400, "invalid_request"},
		{"missing client_id", login, nil, inBody, 400, "invalid_request"},
		{"audience required with several", with(login, "audience", ""), &c, inBody, 400, "invalid_request"},
		{"malformed scope", with(login, "scope", "a\"b"), &c, inBody, 400, "invalid_request"},
		{"unknown grant type", with(login, "grant_type", "urn:example:magic"), &c, inBody, 400, "unsupported_grant_type"},
		{"authorization_code unsupported", map[string]string{"grant_type": "authorization_code", "code": "x"}, &c, inBody, 400, "unsupported_grant_type"},
	}
	for _, r := range rows {
		for _, form := range []bool{false, true} {
			name := r.name + map[bool]string{false: " json", true: " form"}[form]
			t.Run(name, func(t *testing.T) {
				a := e.post(t, "/oauth/token", r.params, r.c, r.style, form)
				checkError(t, a, r.status, r.code, r.style == inBasic && r.c != nil)
			})
		}
	}

	// A wrong username and a wrong password get the very same answer.
	a1 := e.token(t, with(login, "username", "nobody"), &c)
	a2 := e.token(t, with(login, "password", "not the password"), &c)
	if a1.Raw != a2.Raw {
		t.Fatalf("wrong username %q vs wrong password %q", a1.Raw, a2.Raw)
	}

	raw := func(ct, body string, h ...string) answer {
		hd := http.Header{}
		if ct != "" {
			hd.Set("Content-Type", ct)
		}
		for i := 0; i < len(h); i += 2 {
			hd.Set(h[i], h[i+1])
		}
		return e.do(t, "POST", "/oauth/token", hd, []byte(body))
	}
	good := `{"grant_type":"client_credentials","client_id":"` + m2m.ID + `","client_secret":"` + m2m.Secret + `"}`
	bodyRows := []struct {
		name string
		a    func() answer
		code string
	}{
		{"unsupported content type", func() answer { return raw("text/plain", good) }, "invalid_request"},
		{"no content type", func() answer { return raw("", good) }, "invalid_request"},
		{"multipart", func() answer { return raw("multipart/form-data; boundary=x", good) }, "invalid_request"},
		{"duplicate JSON key", func() answer {
			return raw("application/json", `{"grant_type":"client_credentials","grant_type":"password","client_id":"`+m2m.ID+`","client_secret":"`+m2m.Secret+`"}`)
		}, "invalid_request"},
		{"case-folded duplicate JSON key", func() answer {
			return raw("application/json", `{"grant_type":"client_credentials","client_id":"`+m2m.ID+`","Client_Id":"x","client_secret":"`+m2m.Secret+`"}`)
		}, "invalid_request"},
		{"repeated form parameter", func() answer {
			return raw("application/x-www-form-urlencoded", "grant_type=client_credentials&grant_type=password&client_id="+m2m.ID+"&client_secret="+m2m.Secret)
		}, "invalid_request"},
		{"malformed JSON", func() answer { return raw("application/json", `{"grant_type":`) }, "invalid_request"},
		{"JSON array", func() answer { return raw("application/json", `[]`) }, "invalid_request"},
		{"non-string field", func() answer {
			return raw("application/json", `{"grant_type":"client_credentials","client_id":"`+m2m.ID+`","client_secret":"`+m2m.Secret+`","scope":["read"]}`)
		}, "invalid_request"},
		{"basic and body secret", func() answer {
			return raw("application/json", good, "Authorization", basicAuth(m2m.ID, m2m.Secret))
		}, "invalid_request"},
		{"basic and another body client_id", func() answer {
			return raw("application/json", `{"grant_type":"client_credentials","client_id":"`+c.ID+`"}`, "Authorization", basicAuth(m2m.ID, m2m.Secret))
		}, "invalid_request"},
	}
	for _, r := range bodyRows {
		t.Run(r.name, func(t *testing.T) { checkError(t, r.a(), 400, r.code, false) })
	}
	t.Run("body too large", func(t *testing.T) {
		checkError(t, raw("application/json", `{"x":"`+strings.Repeat("a", 20<<10)+`"}`), http.StatusRequestEntityTooLarge, "invalid_request", false)
	})
	// Parameters in the URL are refused (they would reach access logs).
	a := e.do(t, "POST", "/oauth/token?client_secret="+m2m.Secret, http.Header{"Content-Type": {"application/json"}}, []byte(good))
	checkError(t, a, 400, "invalid_request", false)
	// Another scheme in the Authorization header: 401 with the Basic challenge.
	checkError(t, raw("application/json", `{"grant_type":"client_credentials"}`, "Authorization", "Bearer "+m2m.Secret), 401, "invalid_client", true)
	// Basic with a malformed value is a 401 with a challenge.
	checkError(t, raw("application/json", `{"grant_type":"client_credentials"}`, "Authorization", "Basic !!!"), 401, "invalid_client", true)
	// The same client authenticated with Basic and a body client_id that matches is fine.
	if a := raw("application/json", `{"grant_type":"client_credentials","client_id":"`+m2m.ID+`"}`, "Authorization", basicAuth(m2m.ID, m2m.Secret)); a.Status != 200 {
		t.Fatalf("basic + matching client_id: %d %s", a.Status, a.Raw)
	}
	// GET is not a token request.
	if a := e.do(t, "GET", "/oauth/token", nil, nil); a.Status != http.StatusMethodNotAllowed || a.Header.Get("Allow") != "POST" {
		t.Fatalf("GET /oauth/token: %d %v", a.Status, a.Header)
	}

	// Every failed client authentication and login is audited, never with a secret.
	if ev := e.audit(t, "client.auth_failed"); len(ev) == 0 {
		t.Fatal("client authentication failures were not audited")
	}
	ev := e.audit(t, "login.failed")
	if len(ev) == 0 {
		t.Fatal("failed logins were not audited")
	}
	for _, x := range ev {
		for _, s := range []string{"wrong horse battery", "not the password", "nobody"} {
			if strings.Contains(x.Target+x.Detail, s) {
				t.Fatalf("audit event holds %q: %+v", s, x)
			}
		}
	}
	for _, s := range []string{c.Secret, m2m.Secret, wrong.Secret, "correct horse battery", rotated} {
		if strings.Contains(e.inst.Logs(), s) {
			t.Fatal("a secret reached the logs")
		}
	}
}

// TestDisabledAndPublicClients: a disabled client is invalid_client; a public client (no secret)
// may use the password grant with its client_id alone but not client_credentials, and may not
// send a secret.
func TestDisabledAndPublicClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.createUser(t, "ann", "correct horse battery")
	ctx := t.Context()
	now := e.clk.Now()
	pubID := secret.Generate(secret.PrefixClientID)
	pub := &store.Client{ID: secret.NewID("cl_"), Name: "public", ClientIDHash: secret.Hash(pubID), ClientIDHint: pubID,
		GrantTypes: []string{"password", "client_credentials"}, Scopes: []string{"rentals"}, Audiences: []string{apiAudience},
		CreatedAt: now, UpdatedAt: now}
	if err := e.inst.Svc.Store.CreateClient(ctx, pub); err != nil {
		t.Fatal(err)
	}
	pc := client{ID: pubID}
	login := map[string]string{"grant_type": "password", "username": "ann", "password": "correct horse battery"}
	if a := e.token(t, login, &pc); a.Status != 200 || a.str("refresh_token") != "" {
		t.Fatalf("public client password grant: %d %s", a.Status, a.Raw)
	}
	checkError(t, e.token(t, map[string]string{"grant_type": "client_credentials"}, &pc), 403, "unauthorized_client", false)
	checkError(t, e.token(t, login, &client{ID: pubID, Secret: "pg_cs_guess"}), 401, "invalid_client", false)
	// A public client cannot introspect.
	checkError(t, e.post(t, "/oauth/introspect", map[string]string{"token": "x"}, &pc, inBody, true), 401, "invalid_client", false)

	c := e.createClient(t, []string{"client_credentials"}, nil, []string{apiAudience})
	if a := e.token(t, map[string]string{"grant_type": "client_credentials", "audience": apiAudience}, &c); a.Status != 200 {
		t.Fatalf("%d %s", a.Status, a.Raw)
	}
	if st, body := e.inst.Admin(t, "POST", "/clients/"+c.Internal+"/disable", nil); st != 200 {
		t.Fatalf("disable client: %d %v", st, body)
	}
	e.advance(2 * time.Second) // past the client cache (see clientCacheTTL)
	checkError(t, e.token(t, map[string]string{"grant_type": "client_credentials", "audience": apiAudience}, &c), 401, "invalid_client", false)
}

// TestLoginThrottle: failed logins are throttled per (user, address) and per address, answering 429
// too_many_attempts with Retry-After even for the right password; the block ends with its window.
// The identity-wide limit applies across addresses (here via a trusted proxy's X-Forwarded-For),
// and it is audited.
func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{configure: func(c *config.Config) {
		c.Throttle.Window = 60
		c.Throttle.PerAddressIdent = 3
		c.Throttle.PerAddress = 5
		c.Throttle.PerIdentity = 4
		c.Throttle.IdentityBackoff = 30
		c.Server.TrustedProxies = []string{"127.0.0.1/32", "::1/128"}
	}})
	c := e.createClient(t, []string{"password"}, []string{"rentals"}, []string{apiAudience})
	e.createUser(t, "ann", "correct horse battery")
	e.createUser(t, "bob", "correct horse battery")
	from := func(addr, user, pw string) answer {
		h := http.Header{"Content-Type": {"application/json"}, "X-Forwarded-For": {addr}}
		body := `{"grant_type":"password","client_id":"` + c.ID + `","client_secret":"` + c.Secret + `","username":"` + user + `","password":"` + pw + `"}`
		return e.do(t, "POST", "/oauth/token", h, []byte(body))
	}
	// Align to the start of a throttle window so the test's windows are predictable.
	e.clk.Set(e.clk.Now().Truncate(60 * time.Second).Add(time.Second))

	// (user, address): 3 failures block ann from 192.0.2.1, even with the right password.
	for i := 0; i < 3; i++ {
		checkError(t, from("192.0.2.1", "ann", "wrong"), 403, "invalid_grant", false)
	}
	checkError(t, from("192.0.2.1", "ann", "correct horse battery"), 429, "too_many_attempts", false)
	// Another address and another user are unaffected.
	if a := from("192.0.2.2", "ann", "correct horse battery"); a.Status != 200 {
		t.Fatalf("ann from another address: %d %s", a.Status, a.Raw)
	}
	if a := from("192.0.2.1", "bob", "correct horse battery"); a.Status != 200 {
		t.Fatalf("bob from the same address: %d %s", a.Status, a.Raw)
	}
	// Per address: 5 failures from one address over several users block the address.
	for _, u := range []string{"bob", "carol"} {
		checkError(t, from("192.0.2.1", u, "wrong"), 403, "invalid_grant", false)
	}
	checkError(t, from("192.0.2.1", "bob", "correct horse battery"), 429, "too_many_attempts", false)
	// The window ends: the right password works again.
	e.advance(61 * time.Second)
	if a := from("192.0.2.1", "ann", "correct horse battery"); a.Status != 200 {
		t.Fatalf("after the window: %d %s", a.Status, a.Raw)
	}

	// Identity-wide: 4 failures against carol from as many addresses block carol everywhere,
	// briefly, and it is audited.
	e.clk.Set(e.clk.Now().Truncate(60 * time.Second).Add(time.Second))
	e.createUser(t, "carol", "correct horse battery")
	for i := 0; i < 4; i++ {
		checkError(t, from("198.51.100."+string(rune('1'+i)), "carol", "wrong"), 403, "invalid_grant", false)
	}
	checkError(t, from("203.0.113.9", "carol", "correct horse battery"), 429, "too_many_attempts", false)
	if ev := e.audit(t, "throttle.identity_block"); len(ev) != 1 {
		t.Fatalf("identity block audit: %+v", ev)
	}
	e.advance(31 * time.Second)
	if a := from("203.0.113.9", "carol", "correct horse battery"); a.Status != 200 {
		t.Fatalf("after the identity backoff: %d %s", a.Status, a.Raw)
	}
}

// TestClientThrottle: failed client authentications are throttled too.
func TestClientThrottle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{configure: func(c *config.Config) { c.Throttle.PerAddressIdent = 2; c.Throttle.Window = 60 }})
	c := e.createClient(t, []string{"client_credentials"}, nil, []string{apiAudience})
	e.clk.Set(e.clk.Now().Truncate(60 * time.Second).Add(time.Second))
	bad := client{ID: c.ID, Secret: "pg_cs_wrong"}
	params := map[string]string{"grant_type": "client_credentials", "audience": apiAudience}
	checkError(t, e.token(t, params, &bad), 401, "invalid_client", false)
	checkError(t, e.token(t, params, &bad), 401, "invalid_client", false)
	checkError(t, e.token(t, params, &c), 429, "too_many_attempts", false)
	e.advance(61 * time.Second)
	if a := e.token(t, params, &c); a.Status != 200 {
		t.Fatalf("%d %s", a.Status, a.Raw)
	}
}

// TestAbortedLoginsAreCounted: a guesser who hangs up before the answer (so the request's context
// is cancelled while the password is checked) is still counted and audited.
//
// Not parallel: the argon2id slots are shared by the whole process, and a guess whose caller has
// hung up runs only if a slot is free (one still waiting for a slot is dropped unchecked — it
// tells its sender nothing — see the password grant). Run alone, the two aborted guesses find the
// (at least two) slots free.
func TestAbortedLoginsAreCounted(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(c *config.Config) { c.Throttle.PerAddressIdent = 3; c.Throttle.Window = 60 }})
	c := e.createClient(t, []string{"password"}, []string{"rentals"}, []string{apiAudience})
	e.createUser(t, "ann", "correct horse battery")
	e.clk.Set(e.clk.Now().Truncate(60 * time.Second).Add(time.Second))
	body := `{"grant_type":"password","client_id":"` + c.ID + `","client_secret":"` + c.Secret + `","username":"ann","password":"wrong"}`
	host := strings.TrimPrefix(e.inst.URL, "http://")
	// One ordinary wrong attempt first (it also puts the client in the client cache, so the aborted
	// ones need no client read with their cancelled context), then two aborted ones.
	checkError(t, e.token(t, map[string]string{"grant_type": "password", "username": "ann", "password": "wrong"}, &c), 403, "invalid_grant", false)
	for range 2 {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fmt.Fprintf(conn, "POST /oauth/token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", host, len(body), body)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close() // hang up at once: the password check runs with a cancelled context
	}
	// Wait for the three checks to finish (each is audited), then the right password is refused.
	deadline := time.Now().Add(60 * time.Second)
	for len(e.audit(t, "login.failed")) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d failed logins audited", len(e.audit(t, "login.failed")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkError(t, e.token(t, map[string]string{"grant_type": "password", "username": "ann", "password": "correct horse battery"}, &c), 429, "too_many_attempts", false)
}
