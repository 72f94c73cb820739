package gateway

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
)

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
	if err := CheckRequestShape(r); err != nil {
		observeOutcome(label, outcomeBadRequest)
		first.WriteError(w, r, err)
		return
	}
	p, a, outcome := g.authenticate(w, r, rt)
	if p == nil {
		observeOutcome(label, outcome)
		return
	}
	if outcome, err := g.policy.authorize(r, rt, p); err != nil {
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
		if outcome, err := g.single.claim(r.Context(), label, p); err != nil {
			observeOutcome(label, outcome)
			if e, ok := errs.As(err); ok && e.Kind == errs.Unavailable {
				setRetryAfter(w.Header(), e)
			}
			a.WriteError(w, r, err)
			return
		}
		onSuccess = func() { g.single.consume(r.Context(), label, p) }
		onRefused = func() { g.single.release(r.Context(), label, p) }
	}
	stable := false
	if sp, ok := a.(StablePrincipals); ok {
		stable = sp.StablePrincipals()
	}
	observeOutcome(label, g.fwd.forward(w, r, rt.upstream, label, p, stable, a, onSuccess, onRefused))
}

// CheckRequestShape refuses what the gateway could not forward faithfully or safely:
//   - a query string that does not parse (a ';' separator, a malformed escape): the upstream
//     gets the query byte for byte, so posgate must read it the way the upstream will, and
//     ReverseProxy would silently drop or reorder what it cannot parse;
//   - a credential sent more than once or more than one way (RFC 6750 §2: 400 invalid_request):
//     two Authorization headers, or an access_token query parameter (never forwarded upstream,
//     and never accepted: URLs end up in logs).
func CheckRequestShape(r *http.Request) error {
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
