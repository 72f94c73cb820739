package oauth

import (
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// Introspection (RFC 7662). The caller authenticates as a confidential client. A token is reported
// active only to the client it was issued to or, for an access token, to a client that lists one
// of the token's audiences (a resource server); to everyone else, and for anything unknown,
// malformed, expired, revoked or rotated, the answer is {"active":false} and nothing more, so the
// endpoint never tells which.

// Introspection is the RFC 7662 response.
type Introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Nbf       int64  `json:"nbf,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Aud       any    `json:"aud,omitempty"`
	Iss       string `json:"iss,omitempty"`
	Jti       string `json:"jti,omitempty"`
	Sid       string `json:"sid,omitempty"`
	Azp       string `json:"azp,omitempty"`
	Gty       string `json:"gty,omitempty"`
}

func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	basic := usesBasic(r)
	c, req, err := s.endpointClient(r, true)
	if err != nil {
		writeError(r.Context(), s.svc.Log, w, err, challengeFor(r, err))
		return
	}
	if req.Token == "" {
		writeError(r.Context(), s.svc.Log, w, invalidRequest("token is required"), basic)
		return
	}
	res, err := s.introspect(r.Context(), c, req.Token)
	if err != nil {
		writeError(r.Context(), s.svc.Log, w, err, basic)
		return
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, res)
}

// errNoClientAuth answers an introspection or revocation request that names no client at all: both
// endpoints require client authentication (RFC 7662 §2.1, RFC 7009 §2.1), and RFC 6749 §5.2 makes
// a missing one invalid_client, 401 with a challenge for the scheme the client should use (see
// challengeFor). The token endpoint keeps invalid_request for a missing client_id: chimpy's
// clients expect that row of its error table.
var errNoClientAuth = Fail(CodeInvalidClient, "client authentication is required (HTTP Basic, or client_id and client_secret in the body)")

// challengeFor says whether a 401 for err carries the Basic challenge: when the client used the
// Authorization header, and when it sent no credentials at all (the challenge tells it how).
func challengeFor(r *http.Request, err error) bool {
	return usesBasic(r) || errors.Is(err, errNoClientAuth)
}

// endpointClient reads an introspection or revocation request and authenticates its client.
// confidential refuses public clients (introspection reveals token contents).
func (s *Server) endpointClient(r *http.Request, confidential bool) (*store.Client, *Request, error) {
	req, err := readRequest(r)
	if err != nil {
		return nil, nil, err
	}
	if len(r.Header.Values("Authorization")) == 0 && req.ClientID == "" {
		return nil, nil, errNoClientAuth
	}
	cred, err := clientCredentialsOf(r, req)
	if err != nil {
		return nil, nil, err
	}
	now := s.svc.Clock.Now()
	addr := auth.Addr(r)
	if confidential && cred.method == AuthNone {
		s.audit(r.Context(), store.AuditEvent{At: now, Actor: "anonymous", Action: "client.auth_failed",
			Target: "client:unknown(" + identity("client", cred.id) + ")", Address: addr, Outcome: "denied",
			Detail: "no client secret at " + r.URL.Path})
		return nil, nil, Fail(CodeInvalidClient, "client authentication failed")
	}
	c, err := s.authenticateClient(r.Context(), cred, addr, now)
	if err != nil {
		return nil, nil, err
	}
	return c, req, nil
}

var inactive = &Introspection{Active: false}

func (s *Server) introspect(ctx context.Context, caller *store.Client, raw string) (*Introspection, error) {
	now := s.svc.Clock.Now()
	if wellFormedRefreshToken(raw) {
		tok, fam, err := s.svc.Store.GetRefreshToken(ctx, secret.Hash(raw))
		if errors.Is(err, store.ErrNotFound) {
			return inactive, nil
		}
		if err != nil {
			return nil, storeFailure(err)
		}
		if fam.ClientID != caller.ID || fam.RevokedAt != nil || tok.RotatedAt != nil ||
			!now.Before(tok.IdleExpiresAt) || !now.Before(fam.AbsoluteExpiresAt) {
			return inactive, nil
		}
		return &Introspection{Active: true, Scope: fam.Scope, ClientID: fam.ClientID, TokenType: "refresh_token",
			Exp: minTime(tok.IdleExpiresAt, fam.AbsoluteExpiresAt).Unix(), Iat: tok.CreatedAt.Unix(),
			Sub: fam.UserID, Aud: fam.Audience, Sid: fam.ID}, nil
	}
	if len(raw) > token.MaxTokenBytes {
		return inactive, nil
	}
	cl, err := s.svc.Verifier.Verify(ctx, raw, token.VerifyOptions{})
	if err != nil {
		var ve *token.VerifyError
		if errors.As(err, &ve) {
			return inactive, nil
		}
		return nil, storeFailure(err)
	}
	if cl.ClientID != caller.ID && !slices.ContainsFunc(cl.Audience, func(a string) bool { return slices.Contains(caller.Audiences, a) }) {
		return inactive, nil
	}
	res := &Introspection{Active: true, Scope: cl.Scope, ClientID: cl.ClientID, TokenType: "Bearer",
		Exp: cl.ExpiresAt.Unix(), Iat: cl.IssuedAt.Unix(), Sub: cl.Subject, Iss: cl.Issuer, Jti: cl.JTI, Sid: cl.SessionID}
	if !cl.NotBefore.IsZero() {
		res.Nbf = cl.NotBefore.Unix()
	}
	if len(cl.Audience) == 1 {
		res.Aud = cl.Audience[0]
	} else if len(cl.Audience) > 1 {
		res.Aud = cl.Audience
	}
	if v, ok := cl.Extra["azp"].(string); ok {
		res.Azp = v
	}
	if v, ok := cl.Extra["gty"].(string); ok {
		res.Gty = v
	}
	return res, nil
}
