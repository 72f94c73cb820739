// Package orderpay speaks PowerEPOS "Order N Pay": the POS connects out to posgate.
//
//   - POST /api/powerepos/v1/auth {ProviderOutletID, POSRemoteID, AuthSecret} → {AccessToken}: the
//     AccessToken is a single-use ticket (256 random bits, stored as SHA-256, bound to the outlet,
//     valid orderpay.ticket_lifetime seconds) because it travels in a URL query string;
//   - the websocket on / and /ws with ?token=<AccessToken>: refused upgrades are 401
//     {"ErrorMessage"} before any 101; one live connection per outlet (a newer one closes the
//     older with 4009); disabling an outlet closes its socket with 4003;
//   - the integrator API, POST /v1/orderpay/outlets/{provider_outlet_id}/requests and GET
//     …/requests/{RequestID}, Bearer posgate access token with scope orderpay:send: a request is
//     written to the store's outbox before it is answered, delivered by the hub to the replica
//     holding the outlet's socket, and the POS answer (matched by RequestID) is returned as it
//     came, or 202 when it did not come within the wait;
//   - the admin API under /orderpay/outlets.
//
// Wire shapes and routes live here; sockets are the hub's, tickets and outlets the store's.
package orderpay

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/ttlcache"
)

// Names other packages and configuration files use.
const (
	// Dialect names the dialect in hub metrics and logs.
	Dialect = "orderpay"
	// ScopeSend is the scope the integrator API requires.
	ScopeSend = "orderpay:send"
	// ThrottleScope counts failed auth calls (per address first, then per address and outlet,
	// outlet-wide only at the throttle's much higher identity threshold).
	ThrottleScope = "orderpay.outlet"
	// ticketThrottleScope counts refused upgrades per address: tickets cannot be guessed, the
	// count only stops one address from making every upgrade a store round trip.
	ticketThrottleScope = "orderpay.ticket"
	// TopicAnswered announces, on every replica, that a request was answered or expired:
	// payload {"queue","id"}, with {"answer","expires"} when the answer fits. Waiting integrator
	// calls return the answer carried, or look at the store again.
	TopicAnswered = "orderpay_answered"
)

// Wire limits from the protocol.
const (
	maxProviderName   = 64
	maxDeviceID       = 64
	maxUserIdentifier = 36
	maxRequestID      = 256
	// maxOutletID bounds provider_outlet_id and pos_remote_id: ids, not documents.
	maxOutletID = 128
	// maxAuthSecret bounds an AuthSecret (argon2id input) and minAuthSecret is what a person
	// must choose at least.
	maxAuthSecret = 1024
	minAuthSecret = 12
	// maxAuthBody caps the auth body: three short strings.
	maxAuthBody = 8 << 10
	// maxAdminBody caps admin request bodies.
	maxAdminBody = 8 << 10
	// ticketBytes is the entropy of an AccessToken.
	ticketBytes    = 32
	outletIDPrefix = "op_"
)

// Module is the orderpay dialect.
type Module struct {
	svc     *app.Services
	cfg     settings
	hub     *hub.Hub
	store   Store
	outbox  store.Outbox
	waiters *waiters
	outlets *ttlcache.Cache[string, *store.OrderpayOutlet] // by ProviderOutletID (outlets.go)
	bearer  *gateway.PosgateAuthenticator
}

// Store is the store role the dialect needs.
type Store interface {
	store.Orderpay
	store.Audit
	store.Counters
}

// settings are config.Orderpay with defaults applied and durations converted.
type settings struct {
	ticketLifetime time.Duration
	requestWait    time.Duration
	requestTTL     time.Duration
	maxBody        int64 // integrator request bodies
	pollInterval   time.Duration
}

// New builds the orderpay module from the shared services.
func New(svc *app.Services) (app.Module, error) { return newModule(svc) }

func newModule(svc *app.Services) (*Module, error) {
	if svc == nil || svc.Store == nil || svc.Clock == nil || svc.Log == nil || svc.Throttle == nil ||
		svc.Hub == nil || svc.Verifier == nil {
		return nil, errors.New("orderpay: incomplete services (store, clock, log, throttle, hub and verifier are required)")
	}
	ob, ok := svc.Store.(store.Outbox)
	if !ok {
		return nil, errors.New("orderpay: the store does not keep an outbox")
	}
	var oc config.Orderpay
	var maxBody int64 = 1 << 20
	if svc.Config != nil {
		oc = svc.Config.Orderpay
		if svc.Config.Server.MaxBodyBytes > 0 {
			maxBody = svc.Config.Server.MaxBodyBytes
		}
	}
	cfg, err := settingsFrom(oc)
	if err != nil {
		return nil, err
	}
	cfg.maxBody = maxBody
	m := &Module{svc: svc, cfg: cfg, hub: svc.Hub, store: svc.Store, outbox: ob,
		bearer: gateway.NewPosgateAuthenticator(svc.Verifier)}
	m.waiters = newWaiters(m)
	m.outlets = newOutletCache(m)
	return m, nil
}

// settingsFrom applies the documented defaults to unset (zero) keys.
func settingsFrom(oc config.Orderpay) (settings, error) {
	pick := func(key string, v, def int) (time.Duration, error) {
		if v < 0 {
			return 0, fmt.Errorf("orderpay.%s: %d is not allowed (seconds, ≥ 0; 0 means the default %d)", key, v, def)
		}
		if v == 0 {
			v = def
		}
		return config.Seconds(v), nil
	}
	var s settings
	var err error
	if s.ticketLifetime, err = pick("ticket_lifetime", oc.TicketLifetime, 300); err != nil {
		return s, err
	}
	if s.requestWait, err = pick("request_wait", oc.RequestWait, 30); err != nil {
		return s, err
	}
	if s.requestTTL, err = pick("request_ttl", oc.RequestTTL, 600); err != nil {
		return s, err
	}
	s.pollInterval = time.Second
	return s, nil
}

// Mount registers the auth endpoint, the websocket, the integrator API and the admin routes.
func (m *Module) Mount(public, admin app.Mux) error {
	public.Handle("POST /api/powerepos/v1/auth", http.HandlerFunc(m.auth))
	public.Handle("GET /{$}", http.HandlerFunc(m.upgrade))
	public.Handle("GET /ws", http.HandlerFunc(m.upgrade))
	public.Handle("POST /v1/orderpay/outlets/{outlet}/requests", http.HandlerFunc(m.postRequest))
	public.Handle("GET /v1/orderpay/outlets/{outlet}/requests/{id}", http.HandlerFunc(m.getRequest))
	if admin != nil {
		admin.Handle("POST /orderpay/outlets", http.HandlerFunc(m.adminCreate))
		admin.Handle("GET /orderpay/outlets", http.HandlerFunc(m.adminList))
		admin.Handle("GET /orderpay/outlets/{id}", http.HandlerFunc(m.adminGet))
		admin.Handle("POST /orderpay/outlets/{id}/secret", http.HandlerFunc(m.adminSecret))
		admin.Handle("POST /orderpay/outlets/{id}/disable", http.HandlerFunc(m.adminDisable))
		admin.Handle("POST /orderpay/outlets/{id}/enable", http.HandlerFunc(m.adminEnable))
	}
	return nil
}

// tenant is the hub tenant and outbox queue of an outlet.
func tenant(outletID string) string { return "orderpay:" + outletID }
