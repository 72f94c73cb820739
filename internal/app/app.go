// Package app bundles the shared mechanisms every dialect and endpoint is built from, so each
// dialect's constructor takes one value instead of a dozen. It holds no logic of its own beyond
// small conveniences (audit).
package app

import (
	"context"
	"log/slog"
	"net/http"
	"slices"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/keys"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// Services are the shared mechanisms of one running posgate.
type Services struct {
	Config   *config.Config
	Store    store.Store
	Clock    clock.Clock
	Log      *slog.Logger
	Sealer   keys.Sealer
	Issuer   token.Issuer
	Verifier token.Verifier
	Revoker  token.Revoker
	Events   events.Bus
	Throttle *auth.Throttle
	Auth     *auth.Registry
	// Hub holds the websocket connections of the dialects whose POS keeps a socket open
	// (orderpay, doshii). The server starts it and shuts it down.
	Hub *hub.Hub
	// Upstream forwards an authenticated request to a named upstream (the gateway's reverse proxy),
	// for dialects that forward calls themselves (chef data calls). Set before modules are built.
	Upstream Forwarder
	// CheckAdminToken reports, in constant time, whether token is the server's admin token. The web
	// console (internal/console) signs people in with it. Set by the server before modules are
	// built; nil means console sign-in is refused.
	CheckAdminToken func(token string) bool
	// AdminTokenID is a keyed fingerprint of the admin token (keys.Fingerprint under the master
	// key, purpose AdminTokenIDPurpose): alike on every replica sharing the token and the master
	// key, different once the token changes, and no help to someone guessing the token. Console
	// sessions are bound to it, so changing the admin token signs everyone out.
	AdminTokenID []byte
	// Reserved are the audiences modules mint tokens for behind their own endpoints (see
	// AudienceReserver). The server sets it once every module is built, before serving.
	Reserved Audiences
}

// AdminTokenIDPurpose is the key-derivation purpose of Services.AdminTokenID.
const AdminTokenIDPurpose = "admin-token-id/v1"

// Audiences is a list of audience names.
type Audiences []string

// Has reports whether aud is in the list (exact match).
func (a Audiences) Has(aud string) bool { return slices.Contains(a, aud) }

// HasAny reports whether any of auds is in the list.
func (a Audiences) HasAny(auds []string) bool { return slices.ContainsFunc(auds, a.Has) }

// Forwarder sends r to the upstream named upstream on behalf of p: credentials stripped, identity
// headers added. Upstream failures are written with writeErr (an *errs.Error of kind Unavailable
// with Code "upstream_timeout" → 504, or "upstream_unreachable" → 502) so they take the caller's
// dialect shape. onSuccess (may be nil) runs after a 2xx upstream answer has been received.
type Forwarder interface {
	Forward(w http.ResponseWriter, r *http.Request, upstream string, p *auth.Principal,
		writeErr func(http.ResponseWriter, *http.Request, error), onSuccess func())
}

// Audit records an audit event in the store and in the log (never a secret). Failures to write the
// audit trail are logged with the whole event at error level, not returned: an unavailable store
// must not turn a refusal into a 500, and the event must survive somewhere.
func (s *Services) Audit(ctx context.Context, e store.AuditEvent) {
	s.logAudit(ctx, &e)
	if err := s.Store.AppendAudit(ctx, &e); err != nil {
		s.auditNotStored(ctx, &e, err)
	}
}

// FailAudited counts a failed credential check in the throttle and records its audit event (as
// Audit does) in the same store write. Without a throttle it only audits. The throttle's error is
// returned for the caller to log; the event is logged here when it was not stored.
func (s *Services) FailAudited(ctx context.Context, scope, addr, identity string, e store.AuditEvent) error {
	if s.Throttle == nil {
		s.Audit(ctx, e)
		return nil
	}
	s.logAudit(ctx, &e)
	err := s.Throttle.FailAudited(ctx, scope, addr, identity, &e)
	if err != nil {
		s.auditNotStored(ctx, &e, err)
	}
	return err
}

func (s *Services) logAudit(ctx context.Context, e *store.AuditEvent) {
	if e.At.IsZero() {
		e.At = s.Clock.Now()
	}
	s.Log.LogAttrs(ctx, slog.LevelInfo, "audit",
		slog.String("actor", e.Actor), slog.String("action", e.Action), slog.String("target", e.Target),
		slog.String("address", e.Address), slog.String("outcome", e.Outcome), slog.String("detail", e.Detail))
}

// auditNotStored logs the whole event at a level every log_level keeps: when the store cannot
// take it (a full disk, a hung database) this line is the only record of it. Events are
// secret-free.
func (s *Services) auditNotStored(ctx context.Context, e *store.AuditEvent, err error) {
	s.Log.LogAttrs(ctx, slog.LevelError, "audit event not stored",
		slog.Time("at", e.At), slog.String("actor", e.Actor), slog.String("action", e.Action), slog.String("target", e.Target),
		slog.String("address", e.Address), slog.String("outcome", e.Outcome), slog.String("detail", e.Detail),
		slog.String("error", err.Error()))
}
