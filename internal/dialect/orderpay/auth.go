package orderpay

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/jsonx"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// authRequest is the body of POST /api/powerepos/v1/auth.
type authRequest struct {
	ProviderOutletID string
	POSRemoteID      string
	AuthSecret       string
}

// authFields maps the folded form of each accepted field name to its slot: names are matched
// case-insensitively because the vendor's own examples mix PascalCase and camelCase.
var authFields = map[string]func(*authRequest) *string{
	jsonx.FoldKey("ProviderOutletID"): func(a *authRequest) *string { return &a.ProviderOutletID },
	jsonx.FoldKey("POSRemoteID"):      func(a *authRequest) *string { return &a.POSRemoteID },
	jsonx.FoldKey("AuthSecret"):       func(a *authRequest) *string { return &a.AuthSecret },
}

// parseAuthBody reads the auth body: one JSON object, no key repeated (compared
// case-insensitively), the three fields present as non-empty strings within their limits.
// Other fields are ignored. Every failure is a BadInput error whose message names no value.
func parseAuthBody(data []byte) (authRequest, error) {
	var a authRequest
	if err := jsonx.CheckObject(data); err != nil {
		if errors.Is(err, jsonx.ErrDuplicateKey) {
			return a, badInput("a field is repeated")
		}
		return a, badInput("the body is not a JSON object")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return a, badInput("the body is not a JSON object")
	}
	for k, v := range raw {
		slot, ok := authFields[jsonx.FoldKey(k)]
		if !ok {
			continue
		}
		var s string
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
			return a, badInput("ProviderOutletID, POSRemoteID and AuthSecret must be strings")
		}
		*slot(&a) = s
	}
	if a.ProviderOutletID == "" || a.POSRemoteID == "" || a.AuthSecret == "" {
		return a, badInput("ProviderOutletID, POSRemoteID and AuthSecret are required")
	}
	if len(a.ProviderOutletID) > maxOutletID || len(a.POSRemoteID) > maxOutletID || len(a.AuthSecret) > maxAuthSecret ||
		!utf8.ValidString(a.ProviderOutletID) || !utf8.ValidString(a.POSRemoteID) {
		return a, badInput("a field is too long or not valid text")
	}
	return a, nil
}

// auth serves POST /api/powerepos/v1/auth.
func (m *Module) auth(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := auth.Addr(r)
	// The per-address count is looked at before anything is parsed: a blocked address costs a
	// map lookup.
	if err := m.svc.Throttle.Check(ctx, ThrottleScope, addr, ""); err != nil {
		m.writePOSError(w, r, err)
		return
	}
	data, err := httpx.ReadBody(r, maxAuthBody)
	if err != nil {
		m.writePOSError(w, r, err)
		return
	}
	req, err := parseAuthBody(data)
	if err != nil {
		m.writePOSError(w, r, err)
		return
	}
	if err := m.svc.Throttle.Check(ctx, ThrottleScope, addr, req.ProviderOutletID); err != nil {
		m.writePOSError(w, r, err)
		return
	}
	o, err := m.checkCredentials(ctx, req)
	if err != nil {
		if errs.KindOf(err) == errs.Unauthenticated {
			if ferr := m.svc.Throttle.Fail(context.WithoutCancel(ctx), ThrottleScope, addr, req.ProviderOutletID); ferr != nil {
				m.svc.Log.Warn("orderpay: counting a failed auth failed", "error", ferr.Error())
			}
			m.audit(r, "anonymous", "orderpay.auth", "provider_outlet:"+clip(req.ProviderOutletID), "denied", "bad credentials")
		}
		m.writePOSError(w, r, err)
		return
	}
	if o.Disabled {
		m.audit(r, "outlet:"+o.ID, "orderpay.auth", o.ID, "denied", "outlet disabled")
		m.writePOSError(w, r, errs.New(errs.Forbidden, "disabled", msgDisabled))
		return
	}
	tok, err := m.issueTicket(ctx, o.ID)
	if err != nil {
		m.writePOSError(w, r, err)
		return
	}
	m.audit(r, "outlet:"+o.ID, "orderpay.auth", o.ID, "ok", "")
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"AccessToken": tok})
}

// checkCredentials returns the outlet the three values name, or one generic Unauthenticated
// error. An unknown outlet and a wrong POSRemoteID spend the time of an argon2id check too, so
// timing does not tell which value was wrong.
func (m *Module) checkCredentials(ctx context.Context, req authRequest) (*store.OrderpayOutlet, error) {
	bad := errs.New(errs.Unauthenticated, "invalid_credentials", msgBadCredentials)
	// A bounded wait for a free argon2id slot: under a flood the answer is 503, not a queue.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	o, err := m.store.GetOrderpayOutletByProviderID(ctx, req.ProviderOutletID)
	if errors.Is(err, store.ErrNotFound) {
		if err := secret.DummyCheckContext(cctx); err != nil {
			return nil, busy(err)
		}
		return nil, bad
	}
	if err != nil {
		return nil, storeError(err)
	}
	remoteOK := secret.Equal([]byte(req.POSRemoteID), []byte(o.POSRemoteID))
	secretOK, err := secret.CheckPasswordContext(cctx, o.AuthSecretHash, req.AuthSecret)
	if err != nil {
		return nil, busy(err)
	}
	if !remoteOK || !secretOK {
		return nil, bad
	}
	return o, nil
}

func busy(err error) error {
	return &errs.Error{Kind: errs.Unavailable, Code: "busy", Message: "service busy; retry later",
		RetryAfter: time.Second, Err: err}
}

// issueTicket stores a new AccessToken for outletID and returns it: 256 random bits, base64url
// without padding (it goes into a URL unescaped), kept in the store only as its SHA-256.
func (m *Module) issueTicket(ctx context.Context, outletID string) (string, error) {
	var b [ticketBytes]byte
	rand.Read(b[:])
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	now := m.svc.Clock.Now().UTC()
	err := m.store.CreateOrderpayTicket(ctx, &store.OrderpayTicket{
		Hash: secret.Hash(tok), OutletID: outletID, CreatedAt: now, ExpiresAt: now.Add(m.cfg.ticketLifetime),
	})
	if err != nil {
		return "", storeError(err)
	}
	return tok, nil
}

// clip keeps audit targets short: a caller-chosen id is shown, never more than maxOutletID bytes.
func clip(s string) string {
	if len(s) > maxOutletID {
		s = s[:maxOutletID]
	}
	return s
}

func (m *Module) audit(r *http.Request, actor, action, target, outcome, detail string) {
	m.svc.Audit(context.WithoutCancel(r.Context()), store.AuditEvent{
		Actor: actor, Action: action, Target: target, Address: auth.Addr(r), Outcome: outcome, Detail: detail,
	})
}
