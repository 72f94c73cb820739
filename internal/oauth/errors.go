package oauth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/store"
)

// Error codes of the OAuth endpoints (RFC 6749 §5.2 plus Auth0's too_many_attempts, which chimpy
// clients expect).
const (
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidClient          = "invalid_client"
	CodeInvalidGrant           = "invalid_grant"
	CodeUnauthorizedClient     = "unauthorized_client"
	CodeAccessDenied           = "access_denied"
	CodeUnsupportedGrantType   = "unsupported_grant_type"
	CodeTooManyAttempts        = "too_many_attempts"
	CodeServerError            = "server_error"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
)

// The one table that maps an error code to its status: chimpy's (Auth0's) table. It holds for
// every /oauth/* endpoint so a client sees one behaviour. It differs from RFC 6749 §5.2 in using
// 403 (not 400) for invalid_grant, unauthorized_client and access_denied, as Auth0 does.
var codeStatus = map[string]int{
	CodeInvalidRequest:         http.StatusBadRequest,
	CodeUnsupportedGrantType:   http.StatusBadRequest,
	CodeInvalidClient:          http.StatusUnauthorized,
	CodeInvalidGrant:           http.StatusForbidden,
	CodeUnauthorizedClient:     http.StatusForbidden,
	CodeAccessDenied:           http.StatusForbidden,
	CodeTooManyAttempts:        http.StatusTooManyRequests,
	CodeServerError:            http.StatusInternalServerError,
	CodeTemporarilyUnavailable: http.StatusServiceUnavailable,
}

var codeKind = map[string]errs.Kind{
	CodeInvalidRequest:         errs.BadInput,
	CodeUnsupportedGrantType:   errs.BadInput,
	CodeInvalidClient:          errs.Unauthenticated,
	CodeInvalidGrant:           errs.Forbidden,
	CodeUnauthorizedClient:     errs.Forbidden,
	CodeAccessDenied:           errs.Forbidden,
	CodeTooManyAttempts:        errs.Throttled,
	CodeServerError:            errs.Internal,
	CodeTemporarilyUnavailable: errs.Unavailable,
}

// Fail returns an OAuth error with the given code and a description safe to show.
func Fail(code, desc string) *errs.Error {
	k, ok := codeKind[code]
	if !ok {
		k = errs.Internal
	}
	return errs.New(k, code, desc)
}

// storeFailure turns a store error into what the client should see: 503 with Retry-After when the
// database is unreachable (it will recover by itself), else a 500 whose cause is only logged.
func storeFailure(err error) *errs.Error {
	if errors.Is(err, store.ErrUnavailable) {
		return &errs.Error{Kind: errs.Unavailable, Code: CodeTemporarilyUnavailable,
			Message: "the service is temporarily unavailable; try again shortly", RetryAfter: 2 * time.Second, Err: err}
	}
	return errs.Wrap(errs.Internal, CodeServerError, "internal error", err)
}

// normalise returns the code, status and description to send for err.
func normalise(err error) (code string, status int, desc string, retry time.Duration) {
	e, ok := errs.As(err)
	if !ok {
		return CodeServerError, 500, "internal error", 0
	}
	code = e.Code
	if _, known := codeStatus[code]; !known {
		// An error from a shared mechanism (the throttle, httpx, the store) carries its own code;
		// map it by kind.
		switch e.Kind {
		case errs.BadInput, errs.UnsupportedMediaType:
			code = CodeInvalidRequest
		case errs.TooLarge:
			// invalid_request, but with the status that tells the client the body was too big.
			return CodeInvalidRequest, http.StatusRequestEntityTooLarge, e.Message, 0
		case errs.Unauthenticated:
			code = CodeInvalidClient
		case errs.Forbidden:
			code = CodeAccessDenied
		case errs.Throttled:
			code = CodeTooManyAttempts
		case errs.Unavailable:
			code = CodeTemporarilyUnavailable
		default:
			code = CodeServerError
		}
	}
	desc = e.Message
	if code == CodeServerError {
		desc = "internal error"
	}
	return code, codeStatus[code], desc, e.RetryAfter
}

// writeError writes err as an RFC 6749 §5.2 body with the chimpy status table. basic says whether
// the client authenticated with HTTP Basic: a 401 then carries a Basic challenge (RFC 6749 §5.2).
func writeError(ctx context.Context, log *slog.Logger, w http.ResponseWriter, err error, basic bool) {
	code, status, desc, retry := normalise(err)
	if status >= 500 {
		log.LogAttrs(ctx, slog.LevelError, "oauth endpoint failed", slog.String("error", err.Error()))
	}
	h := w.Header()
	httpx.NoStore(w)
	if status == http.StatusUnauthorized && basic {
		h.Set("WWW-Authenticate", `Basic realm="posgate", charset="UTF-8"`)
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		secs := int(retry.Round(time.Second) / time.Second)
		if secs < 1 {
			secs = 1
		}
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	httpx.WriteError(w, status, code, desc)
}
