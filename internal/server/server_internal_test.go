package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/store/pgtest"
)

// testModule mounts a slow handler and records Shutdown calls.
type testModule struct {
	started  chan struct{}
	release  chan struct{}
	shutdown atomic.Bool
}

func (m *testModule) Mount(public, _ app.Mux) error {
	public.Handle("GET /test/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(m.started)
		<-m.release
		w.Write([]byte("done"))
	}))
	return nil
}

func (m *testModule) Shutdown(context.Context) error { m.shutdown.Store(true); return nil }

// withModule adds m to the modules of a server built with o.
func withModule(o Options, m app.Module) Options {
	o.extra = []moduleConstructor{{"test", func(*app.Services, []app.Module) (app.Module, error) { return m, nil }}}
	return o
}

func testConfig(t *testing.T, dataDir string) *config.Config {
	cfg := config.Default()
	cfg.Server.DataDir = dataDir
	cfg.Server.Addr = ""
	cfg.Server.HTTPAddr = "127.0.0.1:0"
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestGracefulShutdownDrainsInFlightRequests(t *testing.T) {
	m := &testModule{started: make(chan struct{}), release: make(chan struct{})}
	cfg := testConfig(t, t.TempDir())
	var out bytes.Buffer
	srv, err := New(context.Background(), withModule(Options{Config: cfg, Log: NewLogger(io.Discard, "info"), Out: &out,
		Getenv: func(string) string { return "" }}, m))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(srv.HTTPURL() + "/test/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{status: resp.StatusCode, body: string(b)}
	}()
	<-m.started
	cancel() // SIGINT/SIGTERM in `posgate serve`

	// New connections are refused once shutdown has begun…
	addr := strings.TrimPrefix(srv.HTTPURL(), "http://")
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) while a request was in flight", err)
	default:
	}
	// …but the request in flight completes.
	close(m.release)
	r := <-res
	if r.err != nil || r.status != 200 || r.body != "done" {
		t.Fatalf("in-flight request: %+v", r)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if !m.shutdown.Load() {
		t.Error("module Shutdown hook not called")
	}
}

func TestHTTPSWithKeptSelfSignedCertificate(t *testing.T) {
	dir := t.TempDir()
	fingerprints := map[string]bool{}
	for i := 0; i < 2; i++ {
		cfg := testConfig(t, dir)
		cfg.Server.HTTPAddr = ""
		cfg.Server.Addr = "127.0.0.1:0"
		var out bytes.Buffer
		srv, err := New(context.Background(), Options{Config: cfg, Log: NewLogger(io.Discard, "info"), Out: &out,
			Getenv: func(string) string { return "" }})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { srv.Serve(ctx); close(done) }()

		certPEM, err := os.ReadFile(filepath.Join(dir, CertFile))
		if err != nil {
			t.Fatal(err)
		}
		if info, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("key file mode: %v %v", err, info.Mode())
		}
		fp, _ := CertFingerprintFile(filepath.Join(dir, CertFile))
		fingerprints[fp] = true
		if !strings.Contains(out.String(), fp) {
			t.Errorf("fingerprint %s not printed:\n%s", fp, out.String())
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(certPEM)
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.HTTPSURL(), "https://"))
		for _, host := range []string{"127.0.0.1", "localhost"} {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			resp, err := c.Get("https://" + net.JoinHostPort(host, port) + "/healthz")
			if err != nil {
				t.Fatalf("%s: %v", host, err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %d", host, resp.StatusCode)
			}
		}
		// Admin token: generated once into the data dir (0600); the notice names the file, never the token.
		tokPath := filepath.Join(dir, AdminTokenFile)
		info, err := os.Stat(tokPath)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("admin token file: %v", err)
		}
		tok, _ := os.ReadFile(tokPath)
		if !strings.HasPrefix(string(tok), "pg_at_") || strings.Contains(out.String(), strings.TrimSpace(string(tok))) {
			t.Errorf("admin token %q / output %q", tok, out.String())
		}
		if i == 0 && !strings.Contains(out.String(), tokPath) {
			t.Errorf("first start does not say where the admin token is:\n%s", out.String())
		}
		cancel()
		<-done
	}
	if len(fingerprints) != 1 {
		t.Errorf("certificate changed across restarts: %v", fingerprints)
	}
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v", info.Mode())
	}
}

func TestAdminTokenFromEnvironment(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	_, err := New(context.Background(), Options{Config: cfg, Log: NewLogger(io.Discard, "info"), Out: io.Discard,
		Getenv: func(k string) string {
			if k == "POSGATE_ADMIN_TOKEN" {
				return "short"
			}
			return ""
		}})
	if err == nil || !strings.Contains(err.Error(), "POSGATE_ADMIN_TOKEN: too short") || strings.Contains(err.Error(), "short\"") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Server.DataDir, AdminTokenFile)); err == nil {
		t.Error("a token file was written although the environment names the token")
	}
}

func TestPlainHTTPWarnsUnlessLoopback(t *testing.T) {
	cfg := testConfig(t, t.TempDir())
	cfg.Server.HTTPAddr = "0.0.0.0:0"
	var out, logs bytes.Buffer
	srv, err := New(context.Background(), Options{Config: cfg, Log: NewLogger(&logs, "info"), Out: &out, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if !strings.Contains(logs.String(), "PLAIN HTTP ON A NON-LOOPBACK ADDRESS") || !strings.Contains(out.String(), "WARNING") {
		t.Errorf("no warning:\n%s\n%s", logs.String(), out.String())
	}
	if srv.Issuer() != srv.HTTPURL() || !strings.HasPrefix(srv.Issuer(), "http://localhost:") {
		t.Errorf("issuer %q, http %q", srv.Issuer(), srv.HTTPURL())
	}
}

// contractModule implements every optional capability of app.Module.
type contractModule struct {
	startCtx chan context.Context
	ran      chan struct{}
	closed   atomic.Bool
}

func (*contractModule) Mount(_, _ app.Mux) error { return nil }

func (m *contractModule) Start(ctx context.Context) error { m.startCtx <- ctx; return nil }

func (m *contractModule) Maintenance() []app.Task {
	return []app.Task{{Name: "test", Every: time.Hour, Run: func(context.Context) error {
		select {
		case m.ran <- struct{}{}:
		default:
		}
		return nil
	}}}
}

func (*contractModule) ReservedAudiences() []string { return []string{"test-aud"} }

func (*contractModule) MaxTokenLifetime() time.Duration { return 400 * 24 * time.Hour }

func (m *contractModule) Close() error { m.closed.Store(true); return nil }

// The server finds a module's capabilities by their app interface names: Start runs once the
// server is built (its context ends when the server closes), a maintenance task runs when serving
// starts, the reserved audiences and the longest token lifetime reach the services and the
// keyring, and Close runs last.
func TestModuleContract(t *testing.T) {
	m := &contractModule{startCtx: make(chan context.Context, 1), ran: make(chan struct{}, 1)}
	cfg := testConfig(t, t.TempDir())
	srv, err := New(context.Background(), withModule(Options{Config: cfg, Log: NewLogger(io.Discard, "info"), Out: io.Discard,
		Getenv: func(string) string { return "" }}, m))
	if err != nil {
		t.Fatal(err)
	}
	var startCtx context.Context
	select {
	case startCtx = <-m.startCtx:
	default:
		t.Fatal("Start was not called by New")
	}
	if !srv.Services().Reserved.Has("test-aud") || !srv.Services().Reserved.Has("jackpot") || !srv.Services().Reserved.Has("chef") {
		t.Fatalf("reserved audiences %v", srv.Services().Reserved)
	}
	if got := srv.Keyring().MaxTokenLifetime(); got != 400*24*time.Hour {
		t.Fatalf("keyring max token lifetime %v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	select {
	case <-m.ran:
	case <-time.After(30 * time.Second):
		t.Fatal("the maintenance task did not run when serving started")
	}
	if startCtx.Err() != nil {
		t.Fatal("the start context ended while serving")
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if startCtx.Err() == nil || !m.closed.Load() {
		t.Fatalf("after the server stopped: start context %v, closed %v", startCtx.Err(), m.closed.Load())
	}
}

// A DSN naming a database that does not exist stops the start with a message that says to create
// it (posgate creates tables, not databases).
func TestPostgresMissingDatabaseSaysCreateIt(t *testing.T) {
	dsn := pgtest.NewDatabase(t) // skips (or fails under CI=true) without PostgreSQL
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path += "_missing"
	cfg := testConfig(t, t.TempDir())
	cfg.Store.Driver, cfg.Store.DSN, cfg.Server.Issuer = "postgres", u.String(), "https://posgate.test"
	srv, err := New(t.Context(), Options{Config: cfg, Log: NewLogger(io.Discard, "info"), Out: io.Discard,
		Getenv: func(string) string { return "" }})
	if err == nil {
		srv.Close()
		t.Fatal("started on a database that does not exist")
	}
	for _, want := range []string{"does not exist", "create it first (createdb"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
