package jackpot

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// The errors the authenticators return. Messages are what the caller reads.
var (
	errBadAPIKey      = errs.New(errs.Unauthenticated, "invalid_apikey", "invalid API key")
	errDisabledClient = errs.New(errs.Unauthenticated, "client_disabled", "client is disabled")
	errStore          = &errs.Error{Kind: errs.Unavailable, Code: "store_unavailable", Message: "service temporarily unavailable; retry later", RetryAfter: 5 * time.Second}
)

// apiKeyAuth is "jackpot.apikey": header `apikey: <key>`.
type apiKeyAuth struct{ m *Module }

// Authenticate looks the key up by its SHA-256 (one indexed read, or a map lookup while cached).
// The principal names the client by its internal id; the API key itself goes nowhere.
func (a *apiKeyAuth) Authenticate(r *http.Request) (*auth.Principal, error) {
	vals := r.Header.Values("apikey")
	if len(vals) == 0 {
		return nil, auth.ErrNoCredential
	}
	ctx := r.Context()
	m := a.m
	addr := auth.Addr(r)
	if err := m.svc.Throttle.Check(ctx, ThrottleScope, addr, ""); err != nil {
		return nil, err
	}
	if len(vals) != 1 || vals[0] == "" || len(vals[0]) > maxAPIKeyBytes {
		return nil, a.fail(r, addr, nil, errBadAPIKey)
	}
	cl, err := m.clients.byAPIKeyHash(ctx, m.svc.Store, sha256.Sum256([]byte(vals[0])))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, a.fail(r, addr, nil, errBadAPIKey)
	case err != nil:
		m.logStoreError(ctx, "apikey lookup", err)
		return nil, errStore
	case !cl.APIKey:
		return nil, a.fail(r, addr, nil, errBadAPIKey)
	case cl.Disabled:
		return nil, a.fail(r, addr, cl, errDisabledClient)
	}
	countVerification("apikey_ok")
	return &auth.Principal{
		Dialect: "jackpot",
		Means:   AuthAPIKey,
		Subject: cl.ID,
		Client:  cl.ID,
		Scopes:  cl.Scopes,
	}, nil
}

// HasCredential reports whether r carries an apikey header, without checking it (the gateway
// uses it to tell "another means" from "no credential").
func (a *apiKeyAuth) HasCredential(r *http.Request) bool { return len(r.Header.Values("apikey")) > 0 }

func (a *apiKeyAuth) fail(r *http.Request, addr string, cl *store.Client, err *errs.Error) error {
	ctx := r.Context()
	countVerification("invalid_apikey")
	identity, actor := "", "anonymous"
	if cl != nil {
		identity, actor = cl.ID, "client:"+cl.ID
	}
	if ferr := a.m.svc.FailAudited(ctx, ThrottleScope, addr, identity, store.AuditEvent{Actor: actor,
		Action: "jackpot.apikey.refused", Target: identity, Address: addr, Outcome: "denied", Detail: err.Message}); ferr != nil {
		a.m.logStoreError(ctx, "throttle count", ferr)
	}
	return err
}

func (a *apiKeyAuth) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, err, `APIKey realm="jackpot"`)
}

// bearerAuth is "jackpot.session" or "jackpot.m2m": a posgate JWT of audience "jackpot" whose gty
// names the grant it came from.
type bearerAuth struct {
	m    *Module
	name string
	gty  string
}

// Authenticate verifies the bearer token (signature, expiry, audience, revocation: the shared
// verifier with its cache) and then that it is this kind of jackpot token and its client is
// still enabled.
func (b *bearerAuth) Authenticate(r *http.Request) (*auth.Principal, error) {
	raw, present := bearerToken(r)
	if !present {
		return nil, auth.ErrNoCredential
	}
	if raw == "" {
		return nil, errs.New(errs.Unauthenticated, "invalid_token", "malformed Authorization header; expected Bearer <token>")
	}
	ctx := r.Context()
	c, err := b.m.svc.Verifier.Verify(ctx, raw, token.VerifyOptions{Audience: Audience})
	if err != nil {
		return nil, tokenError(err)
	}
	gty, _ := c.Extra["gty"].(string)
	if gty != b.gty {
		other := "a session token"
		if gty == GtyM2M {
			other = "a machine-to-machine token"
		} else if gty != GtySession {
			other = "this token"
		}
		return nil, errs.New(errs.Forbidden, "wrong_token_kind", "this route does not accept "+other)
	}
	// The token verified without the store; whether its client was disabled since needs it. With
	// the store down that one check is skipped (logged), as every stateless check keeps working.
	cl, err := b.m.clients.byClientID(ctx, b.m.svc.Store, c.ClientID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, errs.New(errs.Unauthenticated, "invalid_token", "the token's client no longer exists")
	case errors.Is(err, store.ErrUnavailable):
		b.m.logStoreError(ctx, "client lookup (token accepted on its signature)", err)
	case err != nil:
		b.m.logStoreError(ctx, "client lookup", err)
		return nil, errStore
	case cl.Disabled:
		return nil, errDisabledClient
	}
	p := &auth.Principal{
		Dialect:   "jackpot",
		Means:     b.name,
		Subject:   c.ClientID,
		Client:    c.ClientID,
		TokenID:   c.JTI,
		SessionID: c.SessionID,
		ExpiresAt: c.ExpiresAt,
	}
	if c.Scope != "" {
		p.Scopes = strings.Fields(c.Scope)
	}
	if b.gty == GtySession {
		p.Claims = sessionClaims(c.Extra)
	}
	return p, nil
}

// sessionClaims are the dialect claims a session principal carries upstream: amount (a float64,
// whatever number type the verifier decoded), notificationKey, and userId / forceManualConfirm
// when the assertion had them.
func sessionClaims(extra map[string]any) map[string]any {
	out := make(map[string]any, 4)
	if f, ok := jsonNumberFloat(extra["amount"]); ok {
		out["amount"] = f
	}
	if s, ok := extra["notificationKey"].(string); ok {
		out["notificationKey"] = s
	}
	if v, ok := extra["userId"]; ok && v != nil {
		out["userId"] = v
	}
	if v, ok := extra["forceManualConfirm"].(bool); ok {
		out["forceManualConfirm"] = v
	}
	return out
}

// HasCredential reports whether r carries a Bearer token, without checking it.
func (b *bearerAuth) HasCredential(r *http.Request) bool {
	_, present := bearerToken(r)
	return present
}

func (b *bearerAuth) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	challenge := `Bearer realm="jackpot"`
	if _, present := bearerToken(r); present && errs.KindOf(err) == errs.Unauthenticated {
		challenge += `, error="invalid_token"`
	}
	writeError(w, err, challenge)
}

// bearerToken returns the token of an `Authorization: Bearer …` header; present reports whether
// the request carries a Bearer credential at all (a Basic header is some other means).
func bearerToken(r *http.Request) (raw string, present bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", false
	}
	scheme, rest, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	rest = strings.Trim(rest, " \t")
	if len(vals) > 1 || strings.ContainsAny(rest, " \t") {
		return "", true // repeated header or junk after the token: malformed
	}
	return rest, true
}

// tokenError turns a verifier failure into the caller's message (never the token).
func tokenError(err error) error {
	var ve *token.VerifyError
	if !errors.As(err, &ve) {
		if k := errs.KindOf(err); k == errs.Unavailable {
			return errStore
		}
		return errs.Wrap(errs.Internal, "verify_failed", "internal error", err)
	}
	msg := "invalid token"
	switch ve.Reason {
	case token.ReasonExpired:
		msg = "token has expired"
	case token.ReasonRevoked:
		msg = "token is no longer valid (revoked, or already used for a reservation)"
	case token.ReasonNotYetValid:
		msg = "token is not valid yet"
	case token.ReasonClaims:
		msg = "token is not a jackpot token"
	case token.ReasonTooLarge:
		msg = "token is too large"
	}
	return errs.Wrap(errs.Unauthenticated, "invalid_token", msg, err)
}

// errorBody is jackpot's error shape on every route but /v2/token.
type errorBody struct {
	StatusCode int    `json:"statusCode"`
	Error      string `json:"error"`
	Message    string `json:"message"`
}

// writeError renders err in jackpot's shape: {"statusCode","error","message"}, error being the
// status text. challenge is the WWW-Authenticate value sent with a 401.
func writeError(w http.ResponseWriter, err error, challenge string) {
	status, msg := http.StatusInternalServerError, "internal error"
	var retry time.Duration
	if e, ok := errs.As(err); ok {
		status = errs.HTTPStatus(e.Kind)
		if e.Kind != errs.Internal {
			msg = e.Message
		}
		retry = e.RetryAfter
		switch e.Code {
		case "upstream_timeout":
			status = http.StatusGatewayTimeout
		case "upstream_unreachable":
			status = http.StatusBadGateway
		}
	}
	if status == http.StatusUnauthorized && challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
	}
	httpx.WriteJSON(w, status, errorBody{StatusCode: status, Error: http.StatusText(status), Message: msg})
}
