package orderpay

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/store"
)

// errorBody is the POS-facing error shape: {"ErrorMessage":"…"}.
type errorBody struct {
	ErrorMessage string `json:"ErrorMessage"`
}

// storeRetryAfter is what a caller is told to wait when the store is unreachable.
const storeRetryAfter = 2 * time.Second

// Messages of the POS-facing endpoints. One message for every credential mismatch, so a caller
// never learns which of the three values was wrong.
const (
	msgBadCredentials = "invalid credentials"
	msgBadToken       = "invalid or expired token"
	msgDisabled       = "outlet is disabled"
)

// writePOSError renders err in the POS-facing shape. It is the one place kinds become status
// codes there: BadInput 400 · TooLarge 413 · Unauthenticated 401 · Forbidden 403 · NotFound 404 ·
// Throttled 429 (+Retry-After) · Unavailable 503 (+Retry-After) · anything else 500.
func (m *Module) writePOSError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := errs.As(err)
	if !ok {
		e = errs.Wrap(errs.Internal, "internal", "internal error", err)
	}
	if e.Code == "body_too_large" {
		e = &errs.Error{Kind: errs.TooLarge, Code: e.Code, Message: e.Message}
	}
	status := errs.HTTPStatus(e.Kind)
	msg := e.Message
	if e.Kind == errs.Internal || msg == "" {
		msg = http.StatusText(status)
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		setRetryAfter(w, e.RetryAfter)
	}
	if status >= 500 {
		// The error chain names kinds, codes and store failures, never a credential.
		m.svc.Log.LogAttrs(r.Context(), slog.LevelError, "orderpay request failed",
			slog.String("route", r.Pattern), slog.Int("status", status), slog.String("error", err.Error()))
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, status, errorBody{ErrorMessage: msg})
}

// writeAPIError renders err in the integrator API's shape {"error","error_description"}, with
// RFC 6750 challenges for token failures.
func (m *Module) writeAPIError(w http.ResponseWriter, r *http.Request, err error) {
	if e, ok := errs.As(err); ok && e.Code == "body_too_large" {
		err = &errs.Error{Kind: errs.TooLarge, Code: "invalid_request", Message: e.Message}
	}
	if e, ok := errs.As(err); !ok || e.Kind == errs.Internal {
		m.svc.Log.LogAttrs(r.Context(), slog.LevelError, "orderpay request failed",
			slog.String("route", r.Pattern), slog.String("error", err.Error()))
	}
	gateway.WriteBearerError(w, "posgate", err)
}

// writeAdminError renders err in the admin API's shape {"error","error_description"}.
func (m *Module) writeAdminError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := errs.As(err)
	if !ok {
		e = errs.Wrap(errs.Internal, "internal", "internal error", err)
	}
	status := errs.HTTPStatus(e.Kind)
	code := httpx.ErrorCode(e.Kind)
	msg := e.Message
	if code == "" {
		code, msg = "server_error", "internal error"
	}
	if e.Kind == errs.Unavailable {
		setRetryAfter(w, e.RetryAfter)
	}
	if status >= 500 {
		m.svc.Log.LogAttrs(r.Context(), slog.LevelError, "orderpay admin request failed",
			slog.String("route", r.Pattern), slog.Int("status", status), slog.String("error", err.Error()))
	}
	httpx.WriteError(w, status, code, msg)
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d <= 0 {
		d = storeRetryAfter
	}
	secs := int64((d + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
}

// storeError classifies a store failure: unreachable → Unavailable (503), anything else Internal.
// Callers handle ErrNotFound and ErrConflict themselves before calling it.
func storeError(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return &errs.Error{Kind: errs.Unavailable, Code: "temporarily_unavailable",
			Message: "service temporarily unavailable; retry later", RetryAfter: storeRetryAfter, Err: err}
	}
	return errs.Wrap(errs.Internal, "server_error", "internal error", err)
}

func badInput(msg string) error { return errs.New(errs.BadInput, "invalid_request", msg) }

// WriteMethodNotAllowed answers a wrong method in the shape of the surface the path belongs to
// (the server has set Allow): the integrator API's {"error","error_description"}, else the POS
// side's {"ErrorMessage"}.
func (m *Module) WriteMethodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	msg := "method not allowed; use " + allow
	if strings.HasPrefix(r.URL.Path, integratorPrefix) {
		httpx.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", msg)
		return
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusMethodNotAllowed, errorBody{ErrorMessage: msg})
}

// integratorPrefix is where the integrator API lives.
const integratorPrefix = "/v1/orderpay/"

var _ app.MethodNotAllowedWriter = (*Module)(nil)
