// Package doshii speaks the POS-facing side of Doshii's API (see docs/dialects/doshii.md):
//
//   - onboarding: POST {prefix}/organisations and POST {prefix}/locations, authenticated with the
//     raw vendor key as a Bearer token plus the `vendor` header (the vendor's API name);
//   - venue calls: every other route, authenticated with a location JWT — HS256 signed with the
//     vendor key, payload {"locationToken","timestamp"} — through the authenticator "doshii.venue"
//     that gateway routes list; GET {prefix}/locations/{id} is served here;
//   - the POS sockets on the shared hub: GET /pos/socket (location token) and GET /vendor/socket
//     (vendor JWT), heartbeats, online state (disconnectedDate), health checks;
//   - the platform events API: POST/GET /v1/doshii/locations/{location_id}/events, pushed to the
//     location's sockets through the outbox;
//   - the admin API: vendors (key shown once, rotation with overlap, disable, delete), locations
//     (online state and sockets, disable, token rotation, delete).
//
// Every credential check lives in Verifier — a location JWT, a cloud-POS vendor JWT
// {"vendor","timestamp"}, a raw location token and the onboarding vendor key — behind one
// throttle, shared by the REST routes and the socket handshakes.
//
// This package holds wire shapes only; HS256 parsing is the shared token.VerifyHS256 front door,
// persistence is store.Doshii, secrets come from internal/secret and are sealed with keys.Sealer.
package doshii

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/httpx"
)

// Names other packages and configuration files use.
const (
	// AuthVenue is the authenticator gateway routes list for location-JWT calls.
	AuthVenue = "doshii.venue"
	// Dialect is the Principal.Dialect of every doshii principal.
	Dialect = "doshii"
	// ThrottleScope counts failed doshii credential checks (per address first, then per vendor).
	ThrottleScope = "doshii.vendor"
	// DefaultPrefix is where the REST API is mounted unless config doshii.prefix says otherwise.
	DefaultPrefix = "/pos/v3"
	// APIVersion is the apiVersion reported in location responses: the wire shapes are v3's.
	APIVersion = "v3"
	// LocationHeader names a location in Doshii requests; the gateway binds it to the principal.
	LocationHeader = "doshii-location-id"
	// VendorHeader carries the vendor's API name on every request.
	VendorHeader = "vendor"
)

// Id prefixes. Ids are opaque and stable; they are not secrets.
const (
	vendorIDPrefix       = "dv_"
	vendorKeyIDPrefix    = "vk_"
	organisationIDPrefix = "do_"
	locationIDPrefix     = "dl_"
)

// Tunables that are not configuration keys.
const (
	// maxOnboardingBody caps organisation and location bodies: a few short strings.
	maxOnboardingBody = 64 << 10
	// maxAdminBody caps admin request bodies.
	maxAdminBody = 4 << 10
	// vendorCacheTTL bounds how long a vendor's keys are reused from memory. A key rotated on
	// another replica is picked up at once anyway (a signature failure reloads the vendor); what
	// the TTL bounds is how long a shortened overlap of an old key goes unnoticed elsewhere.
	vendorCacheTTL = 10 * time.Second
	// locationCacheTTL bounds how long a location token rotated on another replica keeps working
	// there (this replica forgets it at once).
	locationCacheTTL = 5 * time.Second
	cacheMax         = 10_000
)

// Module is the doshii dialect.
type Module struct {
	svc      *app.Services
	cfg      settings
	verifier *Verifier
	sockets  *sockets   // nil without a hub
	events   *eventsAPI // nil without a hub or an outbox store
}

// settings are config.Doshii with defaults applied and durations converted.
type settings struct {
	prefix       string
	pastWindow   time.Duration
	futureWindow time.Duration
	keyOverlap   time.Duration
	offlineAfter time.Duration
	eventTTL     time.Duration
	maxBody      int64
}

// New builds the doshii module from the shared services.
func New(svc *app.Services) (app.Module, error) {
	return newModule(svc)
}

func newModule(svc *app.Services) (*Module, error) {
	if svc == nil || svc.Store == nil || svc.Clock == nil || svc.Sealer == nil || svc.Auth == nil ||
		svc.Log == nil || svc.Throttle == nil {
		return nil, fmt.Errorf("doshii: incomplete services (store, clock, sealer, auth registry, throttle and log are required)")
	}
	var dc config.Doshii
	var sc config.Server
	if svc.Config != nil {
		dc = svc.Config.Doshii
		sc = svc.Config.Server
	}
	cfg, err := settingsFrom(dc, sc)
	if err != nil {
		return nil, err
	}
	m := &Module{svc: svc, cfg: cfg}
	m.verifier = newVerifier(svc, cfg.pastWindow, cfg.futureWindow)
	if svc.Hub != nil {
		m.sockets = newSockets(m, svc.Hub, cfg.offlineAfter)
		if ob, ok := svc.Store.(EventOutbox); ok && svc.Verifier != nil {
			m.events = &eventsAPI{m: m, ob: ob, ttl: cfg.eventTTL, authn: gateway.NewPosgateAuthenticator(svc.Verifier)}
		}
	}
	if svc.Events != nil {
		// A vendor key or location token rotated on any replica is dropped from this replica's
		// caches at once; the cache lifetimes only bound what a missed notice can cost.
		svc.Events.Subscribe(TopicChanged, func(payload []byte) {
			var c change
			if err := json.Unmarshal(payload, &c); err != nil || (c.Vendor == "" && c.Location == "") {
				m.verifier.forgetAll() // unreadable: forget everything rather than keep a stale entry
				return
			}
			if c.Vendor != "" {
				m.verifier.forgetVendor(c.Vendor)
				if m.sockets != nil {
					// A rotation with no overlap ends the old key now: its sockets go at once.
					go m.sockets.checkVendorKeys(context.Background(), c.Vendor)
				}
			}
			if c.Location != "" {
				m.verifier.forgetLocation(c.Location)
			}
		})
	}
	return m, nil
}

// TopicChanged is the event-bus topic on which a rotation is announced to every replica, payload
// {"vendor":"<api name>"} or {"location":"<location id>"}.
const TopicChanged = "doshii_changed"

type change struct {
	Vendor   string `json:"vendor,omitempty"`
	Location string `json:"location,omitempty"`
}

// announce forgets c here and tells the other replicas (best effort: their caches also expire on
// their own).
func (m *Module) announce(ctx context.Context, c change) {
	if c.Vendor != "" {
		m.verifier.forgetVendor(c.Vendor)
	}
	if c.Location != "" {
		m.verifier.forgetLocation(c.Location)
	}
	if m.svc.Events == nil {
		return
	}
	payload, _ := json.Marshal(c)
	if err := m.svc.Events.Publish(context.WithoutCancel(ctx), TopicChanged, payload); err != nil {
		m.svc.Log.LogAttrs(ctx, slog.LevelWarn, "doshii: announcing a rotation failed", slog.String("error", err.Error()))
	}
}

// settingsFrom applies the documented defaults to unset (zero) keys and refuses bad values with a
// message naming the key, the value and what is allowed.
func settingsFrom(dc config.Doshii, sc config.Server) (settings, error) {
	pick := func(key string, v, def int) (time.Duration, error) {
		if v < 0 {
			return 0, fmt.Errorf("doshii.%s: %d is not allowed (seconds, ≥ 0; 0 means the default %d)", key, v, def)
		}
		if v == 0 {
			v = def
		}
		return config.Seconds(v), nil
	}
	var s settings
	var err error
	if s.pastWindow, err = pick("past_window", dc.PastWindow, 600); err != nil {
		return s, err
	}
	if s.futureWindow, err = pick("future_window", dc.FutureWindow, 60); err != nil {
		return s, err
	}
	if s.keyOverlap, err = pick("key_overlap", dc.KeyOverlap, 86400); err != nil {
		return s, err
	}
	if s.offlineAfter, err = pick("offline_after", dc.OfflineAfter, 90); err != nil {
		return s, err
	}
	if s.eventTTL, err = pick("event_ttl", dc.EventTTL, 600); err != nil {
		return s, err
	}
	s.prefix = dc.Prefix
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if err := checkPrefix(s.prefix); err != nil {
		return s, err
	}
	s.maxBody = maxOnboardingBody
	if sc.MaxBodyBytes > 0 && sc.MaxBodyBytes < s.maxBody {
		s.maxBody = sc.MaxBodyBytes
	}
	return s, nil
}

// checkPrefix accepts a canonical absolute path without a trailing slash or pattern characters.
func checkPrefix(p string) error {
	bad := func() error {
		return fmt.Errorf("doshii.prefix: %q is not allowed (an absolute path such as %q: starts with /, no trailing /, no dot segments, letters, digits, '-', '_', '.' and '/' only)", p, DefaultPrefix)
	}
	if len(p) < 2 || p[0] != '/' || strings.HasSuffix(p, "/") || httpx.CheckPath(p) != nil {
		return bad()
	}
	for _, c := range p {
		ok := c == '/' || c == '-' || c == '_' || c == '.' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
		if !ok {
			return bad()
		}
	}
	return nil
}

// Start runs the sockets' health-check loop until ctx ends or Shutdown.
func (m *Module) Start(ctx context.Context) error {
	if m.sockets != nil {
		m.sockets.start(ctx)
	}
	return nil
}

// Shutdown stops the sockets' health checks (the hub closes the sockets themselves).
func (m *Module) Shutdown(ctx context.Context) error {
	if m.sockets == nil {
		return nil
	}
	return m.sockets.shutdown(ctx)
}

// Verifier returns the module's credential checks (the websocket handlers reuse them).
func (m *Module) Verifier() *Verifier { return m.verifier }

// Mount registers the onboarding and venue routes under the prefix, the "doshii.venue"
// authenticator and the admin routes.
func (m *Module) Mount(public, admin app.Mux) error {
	p := m.cfg.prefix
	public.Handle("POST "+p+"/organisations", http.HandlerFunc(m.createOrganisation))
	public.Handle("POST "+p+"/locations", http.HandlerFunc(m.createLocation))
	public.Handle("GET "+p+"/locations/{id}", http.HandlerFunc(m.getLocation))
	m.svc.Auth.Register(AuthVenue, &venueAuthenticator{m: m})
	if m.sockets != nil {
		public.Handle("GET /pos/socket", http.HandlerFunc(m.sockets.posSocket))
		public.Handle("GET /vendor/socket", http.HandlerFunc(m.sockets.vendorSocket))
	}
	if m.events != nil {
		public.Handle("POST /v1/doshii/locations/{location_id}/events", http.HandlerFunc(m.events.publish))
		public.Handle("GET /v1/doshii/locations/{location_id}/events/{id}", http.HandlerFunc(m.events.get))
	}
	if admin != nil {
		admin.Handle("GET /doshii/locations", http.HandlerFunc(m.adminListLocations))
		admin.Handle("GET /doshii/locations/{id}", http.HandlerFunc(m.adminGetLocation))
		admin.Handle("POST /doshii/locations/{id}/disable", m.adminSetLocationDisabled(true))
		admin.Handle("POST /doshii/locations/{id}/enable", m.adminSetLocationDisabled(false))
		admin.Handle("POST /doshii/vendors/{id}/disable", m.adminSetVendorDisabled(true))
		admin.Handle("POST /doshii/vendors/{id}/enable", m.adminSetVendorDisabled(false))
		admin.Handle("POST /doshii/vendors", http.HandlerFunc(m.adminCreateVendor))
		admin.Handle("GET /doshii/vendors", http.HandlerFunc(m.adminListVendors))
		admin.Handle("POST /doshii/vendors/{id}/rotate-key", http.HandlerFunc(m.adminRotateVendorKey))
		admin.Handle("POST /doshii/locations/{id}/rotate-token", http.HandlerFunc(m.adminRotateLocationToken))
		admin.Handle("DELETE /doshii/locations/{id}", http.HandlerFunc(m.adminDeleteLocation))
		admin.Handle("DELETE /doshii/vendors/{id}", http.HandlerFunc(m.adminDeleteVendor))
	}
	return nil
}
