package doshii

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/sqlite"
	"github.com/posgate/posgate/internal/testutil/syncbuf"
)

// testStart is the fake clock's start: a whole second, so window bounds are exact.
var testStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// env is one doshii module over a real SQLite file, served by a real HTTP server on loopback.
// The test header X-Test-Addr sets the client address the throttle sees.
type env struct {
	t      testing.TB
	clk    *clock.Fake
	st     store.Store
	svc    *app.Services
	mod    *Module
	srv    *httptest.Server
	logBuf *syncbuf.Buffer
}

type envOptions struct {
	cfg    func(*config.Config)
	limits *auth.ThrottleLimits
	clock  clock.Clock // default: a fake clock at testStart
}

func newEnv(t testing.TB, opts ...envOptions) *env {
	t.Helper()
	var o envOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "posgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	master := make([]byte, 32)
	rand.Read(master)
	sealer, err := keys.NewSealer(master)
	if err != nil {
		t.Fatal(err)
	}
	fake := clock.NewFake(testStart)
	var clk clock.Clock = fake
	if o.clock != nil {
		clk = o.clock
	}
	cfg := &config.Config{}
	if o.cfg != nil {
		o.cfg(cfg)
	}
	limits := auth.ThrottleLimits{Window: 300 * time.Second, PerAddress: 20, PerAddressIdent: 5, PerIdentity: 100, IdentityBackoff: 60 * time.Second}
	if o.limits != nil {
		limits = *o.limits
	}
	logBuf := &syncbuf.Buffer{}
	svc := &app.Services{
		Config: cfg, Store: st, Clock: clk, Sealer: sealer, Auth: auth.NewRegistry(), Events: events.NewLocal(),
		Log: slog.New(slog.NewJSONHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	// The same identity-block audit the server installs.
	svc.Throttle = auth.NewThrottle(st, clk, limits, func(ctx context.Context, scope, identity, addr string) {
		svc.Audit(ctx, store.AuditEvent{Actor: "anonymous", Action: "throttle.identity_block", Target: scope + ":" + identity, Address: addr, Outcome: "denied"})
	})
	mod, err := newModule(svc)
	if err != nil {
		t.Fatal(err)
	}
	public, admin := http.NewServeMux(), http.NewServeMux()
	if err := mod.Mount(public, admin); err != nil {
		t.Fatal(err)
	}
	public.Handle("/admin/api/v1/", http.StripPrefix("/admin/api/v1", admin))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("X-Test-Addr"); a != "" {
			r = auth.WithAddr(r, a)
		}
		public.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &env{t: t, clk: fake, st: st, svc: svc, mod: mod, srv: srv, logBuf: logBuf}
}

// response is a decoded HTTP answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (r response) str(k string) string {
	s, _ := r.body[k].(string)
	return s
}

// do sends a request; hdr holds header pairs.
func (e *env) do(method, path string, body any, hdr ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "<delete>" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &out.body)
	}
	return out
}

// vendor is a vendor created through the admin API.
type vendor struct {
	id, name, key string
}

func (e *env) createVendor(name string) vendor {
	e.t.Helper()
	r := e.do("POST", "/admin/api/v1/doshii/vendors", map[string]any{"api_name": name})
	if r.status != http.StatusCreated {
		e.t.Fatalf("create vendor %s: %d %s", name, r.status, r.raw)
	}
	return vendor{id: r.str("id"), name: r.str("api_name"), key: r.str("vendor_key")}
}

// location is a location created through onboarding.
type location struct {
	id, org, token string
}

func (e *env) onboard(v vendor, orgName, locName string) location {
	e.t.Helper()
	r := e.do("POST", "/pos/v3/organisations", map[string]any{
		"name": orgName, "country": "AU",
		"location": map[string]any{"name": locName, "timezone": "Australia/Melbourne"},
	}, "vendor", v.name, "Authorization", "Bearer "+v.key)
	if r.status != http.StatusCreated {
		e.t.Fatalf("onboard %s/%s: %d %s", orgName, locName, r.status, r.raw)
	}
	l, _ := r.body["location"].(map[string]any)
	return location{id: l["id"].(string), org: r.str("id"), token: l["token"].(string)}
}

// b64 is unpadded base64url.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// signRaw makes a compact JWT from exact header and payload texts, HMAC-SHA256 with key.
func signRaw(header, payload string, key []byte) string {
	in := b64(header) + "." + b64(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// locationJWT signs {locationToken, timestamp} with the vendor key; ts is the JSON text of the
// timestamp.
func locationJWT(key, locationToken, ts string) string {
	return signRaw(`{"alg":"HS256","typ":"JWT"}`,
		fmt.Sprintf(`{"locationToken":%s,"timestamp":%s}`, strconv.Quote(locationToken), ts), []byte(key))
}

func unix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

// venueGet reads location id with a JWT for (v, token) at the fake clock's now.
func (e *env) venueGet(id string, v vendor, token string, hdr ...string) response {
	e.t.Helper()
	jwt := locationJWT(v.key, token, unix(e.svc.Clock.Now()))
	return e.do("GET", "/pos/v3/locations/"+id, nil, append([]string{"vendor", v.name, "Authorization", "Bearer " + jwt}, hdr...)...)
}

// wantMessage checks Doshii's error shape: the status and a body that is exactly {"message"}.
func wantMessage(t *testing.T, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	if len(r.body) != 1 || r.str("message") == "" {
		t.Fatalf("error body %s is not {\"message\":…}", r.raw)
	}
}

func (e *env) auditActions() []string {
	e.t.Helper()
	evs, err := e.st.ListAudit(context.Background(), 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Action+"|"+ev.Target+"|"+ev.Detail)
	}
	return out
}
