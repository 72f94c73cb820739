// Package servertest starts a complete posgate for end-to-end tests: every module, a real store
// (SQLite in a temporary directory, or a private PostgreSQL database), a real HTTP server on
// 127.0.0.1 with a random port (plain HTTP). It stops at the end of the test.
//
//	inst := servertest.Start(t, servertest.Options{})
//	status, body := inst.Admin(t, "POST", "/clients", map[string]any{"name": "pos", "grant_types": []string{"client_credentials"}})
//
// The instance's JSON logs (debug level) are kept in memory: Logs returns them, and they are
// printed when the test fails.
package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/server"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/testutil/syncbuf"
)

// DefaultPostgresIssuer is server.issuer of a PostgreSQL instance whose Configure sets none.
const DefaultPostgresIssuer = "http://posgate.replicas.test"

// Options select the instance.
type Options struct {
	// Driver is "sqlite" (default) or "postgres" (a private database from pgtest, skipped locally
	// when PostgreSQL is unreachable, failing under CI=true).
	Driver string
	// DSN shares a PostgreSQL database between instances (two replicas); implies Driver postgres.
	// Replicas must share the master key too: pass the first instance's DataDir (or use ReplicaOf).
	DSN string
	// ReplicaOf makes this instance a replica of another: same PostgreSQL database (DSN), same
	// data dir (master key), same issuer URL (server.issuer), its own listener.
	ReplicaOf *Instance
	// DataDir shares a data dir (master key, SQLite file) between instances started one after the
	// other; default: a fresh temporary directory.
	DataDir string
	// Configure adjusts the configuration before the server is built (lifetimes, routes, …).
	Configure func(*config.Config)
	// Clock defaults to the real clock.
	Clock clock.Clock
	// LogOutput also receives the JSON logs (in addition to the in-memory copy).
	LogOutput io.Writer
	// AdminToken fixes the admin token; default: a generated one.
	AdminToken string
	// Demo runs every module's demo seeding (serve --demo); the curl lines are in Output().
	Demo bool
}

// Instance is a running posgate.
type Instance struct {
	URL        string // http://127.0.0.1:port
	AdminToken string
	Svc        *app.Services
	Client     *http.Client
	Server     *server.Server
	Config     *config.Config
	DataDir    string

	logs   *syncbuf.Buffer
	stop   context.CancelFunc
	done   chan struct{}
	once   sync.Once
	output *syncbuf.Buffer
}

// Start builds and starts a posgate; it is stopped (gracefully) when the test ends.
func Start(t testing.TB, o Options) *Instance {
	t.Helper()
	if o.ReplicaOf != nil {
		if o.ReplicaOf.Config.Store.Driver != "postgres" {
			t.Fatal("servertest: ReplicaOf needs a postgres instance (SQLite is single-process)")
		}
		o.DSN, o.DataDir = o.ReplicaOf.Config.Store.DSN, o.ReplicaOf.DataDir
	}
	cfg := config.Default()
	cfg.Server.DataDir = o.DataDir
	if cfg.Server.DataDir == "" {
		cfg.Server.DataDir = t.TempDir()
	}
	cfg.Server.Addr = ""
	cfg.Server.HTTPAddr = "127.0.0.1:0"
	cfg.Server.ShutdownTimeout = 10
	cfg.Server.LogLevel = "debug"
	// The race detector and a loaded CI machine make argon2id and fsync many times slower than
	// in production; a test about something else must not fail on the production store
	// deadline. Tests of the deadline itself set their own in Configure.
	cfg.Store.Timeout = 60
	if o.DSN != "" {
		o.Driver = "postgres"
	}
	if o.Driver == "postgres" {
		cfg.Store.Driver = "postgres"
		cfg.Store.DSN = o.DSN
		if cfg.Store.DSN == "" {
			cfg.Store.DSN = pgtest.NewDatabase(t)
		}
		// A PostgreSQL deployment names its issuer (config validation requires it); every
		// instance on one database gets the same one unless Configure sets another.
		cfg.Server.Issuer = DefaultPostgresIssuer
	}
	if o.ReplicaOf != nil {
		cfg.Server.Issuer = o.ReplicaOf.Config.Server.Issuer
	}
	if o.Configure != nil {
		o.Configure(cfg)
	}
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("servertest: %v", err)
	}
	tok := o.AdminToken
	if tok == "" {
		tok = secret.Generate(secret.PrefixAdminToken)
	}
	inst := &Instance{AdminToken: tok, Config: cfg, DataDir: cfg.Server.DataDir, logs: &syncbuf.Buffer{}, output: &syncbuf.Buffer{}, done: make(chan struct{})}
	var logw io.Writer = inst.logs
	if o.LogOutput != nil {
		logw = io.MultiWriter(inst.logs, o.LogOutput)
	}
	srv, err := server.New(context.Background(), server.Options{
		Config: cfg,
		Log:    server.NewLogger(logw, cfg.Server.LogLevel),
		Clock:  o.Clock,
		Out:    inst.output,
		Demo:   o.Demo,
		Getenv: func(k string) string {
			if k == "POSGATE_ADMIN_TOKEN" {
				return tok
			}
			return os.Getenv(k)
		},
	})
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	inst.Server = srv
	inst.Svc = srv.Services()
	inst.URL = srv.HTTPURL()
	inst.Client = &http.Client{Timeout: 120 * time.Second, Transport: &http.Transport{}}
	ctx, cancel := context.WithCancel(context.Background())
	inst.stop = cancel
	go func() {
		defer close(inst.done)
		if err := srv.Serve(ctx); err != nil {
			t.Errorf("servertest: serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		inst.Stop()
		if t.Failed() {
			t.Logf("posgate logs (last lines):\n%s", tail(inst.Logs(), 60))
		}
	})
	return inst
}

// Stop shuts the instance down gracefully and waits (idempotent).
func (i *Instance) Stop() {
	i.once.Do(func() {
		i.stop()
		<-i.done
		if tr, ok := i.Client.Transport.(*http.Transport); ok {
			tr.CloseIdleConnections()
		}
	})
}

// Logs returns everything the instance logged so far (JSON lines).
func (i *Instance) Logs() string { return i.logs.String() }

// Output returns what the instance printed for humans (demo lines, notices).
func (i *Instance) Output() string { return i.output.String() }

// Admin calls the admin API: path is relative to /admin/api/v1 ("/clients"); body (may be nil) is
// sent as JSON. It returns the status and the decoded JSON object (nil when the body is not one).
func (i *Instance) Admin(t testing.TB, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("servertest: admin body: %v", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, i.URL+server.AdminPrefix+path, rd)
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+i.AdminToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := i.Client.Do(req)
	if err != nil {
		t.Fatalf("servertest: admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ClientToken creates a client_credentials client named name for audience with scopes (none: the
// token request names no scope) and returns an access token it obtained from /oauth/token, and the
// client's internal id.
func (i *Instance) ClientToken(t testing.TB, name, audience string, scopes ...string) (token, clientID string) {
	t.Helper()
	st, resp := i.Admin(t, "POST", "/clients", map[string]any{"name": name,
		"grant_types": []string{"client_credentials"}, "scopes": scopes, "audiences": []string{audience}})
	if st != http.StatusCreated {
		t.Fatalf("servertest: create client: %d %v", st, resp)
	}
	cid, _ := resp["client_id"].(string)
	sec, _ := resp["client_secret"].(string)
	clientID, _ = resp["id"].(string)
	form := url.Values{"grant_type": {"client_credentials"}, "audience": {audience}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	req, err := http.NewRequest("POST", i.URL+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("servertest: %v", err)
	}
	req.SetBasicAuth(url.QueryEscape(cid), url.QueryEscape(sec))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := i.Client.Do(req)
	if err != nil {
		t.Fatalf("servertest: token: %v", err)
	}
	defer res.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		t.Fatalf("servertest: token: %d %s", res.StatusCode, body)
	}
	return tr.AccessToken, clientID
}
