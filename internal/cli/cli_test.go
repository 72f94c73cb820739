package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/cli"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server"
	"github.com/posgate/posgate/internal/server/servertest"
)

type run struct {
	code           int
	stdout, stderr string
}

func posgate(t *testing.T, stdin string, args ...string) run {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(args, cli.Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }})
	return run{code, out.String(), errb.String()}
}

// admin runs `posgate admin ARGS --url … --token … -o json` and decodes the JSON answer.
func admin(t *testing.T, inst *servertest.Instance, stdin string, args ...string) (run, map[string]any) {
	t.Helper()
	full := append([]string{"admin"}, args...)
	full = append(full, "--url", inst.URL, "--token", inst.AdminToken)
	r := posgate(t, stdin, full...)
	var m map[string]any
	_ = json.Unmarshal([]byte(r.stdout), &m)
	return r, m
}

func mustOK(t *testing.T, r run, what string) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
	}
}

func TestAdminCommandsAgainstARealServer(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})

	// clients
	r, cl := admin(t, inst, "", "clients", "create", "--name", "cli client", "--grant-types", "client_credentials", "--scopes", "a,b", "-o", "json")
	mustOK(t, r, "clients create")
	id, clientID, secret := cl["id"].(string), cl["client_id"].(string), cl["client_secret"].(string)
	if !strings.HasPrefix(clientID, "pg_ck_") || !strings.HasPrefix(secret, "pg_cs_") {
		t.Fatalf("created %v", cl)
	}
	r, _ = admin(t, inst, "", "clients", "list")
	mustOK(t, r, "clients list")
	if !strings.Contains(r.stdout, "CLIENT_ID_HINT") || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "cli client") || strings.Contains(r.stdout, secret) {
		t.Errorf("clients list table:\n%s", r.stdout)
	}
	r, got := admin(t, inst, "", "clients", "get", id, "-o", "json")
	mustOK(t, r, "clients get")
	if got["name"] != "cli client" || got["client_id_hint"] != clientID {
		t.Errorf("clients get: %v", got)
	}

	// tokens: get one with the client, revoke it with the CLI (read from stdin), see it inactive.
	tok := clientToken(t, inst, clientID, secret)
	r, got = admin(t, inst, tok+"\n", "tokens", "revoke", "-", "-o", "json")
	mustOK(t, r, "tokens revoke")
	if got["revoked"] != true {
		t.Errorf("revoke: %v", got)
	}
	if active := introspect(t, inst, clientID, secret, tok); active {
		t.Error("token still active after revocation")
	}
	r, _ = admin(t, inst, "", "tokens", "revoke", "eyJhbGciOiJub25lIn0.e30.")
	if r.code != 1 || !strings.Contains(r.stderr, "invalid_token") {
		t.Errorf("revoking a foreign token: %+v", r)
	}

	r, got = admin(t, inst, "", "clients", "disable", id, "-o", "json")
	mustOK(t, r, "clients disable")
	if got["disabled"] != true {
		t.Errorf("disable: %v", got)
	}

	// users (chimpy), password from stdin
	r, u := admin(t, inst, "correct horse battery staple\n", "users", "create", "--username", "alice", "--password", "-", "-o", "json")
	mustOK(t, r, "users create")
	uid, _ := u["id"].(string)
	r, _ = admin(t, inst, "another long passphrase\n", "users", "password", uid, "--password", "-")
	mustOK(t, r, "users password")
	r, _ = admin(t, inst, "", "users", "disable", uid)
	mustOK(t, r, "users disable")

	// keys
	r, before := admin(t, inst, "", "keys", "list", "-o", "json")
	mustOK(t, r, "keys list")
	r, after := admin(t, inst, "", "keys", "rotate", "-o", "json")
	mustOK(t, r, "keys rotate")
	if after["active"] == "" || activeKID(before) == after["active"] {
		t.Errorf("rotate: before %v after %v", before, after)
	}
	r, _ = admin(t, inst, "", "keys", "list")
	if !strings.Contains(r.stdout, "retired") || !strings.Contains(r.stdout, "active") {
		t.Errorf("keys table:\n%s", r.stdout)
	}

	// doshii vendors
	r, v := admin(t, inst, "", "doshii", "vendors", "create", "--api-name", "acme", "-o", "json")
	mustOK(t, r, "doshii vendors create")
	if !strings.HasPrefix(str(v["vendor_key"]), "pg_vk_") {
		t.Errorf("vendor: %v", v)
	}
	r, v2 := admin(t, inst, "", "doshii", "vendors", "rotate-key", str(v["id"]), "-o", "json")
	mustOK(t, r, "doshii vendors rotate-key")
	if v2["vendor_key"] == v["vendor_key"] {
		t.Error("rotate-key returned the old key")
	}

	// chef devices (none yet)
	r, _ = admin(t, inst, "", "chef", "devices", "list", "--state", "pending")
	mustOK(t, r, "chef devices list")
	if !strings.Contains(r.stdout, "STATE") {
		t.Errorf("chef table:\n%s", r.stdout)
	}
	r, _ = admin(t, inst, "", "chef", "devices", "approve", "dev_nonexistent")
	if r.code != 1 || !strings.Contains(r.stderr, "404") {
		t.Errorf("approve unknown device: %+v", r)
	}

	// jackpot API signature rotation
	r, jc := admin(t, inst, "", "clients", "create", "--name", "jp", "--grant-types", "client_credentials,urn:ietf:params:oauth:grant-type:jwt-bearer", "--apikey", "--assertion-secret", "-o", "json")
	mustOK(t, r, "jackpot client create")
	if !strings.HasPrefix(str(jc["assertion_secret"]), "pg_as_") {
		t.Fatalf("jackpot client: %v", jc)
	}
	r, rot := admin(t, inst, "", "jackpot", "clients", "rotate-signature", str(jc["id"]), "-o", "json")
	mustOK(t, r, "jackpot clients rotate-signature")
	if s := str(rot["assertion_secret"]); !strings.HasPrefix(s, "pg_as_") || s == jc["assertion_secret"] {
		t.Errorf("rotate-signature: %v", rot)
	}

	// orderpay outlets: a generated AuthSecret is shown once; list, get, disable, enable, secret.
	r, op := admin(t, inst, "", "orderpay", "outlets", "create", "--provider-outlet-id", "o1", "--pos-remote-id", "p1", "--provider-id", "1", "--provider-name", "x", "-o", "json")
	mustOK(t, r, "orderpay outlets create")
	if !strings.HasPrefix(str(op["auth_secret"]), "pg_os_") || str(op["provider_outlet_id"]) != "o1" {
		t.Fatalf("orderpay outlet: %v", op)
	}
	r, _ = admin(t, inst, "", "orderpay", "outlets", "list")
	mustOK(t, r, "orderpay outlets list")
	if !strings.Contains(r.stdout, "o1") || strings.Contains(r.stdout, str(op["auth_secret"])) {
		t.Errorf("orderpay outlets list: %q", r.stdout)
	}
	if got = disableEnable(t, inst, str(op["id"]), "orderpay outlets", nil); got["online"] != false {
		t.Errorf("enable: %v", got)
	}
	r, got = admin(t, inst, "", "orderpay", "outlets", "secret", str(op["id"]), "-o", "json")
	mustOK(t, r, "orderpay outlets secret")
	if s := str(got["auth_secret"]); !strings.HasPrefix(s, "pg_os_") || s == op["auth_secret"] {
		t.Errorf("secret: %v", got)
	}
	r, _ = admin(t, inst, "", "orderpay", "outlets", "create", "--provider-outlet-id", "o1", "--pos-remote-id", "p2", "--provider-id", "1", "--provider-name", "y")
	if r.code == 0 || !strings.Contains(r.stderr, "409") && !strings.Contains(r.stderr, "already exists") {
		t.Errorf("duplicate outlet: %+v", r)
	}

	// audit: every action above is there, as admin, with an outcome; no secret in it.
	r, _ = admin(t, inst, "", "audit", "list", "--limit", "200")
	mustOK(t, r, "audit list")
	for _, want := range []string{"client.create", "client.disable", "token.revoke", "key.rotate", "ok", "admin"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("audit lacks %q:\n%s", want, r.stdout)
		}
	}
	for _, s := range []string{secret, clientID, tok, "correct horse", str(v["vendor_key"]), str(jc["assertion_secret"]), inst.AdminToken} {
		if strings.Contains(r.stdout, s) {
			t.Errorf("audit holds a secret %q", s[:min(len(s), 12)])
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"admin", "clients", "explode"}, 2, `unknown command "clients explode"`},
		{[]string{"admin", "clients", "create", "--grant-types", "password"}, 2, "--name is required"},
		{[]string{"admin", "clients", "get"}, 2, "want 1 argument"},
		{[]string{"admin", "keys", "list", "-o", "yaml"}, 2, `-o "yaml" is not allowed`},
		{[]string{"admin", "audit", "list", "--limit", "x"}, 2, "not a whole number"},
		{[]string{"serve", "extra"}, 2, "unexpected argument"},
	} {
		r := posgate(t, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr+r.stdout, tc.want) {
			t.Errorf("%v: exit %d, %q", tc.args, r.code, r.stderr)
		}
	}
	if r := posgate(t, "", "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "posgate ") {
		t.Errorf("version: %+v", r)
	}
	if r := posgate(t, "", "admin", "help"); r.code != 0 || !strings.Contains(r.stdout, "jackpot clients\n  rotate-signature ID") {
		t.Errorf("admin help: %+v", r)
	}
}

// With no --token and no --insecure, the CLI reads the admin token from the data dir and pins the
// self-signed certificate generated there.
func TestAdminOverHTTPSWithPinnedCertificate(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Server.DataDir = dir
	cfg.Server.Addr = "127.0.0.1:0"
	cfg.Resolve()
	srv, err := server.New(context.Background(), server.Options{Config: cfg, Log: server.NewLogger(io.Discard, "info"), Out: io.Discard,
		Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	r := posgate(t, "", "admin", "keys", "list", "--url", srv.HTTPSURL(), "--data-dir", dir)
	mustOK(t, r, "keys list over pinned HTTPS")
	if !strings.Contains(r.stdout, "active") {
		t.Errorf("keys list: %s", r.stdout)
	}
	// A different pinned certificate is refused.
	other := t.TempDir()
	data, _ := os.ReadFile(filepath.Join(dir, server.AdminTokenFile))
	os.WriteFile(filepath.Join(other, server.AdminTokenFile), data, 0o600)
	cfg2 := config.Default()
	cfg2.Server.DataDir = other
	cfg2.Server.Addr = "127.0.0.1:0"
	cfg2.Resolve()
	srv2, err := server.New(context.Background(), server.Options{Config: cfg2, Log: server.NewLogger(io.Discard, "info"), Out: io.Discard,
		Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	srv2.Close() // only its certificate is needed
	r = posgate(t, "", "admin", "keys", "list", "--url", srv.HTTPSURL(), "--data-dir", other)
	if r.code != 1 || !strings.Contains(r.stderr, "not the one pinned") {
		t.Errorf("wrong pin accepted: %+v", r)
	}
	// Without a token anywhere: a clear error.
	r = posgate(t, "", "admin", "keys", "list", "--url", srv.HTTPSURL(), "--data-dir", t.TempDir(), "--insecure")
	if r.code != 1 || !strings.Contains(r.stderr, "no admin token") {
		t.Errorf("no token: %+v", r)
	}
	// A wrong token: 401 reported.
	r = posgate(t, "", "admin", "keys", "list", "--url", srv.HTTPSURL(), "--token", "pg_at_wrongwrongwrongwrongwrongwrongwrong", "--insecure")
	if r.code != 1 || !strings.Contains(r.stderr, "401") {
		t.Errorf("wrong token: %+v", r)
	}
}

func clientToken(t *testing.T, inst *servertest.Instance, id, secret string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", inst.URL+"/oauth/token", strings.NewReader("grant_type=client_credentials&scope=a"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	tok, _ := body["access_token"].(string)
	if tok == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	return tok
}

func introspect(t *testing.T, inst *servertest.Instance, id, secret, tok string) bool {
	t.Helper()
	req, _ := http.NewRequest("POST", inst.URL+"/oauth/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return body["active"] == true
}

func activeKID(m map[string]any) string {
	keys, _ := m["keys"].([]any)
	for _, k := range keys {
		if km, ok := k.(map[string]any); ok && km["state"] == "active" {
			return str(km["kid"])
		}
	}
	return ""
}

func str(v any) string { s, _ := v.(string); return s }

func TestGatewaySigningKey(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	r := posgate(t, "", "admin", "gateway", "signing-key", "--data-dir", inst.DataDir)
	mustOK(t, r, "gateway signing-key")
	if len(strings.TrimSpace(r.stdout)) < 43 {
		t.Errorf("key %q", r.stdout)
	}
	again := posgate(t, "", "admin", "gateway", "signing-key", "--data-dir", inst.DataDir)
	if again.stdout != r.stdout {
		t.Error("the derived key is not stable")
	}
	empty := t.TempDir()
	r = posgate(t, "", "admin", "gateway", "signing-key", "--data-dir", empty)
	if r.code != 1 || !strings.Contains(r.stderr, "no master key") {
		t.Errorf("empty data dir: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(empty, "master.key")); err == nil {
		t.Error("a master key was created")
	}
}
