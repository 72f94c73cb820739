// Package chef is the Chef (Xenial/PenguinPOS "Chef Reporting API") dialect: a JSON-RPC 2.0
// endpoint where a device pairs with Authentication.authenticateClient — held open until a person
// approves it in the console or the admin API — and then makes data calls with the device token,
// which posgate verifies and forwards to the configured upstream. See docs/dialects/chef.md.
package chef

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/oauth"
)

// The vendor's paths (both appear on its page) and posgate's short ones. Config Chef.Prefix adds
// a third mount of the short paths under a prefix.
var specPaths = []string{
	"/pcu/server/public/index.php/api/json-rpc/v1",
	"/pcu/server/public/index.php/api/customer/json-rpc/v1",
	"/api/json-rpc/v1",
	"/api/customer/json-rpc/v1",
}

// settings are the chef config values as durations, with defaults applied to values that cannot
// be zero.
type settings struct {
	approvalTimeout time.Duration
	cooldown        time.Duration
	tokenLifetime   time.Duration
	leeway          time.Duration
	maxPending      int
	maxPerAddress   int
	retention       time.Duration
	maxBatch        int
	renewWindow     time.Duration
	upstream        string
	prefix          string
}

func settingsOf(c config.Chef) settings {
	s := settings{
		approvalTimeout: config.Seconds(c.ApprovalTimeout),
		cooldown:        config.Seconds(c.Cooldown),
		tokenLifetime:   config.Seconds(c.TokenLifetime),
		leeway:          config.Seconds(c.Leeway),
		maxPending:      c.MaxPending,
		maxPerAddress:   c.MaxPendingPerAddress,
		retention:       config.Seconds(c.PendingRetention),
		maxBatch:        c.MaxBatch,
		renewWindow:     config.Seconds(c.RenewWindow),
		upstream:        c.Upstream,
		prefix:          strings.TrimSuffix(c.Prefix, "/"),
	}
	if s.approvalTimeout <= 0 {
		s.approvalTimeout = 60 * time.Second
	}
	if s.tokenLifetime <= 0 {
		s.tokenLifetime = time.Hour
	}
	if s.maxPending <= 0 {
		s.maxPending = 100
	}
	if s.maxPerAddress <= 0 {
		s.maxPerAddress = 5
	}
	if s.retention <= 0 {
		s.retention = time.Hour
	}
	// A call may be held for a whole window on a request refreshed a moment before; a request is
	// never deleted while one could be (the config refuses less; this guards hand-built configs).
	s.retention = max(s.retention, 2*s.approvalTimeout)
	if s.maxBatch <= 0 {
		s.maxBatch = 20
	}
	if s.upstream == "" {
		s.upstream = "pos"
	}
	if s.cooldown < 0 {
		s.cooldown = 0
	}
	if s.renewWindow < 0 {
		s.renewWindow = 0
	}
	return s
}

// Module is the chef dialect.
type Module struct {
	svc     *app.Services
	cfg     settings
	pairing *pairing
	cancel  func()

	sweepMu sync.Mutex  // one sweep of stale pending requests at a time (sweep.go)
	stopped atomic.Bool // Shutdown or Close: no more sweeps
}

// New builds the chef dialect from svc.
func New(svc *app.Services) (app.Module, error) {
	if svc == nil || svc.Store == nil || svc.Issuer == nil || svc.Verifier == nil || svc.Revoker == nil || svc.Events == nil || svc.Clock == nil || svc.Log == nil || svc.Config == nil {
		return nil, errors.New("chef: Services lacks Config, Store, Clock, Log, Issuer, Verifier, Revoker or Events")
	}
	m := &Module{svc: svc, cfg: settingsOf(svc.Config.Chef)}
	if m.cfg.prefix != "" && !strings.HasPrefix(m.cfg.prefix, "/") {
		return nil, errors.New("chef.prefix: must start with / (got " + svc.Config.Chef.Prefix + ")")
	}
	m.pairing = newPairing(m)
	m.cancel = m.pairing.rv.Listen(svc.Events, events.TopicChefDevice, noticeKey)
	return m, nil
}

// Shutdown answers every call held on this replica at once with 503 and Retry-After (the device
// retries, on another replica or after the restart, and finds its request still pending), and
// refuses new pairing calls, so a graceful shutdown never waits out an approval window.
func (m *Module) Shutdown(context.Context) error {
	m.stopped.Store(true)
	m.pairing.closing.Store(true)
	m.pairing.rv.Stop(errShuttingDown)
	return nil
}

var errShuttingDown = &errs.Error{Kind: errs.Unavailable, Code: "shutting_down", Message: "the server is shutting down; retry", RetryAfter: time.Second}

// Close stops listening for device notices (tests build several modules on one bus) and stops
// the sweeper.
func (m *Module) Close() error {
	m.stopped.Store(true)
	m.cancel()
	return nil
}

// Mount registers the JSON-RPC endpoints, the chef.device authenticator and the admin routes.
func (m *Module) Mount(public, admin app.Mux) error {
	paths := append([]string(nil), specPaths...)
	if m.cfg.prefix != "" {
		paths = append(paths, m.cfg.prefix+"/api/json-rpc/v1", m.cfg.prefix+"/api/customer/json-rpc/v1")
	}
	seen := map[string]bool{}
	h := http.HandlerFunc(m.serveRPC)
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		public.Handle("POST "+p, h)
	}
	if m.svc.Auth != nil {
		m.svc.Auth.Register(AuthenticatorName, deviceAuth{m})
	}
	admin.Handle("GET /chef/devices", http.HandlerFunc(m.adminList))
	admin.Handle("GET /chef/devices/{id}", http.HandlerFunc(m.adminGet))
	admin.Handle("POST /chef/devices/{id}/approve", m.adminDecide(ActionApprove))
	admin.Handle("POST /chef/devices/{id}/decline", m.adminDecide(ActionDecline))
	admin.Handle("POST /chef/devices/{id}/revoke", m.adminDecide(ActionRevoke))
	return nil
}

// ReservedAudiences reserves Audience: device tokens come from pairing only (app.AudienceReserver).
func (m *Module) ReservedAudiences() []string { return []string{Audience} }

// MaxTokenLifetime is the device token lifetime plus the renewal window, in which an expired token
// is still accepted (app.TokenLifetimer).
func (m *Module) MaxTokenLifetime() time.Duration { return m.cfg.tokenLifetime + m.cfg.renewWindow }

// Waiting reports how many calls this replica holds for device id (tests, diagnostics).
func (m *Module) Waiting(deviceID string) int {
	return m.pairing.rv.Waiting(deviceID)
}

// throttleScope counts failed device-token checks.
const throttleScope = "chef.device"

func (m *Module) throttleCheck(ctx context.Context, addr string) error {
	if m.svc.Throttle == nil {
		return nil
	}
	return m.svc.Throttle.Check(ctx, throttleScope, addr, "")
}

func (m *Module) throttleFail(ctx context.Context, addr string, f *Failure) {
	if m.svc.Throttle == nil || f == nil || !guessLike(f) {
		return
	}
	if err := m.svc.Throttle.Fail(ctx, throttleScope, addr, ""); err != nil {
		m.svc.Log.Warn("chef: throttle count failed", "error", err.Error())
	}
}

// DemoDeviceID is the device id the demo's pairing call sends.
const DemoDeviceID = "demo-pos-1"

// Demo prints the pairing of a demo device and one data call with the token it gets. The pairing
// call is held until a person approves the device; the printed lines approve it through the admin
// API (what the console's Approve button does) with $ADMIN_TOKEN, which the lines before set. A
// device an earlier run approved is answered at once, and the approval step then has nothing
// to do.
func (m *Module) Demo(_ context.Context, baseURL string) ([]string, error) {
	base := strings.TrimSuffix(baseURL, "/")
	curl := oauth.DemoCurl
	devices := base + app.AdminPrefix + "/chef/devices"
	return []string{
		"# chef: a device asks to pair; posgate holds the call until a person approves it in the console (" + base + "/admin/, sign in with the admin token)",
		"rm -f chef-pairing.json; " + curl + " --max-time 70 -X POST " + base + "/api/json-rpc/v1 -H 'Content-Type: application/json' " +
			`-d '{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[{"device_id":"` + DemoDeviceID + `","device_name":"Demo POS"}],"id":1}' -o chef-pairing.json & CHEF_PAIRING=$!`,
		"# chef: approve it through the admin API instead (a device approved by an earlier run is answered at once):",
		`while kill -0 $CHEF_PAIRING 2>/dev/null; do D=$(` + curl + ` "` + devices + `?state=pending" -H "Authorization: Bearer $ADMIN_TOKEN" | jq -r '.devices[]? | select(.device_id == "` + DemoDeviceID + `") | .id'); ` +
			`if [ -n "$D" ]; then ` + curl + ` -X POST "` + devices + `/$D/approve" -H "Authorization: Bearer $ADMIN_TOKEN" >/dev/null; break; fi; sleep 0.2; done`,
		`wait $CHEF_PAIRING; CHEF_TOKEN=$(jq -r .result.data.token chef-pairing.json); echo "device token: ${CHEF_TOKEN:0:24}…"`,
		"# chef: a data call with the device token, forwarded to the upstream \"" + m.cfg.upstream + "\":",
		curl + " -X POST " + base + "/api/json-rpc/v1 -H 'Content-Type: application/json' -H \"Authorization: Bearer $CHEF_TOKEN\" " +
			`-d '{"jsonrpc":"2.0","method":"Reports.list","params":[{}],"id":2}'; echo`,
	}, nil
}

var (
	_ app.Demoer           = (*Module)(nil)
	_ app.Shutdowner       = (*Module)(nil)
	_ app.Maintainer       = (*Module)(nil)
	_ app.AudienceReserver = (*Module)(nil)
	_ app.TokenLifetimer   = (*Module)(nil)
)
