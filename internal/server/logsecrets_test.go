package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/cli"
	"github.com/posgate/posgate/internal/server/servertest"
)

// A full scenario — admin writes, every OAuth grant, introspection, revocation, failed attempts,
// credentials in query strings, the CLI — with the JSON logs (debug level) captured; then every
// secret, token and password the scenario used is searched for in the logs. None may appear.
func TestLogsHoldNoSecret(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	var secrets []string
	keep := func(s string) string {
		if s == "" {
			t.Fatal("empty secret: a step of the scenario failed")
		}
		secrets = append(secrets, s)
		return s
	}
	keep(inst.AdminToken)

	form := func(path, user, pass string, v url.Values) map[string]any {
		req, _ := http.NewRequest("POST", inst.URL+path, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := inst.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	str := func(v any) string { s, _ := v.(string); return s }

	// A client_credentials client, a chimpy client, a jackpot client.
	_, cc := inst.Admin(t, "POST", "/clients", map[string]any{"name": "svc", "grant_types": []string{"client_credentials"}, "scopes": []string{"read"}})
	ccID, ccSecret := keep(str(cc["client_id"])), keep(str(cc["client_secret"]))
	_, ch := inst.Admin(t, "POST", "/clients", map[string]any{"name": "app", "grant_types": []string{"password", "refresh_token"}, "scopes": []string{"rentals", "offline_access"}, "audiences": []string{"rentals"}})
	chID, chSecret := keep(str(ch["client_id"])), keep(str(ch["client_secret"]))
	_, jp := inst.Admin(t, "POST", "/clients", map[string]any{"name": "jp", "grant_types": []string{"client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"}, "apikey": true, "assertion_secret": true})
	keep(str(jp["client_id"]))
	keep(str(jp["client_secret"]))
	keep(str(jp["assertion_secret"]))
	password := keep("correct horse battery staple 42")
	if status, u := inst.Admin(t, "POST", "/users", map[string]any{"username": "alice", "password": password}); status != 201 {
		t.Fatalf("create user: %d %v", status, u)
	}
	if status, v := inst.Admin(t, "POST", "/doshii/vendors", map[string]any{"api_name": "acme"}); status == 201 {
		keep(str(v["vendor_key"]))
	}

	// Tokens: client_credentials, password, refresh.
	at := keep(str(form("/oauth/token", ccID, ccSecret, url.Values{"grant_type": {"client_credentials"}, "scope": {"read"}})["access_token"]))
	pw := form("/oauth/token", chID, chSecret, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {password}, "scope": {"rentals offline_access"}, "audience": {"rentals"}})
	userAT, rt := keep(str(pw["access_token"])), keep(str(pw["refresh_token"]))
	rf := form("/oauth/token", chID, chSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	keep(str(rf["access_token"]))
	rt2 := keep(str(rf["refresh_token"]))
	form("/oauth/token", chID, chSecret, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}) // reuse: family revoked
	form("/oauth/introspect", ccID, ccSecret, url.Values{"token": {at}})
	form("/oauth/introspect", chID, chSecret, url.Values{"token": {userAT}})
	form("/oauth/revoke", chID, chSecret, url.Values{"token": {rt2}})

	// Failures with wrong secrets (the wrong values must not be logged either).
	wrongSecret := keep("pg_cs_WRONGwrongWRONGwrongWRONGwrongWRONGwrong00")
	form("/oauth/token", ccID, wrongSecret, url.Values{"grant_type": {"client_credentials"}})
	wrongPassword := keep("not the password of alice 99")
	form("/oauth/token", chID, chSecret, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {wrongPassword}, "audience": {"rentals"}})
	wrongAdmin := keep("pg_at_WRONGADMINwrongadminWRONGADMINwrongadmin0")
	req, _ := http.NewRequest("GET", inst.URL+"/admin/api/v1/clients", nil)
	req.Header.Set("Authorization", "Bearer "+wrongAdmin)
	if resp, err := inst.Client.Do(req); err == nil {
		resp.Body.Close()
	}

	// Credentials in query strings and headers on assorted endpoints.
	querySecret := keep("QUERYSECRETvalue0123456789")
	for _, p := range []string{"/healthz?token=", "/oauth/introspect?token=", "/nowhere?access_token=", "/admin/api/v1/audit?token="} {
		req, _ := http.NewRequest("GET", inst.URL+p+querySecret, nil)
		req.Header.Set("Authorization", "Bearer "+at)
		req.Header.Set("apikey", str(jp["client_id"]))
		if resp, err := inst.Client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	// Admin revocation and the CLI.
	inst.Admin(t, "POST", "/tokens/revoke", map[string]any{"token": userAT})
	var out, errb bytes.Buffer
	cli.Run([]string{"admin", "tokens", "revoke", at, "--url", inst.URL, "--token", inst.AdminToken},
		cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	cli.Run([]string{"admin", "clients", "create", "--name", "via cli", "--grant-types", "client_credentials", "-o", "json", "--url", inst.URL, "--token", inst.AdminToken},
		cli.Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	var created map[string]any
	json.Unmarshal(bytes.TrimSpace(out.Bytes()[bytes.IndexByte(out.Bytes(), '{'):]), &created)
	if s := str(created["client_secret"]); s != "" {
		keep(s)
	}

	logs := inst.Logs()
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, `"msg":"audit"`) {
		t.Fatalf("the scenario logged nothing useful:\n%.3000s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs hold a secret (%.10s…)", s)
		}
		// A JWT's signature alone is enough to replay it when paired with the (public) header and
		// claims, so look for the tail of every token too.
		if len(s) > 40 && strings.Contains(logs, s[len(s)-24:]) {
			t.Errorf("logs hold the tail of a secret (%.10s…)", s)
		}
	}
	for _, bad := range []string{"token=", "password=", "client_secret="} {
		if strings.Contains(logs, bad) {
			t.Errorf("logs hold %q", bad)
		}
	}
}
