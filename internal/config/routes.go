package config

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
)

// Authenticators are the names a route's auth list may use: the means of authentication the
// dialects register (a server test keeps this list equal to what they register).
var Authenticators = []string{"chef.device", "chimpy", "doshii.venue", "jackpot.apikey", "jackpot.m2m", "jackpot.session", "posgate"}

// TenantWildcards are the path wildcards bound to one of the principal's tenant ids: {location}
// (doshii), {outlet} (orderpay), {organisation}. Operators write these names in routes, so they
// never change.
var TenantWildcards = []string{"location", "outlet", "organisation"}

// CredentialHeaders may not be a route's tenant_header: they are stripped before forwarding.
var CredentialHeaders = []string{"Authorization", "Apikey", "Vendor", "Proxy-Authorization", "Cookie"}

// CheckRoutes checks the route table against the upstream names without any authenticator: every
// problem of every route, each keyed "routes[i].field" with Route = i. Authenticator names are
// checked by the caller (Validate against Authenticators, the gateway against its registry).
func CheckRoutes(routes []Route, upstreams []string) []Problem {
	var p problems
	table := http.NewServeMux()
	seen := map[string]int{} // pattern → route index
	for i, rc := range routes {
		before := len(p)
		checkRoute(&p, i, rc, upstreams)
		if len(p) > before {
			continue // a broken route's patterns would only add noise
		}
		for _, m := range rc.Methods {
			pat := m + " " + rc.Path
			if prev, dup := seen[pat]; dup {
				p.route(i, "methods", "%q is already routed by routes[%d]; a method and path may appear in one route only", pat, prev)
				continue
			}
			if err := tryRegister(table, pat); err != nil {
				p.route(i, "path", "pattern %q cannot be routed: %v", pat, err)
				continue
			}
			seen[pat] = i
		}
	}
	return p
}

func tryRegister(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

func checkRoute(p *problems, i int, rc Route, upstreams []string) {
	checkRoutePath(p, i, rc.Path)
	if len(rc.Methods) == 0 {
		p.route(i, "methods", "methods is empty; list the methods this route accepts, e.g. [GET, POST]")
	}
	for j, m := range rc.Methods {
		switch {
		case !methodRE.MatchString(m):
			p.route(i, "methods", "method %q is not allowed (upper-case HTTP methods such as GET, POST)", m)
		case slices.Contains(rc.Methods[:j], m):
			p.route(i, "methods", "method %q is listed twice", m)
		}
	}
	if len(rc.Auth) == 0 {
		p.route(i, "auth", "auth is empty; name at least one authenticator (known: %s)", strings.Join(Authenticators, ", "))
	}
	for j, a := range rc.Auth {
		if slices.Contains(rc.Auth[:j], a) {
			p.route(i, "auth", "authenticator %q is listed twice", a)
		}
	}
	switch {
	case rc.Upstream == "":
		p.route(i, "upstream", "upstream is empty; name one of the configured upstreams (%s)", orNone(upstreams))
	case slices.Contains(upstreams, rc.Upstream):
	case len(upstreams) == 0:
		p.route(i, "upstream", "unknown upstream %q; no upstreams are configured (add `upstreams: {%s: \"http://host:port\"}`)", rc.Upstream, rc.Upstream)
	default:
		p.route(i, "upstream", "unknown upstream %q; configured upstreams: %s", rc.Upstream, strings.Join(upstreams, ", "))
	}
	for _, s := range rc.Scopes {
		if s == "" || !isScopeToken(s) {
			p.route(i, "scopes", "scope %q is not a valid scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
		}
	}
	if rc.Audience != "" && strings.TrimSpace(rc.Audience) != rc.Audience {
		p.route(i, "audience", "audience %q has leading or trailing white space", rc.Audience)
	}
	if f := rc.MaxAmountField; f != "" && (strings.ContainsAny(f, " \t\r\n\"\\") || len(f) > 128) {
		p.route(i, "max_amount_field", "max_amount_field %q is not a JSON field name", f)
	}
	checkTenantHeader(p, i, rc.TenantHeader)
	switch {
	case math.IsNaN(rc.RateLimit) || math.IsInf(rc.RateLimit, 0) || rc.RateLimit < 0:
		p.route(i, "rate_limit", "rate_limit %v must be a number of requests per second ≥ 0 (0 = no limit)", rc.RateLimit)
	case rc.RateBurst < 0 || rc.RateBurst > 1000000:
		p.route(i, "rate_burst", "rate_burst %d is out of range (0–1000000; 0 = the rate rounded up, at least 1)", rc.RateBurst)
	case rc.RateBurst > 0 && rc.RateLimit == 0:
		p.route(i, "rate_burst", "rate_burst %d is set without rate_limit", rc.RateBurst)
	}
}

// checkRoutePath: a Go ServeMux path pattern, no host part, no method inside it.
func checkRoutePath(p *problems, i int, path string) {
	switch {
	case path == "":
		p.route(i, "path", "path is empty; want a path such as \"/api/v2/\" (a trailing / makes it a prefix)")
		return
	case path[0] != '/':
		p.route(i, "path", "path %q must start with / (host patterns are not supported)", path)
		return
	case strings.ContainsAny(path, " \t\r\n\\") || strings.Contains(path, "//"):
		p.route(i, "path", "path %q must not contain white space, backslashes or empty segments", path)
		return
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." {
			p.route(i, "path", "path %q must not contain dot segments", path)
			return
		}
	}
	if _, err := RouteWildcards(path); err != nil {
		p.route(i, "path", "path %q: %v", path, err)
	}
}

func checkTenantHeader(p *problems, i int, h string) {
	if h == "" {
		return
	}
	ch := http.CanonicalHeaderKey(h)
	switch {
	case strings.Contains(h, "_"):
		p.route(i, "tenant_header", "tenant_header %q contains an underscore; requests with such header names are refused, use hyphens", h)
	case !headerRE.MatchString(h):
		p.route(i, "tenant_header", "tenant_header %q is not a header name", h)
	case slices.Contains(CredentialHeaders, ch) || strings.HasPrefix(ch, "X-Posgate-"):
		p.route(i, "tenant_header", "tenant_header %q is a credential or identity header, which is never forwarded", h)
	}
}

// RouteWildcards returns the wildcard names of a ServeMux path pattern ("{name}", "{name...}";
// "{$}" excluded) and checks they are well formed (ServeMux panics otherwise).
func RouteWildcards(path string) ([]string, error) {
	var names []string
	segs := strings.Split(path[1:], "/")
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

func isScopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
