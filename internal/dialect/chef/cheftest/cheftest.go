// Package cheftest starts a real chef deployment for tests: a SQLite store in a temp dir, the real
// keyring, token issuer and verifier, the gateway's forwarder to a recording upstream, the chef
// module, the web console, and an admin API mux behind a test admin token — all on one loopback
// httptest server. Two instances may share one PostgreSQL database and bus to act as replicas.
package cheftest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/console"
	"github.com/posgate/posgate/internal/dialect/chef"
	"github.com/posgate/posgate/internal/dialect/doshii"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
	"github.com/posgate/posgate/internal/token"
)

// Options shape an instance.
type Options struct {
	Clock     clock.Clock          // default: the system clock
	Configure func(*config.Config) // adjust the config (chef timeouts…)
	Store     store.Store          // share a store between instances (default: a new SQLite file)
	Bus       events.Bus           // share a bus between instances (default: a new local bus)
	Master    []byte               // share the master key between instances
	Log       *slog.Logger
}

// AddrHeader makes the harness treat a request as coming from the address it names.
const AddrHeader = "X-Test-Client-Addr"

// Received is one request the upstream saw.
type Received struct {
	Path      string
	Header    http.Header
	Body      []byte
	Principal *identity.Principal // verified with the gateway's identity signature; nil if it did not verify
	SigErr    error
}

// Instance is a running chef deployment.
type Instance struct {
	URL        string
	AdminToken string
	Svc        *app.Services
	Module     *chef.Module
	Client     *http.Client
	Server     *httptest.Server
	Master     []byte

	mu       sync.Mutex
	received []Received
	// UpstreamAnswer, when set, answers data calls instead of the default echo.
	UpstreamAnswer func(w http.ResponseWriter, body []byte)
	// OnRequest, when set, sees every request as it arrives (before routing): latency breakdowns.
	OnRequest func(r *http.Request)
}

// locations lists the doshii locations of the instance's store for the console's locations page.
type locations struct{ svc *app.Services }

func (l locations) LocationStatuses(ctx context.Context) ([]app.LocationStatus, error) {
	return doshii.LocationStatuses(ctx, l.svc.Store, l.svc.Clock.Now(), nil)
}

// Start starts an instance and stops it at test end.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	ctx := context.Background()
	clk := opts.Clock
	if clk == nil {
		clk = clock.System{}
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	inst := &Instance{}
	master := opts.Master
	if master == nil {
		master = make([]byte, 32)
		rand.Read(master)
	}
	inst.Master = master
	var idVerifier *identity.Verifier

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := Received{Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
		rec.Principal, rec.SigErr = idVerifier.Verify(r)
		inst.mu.Lock()
		inst.received = append(inst.received, rec)
		answer := inst.UpstreamAnswer
		inst.mu.Unlock()
		if answer != nil {
			answer(w, body)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":{"success":true,"data":{"echo":true},"error_num":0,"error_message":""}}`))
	}))
	t.Cleanup(up.Close)

	cfg := config.Default()
	cfg.Server.Issuer = "http://posgate.test"
	cfg.Upstreams = map[string]string{"pos": up.URL}
	// Tests send many bad tokens from 127.0.0.1 on purpose; a test of the throttle lowers these.
	cfg.Throttle.PerAddress, cfg.Throttle.PerAddressIdent, cfg.Throttle.PerIdentity = 1000, 1000, 10000
	if opts.Configure != nil {
		opts.Configure(cfg)
	}

	st := opts.Store
	if st == nil {
		s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "posgate.db"))
		if err != nil {
			t.Fatalf("sqlite: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		st = s
	}
	bus := opts.Bus
	if bus == nil {
		b := events.NewLocal()
		t.Cleanup(func() { b.Close() })
		bus = b
	}
	sigKey, err := gateway.SigningKey(cfg, master)
	if err != nil {
		t.Fatal(err)
	}
	if idVerifier, err = identity.NewVerifier(sigKey); err != nil {
		t.Fatal(err)
	}
	sealer, err := keys.NewSealer(master)
	if err != nil {
		t.Fatal(err)
	}
	kr := keys.NewKeyring(st, sealer, clk, "EdDSA", 0, 24*time.Hour)
	if err := kr.Load(ctx); err != nil {
		t.Fatalf("keyring: %v", err)
	}
	iss := token.NewIssuer(kr, clk, cfg.Server.Issuer)
	ver := token.NewVerifier(kr, st, bus, clk, cfg.Server.Issuer, log)
	vctx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	if err := ver.Start(vctx); err != nil {
		t.Fatalf("verifier: %v", err)
	}

	fwd, err := gateway.NewForwarder(cfg, master, log, clk)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)

	inst.AdminToken = secret.Generate(secret.PrefixAdminToken)
	adminHash := secret.Hash(inst.AdminToken)
	svc := &app.Services{
		Config: cfg, Store: st, Clock: clk, Log: log, Sealer: sealer,
		Issuer: iss, Verifier: ver, Revoker: ver, Events: bus,
		Throttle: auth.NewThrottle(st, clk, auth.ThrottleLimits{
			Window:          config.Seconds(cfg.Throttle.Window),
			PerAddress:      cfg.Throttle.PerAddress,
			PerAddressIdent: cfg.Throttle.PerAddressIdent,
			PerIdentity:     cfg.Throttle.PerIdentity,
			IdentityBackoff: config.Seconds(cfg.Throttle.IdentityBackoff),
		}, nil),
		Auth:            auth.NewRegistry(),
		Upstream:        fwd,
		CheckAdminToken: func(s string) bool { return secret.Equal(secret.Hash(s), adminHash) },
		AdminTokenID:    keys.Fingerprint(master, app.AdminTokenIDPurpose, adminHash),
	}
	inst.Svc = svc

	public, admin := http.NewServeMux(), http.NewServeMux()
	mod, err := chef.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	inst.Module = mod.(*chef.Module)
	t.Cleanup(func() { inst.Module.Close() })
	if err := mod.Mount(public, admin); err != nil {
		t.Fatal(err)
	}
	con, err := console.New(svc, inst.Module, locations{svc}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := con.Mount(public, admin); err != nil {
		t.Fatal(err)
	}
	public.Handle("/admin/api/v1/", http.StripPrefix("/admin/api/v1", adminOnly(inst.AdminToken, admin)))

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server decides the client address (trusted proxies); tests pose as another
		// address with this header, which only this harness honours.
		if v := r.Header.Get(AddrHeader); v != "" {
			r = auth.WithAddr(r, v)
		}
		inst.mu.Lock()
		hook := inst.OnRequest
		inst.mu.Unlock()
		if hook != nil {
			hook(r)
		}
		public.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		// Calls still held for a decision end with the test, not after the approval window.
		srv.CloseClientConnections()
		srv.Close()
	})
	inst.Server = srv
	inst.URL = srv.URL
	inst.Client = &http.Client{Timeout: 2 * time.Minute}
	return inst
}

// adminOnly stands in for the server's admin-token check.
func adminOnly(tok string, next http.Handler) http.Handler {
	want := secret.Hash(tok)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !secret.Equal(secret.Hash(got), want) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="posgate-admin"`)
			http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SetOnRequest installs (or with nil removes) the request observer.
func (i *Instance) SetOnRequest(f func(*http.Request)) {
	i.mu.Lock()
	i.OnRequest = f
	i.mu.Unlock()
}

// Received returns what the upstream has seen so far.
func (i *Instance) Received() []Received {
	i.mu.Lock()
	defer i.mu.Unlock()
	return append([]Received(nil), i.received...)
}

// Admin calls the admin API and decodes a JSON object answer.
func (i *Instance) Admin(t testing.TB, method, path string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, i.URL+"/admin/api/v1"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+i.AdminToken)
	resp, err := i.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// WaitPending waits until n devices are pending and returns them (polling the store for a state,
// not waiting for time to pass).
func (inst *Instance) WaitPending(t testing.TB, n int) []*store.ChefDevice {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := inst.Svc.Store.ListChefDevices(context.Background(), store.DevicePending)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) >= n {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pending devices, want %d", len(list), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
