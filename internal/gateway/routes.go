package gateway

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/config"
	"golang.org/x/time/rate"
)

// route is one compiled entry of the route table.
type route struct {
	index    int
	name     string   // "routes[2] (POST /v2/…)", for messages
	path     string   // as configured
	patterns []string // one ServeMux pattern per method
	cfg      config.Route

	auths  []namedAuth // the route's means, in the configured order
	others []namedAuth // every other registered means, to tell "another means" (403) from "none" (401)

	upstream string
	scopes   []string

	tenantWildcards []tenantWildcard // {location}, {outlet}, {organisation} in the path
	tenantHeaders   []string         // headers that must name the principal's location/outlet

	limit rate.Limit // per principal; 0 = no limit
	burst int
}

// audienceScoper is implemented by authenticators that can require an audience while verifying.
type audienceScoper interface {
	ForAudience(aud string) auth.Authenticator
}

type namedAuth struct {
	name string
	a    auth.Authenticator
}

// tenantWildcard is a path wildcard bound to one of the principal's tenant ids.
type tenantWildcard struct {
	name  string // wildcard name as in the pattern
	field string // "location", "outlet", "organisation"
}

// DoshiiLocationHeader always names the caller's location when present.
const DoshiiLocationHeader = "Doshii-Location-Id"

// compileRoutes checks cfg.Routes against the registered authenticators and the configured
// upstreams and returns the route table. Every problem of every route is reported at once, each
// with the route's index and pattern, the offending value and what is allowed.
func compileRoutes(cfg []config.Route, reg *auth.Registry, hasUpstream func(string) bool, upstreams []string) ([]*route, *http.ServeMux, error) {
	known := reg.Names()
	var names []string
	var problems []error
	for i, rc := range cfg {
		names = append(names, fmt.Sprintf("routes[%d] (%s %s)", i, strings.Join(rc.Methods, ","), rc.Path))
	}
	for _, p := range config.CheckRoutes(cfg, upstreams) {
		problems = append(problems, fmt.Errorf("%s: %s", names[p.Route], p.Msg))
	}
	for i, rc := range cfg {
		if rc.Upstream != "" && slices.Contains(upstreams, rc.Upstream) != hasUpstream(rc.Upstream) {
			problems = append(problems, fmt.Errorf("%s: upstream %q is not one the forwarder knows", names[i], rc.Upstream))
		}
		for _, name := range rc.Auth {
			if _, ok := reg.Get(name); !ok {
				problems = append(problems, fmt.Errorf("%s: unknown authenticator %q; known: %s", names[i], name, strings.Join(known, ", ")))
			}
		}
	}
	if len(problems) > 0 {
		return nil, nil, errors.Join(problems...)
	}
	table := http.NewServeMux()
	out := make([]*route, 0, len(cfg))
	for i, rc := range cfg {
		rt := compileRoute(i, names[i], rc, reg, known)
		for _, pat := range rt.patterns {
			table.Handle(pat, http.NotFoundHandler()) // CheckRoutes registered the same patterns
		}
		out = append(out, rt)
	}
	return out, table, nil
}

// compileRoute builds a route config.CheckRoutes and the registry check have accepted.
func compileRoute(i int, name string, rc config.Route, reg *auth.Registry, known []string) *route {
	rt := &route{index: i, name: name, cfg: rc, path: rc.Path, upstream: rc.Upstream}
	wildcards, _ := config.RouteWildcards(rc.Path)
	for _, w := range wildcards {
		if slices.Contains(config.TenantWildcards, w) {
			rt.tenantWildcards = append(rt.tenantWildcards, tenantWildcard{name: w, field: w})
		}
	}
	for _, m := range rc.Methods {
		rt.patterns = append(rt.patterns, m+" "+rc.Path)
	}
	for _, name := range rc.Auth {
		a, _ := reg.Get(name)
		// An authenticator that can verify the audience itself (chimpy) gets the route's; the
		// gateway checks Claims["aud"] afterwards either way.
		if sc, ok := a.(audienceScoper); ok && rc.Audience != "" {
			a = sc.ForAudience(rc.Audience)
		}
		rt.auths = append(rt.auths, namedAuth{name: name, a: a})
	}
	for _, name := range known {
		if !slices.Contains(rc.Auth, name) {
			a, _ := reg.Get(name)
			rt.others = append(rt.others, namedAuth{name: name, a: a})
		}
	}
	for _, s := range rc.Scopes {
		if !slices.Contains(rt.scopes, s) {
			rt.scopes = append(rt.scopes, s)
		}
	}
	rt.tenantHeaders = []string{DoshiiLocationHeader}
	if h := http.CanonicalHeaderKey(rc.TenantHeader); h != "" && h != DoshiiLocationHeader {
		rt.tenantHeaders = append(rt.tenantHeaders, h)
	}
	if rc.RateLimit > 0 {
		rt.limit = rate.Limit(rc.RateLimit)
		rt.burst = rc.RateBurst
		if rt.burst == 0 {
			rt.burst = max(1, int(math.Ceil(rc.RateLimit)))
		}
	}
	return rt
}

// safeHandle registers pattern on mux, turning ServeMux's panics (invalid pattern, duplicate,
// conflict) into an error.
func safeHandle(mux interface {
	Handle(string, http.Handler)
}, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pattern %q cannot be routed: %v", pattern, r)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}
