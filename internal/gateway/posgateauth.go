package gateway

import (
	"errors"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/token"
)

// PosgateAuthName is the authenticator name of "any posgate access token".
const PosgateAuthName = "posgate"

// PosgateAuthenticator accepts any access token posgate issued (any audience; a route narrows it
// with `audience:` and `scopes:`) as `Authorization: Bearer <token>`, and answers failures the
// RFC 6750 way.
type PosgateAuthenticator struct {
	verifier token.Verifier
	realm    string

	// principals keeps the principal built for a token (by jti) so a repeated token is not turned
	// into a new principal every time. The verifier still checks the token on every request
	// (signature via its cache, expiry, revocation); a token's claims never change, so neither
	// does its principal. Principals are shared and read-only.
	mu         sync.RWMutex
	principals map[string]*auth.Principal
}

// maxCachedPrincipals bounds the principal cache; when full it starts over.
const maxCachedPrincipals = 10_000

// NewPosgateAuthenticator returns the "posgate" authenticator over v (the verifier with the
// verification cache and the revocation set).
func NewPosgateAuthenticator(v token.Verifier) *PosgateAuthenticator {
	return &PosgateAuthenticator{verifier: v, realm: "posgate", principals: map[string]*auth.Principal{}}
}

// BearerToken returns the token of r's `Authorization: Bearer` header. ok is false when r has no
// Authorization header or one of another scheme (no credential of this kind); err is set when the
// header is there but unusable (repeated, or an empty token).
func BearerToken(r *http.Request) (tok string, ok bool, err error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", false, nil
	}
	scheme, rest, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false, nil
	}
	if len(vals) > 1 {
		return "", true, errs.New(errs.BadInput, "invalid_request", "the Authorization header is repeated")
	}
	tok = strings.Trim(rest, " \t")
	if tok == "" {
		return "", true, errs.New(errs.Unauthenticated, "invalid_token", "the bearer token is empty")
	}
	return tok, true, nil
}

// StablePrincipals implements gateway.StablePrincipals: principals are kept per token and never
// modified.
func (a *PosgateAuthenticator) StablePrincipals() bool { return true }

// HasCredential reports whether r carries a bearer token (without checking it).
func (a *PosgateAuthenticator) HasCredential(r *http.Request) bool {
	_, ok, _ := BearerToken(r)
	return ok
}

// Authenticate implements auth.Authenticator.
func (a *PosgateAuthenticator) Authenticate(r *http.Request) (*auth.Principal, error) {
	tok, ok, err := BearerToken(r)
	if !ok {
		return nil, auth.ErrNoCredential
	}
	if err != nil {
		return nil, err
	}
	c, err := a.verifier.Verify(r.Context(), tok, token.VerifyOptions{})
	if err != nil {
		var ve *token.VerifyError
		if errors.As(err, &ve) {
			return nil, errs.Wrap(errs.Unauthenticated, "invalid_token", describeReason(ve.Reason), err)
		}
		if _, isErr := errs.As(err); isErr {
			return nil, err
		}
		return nil, errs.Wrap(errs.Internal, "server_error", "token verification failed", err)
	}
	if c.JTI != "" {
		a.mu.RLock()
		p := a.principals[c.JTI]
		a.mu.RUnlock()
		if p != nil && p.ExpiresAt.Equal(c.ExpiresAt) && p.Subject == c.Subject {
			return p, nil
		}
	}
	p := principalOf(c)
	if c.JTI != "" {
		a.mu.Lock()
		if len(a.principals) >= maxCachedPrincipals {
			clear(a.principals)
		}
		a.principals[c.JTI] = p
		a.mu.Unlock()
	}
	return p, nil
}

func principalOf(c *token.Claims) *auth.Principal {
	claims := make(map[string]any, len(c.Extra)+1)
	maps.Copy(claims, c.Extra)
	if len(c.Audience) > 0 {
		claims["aud"] = c.Audience
	}
	return &auth.Principal{
		Dialect:   "posgate",
		Means:     PosgateAuthName,
		Subject:   c.Subject,
		Client:    c.ClientID,
		Scopes:    strings.Fields(c.Scope),
		Claims:    claims,
		TokenID:   c.JTI,
		SessionID: c.SessionID,
		ExpiresAt: c.ExpiresAt,
	}
}

func describeReason(r token.Reason) string {
	switch r {
	case token.ReasonExpired:
		return "the access token has expired"
	case token.ReasonRevoked:
		return "the access token has been revoked"
	case token.ReasonNotYetValid:
		return "the access token is not valid yet"
	case token.ReasonTooLarge:
		return "the access token is too large"
	case token.ReasonSignature, token.ReasonUnknownKey:
		return "the access token's signature does not verify"
	case token.ReasonClaims:
		return "the access token's claims are not acceptable"
	default:
		return "the access token is malformed"
	}
}

// WriteError implements auth.Authenticator.
func (a *PosgateAuthenticator) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	WriteBearerError(w, a.realm, err)
}

// ScopeError is the cause (errs.Error.Err) of an "insufficient_scope" refusal: the scopes the
// route requires, so an RFC 6750 writer can name them in its challenge.
type ScopeError struct{ Required []string }

func (e *ScopeError) Error() string { return "requires scope " + strings.Join(e.Required, " ") }

// RequiredScopes lets a dialect's writer name the scopes in its challenge without importing the
// gateway (errors.As on an interface with this method).
func (e *ScopeError) RequiredScopes() []string { return e.Required }

// WriteBearerError writes err as an RFC 6750 answer with a JSON body
// {"error":"…","error_description":"…"}: 401 with a `WWW-Authenticate: Bearer` challenge
// (no error code when the request carried no token, §3.1), 403 insufficient_scope with the scopes
// needed, and the gateway's other refusals and upstream failures with their statuses.
func WriteBearerError(w http.ResponseWriter, realm string, err error) {
	e, ok := errs.As(err)
	if !ok {
		e = errs.New(errs.Internal, "server_error", "internal error")
	}
	h := w.Header()
	code, status := e.Code, errs.HTTPStatus(e.Kind)
	switch e.Kind {
	case errs.Unauthenticated:
		if errors.Is(err, auth.ErrNoCredential) || e.Code == "no_credential" {
			h.Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
			code = "unauthorized"
		} else {
			code = "invalid_token"
			h.Set("WWW-Authenticate", challenge(realm, code, e.Message, ""))
		}
	case errs.Forbidden:
		if e.Code == "insufficient_scope" {
			var se *ScopeError
			scope := ""
			if errors.As(err, &se) {
				scope = strings.Join(se.Required, " ")
			}
			h.Set("WWW-Authenticate", challenge(realm, "insufficient_scope", e.Message, scope))
		}
		if code == "" {
			code = "access_denied"
		}
	case errs.BadInput:
		code = "invalid_request"
	case errs.Throttled:
		if code == "" {
			code = "too_many_requests"
		}
		setRetryAfter(h, e)
	case errs.Unavailable:
		switch e.Code {
		case "upstream_timeout":
			status = http.StatusGatewayTimeout
		case "upstream_unreachable":
			status = http.StatusBadGateway
		default:
			code = "temporarily_unavailable"
			setRetryAfter(h, e)
		}
	case errs.NotFound:
		code = "not_found"
	case errs.TooLarge, errs.UnsupportedMediaType:
		if code == "" {
			code = "invalid_request"
		}
	case errs.Conflict:
		if code == "" {
			code = "conflict"
		}
	default:
		code = "server_error"
		e = errs.New(errs.Internal, code, "internal error") // never show an internal error's text
	}
	writeJSONError(w, status, code, e.Message)
}

func setRetryAfter(h http.Header, e *errs.Error) {
	secs := int((e.RetryAfter + 999_999_999) / 1_000_000_000)
	if secs < 1 {
		secs = 1
	}
	h.Set("Retry-After", strconv.Itoa(secs))
}

// challenge builds an RFC 6750 §3 challenge. Values are ours (never caller input), but quotes and
// backslashes are still escaped so the header always parses.
func challenge(realm, code, desc, scope string) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="`)
	b.WriteString(quote(realm))
	b.WriteString(`", error="`)
	b.WriteString(code)
	b.WriteByte('"')
	if desc != "" {
		b.WriteString(`, error_description="`)
		b.WriteString(httpx.SafeDescription(desc))
		b.WriteByte('"')
	}
	if scope != "" {
		b.WriteString(`, scope="`)
		b.WriteString(quote(scope))
		b.WriteByte('"')
	}
	return b.String()
}

func quote(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c < 0x20 || c == 0x7f || c > 0x7e:
			b.WriteByte('?') // RFC 6750 limits error_description to printable ASCII
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

func writeJSONError(w http.ResponseWriter, status int, code, desc string) {
	httpx.NoStore(w)
	httpx.WriteError(w, status, code, desc)
}
