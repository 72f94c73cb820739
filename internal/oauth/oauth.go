// Package oauth is posgate's OAuth 2 authorization server: the token endpoint with a small
// registry of grants (client_credentials, password, refresh_token — one file each), client
// authentication, rotating refresh-token families, RFC 7662 introspection, RFC 7009 revocation and
// RFC 8414 metadata.
//
// The token endpoint speaks chimpy's (Auth0's) dialect, because chimpy clients call it directly:
// JSON or form bodies, `audience`, and chimpy's error table (see errors.go). Each grant is one
// Grant value; the endpoint does everything the grants share (parsing, client authentication,
// "may this client use this grant") so a grant only decides what to mint.
package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/metrics"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
	"github.com/posgate/posgate/internal/ttlcache"
)

// Grant types posgate's token endpoint knows.
const (
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantRefreshToken      = "refresh_token"
)

// Throttle scopes (see auth.Throttle).
const (
	ThrottleClient = "oauth.client"
	ThrottleLogin  = "chimpy.login"
)

// Grant is one grant type of the token endpoint. The endpoint has already parsed the request,
// authenticated the client and checked that the client may use this grant type.
type Grant interface {
	Type() string
	Handle(ctx context.Context, gr *GrantRequest) (*TokenResponse, error)
}

// GrantRequest is what a Grant works on.
type GrantRequest struct {
	*Request
	Client   *store.Client
	ClientID string // the public client_id as presented (never logged for API-key clients)
	Addr     string // the caller's address, for throttling and audit
	Now      time.Time
}

// TokenResponse is the success body of the token endpoint (RFC 6749 §5.1, chimpy's shape).
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
	TokenType    string `json:"token_type"`
	Scope        string `json:"scope,omitempty"`
}

// Server is the authorization server. It is an app.Module.
type Server struct {
	svc     *app.Services
	grants  map[string]Grant
	order   []string
	clients *ttlcache.Cache[string, *store.Client] // by SHA-256 of client_id, see clientCacheTTL
	checks  *inflight                              // password checks in progress, by address and by user (see inflight.go)
}

// New returns the OAuth module with the client_credentials, password and refresh_token grants.
func New(svc *app.Services) (app.Module, error) { return NewServer(svc) }

// NewServer is New with the concrete type, for callers that register more grants.
func NewServer(svc *app.Services) (*Server, error) {
	if svc == nil || svc.Store == nil || svc.Issuer == nil || svc.Verifier == nil || svc.Revoker == nil ||
		svc.Clock == nil || svc.Config == nil || svc.Log == nil {
		return nil, fmt.Errorf("oauth: services incomplete (store, issuer, verifier, revoker, clock, config and log are required)")
	}
	s := &Server{svc: svc, grants: map[string]Grant{}, clients: ttlcache.New[string, *store.Client](svc.Clock, clientCacheTTL, clientCacheMax), checks: newInflight()}
	if svc.Events != nil {
		// Changes are rare, so dropping everything is simpler than finding the entry (the cache is
		// keyed by client_id hash, the event names the internal id).
		svc.Events.Subscribe(events.TopicClientChanged, func([]byte) { s.clients.Clear() })
	}
	for _, g := range []Grant{clientCredentials{s}, passwordGrant{s}, refreshGrant{s}} {
		if err := s.Register(g); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// MaxTokenLifetime is the longest access token lifetime configured (app.TokenLifetimer).
func (s *Server) MaxTokenLifetime() time.Duration { return maxAccessLifetime(s.svc.Config) }

// Maintenance deletes the refresh-token families past their expiry (app.Maintainer).
func (s *Server) Maintenance() []app.Task {
	return []app.Task{{Name: "refresh tokens", Every: app.CleanupEvery, Run: func(ctx context.Context) error {
		return s.svc.Store.DeleteRefreshExpiredBefore(ctx, s.svc.Clock.Now())
	}}}
}

var (
	_ app.TokenLifetimer = (*Server)(nil)
	_ app.Maintainer     = (*Server)(nil)
)

// Register adds a grant type.
func (s *Server) Register(g Grant) error {
	if _, dup := s.grants[g.Type()]; dup {
		return fmt.Errorf("oauth: grant %q registered twice", g.Type())
	}
	s.grants[g.Type()] = g
	s.order = append(s.order, g.Type())
	return nil
}

// GrantTypes lists the registered grant types in registration order.
func (s *Server) GrantTypes() []string { return slices.Clone(s.order) }

// Mount registers the public endpoints.
func (s *Server) Mount(public, _ app.Mux) error {
	public.Handle("POST /oauth/token", http.HandlerFunc(s.handleToken))
	public.Handle("POST /oauth/introspect", http.HandlerFunc(s.handleIntrospect))
	public.Handle("POST /oauth/revoke", http.HandlerFunc(s.handleRevoke))
	public.Handle("GET /.well-known/oauth-authorization-server", http.HandlerFunc(s.handleMetadata))
	return nil
}

// WriteMethodNotAllowed answers a wrong method on an /oauth endpoint (the server sets Allow).
func (s *Server) WriteMethodNotAllowed(w http.ResponseWriter, _ *http.Request, allow string) {
	httpx.NoStore(w)
	httpx.WriteError(w, http.StatusMethodNotAllowed, CodeInvalidRequest, "method not allowed; use "+allow)
}

// readRequest reads and parses the body of a request to an /oauth/* endpoint. Parameters in the
// URL are refused: they end up in access logs and browser histories (RFC 6749 §3.2 requires the
// body for the token endpoint).
func readRequest(r *http.Request) (*Request, error) {
	if r.URL.RawQuery != "" {
		return nil, invalidRequest("parameters must be sent in the request body, not in the URL")
	}
	var kind string
	switch {
	case httpx.IsJSON(r):
		kind = BodyJSON
	case httpx.IsForm(r):
		kind = BodyForm
	default:
		return nil, invalidRequest("Content-Type must be application/json or application/x-www-form-urlencoded")
	}
	body, err := httpx.ReadBody(r, MaxBodyBytes)
	if err != nil {
		return nil, err
	}
	return ParseRequest(kind, body)
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	basic := false
	resp, err := s.token(r, &basic)
	if err != nil {
		writeError(r.Context(), s.svc.Log, w, err, basic)
		return
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, resp)
}

func (s *Server) token(r *http.Request, basic *bool) (*TokenResponse, error) {
	ctx := r.Context()
	now := s.svc.Clock.Now()
	req, err := readRequest(r)
	*basic = usesBasic(r)
	if err != nil {
		return nil, err
	}
	cred, err := clientCredentialsOf(r, req)
	if err != nil {
		return nil, err
	}
	if req.GrantType == "" {
		return nil, invalidRequest("grant_type is required")
	}
	g, ok := s.grants[req.GrantType]
	if !ok {
		return nil, Fail(CodeUnsupportedGrantType, "the grant type is not supported")
	}
	addr := auth.Addr(r)
	c, err := s.authenticateClient(ctx, cred, addr, now)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(c.GrantTypes, g.Type()) {
		return nil, Fail(CodeUnauthorizedClient, "the client may not use the "+g.Type()+" grant")
	}
	// Another dialect's audience is refused whatever the grant and whatever the client lists:
	// those tokens are minted only by their own endpoints (app.AudienceReserver).
	if s.svc.Reserved.Has(req.Audience) {
		return nil, errReservedAudience(req.Audience)
	}
	resp, err := g.Handle(ctx, &GrantRequest{Request: req, Client: c, ClientID: cred.id, Addr: addr, Now: now})
	if err != nil {
		return nil, err
	}
	resp.TokenType = "Bearer"
	return resp, nil
}

// accessLifetime is the lifetime of an access token for audience aud: the per-audience override
// of chimpy.audience_lifetimes if there is one, else chimpy.access_lifetime for tokens minted for a
// user (password, refresh_token), else oauth.access_lifetime.
func accessLifetime(cfg *config.Config, aud string, forUser bool) time.Duration {
	if n, ok := cfg.Chimpy.AudienceLifetimes[aud]; ok && n > 0 {
		return config.Seconds(n)
	}
	n := cfg.OAuth.AccessLifetime
	if forUser {
		n = cfg.Chimpy.AccessLifetime
	}
	if n <= 0 {
		n = 3600
	}
	return config.Seconds(n)
}

// maxAccessLifetime bounds every access token lifetime configured: a revocation of a family by
// `sid` must outlive every access token of the family.
func maxAccessLifetime(cfg *config.Config) time.Duration {
	m := max(accessLifetime(cfg, "", true), accessLifetime(cfg, "", false))
	for aud := range cfg.Chimpy.AudienceLifetimes {
		m = max(m, accessLifetime(cfg, aud, true))
	}
	return m
}

// issuerURL is posgate's issuer (server.issuer); without one configured, it is derived from the
// request, which is right for a single listener and what RFC 8414 metadata then must show.
func (s *Server) issuerURL(r *http.Request) string {
	if iss := strings.TrimRight(s.svc.Config.Server.Issuer, "/"); iss != "" {
		return iss
	}
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + r.Host
}

// mint issues an access token for a grant.
func (s *Server) mint(ctx context.Context, gr *GrantRequest, sub, aud string, scope []string, gty, sid string, forUser bool) (string, int64, error) {
	if s.svc.Reserved.Has(aud) {
		// The last line of defence: an audience that reached here without being requested (a
		// client's only audience, a refresh family, the issuer URL) is refused all the same.
		return "", 0, errReservedAudience(aud)
	}
	lifetime := accessLifetime(s.svc.Config, aud, forUser)
	extra := map[string]any{"gty": gty, "azp": azp(gr.Client, gr.ClientID)}
	raw, _, err := s.svc.Issuer.Issue(ctx, token.Claims{
		Subject:   sub,
		Audience:  []string{aud},
		ClientID:  gr.Client.ID,
		Scope:     joinScope(scope),
		SessionID: sid,
		Extra:     extra,
	}, lifetime)
	if err != nil {
		return "", 0, storeFailure(err)
	}
	dialect := "chimpy"
	if !forUser {
		dialect = "posgate"
	}
	metrics.TokensIssued.WithLabelValues(dialect, gty).Inc()
	return raw, int64(lifetime / time.Second), nil
}

// azp is the `azp` claim: the public client_id, as Auth0 puts it there, unless the client_id is a
// credential (a jackpot API key), in which case posgate's internal client id stands in.
func azp(c *store.Client, presented string) string {
	if c.APIKey || presented == "" {
		return c.ID
	}
	return presented
}

// identity is the throttle identity of a presented name: a short hash, so the counters table never
// holds a client_id that is an API key, or a password typed into the username field.
func identity(kind, name string) string {
	h := sha256.Sum256([]byte(name))
	return kind + ":" + hex.EncodeToString(h[:8])
}

// audit records an audit event, even when the caller has hung up.
func (s *Server) audit(ctx context.Context, e store.AuditEvent) {
	ctx, cancel := detach(ctx)
	defer cancel()
	s.svc.Audit(ctx, e)
}

// detach returns a context for a write that must happen whatever the caller does: counting a
// failed attempt, revoking a family, auditing. Were these cancelled when the client hangs up, a
// guesser could close each connection before the answer and never be counted, or a thief could
// abort the revocation its replay triggered. The write still has a deadline.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// fail counts a failed credential check in the throttle and audits it, in one store write
// (detached from the request).
func (s *Server) fail(ctx context.Context, scope, addr, ident string, e store.AuditEvent) {
	ctx, cancel := detach(ctx)
	defer cancel()
	if err := s.svc.FailAudited(ctx, scope, addr, ident, e); err != nil {
		s.svc.Log.WarnContext(ctx, "throttle count failed", "scope", scope, "error", err.Error())
	}
}
