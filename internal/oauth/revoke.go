package oauth

import (
	"context"
	"errors"
	"net/http"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// Revocation (RFC 7009). The caller authenticates as a client (a public client by its client_id).
// An access token is revoked by its jti, a refresh token with its whole family (and so every
// access token of the family, by sid). A client may revoke only tokens issued to it; for any other
// token — another client's, unknown, expired, malformed — the answer is the same 200 and nothing
// changes (RFC 7009 §2.2: an invalid token is not an error), so the endpoint is no oracle.

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	basic := usesBasic(r)
	c, req, err := s.endpointClient(r, false)
	if err != nil {
		writeError(r.Context(), s.svc.Log, w, err, challengeFor(r, err))
		return
	}
	if req.Token == "" {
		writeError(r.Context(), s.svc.Log, w, invalidRequest("token is required"), basic)
		return
	}
	if err := s.revoke(r.Context(), c, req.Token, auth.Addr(r)); err != nil {
		writeError(r.Context(), s.svc.Log, w, err, basic)
		return
	}
	httpx.NoStore(w)
	w.WriteHeader(http.StatusOK)
}

func (s *Server) revoke(ctx context.Context, c *store.Client, raw, addr string) error {
	now := s.svc.Clock.Now()
	if wellFormedRefreshToken(raw) {
		done, err := RevokeRefreshToken(ctx, s.svc, raw, c.ID, "revoked by its client")
		if err != nil {
			return err
		}
		if done {
			s.audit(ctx, store.AuditEvent{At: now, Actor: "client:" + c.ID, Action: "token.revoke", Target: "refresh family",
				Address: addr, Outcome: "ok", Detail: "RFC 7009"})
		}
		return nil
	}
	if len(raw) > token.MaxTokenBytes {
		return nil
	}
	cl, err := s.svc.Verifier.Verify(ctx, raw, token.VerifyOptions{})
	if err != nil {
		var ve *token.VerifyError
		if errors.As(err, &ve) {
			return nil
		}
		return storeFailure(err)
	}
	if cl.ClientID != c.ID || cl.JTI == "" {
		s.audit(ctx, store.AuditEvent{At: now, Actor: "client:" + c.ID, Action: "token.revoke", Target: "jti:" + cl.JTI,
			Address: addr, Outcome: "denied", Detail: "token of another client"})
		return nil
	}
	wctx, cancel := detach(ctx)
	defer cancel()
	if err := s.svc.Revoker.Revoke(wctx, "jti", cl.JTI, cl.ExpiresAt, "revoked by its client"); err != nil {
		return storeFailure(err)
	}
	s.audit(ctx, store.AuditEvent{At: now, Actor: "client:" + c.ID, Action: "token.revoke", Target: "jti:" + cl.JTI,
		Address: addr, Outcome: "ok", Detail: "RFC 7009"})
	return nil
}
