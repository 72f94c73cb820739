// Package admin is the core of the admin API at /admin/api/v1: OAuth clients, signing keys, token
// revocation and the audit trail. Dialect-specific resources (users, doshii vendors, chef
// devices, …) are mounted by their own modules on the same admin mux. The server puts admin-token
// authentication in front of the mux; this package assumes the caller is the administrator.
//
// Every action, refused ones included, is an audit event with actor "admin", the client address
// and the outcome — never a secret. Secrets appear exactly once, in the answer that created them.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/oauth"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// MaxBody caps admin request bodies: they are small JSON objects.
const MaxBody = 64 << 10

// Keyring is what the admin API needs of the signing keyring.
type Keyring interface {
	List() []keys.KeyInfo
	Rotate(ctx context.Context) error
}

// API is the admin core; it is an app.Module.
type API struct {
	svc *app.Services
	kr  Keyring
}

// New returns the admin core over svc and the keyring.
func New(svc *app.Services, kr Keyring) (*API, error) {
	if svc == nil || svc.Store == nil || svc.Sealer == nil || svc.Verifier == nil || svc.Revoker == nil ||
		svc.Clock == nil || svc.Log == nil || kr == nil {
		return nil, errors.New("admin: services incomplete (store, sealer, verifier, revoker, clock, log and keyring are required)")
	}
	return &API{svc: svc, kr: kr}, nil
}

// Mount registers the admin core's routes on the admin mux (patterns relative to /admin/api/v1).
func (a *API) Mount(_, admin app.Mux) error {
	admin.Handle("POST /clients", http.HandlerFunc(a.createClient))
	admin.Handle("GET /clients", http.HandlerFunc(a.listClients))
	admin.Handle("GET /clients/{id}", http.HandlerFunc(a.getClient))
	admin.Handle("POST /clients/{id}/disable", http.HandlerFunc(a.disableClient))
	admin.Handle("GET /keys", http.HandlerFunc(a.listKeys))
	admin.Handle("POST /keys/rotate", http.HandlerFunc(a.rotateKeys))
	admin.Handle("POST /tokens/revoke", http.HandlerFunc(a.revokeToken))
	admin.Handle("POST /tokens/introspect", http.HandlerFunc(a.introspectToken))
	admin.Handle("GET /audit", http.HandlerFunc(a.listAudit))
	return nil
}

// audit records one admin action.
func (a *API) audit(r *http.Request, action, target, outcome, detail string) {
	a.svc.Audit(r.Context(), store.AuditEvent{Actor: "admin", Action: action, Target: target, Address: auth.Addr(r), Outcome: outcome, Detail: detail})
}

// fail answers err in the admin API's error shape and audits the refusal.
func (a *API) fail(w http.ResponseWriter, r *http.Request, action, target string, err error) {
	status, code, desc := classify(err)
	outcome := "denied"
	if status >= 500 {
		outcome = "error"
		a.svc.Log.LogAttrs(r.Context(), slog.LevelWarn, "admin action failed", slog.String("action", action), slog.String("error", err.Error()))
	}
	a.audit(r, action, target, outcome, code)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	WriteError(w, status, code, desc)
}

// WriteError writes the admin API error shape {"error","error_description"}.
func WriteError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteError(w, status, code, desc)
}

// classify maps an error to status, code and a description safe to show.
func classify(err error) (int, string, string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "not_found", "no such resource"
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, "conflict", "the resource already exists or changed"
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, "unavailable", "the store is unavailable; retry later"
	}
	if e, ok := errs.As(err); ok {
		status := errs.HTTPStatus(e.Kind)
		code := e.Code
		switch e.Kind {
		case errs.BadInput, errs.TooLarge, errs.UnsupportedMediaType:
			code = "invalid_request"
		case errs.Internal:
			return http.StatusInternalServerError, "server_error", "internal error"
		}
		if code == "" {
			code = e.Kind.String()
		}
		return status, code, e.Message
	}
	return http.StatusInternalServerError, "server_error", "internal error"
}

func badInput(format string, args ...any) error {
	return errs.New(errs.BadInput, "invalid_request", fmt.Sprintf(format, args...))
}

// --- keys -----------------------------------------------------------------------------------

func (a *API) listKeys(w http.ResponseWriter, r *http.Request) {
	a.audit(r, "key.list", "", "ok", "")
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"keys": a.kr.List()})
}

func (a *API) rotateKeys(w http.ResponseWriter, r *http.Request) {
	if err := a.kr.Rotate(r.Context()); err != nil {
		a.fail(w, r, "key.rotate", "", err)
		return
	}
	list := a.kr.List()
	active := ""
	for _, k := range list {
		if k.State == string(store.KeyActive) {
			active = k.KID
		}
	}
	a.audit(r, "key.rotate", active, "ok", "new active key "+active)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"active": active, "keys": list})
}

// --- tokens ---------------------------------------------------------------------------------

// RevokeRequest is the body of POST /tokens/revoke.
type RevokeRequest struct {
	Token string `json:"token"`
}

// ParseRevoke decodes and checks a revoke body.
func ParseRevoke(data []byte) (*RevokeRequest, error) {
	var req RevokeRequest
	if err := decodeStrict(data, &req); err != nil {
		return nil, err
	}
	if req.Token == "" {
		return nil, badInput("token: required")
	}
	if len(req.Token) > token.MaxTokenBytes {
		return nil, badInput("token: longer than %d bytes; not a posgate token", token.MaxTokenBytes)
	}
	return &req, nil
}

// revokeAcceptExpired: a token expired for a while can still be revoked (harmlessly), so an operator
// never gets "not a posgate token" for one of ours.
const revokeAcceptExpired = 100 * 365 * 24 * time.Hour

// readTokenRequest reads the {"token": …} body of the token routes; on failure it has answered.
func (a *API) readTokenRequest(w http.ResponseWriter, r *http.Request, action string) (*RevokeRequest, bool) {
	data, err := httpx.ReadBody(r, MaxBody)
	if err == nil && !httpx.IsJSON(r) {
		err = errs.New(errs.BadInput, "invalid_request", "Content-Type must be application/json")
	}
	var req *RevokeRequest
	if err == nil {
		req, err = ParseRevoke(data)
	}
	if err != nil {
		a.fail(w, r, action, "", err)
		return nil, false
	}
	return req, true
}

// introspectToken tells the administrator whether a posgate access token is active and what it
// carries, whatever its client or audience (the OAuth introspection endpoint answers a client only
// about its own tokens). An inactive token's answer says why. Nothing is changed or audited as a
// change; the token itself is never logged.
func (a *API) introspectToken(w http.ResponseWriter, r *http.Request) {
	const action = "token.introspect"
	req, ok := a.readTokenRequest(w, r, action)
	if !ok {
		return
	}
	if strings.HasPrefix(req.Token, secret.PrefixRefreshToken) {
		WriteError(w, http.StatusBadRequest, "invalid_token", "a refresh token: only access tokens are introspected here (revoke a refresh token with POST /tokens/revoke)")
		return
	}
	claims, err := a.svc.Verifier.Verify(r.Context(), req.Token, token.VerifyOptions{})
	var ve *token.VerifyError
	if errors.As(err, &ve) {
		httpx.NoStore(w)
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"active": false, "reason": ve.Detail})
		return
	}
	if err != nil {
		a.fail(w, r, action, "", err)
		return
	}
	out := map[string]any{"active": true, "iss": claims.Issuer, "sub": claims.Subject, "aud": claims.Audience,
		"client_id": claims.ClientID, "scope": claims.Scope, "jti": claims.JTI, "iat": claims.IssuedAt.Unix(),
		"exp": claims.ExpiresAt.Unix()} // RFC 7662's names, so its NumericDate seconds
	if claims.SessionID != "" {
		out["sid"] = claims.SessionID
	}
	for k, v := range claims.Extra {
		if _, taken := out[k]; !taken {
			out[k] = v
		}
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (a *API) revokeToken(w http.ResponseWriter, r *http.Request) {
	const action = "token.revoke"
	req, ok := a.readTokenRequest(w, r, action)
	if !ok {
		return
	}
	if strings.HasPrefix(req.Token, secret.PrefixRefreshToken) {
		// A chimpy refresh token: revoke its whole family (and so every access token minted from it).
		ok, err := oauth.RevokeRefreshToken(r.Context(), a.svc, req.Token, "", "admin")
		if err != nil {
			a.fail(w, r, action, "", err)
			return
		}
		if !ok {
			a.audit(r, action, "", "denied", "unknown refresh token")
			WriteError(w, http.StatusBadRequest, "invalid_token", "not a refresh token posgate knows")
			return
		}
		a.audit(r, action, "refresh_family", "ok", "refresh token family revoked")
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"revoked": true, "kind": "refresh_family"})
		return
	}
	claims, err := a.svc.Verifier.Verify(r.Context(), req.Token, token.VerifyOptions{AllowExpiredFor: revokeAcceptExpired})
	var ve *token.VerifyError
	if errors.As(err, &ve) && ve.Reason == token.ReasonRevoked {
		a.audit(r, action, "", "ok", "already revoked")
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"revoked": true, "already_revoked": true})
		return
	}
	if err != nil {
		if ve != nil {
			a.audit(r, action, "", "denied", "not a posgate token: "+ve.Detail)
			WriteError(w, http.StatusBadRequest, "invalid_token", "not a posgate token, or its signature does not verify: "+ve.Detail)
			return
		}
		a.fail(w, r, action, "", err)
		return
	}
	if claims.JTI == "" {
		a.audit(r, action, "", "denied", "token has no jti")
		WriteError(w, http.StatusBadRequest, "invalid_token", "the token has no jti and cannot be revoked")
		return
	}
	if err := a.svc.Revoker.Revoke(r.Context(), "jti", claims.JTI, claims.ExpiresAt, "admin"); err != nil {
		a.fail(w, r, action, "jti:"+claims.JTI, err)
		return
	}
	a.audit(r, action, "jti:"+claims.JTI, "ok", "subject "+claims.Subject)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"revoked": true, "jti": claims.JTI, "expires_at": claims.ExpiresAt.UTC()})
}

// --- audit ----------------------------------------------------------------------------------

// Audit list limits.
const (
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

type auditJSON struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Target  string    `json:"target,omitempty"`
	Address string    `json:"address,omitempty"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
}

func (a *API) listAudit(w http.ResponseWriter, r *http.Request) {
	limit := defaultAuditLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditLimit {
			a.fail(w, r, "audit.list", "", badInput("limit: %q is not allowed (a whole number 1–%d)", truncate(v, 20), maxAuditLimit))
			return
		}
		limit = n
	}
	events, err := a.svc.Store.ListAudit(r.Context(), limit)
	if err != nil {
		a.fail(w, r, "audit.list", "", err)
		return
	}
	out := make([]auditJSON, 0, len(events))
	for _, e := range events {
		out = append(out, auditJSON{ID: e.ID, At: e.At.UTC(), Actor: e.Actor, Action: e.Action, Target: e.Target, Address: e.Address, Outcome: e.Outcome, Detail: e.Detail})
	}
	// Audited after the read, so the list shows what was there before this request.
	a.audit(r, "audit.list", "", "ok", "")
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"events": out})
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
