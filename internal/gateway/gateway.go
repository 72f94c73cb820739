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
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/jsonx"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// Outcome labels (metrics) of refusals decided by the gateway.
const (
	outcomeNoCredential   = "no_credential"
	outcomeBadCredential  = "bad_credential"
	outcomeOtherMeans     = "other_means"
	outcomeAudience       = "wrong_audience"
	outcomeScope          = "insufficient_scope"
	outcomeNotConsumable  = "not_consumable"
	outcomeConsumed       = "already_consumed"
	outcomeInProgress     = "consume_in_progress"
	outcomeUnavailable    = "store_unavailable"
	outcomeRateLimited    = "rate_limited"
	outcomeTenant         = "tenant_mismatch"
	outcomeAmount         = "amount_exceeded"
	outcomeBadRequest     = "bad_request"
	outcomeInternal       = "internal_error"
	consumeRevokeTimeout  = 5 * time.Second
	consumedEntriesMax    = 100_000
	defaultConsumedExpiry = 24 * time.Hour
	// claimMargin keeps a consume claim past the token's expiry, so a verifier that tolerates
	// some clock skew on exp can never accept the token once its claim has lapsed.
	claimMargin = 10 * time.Minute
	// storeRetryAfter is the Retry-After of a 503 when the store cannot decide a claim.
	storeRetryAfter = 2 * time.Second
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
	log      *slog.Logger
	clock    clock.Clock
	fwd      *Forwarder
	revoker  token.Revoker
	routes   []*route
	table    *http.ServeMux // the route table alone (405 answers, tests)
	byPat    map[string]*route
	maxBody  int64
	limiters *limiters

	// claims decides the single use of consumable tokens: the store, shared by every replica
	// (never memory alone: two replicas would each let one call through).
	claims   store.SingleUse
	consumed consumedSet // tokens consumed through this replica: refused on every route at once
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
	g := &Gateway{
		log: log, clock: clk, fwd: fwd, revoker: svc.Revoker,
		routes: routes, table: table, byPat: map[string]*route{},
		maxBody: maxBody, limiters: newLimiters(DefaultMaxLimiters),
	}
	if svc.Store != nil {
		g.claims = svc.Store
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

func (g *Gateway) handler(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.serve(w, r, rt) })
}

// serve handles one request on rt.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request, rt *route) {
	label := r.Pattern
	if label == "" {
		label = rt.patterns[0]
	}
	first := rt.auths[0].a
	// The server refuses non-canonical paths before routing; checked again so the gateway is safe
	// on any mux (the route that matched must be the path the upstream sees).
	if err := httpx.CheckPath(httpx.RequestPath(r)); err != nil {
		observeOutcome(label, outcomeBadRequest)
		first.WriteError(w, r, err)
		return
	}
	if name, bad := underscoreHeader(r.Header); bad {
		observeOutcome(label, outcomeBadRequest)
		first.WriteError(w, r, errs.New(errs.BadInput, "invalid_header_name",
			fmt.Sprintf("header names with an underscore are not accepted (%.64s): use hyphens", name)))
		return
	}
	if err := checkRequestShape(r); err != nil {
		observeOutcome(label, outcomeBadRequest)
		first.WriteError(w, r, err)
		return
	}
	p, a, outcome := g.authenticate(w, r, rt)
	if p == nil {
		observeOutcome(label, outcome)
		return
	}
	if outcome, err := g.authorize(r, rt, p); err != nil {
		observeOutcome(label, outcome)
		if e, ok := errs.As(err); ok && e.Kind == errs.Throttled {
			setRetryAfter(w.Header(), e)
		}
		g.log.LogAttrs(r.Context(), slog.LevelInfo, "gateway: refused",
			slog.String("route", label), slog.String("outcome", outcome), slog.String("means", p.Means),
			slog.String("subject", p.Subject), slog.String("client", p.Client), slog.String("address", auth.Addr(r)))
		a.WriteError(w, r, err)
		return
	}

	var onSuccess, onRefused func()
	if rt.cfg.Consume {
		// The claim is the single-use decision, taken in the store after every other check passed
		// and before anything is forwarded. It stays after a 2xx (even if the revocation below
		// fails, no replica forwards this token on a consuming route again) and is released after
		// an answer the upstream refused; when the outcome is unknown (timeout, connection lost
		// after sending) it stays: the upstream may have acted on the call.
		if outcome, err := g.claim(r.Context(), label, p); err != nil {
			observeOutcome(label, outcome)
			if e, ok := errs.As(err); ok && e.Kind == errs.Unavailable {
				setRetryAfter(w.Header(), e)
			}
			a.WriteError(w, r, err)
			return
		}
		onSuccess = func() { g.consume(r.Context(), label, p) }
		onRefused = func() { g.release(r.Context(), label, p) }
	}
	stable := false
	if sp, ok := a.(StablePrincipals); ok {
		stable = sp.StablePrincipals()
	}
	observeOutcome(label, g.fwd.forward(w, r, rt.upstream, label, p, stable, a, onSuccess, onRefused))
}

// checkRequestShape refuses what the gateway could not forward faithfully or safely:
//   - a query string that does not parse (a ';' separator, a malformed escape): the upstream
//     gets the query byte for byte, so posgate must read it the way the upstream will, and
//     ReverseProxy would silently drop or reorder what it cannot parse;
//   - a credential sent more than once or more than one way (RFC 6750 §2: 400 invalid_request):
//     two Authorization headers, or an access_token query parameter (never forwarded upstream,
//     and never accepted: URLs end up in logs).
func checkRequestShape(r *http.Request) error {
	if len(r.Header["Authorization"]) > 1 {
		return errs.New(errs.BadInput, "invalid_request", "the request carries more than one Authorization header")
	}
	if q := r.URL.RawQuery; q != "" {
		vals, err := url.ParseQuery(q)
		if err != nil {
			return errs.New(errs.BadInput, "invalid_request",
				"the query string cannot be parsed: separate parameters with '&' and encode ';' and '%' as %3B and %25")
		}
		for k := range vals {
			if strings.EqualFold(k, "access_token") {
				return errs.New(errs.BadInput, "invalid_request",
					"access tokens are accepted only in the Authorization header, never in the URL")
			}
		}
	}
	return nil
}

// underscoreHeader reports a header whose name contains '_'. CGI-style upstreams (and the
// servers and frameworks that build a CGI environment: nginx, Apache, PHP, WSGI, Rack) turn both
// '-' and '_' into '_', so `doshii_location_id` and `Doshii-Location-Id` become one variable, and
// `X_Posgate_Principal` reads as the identity header. The gateway compares names as HTTP does; a
// name with '_' could therefore name another tenant, or pose as an identity, forwarding or
// credential header, under a spelling its checks would not see. Refusing such requests (400)
// rather than guessing which spelling an upstream reads is the only safe choice.
func underscoreHeader(h http.Header) (string, bool) {
	for k := range h {
		if strings.IndexByte(k, '_') >= 0 {
			return k, true
		}
	}
	return "", false
}

// authenticate runs the route's means. It returns the principal and the authenticator that
// accepted it, or nil after writing the refusal (outcome says which).
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, rt *route) (*auth.Principal, auth.Authenticator, string) {
	var failErr error
	var failAuth auth.Authenticator
	for _, na := range rt.auths {
		p, err := na.a.Authenticate(r)
		if err == nil {
			if p == nil {
				g.log.LogAttrs(r.Context(), slog.LevelError, "gateway: authenticator returned no principal", slog.String("authenticator", na.name))
				na.a.WriteError(w, r, errs.New(errs.Internal, "server_error", "internal error"))
				return nil, nil, outcomeInternal
			}
			if p.Means == "" { // never mutate what an authenticator returned (it may be cached)
				cp := *p
				cp.Means = na.name
				p = &cp
			}
			return p, na.a, ""
		}
		if auth.IsNoCredential(err) {
			continue
		}
		if failErr == nil {
			failErr, failAuth = err, na.a
		}
	}
	if failErr != nil {
		failAuth.WriteError(w, r, failErr)
		return nil, nil, outcomeBadCredential
	}
	first := rt.auths[0].a
	if g.otherMeansPresent(r, rt) {
		first.WriteError(w, r, errs.New(errs.Forbidden, "credential_not_accepted", "this route does not accept this kind of credential"))
		return nil, nil, outcomeOtherMeans
	}
	first.WriteError(w, r, auth.ErrNoCredential)
	return nil, nil, outcomeNoCredential
}

// otherMeansPresent reports whether r carries a credential of a registered means the route does
// not list. It runs only on the refusal path.
func (g *Gateway) otherMeansPresent(r *http.Request, rt *route) bool {
	for _, na := range rt.others {
		if d, ok := na.a.(CredentialDetector); ok {
			if d.HasCredential(r) {
				return true
			}
			continue
		}
		if _, err := na.a.Authenticate(r); err == nil || !auth.IsNoCredential(err) {
			return true
		}
	}
	return false
}

// authorize applies the route's policy to p. On refusal it returns the outcome label and the
// error to render; nothing has been forwarded.
func (g *Gateway) authorize(r *http.Request, rt *route, p *auth.Principal) (string, error) {
	if aud := rt.cfg.Audience; aud != "" && !hasAudience(p.Claims["aud"], aud) {
		return outcomeAudience, errs.New(errs.Unauthenticated, "invalid_token", "the access token is not valid for this API (audience)")
	}
	if missing := missingScopes(p, rt.scopes); missing {
		return outcomeScope, &errs.Error{Kind: errs.Forbidden, Code: "insufficient_scope",
			Message: "the access token lacks a required scope: " + strings.Join(rt.scopes, " "),
			Err:     &ScopeError{Required: rt.scopes}}
	}
	if p.TokenID != "" && g.consumed.has(p.TokenID, g.clock.Now()) {
		return outcomeConsumed, errs.New(errs.Unauthenticated, "invalid_token", "the token has already been used")
	}
	if rt.cfg.Consume && p.TokenID == "" {
		return outcomeNotConsumable, errs.New(errs.Forbidden, "not_consumable", "this route needs a single-use token; this credential cannot be consumed")
	}
	if rt.limit > 0 {
		ok, wait := g.limiters.allow(limiterKey(rt, p), rt.limit, rt.burst, g.clock.Now())
		if !ok {
			return outcomeRateLimited, &errs.Error{Kind: errs.Throttled, Code: "rate_limited",
				Message: "too many requests; slow down", RetryAfter: wait}
		}
	}
	if err := g.checkTenant(r, rt, p); err != nil {
		if errs.KindOf(err) == errs.Forbidden {
			return outcomeTenant, err
		}
		return outcomeBadRequest, err
	}
	if rt.cfg.MaxAmountField != "" || bound(p) {
		if outcome, err := g.checkBody(r, rt, p); err != nil {
			return outcome, err
		}
	}
	return "", nil
}

func missingScopes(p *auth.Principal, need []string) bool {
	for _, s := range need {
		if !p.HasScope(s) {
			return true
		}
	}
	return false
}

// hasAudience reports whether a token's aud claim (a string or a list) contains want.
func hasAudience(aud any, want string) bool {
	switch v := aud.(type) {
	case string:
		return v == want
	case []string:
		return slices.Contains(v, want)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// bound reports whether p is bound to a tenant (only bound principals are restricted by the
// tenant rules; a platform client with no tenant may name any).
func bound(p *auth.Principal) bool {
	return p.Location != "" || p.Outlet != "" || p.Organisation != ""
}

func tenantOf(p *auth.Principal, field string) string {
	switch field {
	case "location":
		return p.Location
	case "outlet":
		return p.Outlet
	case "organisation":
		return p.Organisation
	}
	return ""
}

func errTenant(field string) error {
	return errs.New(errs.Forbidden, "tenant_mismatch", "the request names another "+field+" than the credential's")
}

// checkTenant applies the tenant binding to the path, the headers and the query.
func (g *Gateway) checkTenant(r *http.Request, rt *route, p *auth.Principal) error {
	if !bound(p) {
		return nil
	}
	for _, tw := range rt.tenantWildcards {
		if want := tenantOf(p, tw.field); want != "" && r.PathValue(tw.name) != want {
			return errTenant(tw.field)
		}
	}
	for _, h := range rt.tenantHeaders {
		vals := r.Header.Values(h)
		if len(vals) == 0 {
			continue
		}
		// doshii-location-id names a location; a route's own tenant_header names whichever tenant
		// the principal is bound to (location first, then outlet, then organisation).
		field := "location"
		if h != DoshiiLocationHeader {
			switch {
			case p.Location != "":
			case p.Outlet != "":
				field = "outlet"
			default:
				field = "organisation"
			}
		}
		want := tenantOf(p, field)
		if want == "" {
			continue
		}
		for _, v := range vals {
			if strings.TrimSpace(v) != want {
				return errTenant(field)
			}
		}
	}
	if r.URL.RawQuery != "" {
		ids, err := queryIDs(r.URL.RawQuery)
		if err != nil {
			return errs.New(errs.BadInput, "invalid_request", "the query string is malformed")
		}
		if err := checkIDs(ids, p); err != nil {
			return err
		}
	}
	return nil
}

func checkIDs(ids []idValue, p *auth.Principal) error {
	for _, id := range ids {
		want := tenantOf(p, id.field)
		if want == "" {
			continue
		}
		if !id.isString || id.value != want {
			return errTenant(id.field)
		}
	}
	return nil
}

// checkBody reads the body (bounded), checks tenant ids and the amount cap, and puts the body
// back for the proxy. A body it cannot check is refused, never forwarded unchecked: see
// checkedBodyKind (415), over the limit (413), starting with a byte-order mark (400), and on an
// amount route any JSON with a repeated key, compared as jsonx does (400).
func (g *Gateway) checkBody(r *http.Request, rt *route, p *auth.Principal) (string, error) {
	amountField := rt.cfg.MaxAmountField
	kind, kindErr := checkedBodyKind(r.Header, amountField == "")
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody && r.ContentLength > 0 && kindErr != nil {
		return outcomeBadRequest, kindErr // nothing read that could not be checked
	}
	var data []byte
	if hasBody {
		var err error
		data, err = httpx.ReadBody(r, g.maxBody)
		if err != nil {
			if errs.CodeOf(err) == "body_too_large" {
				return outcomeBadRequest, errs.New(errs.TooLarge, "body_too_large",
					fmt.Sprintf("the request body is over %d bytes", g.maxBody))
			}
			return outcomeBadRequest, err
		}
		_ = r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(data))
		r.ContentLength = int64(len(data))
		r.Header.Del("Transfer-Encoding")
		r.TransferEncoding = nil
	}
	var facts bodyFacts
	if len(data) > 0 {
		if kindErr != nil {
			return outcomeBadRequest, kindErr
		}
		if bytes.HasPrefix(data, []byte(utf8BOM)) {
			return outcomeBadRequest, errInvalidBody("the body starts with a byte-order mark")
		}
		switch kind {
		case bodyJSON:
			if amountField != "" {
				// Whichever of repeated keys an upstream's parser keeps (the first, the last, a
				// case variant), it must be the one checked: none may repeat.
				if err := jsonx.CheckObject(data); err != nil {
					return outcomeBadRequest, errInvalidBody("the body must be one JSON object without repeated keys: " + err.Error())
				}
			}
			var err error
			facts, err = scanJSON(data, amountField)
			if err != nil {
				return outcomeBadRequest, errInvalidBody(err.Error())
			}
		case bodyForm:
			ids, err := queryIDs(string(data))
			if err != nil {
				return outcomeBadRequest, errInvalidBody("the form body is malformed")
			}
			facts.ids = ids
		}
	}
	if err := checkIDs(facts.ids, p); err != nil {
		return outcomeTenant, err
	}
	if f := rt.cfg.MaxAmountField; f != "" {
		if len(data) == 0 {
			return outcomeBadRequest, errInvalidBody(fmt.Sprintf("the body must be a JSON object with a numeric %q", f))
		}
		if len(facts.amounts) == 0 {
			return outcomeBadRequest, errInvalidBody(fmt.Sprintf("the body must carry a numeric %q", f))
		}
		limit, ok := claimAmount(p.Claims["amount"])
		if !ok {
			return outcomeAmount, errs.New(errs.Forbidden, "amount_exceeded", "this credential carries no amount to spend")
		}
		for _, a := range facts.amounts {
			if !a.isNumber {
				return outcomeBadRequest, errInvalidBody(fmt.Sprintf("%q must be a number", f))
			}
			v, err := parseDecimal(a.text)
			if err != nil {
				return outcomeBadRequest, errInvalidBody(fmt.Sprintf("%q is out of range", f))
			}
			if v.Cmp(limit) > 0 {
				return outcomeAmount, errs.New(errs.Forbidden, "amount_exceeded",
					fmt.Sprintf("%q exceeds the amount this credential may spend", f))
			}
		}
	}
	return "", nil
}

// limiterKey identifies a principal on a route. Tenant ids are part of it so that two locations
// sharing a vendor key get separate buckets.
func limiterKey(rt *route, p *auth.Principal) string {
	var b strings.Builder
	b.Grow(64)
	b.WriteString(strconv.Itoa(rt.index))
	for _, s := range [...]string{p.Means, p.Client, p.Subject, p.Organisation, p.Location, p.Outlet, p.Device, p.Vendor} {
		b.WriteByte(0)
		b.WriteString(s)
	}
	return b.String()
}

// tokenExpiry is how long p's token can be presented: its expiry, or a day when it has none.
func tokenExpiry(p *auth.Principal, now time.Time) time.Time {
	if exp := p.ExpiresAt; !exp.IsZero() && exp.After(now) {
		return exp
	}
	return now.Add(defaultConsumedExpiry)
}

// claimKey names the store record of a consumable token's single use.
func claimKey(jti string) string { return "consume:" + jti }

// claim takes p's token's single use in the store. Exactly one caller on any replica gets it
// until it is released or the token has expired; the others get 409. A store that cannot decide
// is 503 with Retry-After: nothing is forwarded on a guess.
func (g *Gateway) claim(ctx context.Context, route string, p *auth.Principal) (string, error) {
	now := g.clock.Now()
	err := g.claims.UseOnce(ctx, claimKey(p.TokenID), now, tokenExpiry(p, now).Add(claimMargin))
	switch {
	case err == nil:
		return "", nil
	case errors.Is(err, store.ErrAlreadyUsed):
		return outcomeInProgress, errs.New(errs.Conflict, "consume_in_progress",
			"this token has already been used on this route, or another call with it is in progress")
	default:
		g.log.LogAttrs(ctx, slog.LevelError, "gateway: single-use claim failed; call refused",
			slog.String("route", route), slog.String("means", p.Means), slog.String("client", p.Client),
			slog.String("error", err.Error()))
		return outcomeUnavailable, &errs.Error{Kind: errs.Unavailable, Code: "store_unavailable",
			Message: "the service is temporarily unavailable; retry later", RetryAfter: storeRetryAfter, Err: err}
	}
}

// release gives p's claim back after the upstream refused the call (a non-2xx answer, or no
// connection at all), so the token may be used again. It runs before the answer is written to
// the caller. If the store cannot release it, the token stays used until it expires: the safe
// side (the caller needs a new token), logged.
func (g *Gateway) release(ctx context.Context, route string, p *auth.Principal) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), consumeRevokeTimeout)
	defer cancel()
	if err := g.claims.ReleaseOnce(ctx, claimKey(p.TokenID)); err != nil {
		g.log.LogAttrs(ctx, slog.LevelWarn, "gateway: single-use claim not released; the token stays used until it expires",
			slog.String("route", route), slog.String("means", p.Means), slog.String("client", p.Client),
			slog.String("error", err.Error()))
	}
}

// consume revokes p's token after a 2xx answer on a consuming route, on every replica (the
// revoker writes the store and announces it), so it is refused on every route, not only the
// consuming ones (which the store claim already closes). It runs before the answer is written to
// the caller. The token is also remembered locally, so this replica refuses it on every route
// even if the revocation failed.
func (g *Gateway) consume(ctx context.Context, route string, p *auth.Principal) {
	now := g.clock.Now()
	exp := tokenExpiry(p, now)
	g.consumed.add(p.TokenID, exp, now)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), consumeRevokeTimeout)
	defer cancel()
	if err := g.revoker.Revoke(ctx, "jti", p.TokenID, exp, "consumed by "+route); err != nil {
		g.log.LogAttrs(ctx, slog.LevelError, "gateway: consumed token could not be revoked on every replica",
			slog.String("route", route), slog.String("means", p.Means), slog.String("client", p.Client),
			slog.String("error", err.Error()))
	}
}

// consumedSet remembers tokens consumed on this replica until they expire.
type consumedSet struct {
	n  atomic.Int64
	mu sync.RWMutex
	m  map[string]time.Time
}

func (c *consumedSet) has(jti string, now time.Time) bool {
	if c.n.Load() == 0 {
		return false
	}
	c.mu.RLock()
	exp, ok := c.m[jti]
	c.mu.RUnlock()
	return ok && exp.After(now)
}

func (c *consumedSet) add(jti string, exp, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]time.Time{}
	}
	if len(c.m) >= consumedEntriesMax {
		for k, e := range c.m {
			if !e.After(now) {
				delete(c.m, k)
			}
		}
	}
	if len(c.m) < consumedEntriesMax { // when still full, the durable revocation alone protects
		c.m[jti] = exp
	}
	c.n.Store(int64(len(c.m)))
}
