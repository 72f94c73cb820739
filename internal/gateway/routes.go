package gateway

import (
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

// tenantFields maps a path wildcard name to the principal field it is bound to: {location}
// (doshii), {outlet} (orderpay), {organisation}. These names are part of the route configuration
// operators write, so they never change.
var tenantFields = map[string]string{"location": "location", "outlet": "outlet", "organisation": "organisation"}

// DoshiiLocationHeader always names the caller's location when present.
const DoshiiLocationHeader = "Doshii-Location-Id"

// credentialHeaders may not be used as a route's tenant_header: they are stripped before forwarding
// (see isStrippedHeader).
var credentialHeaders = []string{"Authorization", "Apikey", "Vendor", "Proxy-Authorization", "Cookie"}

// compileRoutes checks cfg.Routes against the registered authenticators and the configured
// upstreams and returns the route table. Every problem is reported with the route's index and
// pattern, the offending value and what is allowed.
func compileRoutes(cfg []config.Route, reg *auth.Registry, hasUpstream func(string) bool, upstreams []string) ([]*route, *http.ServeMux, error) {
	known := reg.Names()
	table := http.NewServeMux()
	seen := map[string]string{} // pattern → route name
	var out []*route
	for i, rc := range cfg {
		rt, err := compileRoute(i, rc, reg, known, hasUpstream, upstreams)
		if err != nil {
			return nil, nil, err
		}
		for _, pat := range rt.patterns {
			if prev, dup := seen[pat]; dup {
				return nil, nil, fmt.Errorf("%s: %q is already routed by %s; a method and path may appear in one route only", rt.name, pat, prev)
			}
			if err := safeHandle(table, pat, http.NotFoundHandler()); err != nil {
				return nil, nil, fmt.Errorf("%s: %v", rt.name, err)
			}
			seen[pat] = rt.name
		}
		out = append(out, rt)
	}
	return out, table, nil
}

func compileRoute(i int, rc config.Route, reg *auth.Registry, known []string, hasUpstream func(string) bool, upstreams []string) (*route, error) {
	rt := &route{index: i, cfg: rc, path: rc.Path, upstream: rc.Upstream}
	methodsLabel := strings.Join(rc.Methods, ",")
	rt.name = fmt.Sprintf("routes[%d] (%s %s)", i, methodsLabel, rc.Path)
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{rt.name}, a...)...)
	}

	// Path: a Go ServeMux path pattern, no host part, no method inside it.
	p := rc.Path
	switch {
	case p == "":
		return nil, fail("path is empty; want a path such as \"/api/v2/\" (a trailing / makes it a prefix)")
	case p[0] != '/':
		return nil, fail("path %q must start with / (host patterns are not supported)", p)
	case strings.ContainsAny(p, " \t\r\n\\") || strings.Contains(p, "//"):
		return nil, fail("path %q must not contain white space, backslashes or empty segments", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return nil, fail("path %q must not contain dot segments", p)
		}
	}
	wildcards, err := parseWildcards(p)
	if err != nil {
		return nil, fail("path %q: %v", p, err)
	}
	for _, w := range wildcards {
		if f, ok := tenantFields[w]; ok {
			rt.tenantWildcards = append(rt.tenantWildcards, tenantWildcard{name: w, field: f})
		}
	}

	// Methods.
	if len(rc.Methods) == 0 {
		return nil, fail("methods is empty; list the methods this route accepts, e.g. [GET, POST]")
	}
	seenM := map[string]bool{}
	for _, m := range rc.Methods {
		mu := strings.ToUpper(m)
		if !isToken(mu) {
			return nil, fail("method %q is not an HTTP method", m)
		}
		if seenM[mu] {
			return nil, fail("method %q is listed twice", m)
		}
		seenM[mu] = true
		rt.patterns = append(rt.patterns, mu+" "+p)
	}

	// Means.
	if len(rc.Auth) == 0 {
		return nil, fail("auth is empty; name at least one authenticator (known: %s)", strings.Join(known, ", "))
	}
	listed := map[string]bool{}
	for _, name := range rc.Auth {
		a, ok := reg.Get(name)
		if !ok {
			return nil, fail("unknown authenticator %q; known: %s", name, strings.Join(known, ", "))
		}
		if listed[name] {
			return nil, fail("authenticator %q is listed twice", name)
		}
		listed[name] = true
		// An authenticator that can verify the audience itself (chimpy) gets the route's; the
		// gateway checks Claims["aud"] afterwards either way.
		if sc, ok := a.(audienceScoper); ok && rc.Audience != "" {
			a = sc.ForAudience(rc.Audience)
		}
		rt.auths = append(rt.auths, namedAuth{name: name, a: a})
	}
	for _, name := range known {
		if !listed[name] {
			a, _ := reg.Get(name)
			rt.others = append(rt.others, namedAuth{name: name, a: a})
		}
	}

	// Upstream.
	if rc.Upstream == "" {
		return nil, fail("upstream is empty; name one of the configured upstreams (%s)", strings.Join(upstreams, ", "))
	}
	if !hasUpstream(rc.Upstream) {
		if len(upstreams) == 0 {
			return nil, fail("unknown upstream %q; no upstreams are configured (add `upstreams: {%s: \"http://host:port\"}`)", rc.Upstream, rc.Upstream)
		}
		return nil, fail("unknown upstream %q; configured upstreams: %s", rc.Upstream, strings.Join(upstreams, ", "))
	}

	// Policy.
	for _, s := range rc.Scopes {
		if s == "" || !isScopeToken(s) {
			return nil, fail("scope %q is not a valid scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
		}
		if !slices.Contains(rt.scopes, s) {
			rt.scopes = append(rt.scopes, s)
		}
	}
	if rc.Audience != "" && strings.TrimSpace(rc.Audience) != rc.Audience {
		return nil, fail("audience %q has leading or trailing white space", rc.Audience)
	}
	if f := rc.MaxAmountField; f != "" {
		if strings.ContainsAny(f, " \t\r\n\"\\") || len(f) > 128 {
			return nil, fail("max_amount_field %q is not a JSON field name", f)
		}
	}
	rt.tenantHeaders = []string{DoshiiLocationHeader}
	if h := rc.TenantHeader; h != "" {
		if !isToken(h) {
			return nil, fail("tenant_header %q is not a header name", h)
		}
		if strings.Contains(h, "_") {
			return nil, fail("tenant_header %q contains an underscore; requests with such header names are refused, use hyphens", h)
		}
		ch := http.CanonicalHeaderKey(h)
		if slices.Contains(credentialHeaders, ch) || strings.HasPrefix(ch, "X-Posgate-") {
			return nil, fail("tenant_header %q is a credential or identity header, which is never forwarded", h)
		}
		if ch != DoshiiLocationHeader {
			rt.tenantHeaders = append(rt.tenantHeaders, ch)
		}
	}
	switch {
	case math.IsNaN(rc.RateLimit) || math.IsInf(rc.RateLimit, 0) || rc.RateLimit < 0:
		return nil, fail("rate_limit %v must be a number of requests per second ≥ 0 (0 = no limit)", rc.RateLimit)
	case rc.RateBurst < 0:
		return nil, fail("rate_burst %d must be ≥ 0 (0 = the rate rounded up, at least 1)", rc.RateBurst)
	case rc.RateBurst > 0 && rc.RateLimit == 0:
		return nil, fail("rate_burst %d is set without rate_limit", rc.RateBurst)
	}
	if rc.RateLimit > 0 {
		rt.limit = rate.Limit(rc.RateLimit)
		rt.burst = rc.RateBurst
		if rt.burst == 0 {
			rt.burst = max(1, int(math.Ceil(rc.RateLimit)))
		}
	}
	return rt, nil
}

// parseWildcards returns the wildcard names of a ServeMux path pattern ("{name}", "{name...}",
// "{$}" excluded) and checks they are well formed (ServeMux panics otherwise; we want an error).
func parseWildcards(p string) ([]string, error) {
	var names []string
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		if !strings.ContainsAny(seg, "{}") {
			continue
		}
		if seg[0] != '{' || seg[len(seg)-1] != '}' || strings.Count(seg, "{") != 1 || strings.Count(seg, "}") != 1 {
			return nil, fmt.Errorf("segment %q: a wildcard must be a whole segment, {name} or {name...}", seg)
		}
		name := seg[1 : len(seg)-1]
		if name == "$" {
			if i != len(segs)-1 {
				return nil, fmt.Errorf("{$} must be the last segment")
			}
			continue
		}
		if n, ok := strings.CutSuffix(name, "..."); ok {
			if i != len(segs)-1 {
				return nil, fmt.Errorf("segment %q: {name...} must be the last segment", seg)
			}
			name = n
		}
		if !isIdent(name) {
			return nil, fmt.Errorf("segment %q: wildcard name must be a Go identifier", seg)
		}
		if slices.Contains(names, name) {
			return nil, fmt.Errorf("wildcard {%s} appears twice", name)
		}
		names = append(names, name)
	}
	return names, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token (method and header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func isScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
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
