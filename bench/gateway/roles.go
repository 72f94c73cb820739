package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/server"
	"github.com/posgate/posgate/internal/store/sqlite"
	"github.com/posgate/posgate/internal/token"
)

// answer is what the upstream returns for every benchmark request: a small JSON document, like a
// POS API's order lookup.
var answer = []byte(`{"id":"42","status":"open","lines":[{"sku":"A-1","qty":2,"price":1250},{"sku":"B-7","qty":1,"price":300}],"total":2800}`)

// runUpstream serves the benchmark's upstream. /bench/verify checks the identity headers (the
// smoke test); every other path answers at once without checking anything, so the upstream costs
// the same in both cases.
func runUpstream(key string) error {
	iv, err := identity.NewVerifierBase64(key)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/bench/verify", func(w http.ResponseWriter, r *http.Request) {
		p, err := iv.Verify(r)
		w.Header().Set("Content-Type", "application/json")
		if err != nil || r.Header.Get("Authorization") != "" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, `{"verified":false,"error":%q}`, fmt.Sprint(err))
			return
		}
		fmt.Fprintf(w, `{"verified":true,"means":%q}`, p.Means)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	})
	return serveLoopback(mux)
}

// runBare is the baseline: httputil.ReverseProxy on posgate's own upstream transport
// (gateway.NewTransport: keep-alive, 256 idle connections per host, the response-header timeout)
// with the same pooled 32 KiB copy buffers, served by an http.Server with posgate's default
// timeouts and header limit (productionServer) — and nothing else, so the comparison isolates what
// the gateway adds, not how either is tuned. With -bare-plain it is the proxy as a tutorial writes
// it instead: Go's default transport settings but for the idle pool, and no server timeouts.
func runBare(upstream string, plain bool) error {
	target, err := url.Parse(upstream)
	if err != nil {
		return err
	}
	transport := gateway.NewTransport(gateway.DefaultUpstreamTimeout)
	if plain {
		d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		transport = &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: true, MaxIdleConns: 1024,
			MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		// Quiet: a run ends by cancelling in-flight requests.
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) },
		BufferPool:   bufferPool{},
		Transport:    transport,
	}
	srv := productionServer(proxy)
	if plain {
		srv = &http.Server{Handler: proxy, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	}
	return serveLoopbackWith(srv, "")
}

// productionServer is an http.Server with the timeouts and header limit posgate's own server has
// by default (config.Default: read header 5 s, read 30 s, write 90 s, idle 120 s, 16 KiB headers).
// The read and write timeouts cost two deadline updates per request; giving them to the baseline
// too keeps them out of "what the gateway adds".
func productionServer(h http.Handler) *http.Server {
	c := config.Default().Server
	return &http.Server{Handler: h, ReadHeaderTimeout: config.Seconds(c.ReadHeaderTimeout), ReadTimeout: config.Seconds(c.ReadTimeout),
		WriteTimeout: config.Seconds(c.WriteTimeout), IdleTimeout: config.Seconds(c.IdleTimeout), MaxHeaderBytes: c.MaxHeaderBytes}
}

func serveLoopback(h http.Handler) error {
	return serveLoopbackWith(&http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}, "")
}

// serveLoopbackWith serves srv on 127.0.0.1 and announces "LISTEN <url> [extra]".
func serveLoopbackWith(srv *http.Server, extra string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("LISTEN http://%s %s\n", ln.Addr(), extra)
	untilStdinCloses()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// runPosgate runs a complete posgate (server.New: every module, SQLite in dataDir) with one
// gateway route that accepts any posgate access token with scope "bench".
func runPosgate(upstream, key, dataDir, logLevel string) error {
	if dataDir == "" {
		return errors.New("-data-dir is required")
	}
	cfg := config.Default()
	cfg.Server.DataDir = dataDir
	cfg.Server.Addr = ""
	cfg.Server.HTTPAddr = "127.0.0.1:0"
	cfg.Server.LogLevel = logLevel
	cfg.Upstreams = map[string]string{"pos": upstream}
	cfg.Gateway.SigningSecret = key
	cfg.Routes = []config.Route{{Path: "/bench/", Methods: []string{"GET", "POST"}, Auth: []string{"posgate"},
		Scopes: []string{"bench"}, Upstream: "pos"}}
	cfg.Resolve()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(dataDir, "posgate.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	server.TuneRuntime(cfg, os.Getenv) // what `posgate serve` does
	srv, err := server.New(ctx, server.Options{Config: cfg, Log: server.NewLogger(logFile, logLevel), Out: io.Discard})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	fmt.Printf("LISTEN %s\n", srv.HTTPURL())
	untilStdinCloses()
	cancel()
	select {
	case err := <-errc:
		return err
	case <-time.After(15 * time.Second):
		slog.Warn("posgate did not stop in time")
		return nil
	}
}

type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *(buffers.Get().(*[]byte)) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// runModule serves the gateway module alone: real SQLite store, keyring, issuer and verifier (with
// its cache), the same route as the posgate role, mounted on a plain mux behind the baseline's
// http.Server (productionServer) — no request id, access log, metrics middleware or body limits.
// It prints a token its keyring issued after the URL.
func runModule(upstream, key, dataDir string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	st, err := sqlite.Open(ctx, filepath.Join(dataDir, "module.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	master := make([]byte, 32)
	if _, err := rand.Read(master); err != nil {
		return err
	}
	sealer, err := keys.NewSealer(master)
	if err != nil {
		return err
	}
	clk := clock.System{}
	kr := keys.NewKeyring(st, sealer, clk, "EdDSA", 0, 2*time.Hour)
	if err := kr.Load(ctx); err != nil {
		return err
	}
	const iss = "http://bench.module"
	issuer := token.NewIssuer(kr, clk, iss)
	log := slog.New(slog.DiscardHandler)
	verifier := token.NewVerifier(kr, st, events.NewLocal(), clk, iss, log)
	if err := verifier.Start(ctx); err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Upstreams = map[string]string{"pos": upstream}
	cfg.Gateway.SigningSecret = key
	cfg.Routes = []config.Route{{Path: "/bench/", Methods: []string{"GET", "POST"}, Auth: []string{"posgate"},
		Scopes: []string{"bench"}, Upstream: "pos"}}
	server.TuneRuntime(cfg, os.Getenv) // the same collector setting as the posgate role
	fwd, err := gateway.NewForwarder(cfg, master, log, clk)
	if err != nil {
		return err
	}
	svc := &app.Services{Config: cfg, Store: st, Clock: clk, Log: log, Issuer: issuer, Verifier: verifier, Revoker: verifier,
		Auth: auth.NewRegistry(), Upstream: fwd}
	g, err := gateway.New(svc)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	if err := g.Mount(mux, http.NewServeMux()); err != nil {
		return err
	}
	tok, _, err := issuer.Issue(ctx, token.Claims{Subject: "cl_bench", ClientID: "cl_bench", Scope: "bench", Audience: []string{"bench"}}, time.Hour)
	if err != nil {
		return err
	}
	return serveLoopbackWith(productionServer(mux), tok)
}

// startProfile writes a CPU profile of this role process to $BENCH_GATEWAY_PROFILE_DIR/<role>.prof
// when that variable is set, sampled at 1 kHz; the returned function stops it.
func startProfile(role string) func() {
	dir := os.Getenv("BENCH_GATEWAY_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, role+".prof"))
	if err != nil {
		return func() {}
	}
	// A higher sampling rate than pprof's 100 Hz tells differences of a few hundred ns per request
	// apart in one run (the runtime warns that the rate is set twice; the profile is valid).
	runtime.SetCPUProfileRate(1000)
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
