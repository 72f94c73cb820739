package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// Client authentication methods (RFC 8414 token_endpoint_auth_methods_supported).
const (
	AuthBasic = "client_secret_basic"
	AuthPost  = "client_secret_post"
	AuthNone  = "none" // a public client: client_id only
)

// clientCred is what the request presented to identify its client.
type clientCred struct {
	id, secret string
	method     string
}

// usesBasic reports whether the client tried to authenticate with the Authorization header. A 401
// then carries a Basic challenge (RFC 6749 §5.2), also when it tried another scheme: Basic is
// the one posgate supports there.
func usesBasic(r *http.Request) bool {
	return r.Header.Get("Authorization") != ""
}

// clientCredentialsOf finds the client credentials of a request. A client uses exactly one method
// (RFC 6749 §2.3): HTTP Basic, or client_id/client_secret in the body, or (a public client)
// client_id alone. Basic plus a client_secret in the body is refused, as is a body client_id that
// differs from the Basic one.
func clientCredentialsOf(r *http.Request, req *Request) (clientCred, error) {
	if len(r.Header.Values("Authorization")) > 1 {
		return clientCred{}, invalidRequest("the request carries more than one Authorization header")
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		if req.ClientID == "" {
			return clientCred{}, invalidRequest("client_id is required")
		}
		if req.ClientSecret == "" {
			return clientCred{id: req.ClientID, method: AuthNone}, nil
		}
		return clientCred{id: req.ClientID, secret: req.ClientSecret, method: AuthPost}, nil
	}
	scheme, b64, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return clientCred{}, Fail(CodeInvalidClient, "client authentication must use HTTP Basic or the request body")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return clientCred{}, Fail(CodeInvalidClient, "the Basic credentials are not valid base64")
	}
	rawID, rawSecret, ok := strings.Cut(string(raw), ":")
	if !ok {
		return clientCred{}, Fail(CodeInvalidClient, "the Basic credentials must be client_id:client_secret")
	}
	// RFC 6749 §2.3.1: both parts are form-urlencoded before they are joined.
	id, err1 := url.QueryUnescape(rawID)
	sec, err2 := url.QueryUnescape(rawSecret)
	if err1 != nil || err2 != nil || id == "" || !validValue(id) || !validValue(sec) ||
		len(id) > MaxParamBytes || len(sec) > MaxParamBytes {
		return clientCred{}, Fail(CodeInvalidClient, "the Basic credentials are not valid")
	}
	if req.ClientSecret != "" {
		return clientCred{}, invalidRequest("use one client authentication method: HTTP Basic or client_secret in the body, not both")
	}
	if req.ClientID != "" && req.ClientID != id {
		return clientCred{}, invalidRequest("client_id in the body differs from the HTTP Basic one")
	}
	return clientCred{id: id, secret: sec, method: AuthBasic}, nil
}

// dummySecretHash is compared against when the client is unknown, so an unknown client costs the
// same hash and comparison as a wrong secret.
var dummySecretHash = secret.Hash("posgate: no such client")

// authenticateClient finds the client and checks its secret. Every failure is the same
// invalid_client answer (unknown client, disabled client, wrong or missing secret, a secret sent
// for a public client), counted by the throttle and audited.
func (s *Server) authenticateClient(ctx context.Context, cred clientCred, addr string, now time.Time) (*store.Client, error) {
	ident := identity("client", cred.id)
	if s.svc.Throttle != nil {
		if err := s.svc.Throttle.Check(ctx, ThrottleClient, addr, ident); err != nil {
			return nil, err
		}
	}
	idHash := secret.Hash(cred.id)
	c, err := s.lookupClient(ctx, idHash)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, storeFailure(err)
	}
	presented := secret.Hash(cred.secret)
	var reason string
	switch {
	case c == nil:
		secret.Equal(presented, dummySecretHash)
		reason = "unknown client"
	case c.SecretHash == nil:
		if cred.method != AuthNone {
			reason = "secret sent for a public client"
		}
	case cred.method == AuthNone:
		reason = "secret missing"
	case !secret.Equal(presented, c.SecretHash):
		reason = "wrong secret"
	}
	if reason == "" && c.Disabled {
		reason = "client disabled"
	}
	if reason == "" {
		return c, nil
	}
	target := "client:unknown(" + ident + ")"
	if c != nil {
		target = "client:" + c.ID
	}
	s.fail(ctx, ThrottleClient, addr, ident, store.AuditEvent{At: now, Actor: "anonymous", Action: "client.auth_failed", Target: target,
		Address: addr, Outcome: "denied", Detail: reason + " (" + cred.method + ")"})
	return nil, Fail(CodeInvalidClient, "client authentication failed")
}

// clientCacheTTL bounds how long a client record is reused without a store read. The token
// endpoint reads the client on every request, and on SQLite that read costs about as much as
// signing the token (BenchmarkTokenEndpoint; figures in docs/BENCHMARKS.md). The price is bounded
// staleness: a client disabled through the admin API may keep authenticating for at most this
// long. Publishing on events.TopicClientChanged (the admin API does when it changes a client)
// drops the cache at once on every replica that hears it.
var clientCacheTTL = time.Second

// clientCacheMax bounds the client cache (keyed by the SHA-256 of client_id). Only found clients
// are cached: an unknown client_id is read again each time (those requests are throttled anyway).
const clientCacheMax = 10_000

func (s *Server) lookupClient(ctx context.Context, idHash []byte) (*store.Client, error) {
	key := string(idHash)
	if c, ok := s.clients.Get(key); ok {
		return c, nil
	}
	c, err := s.svc.Store.GetClientByIDHash(ctx, idHash)
	if err != nil {
		return nil, err
	}
	s.clients.Put(key, c)
	return c, nil
}
