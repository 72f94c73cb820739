package config

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Limits of the numeric keys, in one table so the documentation and the checks cannot drift.
// Lifetimes start at 1 second so expiry can be tested for real against a running binary.
var ranges = map[string][2]int64{
	"server.read_header_timeout":   {1, 600},
	"server.read_timeout":          {1, 3600},
	"server.write_timeout":         {1, 3600},
	"server.idle_timeout":          {1, 3600},
	"server.shutdown_timeout":      {1, 600},
	"server.max_body_bytes":        {1 << 10, 1 << 30},
	"server.max_header_bytes":      {4 << 10, 1 << 20},
	"server.audit_retention":       {86400, 10 * 365 * 86400},
	"server.gc_percent":            {25, 10000},
	"server.memory_limit":          {0, 1 << 40},
	"store.timeout":                {1, 300},
	"keys.rotation_interval":       {0, 10 * 365 * 86400},
	"keys.revocation_resync":       {1, 300},
	"oauth.access_lifetime":        {1, 86400},
	"gateway.upstream_timeout":     {1, 600},
	"chef.approval_timeout":        {1, 600},
	"chef.cooldown":                {0, 3600},
	"chef.token_lifetime":          {1, 86400},
	"chef.leeway":                  {0, 120},
	"chef.max_pending":             {1, 100000},
	"chef.max_pending_per_address": {1, 100000},
	"chef.pending_retention":       {1, 365 * 86400},
	"chef.max_batch":               {1, 1000},
	"chef.renew_window":            {0, 365 * 86400},
	"chimpy.access_lifetime":       {1, 86400},
	"chimpy.refresh_idle":          {1, 10 * 365 * 86400},
	"chimpy.refresh_absolute":      {1, 10 * 365 * 86400},
	"chimpy.refresh_grace":         {0, 300},
	"jackpot.session_lifetime":     {1, 86400},
	"jackpot.m2m_lifetime":         {1, 86400},
	"jackpot.iat_past":             {0, 3600},
	"jackpot.iat_future":           {0, 3600},
	"jackpot.key_overlap":          {0, 365 * 86400},
	"doshii.past_window":           {0, 3600},
	"doshii.future_window":         {0, 3600},
	"doshii.key_overlap":           {0, 365 * 86400},
	"doshii.offline_after":         {1, 86400},
	"doshii.event_ttl":             {1, 7 * 86400},
	"orderpay.ticket_lifetime":     {1, 86400},
	"orderpay.request_wait":        {1, 600},
	"orderpay.request_ttl":         {1, 86400},
	"hub.ping_interval":            {1, 3600},
	"hub.write_timeout":            {1, 600},
	"hub.max_message":              {1 << 10, 64 << 20},
	"hub.send_queue":               {1, 65536},
	"hub.lease":                    {2, 3600},
	"hub.outbox_retention":         {3600, 365 * 86400},
	"throttle.window":              {1, 86400},
	"throttle.per_address":         {1, 1000000},
	"throttle.per_address_ident":   {1, 1000000},
	"throttle.per_identity":        {1, 1000000},
	"throttle.identity_backoff":    {1, 3600},
}

// Range returns the allowed range of a numeric key (for documentation and tests).
func Range(key string) (min, max int64, ok bool) {
	r, ok := ranges[key]
	return r[0], r[1], ok
}

func unit(key string) string {
	switch key {
	case "server.max_body_bytes", "server.max_header_bytes", "server.memory_limit", "hub.max_message":
		return "bytes"
	case "chef.max_pending", "chef.max_pending_per_address", "chef.max_batch", "throttle.per_address", "throttle.per_address_ident", "throttle.per_identity", "hub.send_queue":
		return ""
	}
	return "seconds"
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	methodRE  = regexp.MustCompile(`^[A-Z]{1,16}$`)
	headerRE  = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	allowedLv = []string{"debug", "info", "warn", "error"}
)

// Validate checks every key and returns all problems at once (an *Error), each naming the key,
// the value and what is allowed.
func (c *Config) Validate() error {
	var p problems
	p.ranges(c)
	c.Server.validate(&p)
	c.validateStore(&p)
	c.Keys.validate(&p)
	c.Gateway.validate(&p)
	upstreams := c.validateUpstreams(&p)
	c.validateRoutes(&p, upstreams)
	c.validateDialects(&p)
	return p.err()
}

// ranges checks every numeric key against its range.
func (p *problems) ranges(c *Config) {
	for _, k := range AllKeys() {
		r, ok := ranges[k.Name]
		if !ok {
			continue
		}
		f, _ := field(c, k.Name)
		if n := f.Int(); n < r[0] || n > r[1] {
			u := unit(k.Name)
			if u != "" {
				u = " " + u
			}
			p.add(k.Name, "%d is out of range (%d–%d%s)", n, r[0], r[1], u)
		}
	}
}

func (s *Server) validate(p *problems) {
	if strings.TrimSpace(s.DataDir) == "" {
		p.add("server.data_dir", "must not be empty (a directory for the master key, certificate and SQLite file)")
	}
	if s.MemoryLimit > 0 && s.MemoryLimit < 64<<20 {
		p.add("server.memory_limit", "%d is too small (0 for no limit, or at least 67108864 bytes; a limit near the live heap makes the collector run without pause)", s.MemoryLimit)
	}
	if s.Addr == "" && s.HTTPAddr == "" {
		p.add("server.addr", "server.addr and server.http_addr are both empty; set at least one listen address (HOST:PORT)")
	}
	p.hostPort("server.addr", s.Addr)
	p.hostPort("server.http_addr", s.HTTPAddr)
	if s.Addr != "" && s.Addr == s.HTTPAddr {
		p.add("server.http_addr", "%q is also server.addr; HTTPS and plain HTTP need different addresses", s.HTTPAddr)
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		p.add("server.tls_cert", "server.tls_cert and server.tls_key: give both (PEM files) or neither (a self-signed certificate is generated)")
	}
	p.issuerURL("server.issuer", s.Issuer)
	p.issuerURL("server.previous_issuer", s.PreviousIssuer)
	if s.PreviousIssuer != "" && (s.Issuer == "" || s.PreviousIssuer == s.Issuer) {
		p.add("server.previous_issuer", "is set but server.issuer is empty or the same URL (previous_issuer names the issuer a PostgreSQL deployment recorded, to move it to server.issuer; remove it otherwise)")
	}
	if !slices.Contains(allowedLv, s.LogLevel) {
		p.add("server.log_level", "%s is not allowed (%s)", quoteValue(s.LogLevel), strings.Join(allowedLv, ", "))
	}
	for i, cidr := range s.TrustedProxies {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			if _, err2 := netip.ParseAddr(cidr); err2 != nil {
				p.add(fmt.Sprintf("server.trusted_proxies[%d]", i), "%s is not an IP address or CIDR (e.g. 10.0.0.0/8)", quoteValue(cidr))
			}
		}
	}
}

// validateStore checks the store section and the server keys a store driver requires.
func (c *Config) validateStore(p *problems) {
	s := c.Store
	switch s.Driver {
	case "sqlite":
		if s.Path == "" {
			p.add("store.path", "must not be empty with store.driver sqlite")
		}
		if s.DSN != "" {
			p.add("store.dsn", "is set but store.driver is sqlite (set store.driver: postgres to use it)")
		}
		if c.Server.PreviousIssuer != "" {
			p.add("server.previous_issuer", "is set but store.driver is sqlite (only a PostgreSQL deployment records its issuer; remove it)")
		}
	case "postgres":
		if s.DSN == "" {
			p.add("store.dsn", "must be set with store.driver postgres (postgres://user@host:5432/db)")
		} else if u, err := url.Parse(s.DSN); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			p.add("store.dsn", "(value hidden) is not allowed (a postgres:// or postgresql:// URL)")
		}
		if c.Server.Issuer == "" {
			// Replicas share this store; an issuer derived from each one's listen address would
			// make every replica refuse the others' tokens.
			p.add("server.issuer", "must be set with store.driver postgres: every replica must mint and accept the same issuer, the public URL clients reach posgate at (e.g. https://auth.example.com)")
		}
	default:
		p.add("store.driver", "%s is not allowed (sqlite or postgres)", quoteValue(s.Driver))
	}
}

func (k *Keys) validate(p *problems) {
	switch k.Algorithm {
	case "EdDSA", "ES256", "RS256":
	default:
		p.add("keys.algorithm", "%s is not allowed (EdDSA, ES256 or RS256)", quoteValue(k.Algorithm))
	}
	if k.RotationInterval != 0 && k.RotationInterval < 3600 {
		p.add("keys.rotation_interval", "%d is not allowed (0 for manual rotation only, or at least 3600 seconds)", k.RotationInterval)
	}
}

func (g *Gateway) validate(p *problems) {
	if g.SigningSecret == "" {
		return
	}
	b, err := base64.StdEncoding.DecodeString(g.SigningSecret)
	if err != nil {
		b, err = base64.RawURLEncoding.DecodeString(g.SigningSecret)
	}
	if err != nil || len(b) < 32 {
		p.add("gateway.signing_secret", "(value hidden) is not allowed (base64 of at least 32 random bytes)")
	}
}

// validateUpstreams checks the upstream names and URLs and returns the names, sorted.
func (c *Config) validateUpstreams(p *problems) []string {
	names := make([]string, 0, len(c.Upstreams))
	for name := range c.Upstreams {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key, raw := "upstreams."+name, c.Upstreams[name]
		if !nameRE.MatchString(name) {
			p.add(key, "the name is not allowed (lower-case letters, digits, _ and -, up to 64)")
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			p.add(key, "%s is not allowed (an absolute http(s) URL without query, fragment or user info, e.g. http://127.0.0.1:9000)", quoteValue(raw))
		case u.Path != "" && u.Path != "/":
			p.add(key, "%s must not have a path (the request path is forwarded unchanged)", quoteValue(raw))
		}
	}
	return names
}

// validateRoutes checks the gateway's route table, authenticator names included.
func (c *Config) validateRoutes(p *problems, upstreams []string) {
	*p = append(*p, CheckRoutes(c.Routes, upstreams)...)
	for i, r := range c.Routes {
		for _, a := range r.Auth {
			if !slices.Contains(Authenticators, a) {
				p.route(i, "auth", "unknown authenticator %q; known: %s", a, strings.Join(Authenticators, ", "))
			}
		}
	}
}

// validateDialects checks the dialect sections and the limits that tie them to other sections.
func (c *Config) validateDialects(p *problems) {
	if c.Chef.ApprovalTimeout >= c.Server.WriteTimeout {
		p.add("chef.approval_timeout", "%d must be below server.write_timeout (%d) or held calls are cut off", c.Chef.ApprovalTimeout, c.Server.WriteTimeout)
	}
	if c.Chef.PendingRetention < 2*c.Chef.ApprovalTimeout {
		p.add("chef.pending_retention", "%d must be at least twice chef.approval_timeout (%d) or requests with held calls could be deleted", c.Chef.PendingRetention, c.Chef.ApprovalTimeout)
	}
	if c.Chef.Upstream == "" || !nameRE.MatchString(c.Chef.Upstream) {
		p.add("chef.upstream", "%s is not allowed (an upstream name)", quoteValue(c.Chef.Upstream))
	}
	// A lease must outlast the write it covers, or a second replica could deliver a message
	// again while the first is still writing it.
	if c.Hub.Lease <= c.Hub.WriteTimeout {
		p.add("hub.lease", "%d must be above hub.write_timeout (%d) or a message could be delivered twice while it is being written", c.Hub.Lease, c.Hub.WriteTimeout)
	}
	// A finished message is what answers a retry of its id: deleted sooner than the longest an
	// open one may live, a retry of a request still in flight elsewhere would be accepted again.
	if ttl := max(c.Orderpay.RequestTTL, c.Doshii.EventTTL); c.Hub.OutboxRetention < ttl {
		p.add("hub.outbox_retention", "%d must be at least orderpay.request_ttl and doshii.event_ttl (%d) or a retried id could be accepted as a new message", c.Hub.OutboxRetention, ttl)
	}
	p.prefix("chef.prefix", c.Chef.Prefix, true)
	p.prefix("doshii.prefix", c.Doshii.Prefix, false)
	audiences := make([]string, 0, len(c.Chimpy.AudienceLifetimes))
	for a := range c.Chimpy.AudienceLifetimes {
		audiences = append(audiences, a)
	}
	sort.Strings(audiences)
	for _, a := range audiences {
		if n := c.Chimpy.AudienceLifetimes[a]; n < 1 || n > 86400 {
			p.add("chimpy.audience_lifetimes."+a, "%d is out of range (1–86400 seconds)", n)
		}
	}
	if c.Chimpy.RefreshAbsolute < c.Chimpy.RefreshIdle {
		p.add("chimpy.refresh_absolute", "%d must be at least chimpy.refresh_idle (%d)", c.Chimpy.RefreshAbsolute, c.Chimpy.RefreshIdle)
	}
	if c.Throttle.PerIdentity < c.Throttle.PerAddressIdent {
		p.add("throttle.per_identity", "%d must be at least throttle.per_address_ident (%d): the identity-wide limit is the much higher one", c.Throttle.PerIdentity, c.Throttle.PerAddressIdent)
	}
}

// issuerURL checks an issuer: an absolute http(s) URL without query, fragment or user info
// (RFC 8414 §2), or empty.
func (p *problems) issuerURL(key, v string) {
	if v == "" {
		return
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		p.add(key, "%s is not allowed (an absolute http(s) URL without query, fragment or user info, e.g. https://auth.example.com)", quoteValue(v))
	}
}

func (p *problems) hostPort(key, v string) {
	if v == "" {
		return
	}
	_, port, err := net.SplitHostPort(v)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 0 || n > 65535 {
		p.add(key, "%s is not allowed (HOST:PORT, e.g. :8443 or 127.0.0.1:8080)", quoteValue(v))
	}
}

func (p *problems) prefix(key, v string, emptyOK bool) {
	if v == "" && emptyOK {
		return
	}
	if v == "" || v[0] != '/' || strings.HasSuffix(v, "/") || strings.ContainsAny(v, "?#{} \\") || strings.Contains(v, "//") {
		p.add(key, "%s is not allowed (a path like /pos/v3: leading /, no trailing /, no wildcards)", quoteValue(v))
	}
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}
