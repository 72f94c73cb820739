package chimpy

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/metrics"
	"github.com/posgate/posgate/internal/token"
)

// AuthenticatorName is the name gateway routes use for chimpy access tokens.
const AuthenticatorName = "chimpy"

// Realm is the realm of chimpy's Bearer challenges.
const Realm = "posgate"

// Error codes of the protected-API side (RFC 6750 §3.1).
const (
	CodeInvalidToken      = "invalid_token"
	CodeInsufficientScope = "insufficient_scope"
	CodeInvalidRequest    = "invalid_request"
)

// grantTypes are the `gty` values of tokens the token endpoint mints; a chimpy route accepts only
// those, so a jackpot or chef token (minted by another dialect, with its own gty) never passes.
var grantTypes = []string{"password", "refresh_token", "client_credentials"}

// Authenticator verifies posgate access tokens sent as `Authorization: Bearer …` to a chimpy API,
// and answers failures as RFC 6750 says: 401 with `WWW-Authenticate: Bearer error="invalid_token"`
// and a JSON body for a missing, malformed, expired or revoked token; 403 `insufficient_scope`.
//
// The registered "chimpy" authenticator accepts any audience except those of other dialects
// (app.Services.Reserved); a route that names an audience (`audience:` in the route config)
// should use ForAudience, which accepts only tokens for that audience. The principal carries the
// audience in Claims["aud"] either way.
type Authenticator struct {
	svc      *app.Services
	audience string
}

// NewAuthenticator returns the authenticator for any chimpy audience.
func NewAuthenticator(svc *app.Services) *Authenticator { return &Authenticator{svc: svc} }

// ForAudience returns an authenticator that accepts only tokens whose `aud` holds aud.
func (a *Authenticator) ForAudience(aud string) auth.Authenticator {
	return &Authenticator{svc: a.svc, audience: aud}
}

// Audience is the audience this authenticator requires ("" for any chimpy audience).
func (a *Authenticator) Audience() string { return a.audience }

func invalidToken(desc string) *errs.Error {
	return errs.New(errs.Unauthenticated, CodeInvalidToken, desc)
}

// bearerToken returns the token of an `Authorization: Bearer` header. A request without one
// (no header, or another scheme) carries no chimpy credential at all.
func bearerToken(r *http.Request) (string, error) {
	hs := r.Header.Values("Authorization")
	if len(hs) == 0 {
		return "", auth.ErrNoCredential
	}
	if len(hs) > 1 {
		return "", invalidToken("The request carries more than one Authorization header.")
	}
	scheme, tok, _ := strings.Cut(hs[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", auth.ErrNoCredential
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", invalidToken("The access token is missing.")
	}
	return tok, nil
}

// HasCredential reports whether r carries a Bearer credential at all (the gateway asks, on its
// refusal path, to tell "another means' credential" from "none").
func (a *Authenticator) HasCredential(r *http.Request) bool {
	_, err := bearerToken(r)
	return !auth.IsNoCredential(err)
}

// Authenticate verifies the bearer token of r.
func (a *Authenticator) Authenticate(r *http.Request) (*auth.Principal, error) {
	raw, err := bearerToken(r)
	if err != nil {
		if auth.IsNoCredential(err) {
			metrics.TokenVerifications.WithLabelValues("chimpy", "missing").Inc()
		} else {
			metrics.TokenVerifications.WithLabelValues("chimpy", "malformed").Inc()
		}
		return nil, err
	}
	return a.verify(r.Context(), raw)
}

func (a *Authenticator) verify(ctx context.Context, raw string) (*auth.Principal, error) {
	cl, err := a.svc.Verifier.Verify(ctx, raw, token.VerifyOptions{Audience: a.audience})
	if err != nil {
		var ve *token.VerifyError
		if !errors.As(err, &ve) {
			metrics.TokenVerifications.WithLabelValues("chimpy", "error").Inc()
			return nil, &errs.Error{Kind: errs.Unavailable, Code: "temporarily_unavailable",
				Message: "The service is temporarily unavailable.", RetryAfter: 2 * time.Second, Err: err}
		}
		outcome, desc := describe(ve.Reason)
		metrics.TokenVerifications.WithLabelValues("chimpy", outcome).Inc()
		return nil, &errs.Error{Kind: errs.Unauthenticated, Code: CodeInvalidToken, Message: desc, Err: err}
	}
	gty, _ := cl.Extra["gty"].(string)
	if !slices.Contains(grantTypes, gty) || a.svc.Reserved.HasAny(cl.Audience) {
		metrics.TokenVerifications.WithLabelValues("chimpy", "claims").Inc()
		return nil, invalidToken("The access token is not valid for this API.")
	}
	metrics.TokenVerifications.WithLabelValues("chimpy", "ok").Inc()
	// aud is always an array in the principal, as the posgate authenticator gives it: an
	// upstream reading X-Posgate-Principal sees one type whatever the dialect.
	claims := map[string]any{"gty": gty, "aud": slices.Clone(cl.Audience)}
	if v, ok := cl.Extra["azp"].(string); ok {
		claims["azp"] = v
	}
	return &auth.Principal{
		Dialect:   "chimpy",
		Means:     AuthenticatorName,
		Subject:   cl.Subject,
		Client:    cl.ClientID,
		Scopes:    strings.Fields(cl.Scope),
		Claims:    claims,
		TokenID:   cl.JTI,
		SessionID: cl.SessionID,
		ExpiresAt: cl.ExpiresAt,
	}, nil
}

// describe turns a verification failure into a metrics outcome and an error_description.
func describe(r token.Reason) (outcome, desc string) {
	switch r {
	case token.ReasonExpired:
		return "expired", "The access token expired."
	case token.ReasonRevoked:
		return "revoked", "The access token was revoked."
	case token.ReasonNotYetValid:
		return "not_yet_valid", "The access token is not valid yet."
	case token.ReasonSignature, token.ReasonUnknownKey, token.ReasonAlg:
		return "signature", "The access token signature is invalid."
	case token.ReasonClaims:
		return "claims", "The access token is not valid for this API."
	default: // malformed, too large, missing alg, bad JSON
		return "malformed", "The access token is malformed."
	}
}

// scopeError is a 403 insufficient_scope that knows the scopes the route needs.
type scopeError struct {
	err    *errs.Error
	scopes []string
}

func (e *scopeError) Error() string            { return e.err.Error() }
func (e *scopeError) Unwrap() error            { return e.err }
func (e *scopeError) RequiredScopes() []string { return e.scopes }

// InsufficientScope is the error for a valid token that lacks scopes: WriteError renders it as 403
// with `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`. Any error that is an
// *errs.Error of kind Forbidden with code "insufficient_scope" renders the same way; one that also
// has a method RequiredScopes() []string gets the scope attribute.
func InsufficientScope(scopes ...string) error {
	return &scopeError{err: errs.New(errs.Forbidden, CodeInsufficientScope,
		"The access token does not grant the scope this call needs."), scopes: scopes}
}

// WriteError writes err in chimpy's (RFC 6750) shape.
func (a *Authenticator) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	WriteError(w, r, err)
}

// WriteError renders err for a chimpy API: status by kind; a Bearer challenge on 401 and 403; a
// body {"error","error_description"}.
func WriteError(w http.ResponseWriter, _ *http.Request, err error) {
	e, ok := errs.As(err)
	if !ok {
		e = errs.New(errs.Internal, "server_error", "internal error")
	}
	status := errs.HTTPStatus(e.Kind)
	code, desc := e.Code, e.Message
	switch e.Kind {
	case errs.Unauthenticated:
		code = CodeInvalidToken
		if auth.IsNoCredential(err) {
			desc = "An access token is required."
		}
	case errs.Forbidden:
		if code == "" {
			code = "access_denied"
		}
	case errs.BadInput:
		code = CodeInvalidRequest
	case errs.Throttled:
		code = "too_many_requests"
	case errs.Unavailable:
		// The gateway's upstream failures keep their own statuses (DESIGN: 504 timeout, 502
		// unreachable); anything else unavailable is the store.
		switch code {
		case "upstream_timeout":
			status = http.StatusGatewayTimeout
		case "upstream_unreachable":
			status = http.StatusBadGateway
		default:
			code = "temporarily_unavailable"
		}
	case errs.NotFound:
		code = "not_found"
	case errs.Internal:
		code, desc = "server_error", "internal error"
	}
	if desc == "" {
		desc = http.StatusText(status)
	}
	h := w.Header()
	switch {
	case status == http.StatusUnauthorized && auth.IsNoCredential(err):
		// RFC 6750 §3.1: no credential at all gets a challenge without error information.
		h.Set("WWW-Authenticate", `Bearer realm="`+Realm+`"`)
	case status == http.StatusUnauthorized:
		h.Set("WWW-Authenticate", challenge(CodeInvalidToken, desc, nil))
	case status == http.StatusForbidden && code == CodeInsufficientScope:
		var rs interface{ RequiredScopes() []string }
		var scopes []string
		if errors.As(err, &rs) {
			scopes = rs.RequiredScopes()
		}
		h.Set("WWW-Authenticate", challenge(CodeInsufficientScope, desc, scopes))
	case status == http.StatusBadRequest:
		h.Set("WWW-Authenticate", challenge(CodeInvalidRequest, desc, nil))
	}
	if e.RetryAfter > 0 || status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		secs := int((e.RetryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	httpx.WriteError(w, status, code, desc)
}

// challenge builds an RFC 6750 §3 WWW-Authenticate value. Attribute values are quoted strings;
// anything that could break the quoting is dropped (descriptions are ours, scopes are NQCHAR, but
// the header must stay well formed whatever a caller passes).
func challenge(code, desc string, scopes []string) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="` + Realm + `", error="` + code + `"`)
	if desc != "" {
		b.WriteString(`, error_description="` + httpx.SafeDescription(desc) + `"`)
	}
	if len(scopes) > 0 {
		b.WriteString(`, scope="` + quoteSafe(strings.Join(scopes, " ")) + `"`)
	}
	return b.String()
}

// quoteSafe keeps the characters RFC 6750 allows in error_description and scope (%x20-21 /
// %x23-5B / %x5D-7E).
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}
