package orderpay

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// ticketLen is the length of an AccessToken: 32 bytes in unpadded base64url.
var ticketLen = base64.RawURLEncoding.EncodedLen(ticketBytes)

// upgrade serves GET / and GET /ws?token=<AccessToken>: the ticket is consumed (once, on any
// replica: the store decides) before the hub upgrades, so every refusal is an HTTP answer before
// 101. The query string is never logged (the access log drops it).
func (m *Module) upgrade(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !isUpgrade(r) {
		// Not a websocket handshake: the ticket is left unused for the real one.
		w.Header().Set("Upgrade", "websocket")
		httpx.NoStore(w)
		httpx.WriteJSON(w, http.StatusUpgradeRequired, errorBody{ErrorMessage: "a websocket upgrade is required"})
		return
	}
	if len(r.Header.Values("Authorization")) > 0 {
		// The ticket is the socket's one credential; a second one next to it is a client that
		// does not know which it sends. Refused before the ticket is used, which stays valid.
		m.writePOSError(w, r, errs.New(errs.BadInput, "invalid_request", "the AccessToken goes in the token query parameter only, not in an Authorization header"))
		return
	}
	addr := auth.Addr(r)
	if err := m.svc.Throttle.Check(ctx, ticketThrottleScope, addr, ""); err != nil {
		m.writePOSError(w, r, err)
		return
	}
	o, err := m.consumeTicket(ctx, r)
	if err != nil {
		if errs.KindOf(err) == errs.Unauthenticated {
			if ferr := m.svc.Throttle.Fail(context.WithoutCancel(ctx), ticketThrottleScope, addr, ""); ferr != nil {
				m.svc.Log.Warn("orderpay: counting a refused upgrade failed", "error", ferr.Error())
			}
		}
		m.writePOSError(w, r, err)
		return
	}
	if o.Disabled {
		m.writePOSError(w, r, errs.New(errs.Forbidden, "disabled", msgDisabled))
		return
	}
	t := tenant(o.ID)
	err = m.hub.Accept(w, r, hub.Spec{
		Dialect:   Dialect,
		Tenants:   []string{t},
		Exclusive: true,
		Handler:   &connHandler{m: m, outlet: o, queue: t},
		Delivery:  &hub.Delivery{Queues: []string{t}, Mode: hub.AwaitAnswer},
		Value:     o.ID,
	})
	if err != nil && !errors.Is(err, hub.ErrShuttingDown) {
		m.svc.Log.LogAttrs(ctx, slog.LevelInfo, "orderpay: websocket upgrade failed",
			slog.String("outlet", o.ID), slog.String("error", err.Error()))
	}
}

// isUpgrade reports whether r is a websocket handshake (RFC 6455 §4.2.1: Connection includes
// "upgrade" and Upgrade includes "websocket", both case-insensitive).
func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// consumeTicket checks the ?token= of r and uses it up, returning its outlet. A missing,
// repeated, malformed, unknown, expired or used token is one Unauthenticated error.
func (m *Module) consumeTicket(ctx context.Context, r *http.Request) (*store.OrderpayOutlet, error) {
	bad := errs.New(errs.Unauthenticated, "invalid_token", msgBadToken)
	vals := r.URL.Query()["token"]
	if len(vals) != 1 || len(vals[0]) != ticketLen {
		return nil, bad
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(vals[0])
	if err != nil || len(raw) != ticketBytes {
		return nil, bad
	}
	// Strict decoding refuses other spellings of the same bytes (non-zero trailing bits), so
	// the token as written is the one canonical form its hash was stored under.
	tk, err := m.store.ConsumeOrderpayTicket(ctx, secret.Hash(vals[0]), m.svc.Clock.Now().UTC())
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrAlreadyUsed) {
		return nil, bad
	}
	if err != nil {
		return nil, storeError(err)
	}
	o, err := m.store.GetOrderpayOutlet(ctx, tk.OutletID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, bad // deleted since
	}
	if err != nil {
		return nil, storeError(err)
	}
	return o, nil
}
