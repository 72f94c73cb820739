package jackpot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/posgate/posgate/internal/app"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/jsonx"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// tokenResponse is the spec's answer, exactly these three members.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// oauthError is an RFC 6749 §5.2 error answer of /v2/token.
type oauthError struct {
	status     int
	code       string // error
	desc       string // error_description: precise, never an input value or a secret
	retryAfter time.Duration
	audit      bool // a failed credential check (audited)
}

func badRequest(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", desc: desc}
}

func invalidClient(desc string) *oauthError {
	return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", desc: desc, audit: true}
}

func invalidGrant(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_grant", desc: desc, audit: true}
}

func unavailable() *oauthError {
	return &oauthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable",
		desc: "the credential store is unavailable; retry later", retryAfter: 5 * time.Second}
}

func serverError() *oauthError {
	return &oauthError{status: http.StatusInternalServerError, code: "server_error", desc: "internal error"}
}

func throttled(err error) *oauthError {
	oe := &oauthError{status: http.StatusTooManyRequests, code: "too_many_attempts",
		desc: "too many failed attempts; try again later", retryAfter: time.Second}
	if e, ok := errs.As(err); ok && e.RetryAfter > 0 {
		oe.retryAfter = e.RetryAfter
	}
	return oe
}

func writeOAuthError(w http.ResponseWriter, oe *oauthError) {
	httpx.NoStore(w)
	if oe.status == http.StatusUnauthorized {
		// RFC 6749 §5.2: 401 carries a challenge. Jackpot clients authenticate with body members
		// (like client_secret_post); Basic is the scheme RFC 6749 §2.3.1 names for client secrets.
		w.Header().Set("WWW-Authenticate", `Basic realm="jackpot", charset="UTF-8"`)
	}
	if oe.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((oe.retryAfter+time.Second-1)/time.Second)))
	}
	httpx.WriteError(w, oe.status, oe.code, oe.desc)
}

// tokenRequest is the JSON body of POST /v2/token. Unrecognised members are ignored (RFC 6749
// §3.2); known members must be strings; an empty string counts as absent (RFC 6749 §3.1).
type tokenRequest struct {
	GrantType    string
	ClientID     string
	ClientSecret string
	Assertion    string
}

func parseTokenRequest(r *http.Request) (*tokenRequest, *oauthError) {
	if !httpx.IsJSON(r) {
		return nil, badRequest("Content-Type must be application/json")
	}
	body, err := httpx.ReadBody(r, maxTokenBody)
	if err != nil {
		if errs.CodeOf(err) == "body_too_large" {
			return nil, &oauthError{status: http.StatusRequestEntityTooLarge, code: "invalid_request",
				desc: "request body is larger than " + strconv.Itoa(maxTokenBody) + " bytes"}
		}
		return nil, badRequest("request body could not be read")
	}
	return decodeTokenRequest(body)
}

// decodeTokenRequest parses the body strictly: one JSON object, no duplicate keys (compared
// case-insensitively), the four known members strings when present.
func decodeTokenRequest(body []byte) (*tokenRequest, *oauthError) {
	var m map[string]any
	if err := jsonx.Decode(body, &m, false); err != nil {
		if errors.Is(err, jsonx.ErrDuplicateKey) {
			return nil, badRequest("request body repeats a member")
		}
		return nil, badRequest("request body must be one JSON object")
	}
	req := &tokenRequest{}
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"grant_type", &req.GrantType},
		{"client_id", &req.ClientID},
		{"client_secret", &req.ClientSecret},
		{"assertion", &req.Assertion},
	} {
		v, ok := m[f.name]
		if !ok || v == nil {
			continue
		}
		s, isStr := v.(string)
		if !isStr {
			return nil, badRequest(f.name + " must be a string")
		}
		*f.dst = s
	}
	return req, nil
}

func (m *Module) tokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, oe := m.token(r)
		if oe != nil {
			writeOAuthError(w, oe)
			return
		}
		httpx.NoStore(w)
		httpx.WriteJSON(w, http.StatusOK, resp)
	})
}

// token serves one /v2/token request.
func (m *Module) token(r *http.Request) (*tokenResponse, *oauthError) {
	ctx := r.Context()
	addr := auth.Addr(r)
	// Per address first: a blocked address costs no parse and no store read.
	if err := m.svc.Throttle.Check(ctx, ThrottleScope, addr, ""); err != nil {
		return nil, throttled(err)
	}
	req, oe := parseTokenRequest(r)
	if oe != nil {
		return nil, oe
	}
	if req.GrantType == "" {
		return nil, badRequest("grant_type is missing")
	}
	if req.GrantType != GrantJWTBearer && req.GrantType != GrantClientCredentials {
		return nil, &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type",
			desc: "grant_type must be " + GrantJWTBearer + " or " + GrantClientCredentials}
	}
	if req.ClientID == "" {
		return nil, m.refuse(ctx, addr, nil, invalidClient("client_id is missing"), false)
	}
	switch req.GrantType {
	case GrantJWTBearer:
		if req.Assertion == "" {
			return nil, badRequest("assertion is missing")
		}
	case GrantClientCredentials:
		if req.ClientSecret == "" {
			return nil, m.refuse(ctx, addr, nil, invalidClient("client_secret is missing"), false)
		}
	}

	if req.GrantType == GrantClientCredentials {
		cl, oe := m.tokenClient(ctx, addr, req.ClientID)
		if oe != nil {
			return nil, oe
		}
		if err := m.svc.Throttle.Check(ctx, ThrottleScope, addr, cl.ID); err != nil {
			return nil, throttled(err)
		}
		if oe := m.grantAllowed(ctx, addr, cl, req.GrantType, false); oe != nil {
			return nil, oe
		}
		return m.clientCredentials(ctx, addr, cl, req.ClientSecret)
	}
	// jwt-bearer may start from a cached copy of the client: the single-use write that accepts
	// the assertion holds only while the client is still that copy (enabled, same version), so a
	// client disabled or changed a moment ago, on any replica, gets no token, as when the client
	// was read for every request. A copy that fails any check, or that the write finds out of
	// date, is dropped and the request decided again on the store's copy.
	cl, cached := m.cachedTokenClient(req.ClientID)
	for attempt := 1; ; attempt++ {
		if !cached {
			var oe *oauthError
			if cl, oe = m.tokenClient(ctx, addr, req.ClientID); oe != nil {
				return nil, oe
			}
			m.clients.put(cl)
		}
		resp, oe, stale := m.jwtBearerAs(ctx, addr, cl, cached, req.Assertion)
		if !stale {
			return resp, oe
		}
		m.clients.forget(cl)
		if attempt == maxClientAttempts {
			// The client changed between each read and the write that followed it.
			m.svc.Log.LogAttrs(ctx, slog.LevelWarn, "jackpot: client kept changing during a token request", slog.String("client", cl.ID))
			return nil, unavailable()
		}
		cached = false
	}
}

// maxClientAttempts bounds how often one jwt-bearer request reads its client again after the
// single-use write found it changed.
const maxClientAttempts = 3

// cachedTokenClient returns the cached client named by an API key when the copy is one the token
// endpoint could accept (an enabled API-key client).
func (m *Module) cachedTokenClient(apiKey string) (*store.Client, bool) {
	if len(apiKey) > maxAPIKeyBytes {
		return nil, false
	}
	cl, ok := m.clients.byHash.Get(sha256.Sum256([]byte(apiKey)))
	if !ok || !cl.APIKey || cl.Disabled {
		return nil, false
	}
	return cl, true
}

// jwtBearerAs serves a jwt-bearer request as client cl. With cached, a refusal that depends on
// the client's data (and a client the single-use write finds changed) is not answered but
// reported stale, with nothing recorded: the caller decides again on the store's copy.
func (m *Module) jwtBearerAs(ctx context.Context, addr string, cl *store.Client, cached bool, assertion string) (resp *tokenResponse, oe *oauthError, stale bool) {
	if err := m.svc.Throttle.Check(ctx, ThrottleScope, addr, cl.ID); err != nil {
		return nil, throttled(err), false
	}
	if oe := m.grantAllowed(ctx, addr, cl, GrantJWTBearer, cached); oe != nil {
		return nil, oe, oe == errStale
	}
	resp, oe = m.jwtBearer(ctx, addr, cl, cached, assertion)
	return resp, oe, oe == errStale
}

// errStale is what a check made on a cached client returns instead of a refusal.
var errStale = &oauthError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: "client changed"}

// grantAllowed refuses a grant type the client may not use.
func (m *Module) grantAllowed(ctx context.Context, addr string, cl *store.Client, grant string, cached bool) *oauthError {
	if slices.Contains(cl.GrantTypes, grant) {
		return nil
	}
	if cached {
		return errStale
	}
	return m.refuse(ctx, addr, cl, &oauthError{status: http.StatusBadRequest, code: "unauthorized_client",
		desc: "this client may not use grant_type " + grant, audit: true}, false)
}

// tokenClient finds the client named by an API key in the store (one indexed read by hash), so a
// client disabled a moment ago gets no new token; client_credentials reads it every time.
func (m *Module) tokenClient(ctx context.Context, addr, apiKey string) (*store.Client, *oauthError) {
	if len(apiKey) > maxAPIKeyBytes {
		return nil, m.refuse(ctx, addr, nil, invalidClient("unknown client"), true)
	}
	cl, err := m.svc.Store.GetClientByIDHash(ctx, secret.Hash(apiKey))
	switch {
	case errors.Is(err, store.ErrNotFound):
		countVerification("unknown_client")
		return nil, m.refuse(ctx, addr, nil, invalidClient("unknown client"), true)
	case err != nil:
		m.logStoreError(ctx, "client lookup", err)
		return nil, unavailable()
	case !cl.APIKey:
		// Not a jackpot client: its client_id is not an API key, and /v2/token is jackpot's.
		return nil, m.refuse(ctx, addr, nil, invalidClient("unknown client"), true)
	case cl.Disabled:
		return nil, m.refuse(ctx, addr, cl, invalidClient("client is disabled"), true)
	}
	return cl, nil
}

func (m *Module) clientCredentials(ctx context.Context, addr string, cl *store.Client, clientSecret string) (*tokenResponse, *oauthError) {
	if len(cl.SecretHash) == 0 || !secret.Equal(secret.Hash(clientSecret), cl.SecretHash) {
		countVerification("invalid_client_secret")
		return nil, m.refuse(ctx, addr, cl, invalidClient("client authentication failed"), true)
	}
	return m.issue(ctx, cl, GrantClientCredentials, m.cfg.m2mLifetime, map[string]any{"gty": GtyM2M})
}

func (m *Module) jwtBearer(ctx context.Context, addr string, cl *store.Client, cached bool, assertion string) (*tokenResponse, *oauthError) {
	now := m.svc.Clock.Now()
	// Size first: an oversized assertion costs neither an unseal nor a parse.
	if len(assertion) > token.MaxTokenBytes {
		return nil, m.refuse(ctx, addr, cl, invalidGrant(describeVerifyError(&token.VerifyError{Reason: token.ReasonTooLarge}).(*assertionError).Description), true)
	}
	keys, err := m.keys.unexpiredKeys(cl, now)
	if err != nil && cached {
		return nil, errStale
	}
	if err != nil {
		m.svc.Log.LogAttrs(ctx, slog.LevelError, "jackpot: an API signature does not open with the master key",
			slog.String("client", cl.ID), slog.String("error", err.Error()))
		return nil, serverError()
	}
	a, err := VerifyAssertion(assertion, keys, now, m.cfg.window)
	if err != nil {
		var ae *assertionError
		switch {
		case cached:
			return nil, errStale // perhaps verified by a key the copy does not have yet
		case !errors.As(err, &ae):
			return nil, serverError()
		}
		if ae.Credential {
			countVerification("invalid_assertion")
		} else {
			countVerification("invalid_assertion_claims")
		}
		return nil, m.refuse(ctx, addr, cl, invalidGrant(ae.Description), ae.Credential)
	}
	// Every other check passed: only now is the assertion remembered, so a refused one burns nothing.
	if oe := m.useOnce(ctx, cl, a, now); oe != nil {
		if oe == errStale {
			return nil, oe
		}
		if oe.code == "invalid_grant" {
			countVerification("assertion_replay")
		}
		return nil, m.refuse(ctx, addr, cl, oe, false)
	}
	extra := map[string]any{
		"gty":             GtySession,
		"amount":          a.Amount,
		"notificationKey": a.NotificationKey,
	}
	if a.UserID != nil {
		extra["userId"] = a.UserID
	}
	if a.ForceManualConfirm != nil {
		extra["forceManualConfirm"] = *a.ForceManualConfirm
	}
	return m.issue(ctx, cl, GrantJWTBearer, m.cfg.sessionLifetime, extra)
}

// useOnce records the accepted assertion in the store, which decides across replicas. Tokens are
// malleable, so the record is keyed on what the assertion means — the (client, notificationKey)
// pair, and its jti when it has one — never on its bytes. A record lasts as long as the assertion
// (or any re-signing of it with a fresh iat inside the window) could otherwise be accepted.
//
// The jti is recorded first, in the same store write: if the notificationKey then turns out to
// be taken, the burnt jti belonged to a refused retry of an old transaction and a correct client
// never reuses a jti, whereas burning a fresh notificationKey would refuse the client's real
// transaction.
//
// The write holds only while cl is current in the store (enabled, same version); otherwise it
// records nothing and useOnce returns errStale.
func (m *Module) useOnce(ctx context.Context, cl *store.Client, a *Assertion, now time.Time) *oauthError {
	expires := now.Add(m.cfg.window.Past + m.cfg.window.Future + time.Second)
	keys := []string{singleUseKey("nk", cl.ID, a.NotificationKey)}
	if a.JTI != "" {
		keys = []string{singleUseKey("jti", cl.ID, a.JTI), keys[0]}
	}
	n, err := m.svc.Store.UseOnceAsClient(ctx, cl.ID, cl.Version, keys, now, expires)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrClientChanged):
		return errStale
	case n == 0 && len(keys) == 2:
		return m.useOnceError(ctx, err, "assertion was already used (its jti was seen before)")
	default:
		return m.useOnceError(ctx, err, "notificationKey was already used by this client")
	}
}

func (m *Module) useOnceError(ctx context.Context, err error, desc string) *oauthError {
	if errors.Is(err, store.ErrAlreadyUsed) {
		return invalidGrant(desc)
	}
	m.logStoreError(ctx, "single-use record", err)
	return unavailable()
}

// singleUseKey names a single-use record; the value is hashed so arbitrary caller text never
// reaches the store's key column and the key length is fixed.
func singleUseKey(kind, clientID, value string) string {
	sum := sha256.Sum256([]byte(value))
	return "jackpot:" + kind + ":" + clientID + ":" + hex.EncodeToString(sum[:])
}

// issue mints a jackpot token for cl (subject and client_id are the internal client id, never
// the API key).
func (m *Module) issue(ctx context.Context, cl *store.Client, grant string, lifetime time.Duration, extra map[string]any) (*tokenResponse, *oauthError) {
	c := token.Claims{
		Subject:  cl.ID,
		Audience: []string{Audience},
		ClientID: cl.ID,
		Scope:    strings.Join(cl.Scopes, " "),
		Extra:    extra,
	}
	raw, _, err := m.svc.Issuer.Issue(ctx, c, lifetime)
	if err != nil {
		m.svc.Log.LogAttrs(ctx, slog.LevelError, "jackpot: token issuance failed",
			slog.String("client", cl.ID), slog.String("grant", grant), slog.String("error", err.Error()))
		if errs.KindOf(err) == errs.Unavailable || errors.Is(err, store.ErrUnavailable) {
			return nil, unavailable()
		}
		return nil, serverError()
	}
	countIssued(grant)
	return &tokenResponse{AccessToken: raw, TokenType: "Bearer", ExpiresIn: int64(lifetime / time.Second)}, nil
}

// refuse records a failed credential check — the throttle when it is one a guesser would make,
// the audit trail always — and returns oe.
func (m *Module) refuse(ctx context.Context, addr string, cl *store.Client, oe *oauthError, countFailure bool) *oauthError {
	identity, actor := "", "anonymous"
	if cl != nil {
		identity, actor = cl.ID, "client:"+cl.ID
	}
	e := store.AuditEvent{Actor: actor, Action: "jackpot.token.refused", Target: identity,
		Address: addr, Outcome: "denied", Detail: oe.code + ": " + oe.desc}
	switch {
	case countFailure && oe.audit:
		if err := m.svc.FailAudited(ctx, ThrottleScope, addr, identity, e); err != nil {
			m.logStoreError(ctx, "throttle count", err)
		}
	case countFailure:
		if err := m.svc.Throttle.Fail(ctx, ThrottleScope, addr, identity); err != nil {
			m.logStoreError(ctx, "throttle count", err)
		}
	case oe.audit:
		m.svc.Audit(ctx, e)
	}
	return oe
}

func (m *Module) logStoreError(ctx context.Context, what string, err error) {
	m.svc.Log.LogAttrs(ctx, slog.LevelWarn, "jackpot: store error", slog.String("during", what), slog.String("error", err.Error()))
}

// jsonNumberFloat converts a claim decoded by any JSON decoder into a float64.
func jsonNumberFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	}
	return 0, false
}

// WriteMethodNotAllowed answers a wrong method on /v2/token in the token endpoint's shape (the
// server has set Allow).
func (m *Module) WriteMethodNotAllowed(w http.ResponseWriter, _ *http.Request, allow string) {
	writeOAuthError(w, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "method not allowed; use " + allow})
}

var _ app.MethodNotAllowedWriter = (*Module)(nil)
