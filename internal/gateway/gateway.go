// Package gateway is posgate's authenticated reverse proxy. Routes from the config file map a
// method and path to the credentials they accept (authenticators registered by the dialects, by
// name), a policy (scopes, audience, tenant binding, amount cap, single use, rate limit) and an
// upstream. A request that passes is forwarded with the caller's credential removed and a signed
// identity added (see client/identity); one that does not is answered in the route's dialect and
// never reaches the upstream.
//
// Request flow, per route:
//
//	authenticate  the route's means, in order; the first that accepts wins. A credential that is
//	              present but wrong is answered by its authenticator; no credential of the route's
//	              means but one of another registered means → 403; none at all → 401.
//	authorize     audience, scopes, consumability, rate limit, tenant binding (path wildcards,
//	              headers, query, JSON or form body), amount cap — each refusal in the dialect of
//	              the authenticator that accepted the credential.
//	claim         on a consuming route, the token's single use is claimed in the store
//	              ("consume:<jti>", UseOnce): one call per token on every replica, or 409.
//	forward       Forwarder: credentials stripped, identity signed, timeouts mapped to 502/504;
//	              on a consuming route a 2xx answer revokes the token before the caller sees it,
//	              and a non-2xx answer releases the claim (the token may be used again).
package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/httpx"
)

// Outcome labels (metrics) of refusals decided by the gateway.
const (
	outcomeNoCredential  = "no_credential"
	outcomeBadCredential = "bad_credential"
	outcomeOtherMeans    = "other_means"
	outcomeAudience      = "wrong_audience"
	outcomeScope         = "insufficient_scope"
	outcomeNotConsumable = "not_consumable"
	outcomeConsumed      = "already_consumed"
	outcomeInProgress    = "consume_in_progress"
	outcomeUnavailable   = "store_unavailable"
	outcomeRateLimited   = "rate_limited"
	outcomeTenant        = "tenant_mismatch"
	outcomeAmount        = "amount_exceeded"
	outcomeBadRequest    = "bad_request"
	outcomeInternal      = "internal_error"
)

// CredentialDetector is implemented by authenticators that can tell, without checking it and
// without side effects, whether a request carries a credential of their kind. The gateway uses
// it to answer "this route does not accept that kind of credential" (403); for authenticators
// without it, it calls Authenticate and counts anything but auth.ErrNoCredential as present.
type CredentialDetector interface {
	HasCredential(r *http.Request) bool
}

// StablePrincipals is implemented by authenticators that hand out the same *auth.Principal, never
// modified, each time the same credential comes back (the posgate authenticator keeps them per
// token). The forwarder then keeps the principal's encoded identity header instead of encoding it
// on every request.
type StablePrincipals interface {
	StablePrincipals() bool
}

// Gateway is the gateway module.
type Gateway struct {
	log    *slog.Logger
	fwd    *Forwarder
	routes []*route
	table  *http.ServeMux // the route table alone (405 answers, tests)
	byPat  map[string]*route
	policy policy
	single *singleUse
}

var _ app.Module = (*Gateway)(nil)

// New builds the gateway from svc.Config.Routes. It must run after every dialect module has
// registered its authenticators in svc.Auth, and svc.Upstream must be the *Forwarder from
// NewForwarder. It registers the "posgate" authenticator (any posgate access token) unless one is
// registered already. Every configuration problem fails here, naming the route.
func New(svc *app.Services) (app.Module, error) {
	return NewGateway(svc)
}

// NewGateway is New returning the concrete type (tests, benchmarks).
func NewGateway(svc *app.Services) (*Gateway, error) {
	if svc == nil || svc.Config == nil || svc.Auth == nil {
		return nil, errors.New("gateway: services, config and authenticator registry are required")
	}
	fwd, ok := svc.Upstream.(*Forwarder)
	if !ok || fwd == nil {
		return nil, errors.New("gateway: svc.Upstream must be the forwarder from gateway.NewForwarder (build it before the modules)")
	}
	if _, have := svc.Auth.Get(PosgateAuthName); !have && svc.Verifier != nil {
		svc.Auth.Register(PosgateAuthName, NewPosgateAuthenticator(svc.Verifier))
	}
	routes, table, err := compileRoutes(svc.Config.Routes, svc.Auth, fwd.HasUpstream, fwd.Upstreams())
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	for _, rt := range routes {
		if rt.cfg.Consume && svc.Revoker == nil {
			return nil, fmt.Errorf("gateway: %s: consume: true needs the token revoker, which is not configured", rt.name)
		}
		if rt.cfg.Consume && svc.Store == nil {
			return nil, fmt.Errorf("gateway: %s: consume: true needs the store (single use is decided by the store), which is not configured", rt.name)
		}
	}
	log := svc.Log
	if log == nil {
		log = slog.Default()
	}
	clk := svc.Clock
	if clk == nil {
		clk = clock.System{}
	}
	maxBody := svc.Config.Server.MaxBodyBytes
	if maxBody <= 0 {
		maxBody = httpx.DefaultMaxBody
	}
	single := &singleUse{log: log, clock: clk, revoker: svc.Revoker}
	if svc.Store != nil {
		single.claims = svc.Store
	}
	g := &Gateway{
		log: log, fwd: fwd, routes: routes, table: table, byPat: map[string]*route{},
		policy: policy{clock: clk, limiters: newLimiters(DefaultMaxLimiters), maxBody: maxBody, consumed: &single.consumed},
		single: single,
	}
	for _, rt := range routes {
		for _, p := range rt.patterns {
			g.byPat[p] = rt
		}
	}
	return g, nil
}

// Mount registers every route's patterns on the public mux, a catch-all "/" answering 404 JSON
// (unless the server registered "/" itself), and GET /gateway/routes on the admin mux. A route
// that conflicts with an endpoint a dialect mounted is an error naming the route.
func (g *Gateway) Mount(public, admin app.Mux) error {
	for _, rt := range g.routes {
		h := g.handler(rt)
		for _, pat := range rt.patterns {
			if err := safeHandle(public, pat, h); err != nil {
				return fmt.Errorf("gateway: %s: %v (another endpoint already serves it)", rt.name, err)
			}
		}
	}
	_ = safeHandle(public, "/", http.HandlerFunc(g.notFound)) // the server may own "/": then its answer stands
	if admin != nil {
		if err := safeHandle(admin, "GET /gateway/routes", http.HandlerFunc(g.listRoutes)); err != nil {
			return fmt.Errorf("gateway: %v", err)
		}
	}
	return nil
}

// Routes returns the route table's patterns in configuration order.
func (g *Gateway) Routes() []string {
	var out []string
	for _, rt := range g.routes {
		out = append(out, rt.patterns...)
	}
	return out
}

// notFound answers requests no endpoint or route matches: 404, or 405 with Allow when a route
// serves the path with other methods.
func (g *Gateway) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		if m == r.Method {
			continue
		}
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pat := g.table.Handler(probe); pat != "" && g.byPat[pat] != nil {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeJSONError(w, http.StatusMethodNotAllowed, "method_not_allowed", "this path does not accept "+r.Method)
		return
	}
	writeJSONError(w, http.StatusNotFound, "not_found", "no route matches this request")
}

type routeInfo struct {
	Methods        []string `json:"methods"`
	Path           string   `json:"path"`
	Auth           []string `json:"auth"`
	Scopes         []string `json:"scopes,omitempty"`
	Audience       string   `json:"audience,omitempty"`
	Upstream       string   `json:"upstream"`
	Consume        bool     `json:"consume,omitempty"`
	MaxAmountField string   `json:"max_amount_field,omitempty"`
	RateLimit      float64  `json:"rate_limit,omitempty"`
	RateBurst      int      `json:"rate_burst,omitempty"`
	TenantHeaders  []string `json:"tenant_headers"`
	TenantPath     []string `json:"tenant_wildcards,omitempty"`
}

func (g *Gateway) listRoutes(w http.ResponseWriter, _ *http.Request) {
	out := make([]routeInfo, 0, len(g.routes))
	for _, rt := range g.routes {
		ri := routeInfo{Path: rt.path, Scopes: rt.scopes, Audience: rt.cfg.Audience, Upstream: rt.upstream,
			Consume: rt.cfg.Consume, MaxAmountField: rt.cfg.MaxAmountField, RateLimit: float64(rt.limit),
			RateBurst: rt.burst, TenantHeaders: rt.tenantHeaders}
		for _, p := range rt.patterns {
			m, _, _ := strings.Cut(p, " ")
			ri.Methods = append(ri.Methods, m)
		}
		for _, a := range rt.auths {
			ri.Auth = append(ri.Auth, a.name)
		}
		for _, tw := range rt.tenantWildcards {
			ri.TenantPath = append(ri.TenantPath, tw.name)
		}
		out = append(out, ri)
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"routes": out})
}
