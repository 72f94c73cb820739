package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/server"
	"github.com/posgate/posgate/internal/server/servertest"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/store/postgres"
)

// issuerConfig is a plain-HTTP configuration on loopback with the given store and issuer.
func issuerConfig(t *testing.T, dataDir, dsn, issuer, previous string) *config.Config {
	cfg := config.Default()
	cfg.Server.DataDir = dataDir
	cfg.Server.Addr = ""
	cfg.Server.HTTPAddr = "127.0.0.1:0"
	cfg.Server.Issuer, cfg.Server.PreviousIssuer = issuer, previous
	if dsn != "" {
		cfg.Store.Driver, cfg.Store.DSN = "postgres", dsn
	}
	cfg.Resolve()
	return cfg
}

// newServer builds (and closes at once) a server on cfg, returning New's error.
func newServer(t *testing.T, cfg *config.Config) error {
	t.Helper()
	return newServerWithToken(t, cfg, secret.Generate(secret.PrefixAdminToken))
}

// newServerWithToken is newServer with POSGATE_ADMIN_TOKEN set to tok.
func newServerWithToken(t *testing.T, cfg *config.Config, tok string) error {
	t.Helper()
	srv, err := server.New(context.Background(), server.Options{Config: cfg, Log: server.NewLogger(io.Discard, "info"), Out: io.Discard,
		Getenv: func(k string) string {
			if k == "POSGATE_ADMIN_TOKEN" {
				return tok
			}
			return ""
		}})
	if err == nil {
		srv.Close()
	}
	return err
}

// mintOn gets a client_credentials token from inst for a client created there.
func mintOn(t *testing.T, inst *servertest.Instance) (tok, id, sec string) {
	t.Helper()
	status, cl := inst.Admin(t, "POST", "/clients", map[string]any{"name": "iss", "grant_types": []string{"client_credentials"}, "scopes": []string{"s"}})
	if status != 201 {
		t.Fatalf("create client: %d %v", status, cl)
	}
	id, sec = cl["client_id"].(string), cl["client_secret"].(string)
	cc := clientcredentials.Config{ClientID: id, ClientSecret: sec, TokenURL: inst.URL + "/oauth/token", Scopes: []string{"s"}}
	t2, err := cc.Token(context.WithValue(context.Background(), oauth2HTTPClient, inst.Client))
	if err != nil {
		t.Fatal(err)
	}
	return t2.AccessToken, id, sec
}

// introspect asks inst about tok (RFC 7662) as client id.
func introspect(t *testing.T, inst *servertest.Instance, tok, id, sec string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", inst.URL+"/oauth/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, sec)
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPostgresNeedsAnIssuer: on PostgreSQL no replica derives its issuer from its own listen
// address (each would refuse the others' tokens); the refusal names server.issuer.
func TestPostgresNeedsAnIssuer(t *testing.T) {
	dsn := servertest.Start(t, servertest.Options{Driver: "postgres"}).Config.Store.DSN
	cfg := issuerConfig(t, t.TempDir(), dsn, "", "")
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "server.issuer: must be set with store.driver postgres") {
		t.Fatalf("validate: %v", err)
	}
	err := newServer(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "server.issuer: must be set with store.driver postgres") {
		t.Fatalf("server.New: %v", err)
	}
}

// TestReplicasShareTheIssuer: two replicas on one PostgreSQL, configured alike, mint and accept
// one issuer; a token minted by one verifies on the other and both publish the same RFC 8414
// issuer.
func TestReplicasShareTheIssuer(t *testing.T) {
	const iss = "https://auth.example.test"
	sameIssuer := func(c *config.Config) { c.Server.Issuer = iss }
	a := servertest.Start(t, servertest.Options{Driver: "postgres", Configure: sameIssuer})
	b := servertest.Start(t, servertest.Options{DSN: a.Config.Store.DSN, DataDir: a.DataDir, Configure: sameIssuer})
	tok, id, sec := mintOn(t, a)
	if in := introspect(t, b, tok, id, sec); in["active"] != true || in["iss"] != iss {
		t.Fatalf("b introspects a's token: %v", in)
	}
	if _, err := b.Svc.Verifier.Verify(context.Background(), tok, tokenOpts()); err != nil {
		t.Fatalf("b refuses a's token: %v", err)
	}
	for _, inst := range []*servertest.Instance{a, b} {
		_, _, body := get(t, inst.Client, inst.URL+"/.well-known/oauth-authorization-server")
		var md map[string]any
		_ = json.Unmarshal([]byte(body), &md)
		if md["issuer"] != iss || md["token_endpoint"] != iss+"/oauth/token" {
			t.Fatalf("metadata of %s: %s", inst.URL, body)
		}
	}
}

// TestReplicaWithAnotherIssuerRefused: the first replica records the deployment's issuer; a
// replica configured with another one does not start, and says what to set. previous_issuer
// moves the deployment on purpose, once; the old configuration is refused from then on.
func TestReplicaWithAnotherIssuerRefused(t *testing.T) {
	const x, y = "https://x.example.test", "https://y.example.test"
	a := servertest.Start(t, servertest.Options{Driver: "postgres", Configure: func(c *config.Config) { c.Server.Issuer = x }})
	dsn, dir := a.Config.Store.DSN, a.DataDir
	tok, id, sec := mintOn(t, a)

	err := newServer(t, issuerConfig(t, dir, dsn, y, ""))
	for _, want := range []string{`server.issuer: "` + y + `" is not this deployment's issuer`, `the store records "` + x + `"`,
		"POSGATE_SERVER_ISSUER", `server.previous_issuer (POSGATE_SERVER_PREVIOUS_ISSUER) to "` + x + `"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v\nlacks %q", err, want)
		}
	}
	// A previous_issuer that is not the recorded one moves nothing.
	err = newServer(t, issuerConfig(t, dir, dsn, y, "https://z.example.test"))
	if err == nil || !strings.Contains(err.Error(), `server.previous_issuer is "https://z.example.test", which is not the recorded issuer`) {
		t.Fatalf("wrong previous: %v", err)
	}
	// Nothing changed: a's tokens verify, and a replica configured like a starts.
	if in := introspect(t, a, tok, id, sec); in["active"] != true {
		t.Fatalf("a after refused starts: %v", in)
	}
	if err := newServer(t, issuerConfig(t, dir, dsn, x, "")); err != nil {
		t.Fatalf("a replica like a: %v", err)
	}

	// The deliberate move, then the same configuration again (a rolling restart): both start.
	c := servertest.Start(t, servertest.Options{DSN: dsn, DataDir: dir, Configure: func(c *config.Config) { c.Server.Issuer, c.Server.PreviousIssuer = y, x }})
	if err := newServer(t, issuerConfig(t, dir, dsn, y, x)); err != nil {
		t.Fatalf("second replica with the same move: %v", err)
	}
	ev, _ := c.Svc.Store.ListAudit(context.Background(), 50)
	moved := 0
	for _, e := range ev {
		if e.Action == "issuer.move" && e.Target == y {
			moved++
		}
	}
	if moved != 1 {
		t.Errorf("issuer.move audited %d times, want once: %+v", moved, ev)
	}
	// From now on the old issuer is refused: by a replica configured with it, and in tokens.
	err = newServer(t, issuerConfig(t, dir, dsn, x, ""))
	if err == nil || !strings.Contains(err.Error(), `the store records "`+y+`"`) {
		t.Fatalf("old issuer after the move: %v", err)
	}
	if in := introspect(t, c, tok, id, sec); in["active"] != false {
		t.Fatalf("a token of the old issuer on c: %v", in)
	}
	if v, err := c.Svc.Store.InitSetting(context.Background(), store.SettingIssuer, x, c.Svc.Clock.Now()); err != nil || v != y {
		t.Fatalf("recorded issuer %q, %v", v, err)
	}
}

// TestFailedStartRecordsNoIssuer: a start that fails after the issuer was checked (here, a
// POSGATE_ADMIN_TOKEN that is too short, found after the store is open) records nothing, so the
// operator who fixes a typo in server.issuer along with the rest is not refused for it; the same
// for a deliberate move to a mistyped issuer.
func TestFailedStartRecordsNoIssuer(t *testing.T) {
	const typo, good, moved = "https://atuh.example.test", "https://auth.example.test", "https://auth2.example.test"
	dsn, dir := pgtest.NewDatabase(t), t.TempDir()
	if err := newServerWithToken(t, issuerConfig(t, dir, dsn, typo, ""), "short"); err == nil || !strings.Contains(err.Error(), "POSGATE_ADMIN_TOKEN") {
		t.Fatalf("first start with a bad admin token: %v", err)
	}
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if v, err := st.Setting(context.Background(), store.SettingIssuer); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed first start recorded the issuer %q (%v)", v, err)
	}
	if err := newServer(t, issuerConfig(t, dir, dsn, good, "")); err != nil {
		t.Fatalf("the corrected start: %v", err)
	}
	// A move to a mistyped issuer that fails to start moves nothing either.
	if err := newServerWithToken(t, issuerConfig(t, dir, dsn, typo, good), "short"); err == nil {
		t.Fatal("a move with a bad admin token started")
	}
	if v, err := st.Setting(context.Background(), store.SettingIssuer); err != nil || v != good {
		t.Fatalf("after a failed move the store records %q (%v), want %q", v, err, good)
	}
	if err := newServer(t, issuerConfig(t, dir, dsn, moved, good)); err != nil {
		t.Fatalf("the corrected move: %v", err)
	}
	if v, err := st.Setting(context.Background(), store.SettingIssuer); err != nil || v != moved {
		t.Fatalf("after the move the store records %q (%v), want %q", v, err, moved)
	}
}

// TestSQLiteDerivesItsIssuer: one process owns a SQLite store, so the issuer stays derived from
// the listener (zero setup) and a restart with another issuer is a configuration change, not a
// disagreement between replicas.
func TestSQLiteDerivesItsIssuer(t *testing.T) {
	a := servertest.Start(t, servertest.Options{})
	if a.Server.Issuer() != a.URL {
		t.Fatalf("derived issuer %q, url %q", a.Server.Issuer(), a.URL)
	}
	dir := a.DataDir
	a.Stop()
	b := servertest.Start(t, servertest.Options{DataDir: dir, Configure: func(c *config.Config) { c.Server.Issuer = "https://auth.example.test" }})
	tok, id, sec := mintOn(t, b)
	if in := introspect(t, b, tok, id, sec); in["active"] != true || in["iss"] != "https://auth.example.test" {
		t.Fatalf("introspection %v", in)
	}
}
