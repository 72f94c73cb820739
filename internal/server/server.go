// Package server builds a running posgate: it opens the store, loads the keyring, builds the shared
// services and every module, and serves them behind one middleware chain (request id, access log
// without secrets, metrics, panic recovery, canonical paths, body limits) on HTTPS with a kept
// self-signed certificate by default, or plain HTTP when asked.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/admin"
	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// AdminPrefix is where the admin API lives; modules mount admin routes relative to it.
const AdminPrefix = app.AdminPrefix

// Options configure New beyond the configuration file.
type Options struct {
	Config *config.Config
	// Log receives the JSON logs; nil writes JSON to stderr at the configured level.
	Log *slog.Logger
	// Clock defaults to the system clock.
	Clock clock.Clock
	// Out receives human notices (certificate fingerprint, where the admin token is, demo lines);
	// nil means os.Stdout. Nothing written here goes to the JSON logs.
	Out io.Writer
	// Getenv reads POSGATE_ADMIN_TOKEN and POSGATE_MASTER_KEY; nil means os.Getenv.
	Getenv func(string) string
	// Demo seeds each module's example credentials and prints curl lines (serve --demo).
	Demo bool

	extra []moduleConstructor // tests: modules built after posgate's own
}

// Server is a built posgate, ready to serve.
type Server struct {
	cfg      *config.Config
	log      *slog.Logger
	out      io.Writer
	svc      *app.Services
	store    store.Store
	bus      events.Bus
	keyring  *keys.Keyring
	verifier *token.PosgateVerifier
	handler  http.Handler
	infra    []infraPart // in start order, see lifecycle.go
	modules  []namedModule
	fwd      upstreamForwarder
	probe    writeProbe // /readyz's periodic small write
	admin    *httpx.AllowMux

	httpLn, httpsLn net.Listener
	servers         []*http.Server
	issuer          string
	httpURL         string
	httpsURL        string
	fingerprint     string
	adminTokenPath  string

	demoUpstream    *http.Server // serve --demo's example upstream
	demoUpstreamURL string
	demoRouted      bool // serve --demo added its gateway route

	bg     context.Context // background work (verifier resync, maintenance); cancelled by Close
	stop   context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once
}

type namedModule struct {
	name string
	mod  app.Module
}

// New builds everything and binds the listeners, but serves nothing until Serve. On error,
// whatever was opened is closed again.
func New(ctx context.Context, o Options) (s *Server, err error) {
	cfg := o.Config
	if cfg == nil {
		return nil, errors.New("server: no configuration")
	}
	s = &Server{cfg: cfg, out: o.Out, log: o.Log}
	if s.out == nil {
		s.out = os.Stdout
	}
	if s.log == nil {
		s.log = NewLogger(os.Stderr, cfg.Server.LogLevel)
	}
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	clk := o.Clock
	if clk == nil {
		clk = clock.System{}
	}
	s.bg, s.stop = context.WithCancel(context.Background())
	// A data dir this call creates is removed again when the start fails before any key is
	// sealed into the store: a refused configuration leaves nothing behind.
	newDataDir, sealed := false, false
	defer func() {
		if err != nil {
			s.Close()
			if newDataDir && !sealed {
				_ = os.RemoveAll(cfg.Server.DataDir)
			}
			s = nil
		}
	}()

	// Everything that can be checked without the data dir is checked before it is created.
	if err := preflight(cfg); err != nil {
		return s, err
	}
	if err := s.bind(); err != nil {
		return s, err
	}

	// Data dir: the master key, the admin token, the certificate and the SQLite file live here.
	if newDataDir, err = makeDataDir(cfg.Server.DataDir); err != nil {
		return s, fmt.Errorf("data dir %s: %w", cfg.Server.DataDir, err)
	}
	if info, err := os.Stat(cfg.Server.DataDir); err == nil && info.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(cfg.Server.DataDir, 0o700); err != nil {
			return s, fmt.Errorf("data dir %s: %w", cfg.Server.DataDir, err)
		}
	}

	// Config validation refuses this too; a caller that skipped it must not get replicas that
	// refuse each other's tokens.
	if sharedStore(cfg.Store.Driver) && cfg.Server.Issuer == "" {
		return s, errIssuerRequired
	}
	if err := s.listen(); err != nil {
		return s, err
	}

	master, err := keys.LoadMasterKey(cfg.Server.DataDir)
	if err != nil {
		return s, err
	}
	sealer, err := keys.NewSealer(master)
	if err != nil {
		return s, err
	}

	open, ok := storeDriver(cfg.Store.Driver)
	if !ok {
		return s, fmt.Errorf("store.driver: %q is not built into this binary", cfg.Store.Driver)
	}
	if s.store, s.bus, err = open(ctx, cfg, s.log); err != nil {
		return s, err
	}
	if sharedStore(cfg.Store.Driver) {
		if err := checkIssuer(ctx, s.store, s.issuer, cfg.Server.PreviousIssuer); err != nil {
			return s, err
		}
	}

	// The keyring learns the longest token lifetime from the modules, which are built on it; it is
	// loaded once they are.
	s.keyring = keys.NewKeyring(s.store, sealer, clk, cfg.Keys.Algorithm, config.Seconds(cfg.Keys.RotationInterval), 0)
	issuer := token.NewIssuer(s.keyring, clk, s.issuer)
	s.verifier = token.NewVerifier(s.keyring, s.store, s.bus, clk, s.issuer, s.log)
	s.verifier.SetResyncInterval(config.Seconds(cfg.Keys.RevocationResync))
	if err := s.startInfra("token verifier", s.verifier); err != nil {
		return s, err
	}

	svc := &app.Services{
		Config:   cfg,
		Store:    s.store,
		Clock:    clk,
		Log:      s.log,
		Sealer:   sealer,
		Issuer:   issuer,
		Verifier: s.verifier,
		Revoker:  s.verifier,
		Events:   s.bus,
		Auth:     auth.NewRegistry(),
	}
	s.svc = svc
	svc.Hub = newHub(cfg, s.store, s.bus, clk, s.log)
	if err := s.startInfra("hub", svc.Hub); err != nil {
		return s, err
	}
	svc.Throttle = auth.NewThrottle(s.store, clk, auth.ThrottleLimits{
		Window:          config.Seconds(cfg.Throttle.Window),
		PerAddress:      cfg.Throttle.PerAddress,
		PerAddressIdent: cfg.Throttle.PerAddressIdent,
		PerIdentity:     cfg.Throttle.PerIdentity,
		IdentityBackoff: config.Seconds(cfg.Throttle.IdentityBackoff),
	}, func(ctx context.Context, scope, identity, addr string) {
		svc.Audit(ctx, store.AuditEvent{Actor: "anonymous", Action: "throttle.identity_block", Target: scope + ":" + identity, Address: addr, Outcome: "denied",
			Detail: "identity-wide limit of failed attempts reached; blocked for " + strconv.Itoa(cfg.Throttle.IdentityBackoff) + "s"})
	})

	tok, tokPath, created, err := loadAdminToken(cfg.Server.DataDir, getenv("POSGATE_ADMIN_TOKEN"))
	if err != nil {
		return s, err
	}
	s.adminTokenPath = tokPath
	svc.CheckAdminToken = tok.Check
	svc.AdminTokenID = keys.Fingerprint(master, app.AdminTokenIDPurpose, tok.hash)
	if created {
		fmt.Fprintf(s.out, "posgate: an admin token was generated into %s (mode 0600); the CLI reads it from there\n", tokPath)
		s.log.Info("admin token generated", slog.String("file", tokPath))
	}

	if o.Demo {
		if err := s.startDemoUpstream(cfg, master); err != nil {
			return s, err
		}
	}
	if s.fwd, err = newForwarder(cfg, master, s.log, clk); err != nil {
		return s, err
	}
	svc.Upstream = s.fwd

	public := http.NewServeMux()
	adminMux := http.NewServeMux()
	// Every admin route answers a wrong method with 405 + Allow in the admin shape.
	adminRoutes := httpx.NewAllowMux(adminMux, func(w http.ResponseWriter, r *http.Request, allow string) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "this resource accepts "+allow)
	})
	s.admin = adminRoutes
	allowMuxes := []*httpx.AllowMux{adminRoutes}
	adminCore, err := admin.New(svc, s.keyring)
	if err != nil {
		return s, err
	}
	if err := adminCore.Mount(public, adminRoutes); err != nil {
		return s, fmt.Errorf("admin: %w", err)
	}
	s.modules = append(s.modules, namedModule{"posgate", adminCore})
	var built []app.Module
	for _, c := range append(modules(), o.extra...) {
		m, err := c.build(svc, built)
		if err != nil {
			return s, fmt.Errorf("module %s: %w", c.name, err)
		}
		var pub app.Mux = public
		if nw, ok := m.(app.MethodNotAllowedWriter); ok {
			am := httpx.NewAllowMux(public, nw.WriteMethodNotAllowed)
			allowMuxes = append(allowMuxes, am)
			pub = am
		}
		if err := m.Mount(pub, adminRoutes); err != nil {
			return s, fmt.Errorf("module %s: %w", c.name, err)
		}
		s.modules = append(s.modules, namedModule{c.name, m})
		built = append(built, m)
	}
	svc.Reserved = s.reservedAudiences()
	s.keyring.SetMaxTokenLifetime(s.maxTokenLifetime())
	sealed = true // Load creates the first signing key, sealed with the master key
	if err := s.keyring.Load(ctx); err != nil {
		return s, fmt.Errorf("keyring: %w", err)
	}
	for _, m := range s.modules {
		if st, ok := m.mod.(app.Starter); ok {
			if err := st.Start(s.bg); err != nil {
				return s, fmt.Errorf("module %s: start: %w", m.name, err)
			}
		}
	}
	s.mountStandard(public)
	for _, am := range allowMuxes { // after every module: see httpx.AllowMux
		am.Finish()
	}
	adminMux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such admin API resource")
	}))
	public.Handle(AdminPrefix+"/", requireAdmin(svc, tok, http.StripPrefix(AdminPrefix, recordPattern(AdminPrefix, adminMux))))

	s.handler = observe(s.log, parseTrusted(cfg.Server.TrustedProxies),
		recoverPanics(s.log,
			canonicalPath(
				limitBody(cfg.Server.MaxBodyBytes,
					recordPattern("", public)))))

	// Last, as nothing after it can fail: record the issuer (checkIssuer only read it).
	if sharedStore(cfg.Store.Driver) {
		moved, err := agreeIssuer(ctx, s.store, s.issuer, cfg.Server.PreviousIssuer, clk.Now())
		if err != nil {
			return s, err
		}
		if moved {
			svc.Audit(ctx, store.AuditEvent{Actor: "admin", Action: "issuer.move", Target: s.issuer, Outcome: "ok",
				Detail: "server.previous_issuer " + cfg.Server.PreviousIssuer + " replaced by server.issuer"})
			s.log.Warn("the deployment's issuer moved; tokens minted under the previous one are refused from now on",
				slog.String("previous_issuer", cfg.Server.PreviousIssuer), slog.String("issuer", s.issuer))
		}
	}

	if o.Demo {
		s.demo(ctx)
	}
	return s, nil
}

// reservedAudiences gathers the audiences the modules reserve (app.AudienceReserver).
func (s *Server) reservedAudiences() app.Audiences {
	var out app.Audiences
	for _, m := range s.modules {
		if r, ok := m.mod.(app.AudienceReserver); ok {
			out = append(out, r.ReservedAudiences()...)
		}
	}
	return out
}

// maxTokenLifetime is the longest a posgate token minted by any module may be accepted
// (app.TokenLifetimer): the keyring keeps retired keys that long.
func (s *Server) maxTokenLifetime() time.Duration {
	var longest time.Duration
	for _, m := range s.modules {
		if l, ok := m.mod.(app.TokenLifetimer); ok {
			longest = max(longest, l.MaxTokenLifetime())
		}
	}
	return longest
}

// NewLogger returns posgate's JSON logger at level ("debug", "info", "warn", "error"). When w is a
// file (stderr, a log file) the lines are buffered and written out every 100 ms, when 32 KiB have
// gathered, and when a Server using the logger closes (see logbuf.go): a write syscall per
// access-log line would be a large share of a proxied request's cost.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	out, lb := bufferFor(w)
	h := slog.NewJSONHandler(out, &slog.HandlerOptions{Level: lv})
	return slog.New(&logHandler{Handler: h, out: out, lb: lb, plain: true})
}

// makeDataDir creates dir (mode 0700, parents included) and reports whether this call created dir
// itself: only then may a failed start remove it. Deciding from an earlier look would remove a
// dir another process (a second replica on the same data dir) created in between, or a dangling
// symlink the operator put there.
func makeDataDir(dir string) (bool, error) {
	dir = filepath.Clean(dir) // "data/" has the parent ".", not "data"
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return false, err
	}
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, err
	}
	return false, os.MkdirAll(dir, 0o700) // nil for a directory, an error for anything else
}

// preflight checks what the configuration names outside itself and can be checked before
// anything is written: the configuration as a whole (callers may build one without Load), the
// configured TLS files and the master key given in the environment.
func preflight(cfg *config.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Server.Addr != "" && cfg.Server.TLSCert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.Server.TLSCert, cfg.Server.TLSKey); err != nil {
			return fmt.Errorf("server.tls_cert %s / server.tls_key %s: %w", cfg.Server.TLSCert, cfg.Server.TLSKey, err)
		}
	}
	if v := os.Getenv(keys.MasterKeyEnv); v != "" {
		if _, err := keys.ParseMasterKey(v); err != nil {
			return fmt.Errorf("%s: %w", keys.MasterKeyEnv, err)
		}
	}
	return nil
}

// bind opens the configured listening sockets (a port in use is found before anything is written).
func (s *Server) bind() error {
	cfg := s.cfg.Server
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("server.http_addr %s: %w", cfg.HTTPAddr, err)
		}
		s.httpLn = ln
	}
	if cfg.Addr != "" {
		ln, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			return fmt.Errorf("server.addr %s: %w", cfg.Addr, err)
		}
		s.httpsLn = ln // wrapped in TLS by listen once the certificate is loaded
	}
	return nil
}

// listen puts TLS on the HTTPS socket (generating the self-signed certificate into the data dir
// when none is configured) and derives the issuer URL from the listeners when not configured.
func (s *Server) listen() error {
	cfg := s.cfg.Server
	if s.httpLn != nil {
		s.httpURL = "http://" + urlHost(cfg.HTTPAddr, s.httpLn.Addr())
		if !isLoopback(cfg.HTTPAddr) {
			s.log.Warn("PLAIN HTTP ON A NON-LOOPBACK ADDRESS: credentials and tokens cross the network in clear; use it only behind a TLS-terminating proxy",
				slog.String("http_addr", cfg.HTTPAddr))
			fmt.Fprintf(s.out, "posgate: WARNING: serving plain HTTP on %s, which is not a loopback address — tokens and secrets travel unencrypted\n", cfg.HTTPAddr)
		}
	}
	if s.httpsLn != nil {
		certPath, keyPath := cfg.TLSCert, cfg.TLSKey
		generate := certPath == ""
		if generate {
			certPath = filepath.Join(cfg.DataDir, CertFile)
			keyPath = filepath.Join(cfg.DataDir, KeyFile)
		}
		cert, created, err := loadOrCreateCert(certPath, keyPath, generate)
		if err != nil {
			return err
		}
		s.fingerprint = Fingerprint(cert.Certificate[0])
		if generate {
			verb := "using"
			if created {
				verb = "generated"
			}
			fmt.Fprintf(s.out, "posgate: %s self-signed certificate %s\nposgate: certificate SHA-256 fingerprint %s\n", verb, certPath, s.fingerprint)
		}
		s.log.Info("TLS certificate", slog.String("file", certPath), slog.String("sha256", s.fingerprint))
		ln := s.httpsLn
		s.httpsLn = tls.NewListener(ln, &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"h2", "http/1.1"},
		})
		s.httpsURL = "https://" + urlHost(cfg.Addr, ln.Addr())
	}
	s.issuer = s.cfg.Server.Issuer
	if s.issuer == "" {
		if s.httpsURL != "" {
			s.issuer = s.httpsURL
		} else {
			s.issuer = s.httpURL
		}
		// Modules read the issuer from the configuration (RFC 8414 metadata, default audience).
		s.cfg.Server.Issuer = s.issuer
	}
	return nil
}

// urlHost is the host:port clients should use for a listen address: an unspecified host becomes
// localhost, and port 0 becomes the port actually bound.
func urlHost(configured string, bound net.Addr) string {
	host, _, _ := net.SplitHostPort(configured)
	_, port, _ := net.SplitHostPort(bound.String())
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Handler is the whole HTTP handler (middleware included).
func (s *Server) Handler() http.Handler { return s.handler }

// AdminRoutes lists the admin API's routes as "METHOD /path" patterns relative to AdminPrefix,
// every module's included: what the CLI's commands and the documentation must match.
func (s *Server) AdminRoutes() []string { return s.admin.Patterns() }

// Services are the shared mechanisms the modules were built from.
func (s *Server) Services() *app.Services { return s.svc }

// Keyring is the signing keyring.
func (s *Server) Keyring() *keys.Keyring { return s.keyring }

// HTTPURL is the base URL of the plain-HTTP listener ("" when off).
func (s *Server) HTTPURL() string { return s.httpURL }

// HTTPSURL is the base URL of the HTTPS listener ("" when off).
func (s *Server) HTTPSURL() string { return s.httpsURL }

// Issuer is the `iss` of the tokens this server mints.
func (s *Server) Issuer() string { return s.issuer }

// BaseURL is the URL to show people: HTTPS when on, else plain HTTP.
func (s *Server) BaseURL() string {
	if s.httpsURL != "" {
		return s.httpsURL
	}
	return s.httpURL
}

// Serve serves until ctx is cancelled, then shuts down gracefully: listeners close at once,
// in-flight requests get server.shutdown_timeout to finish, modules that hold hijacked
// connections (websockets) are told to close them. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	cfg := s.cfg.Server
	errc := make(chan error, 2)
	for _, ln := range []net.Listener{s.httpLn, s.httpsLn} {
		if ln == nil {
			continue
		}
		hs := &http.Server{
			Handler:           s.handler,
			ReadHeaderTimeout: config.Seconds(cfg.ReadHeaderTimeout),
			ReadTimeout:       config.Seconds(cfg.ReadTimeout),
			WriteTimeout:      config.Seconds(cfg.WriteTimeout),
			IdleTimeout:       config.Seconds(cfg.IdleTimeout),
			MaxHeaderBytes:    cfg.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
			BaseContext:       func(net.Listener) context.Context { return s.bg },
		}
		s.servers = append(s.servers, hs)
		go func(ln net.Listener) {
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}(ln)
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.maintain(s.bg) }()
	s.log.Info("posgate serving", slog.String("http", s.httpURL), slog.String("https", s.httpsURL), slog.String("issuer", s.issuer),
		slog.String("store", s.cfg.Store.Driver))

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.log.Info("posgate shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), config.Seconds(cfg.ShutdownTimeout))
	defer cancel()
	s.shutdown(sctx)
	s.Close()
	return serveErr
}

// Close stops background work, releases the store and the bus, and flushes the log. Serve calls it; call it directly
// only when Serve was never called.
func (s *Server) Close() {
	s.closed.Do(func() {
		s.shutdownInfra()
		s.stop()
		s.wg.Wait()
		for _, ln := range []net.Listener{s.httpLn, s.httpsLn} {
			if ln != nil {
				ln.Close()
			}
		}
		for _, m := range s.modules {
			if c, ok := m.mod.(io.Closer); ok {
				c.Close()
			}
		}
		if s.fwd != nil {
			s.fwd.Close()
		}
		s.closeDemoUpstream()
		if s.bus != nil {
			s.bus.Close()
		}
		if s.store != nil {
			s.store.Close()
		}
		// Last: whatever the shutdown logged is written out, and later lines go straight through.
		closeLog(s.log)
	})
}
