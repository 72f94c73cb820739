package doshii

import (
	"errors"
	"github.com/posgate/posgate/internal/app"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/store"
)

// errorBody is Doshii's error shape: {"message":"…"}.
type errorBody struct {
	Message string `json:"message"`
}

// storeRetryAfter is what a caller is told to wait when the store is unreachable.
const storeRetryAfter = 2 * time.Second

// writeError renders err in Doshii's shape. It is the one place kinds become status codes:
//
//	BadInput 400 · Unauthenticated 401 · Forbidden 403 · NotFound 404 · Conflict 409 ·
//	Throttled 429 (+Retry-After) · Unavailable 503 (+Retry-After), or the gateway's
//	upstream_timeout 504 / upstream_unreachable 502 · anything else 500 "internal error".
//
// Messages of *errs.Error values are written as they are (they are secret-free by contract);
// an error without a kind is logged and answered with a generic message.
func writeError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	e, ok := errs.As(err)
	if !ok {
		e = errs.Wrap(errs.Internal, "internal", "internal error", err)
	}
	status := errs.HTTPStatus(e.Kind)
	msg := e.Message
	switch e.Kind {
	case errs.Unavailable:
		switch e.Code {
		case "upstream_timeout":
			status = http.StatusGatewayTimeout
		case "upstream_unreachable":
			status = http.StatusBadGateway
		}
	case errs.Unauthenticated:
		// RFC 9110 §15.5.2: a 401 carries a challenge. Doshii clients ignore it; it costs nothing.
		w.Header().Set("WWW-Authenticate", `Bearer realm="doshii"`)
	case errs.Internal:
		msg = "internal error"
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		ra := e.RetryAfter
		if ra <= 0 {
			ra = storeRetryAfter
		}
		secs := int64((ra + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	if status >= 500 && log != nil {
		// The error chain names kinds, codes and store failures, never a credential.
		log.LogAttrs(r.Context(), slog.LevelError, "doshii request failed",
			slog.String("route", r.Pattern), slog.Int("status", status), slog.String("error", err.Error()))
	}
	httpx.WriteJSON(w, status, errorBody{Message: msg})
}

// storeError classifies a store failure: unreachable → Unavailable (503), anything else Internal.
// Callers handle ErrNotFound and ErrConflict themselves before calling it.
func storeError(err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		return &errs.Error{Kind: errs.Unavailable, Code: "store_unavailable",
			Message: "service temporarily unavailable; retry later", RetryAfter: storeRetryAfter, Err: err}
	}
	return errs.Wrap(errs.Internal, "store", "internal error", err)
}

func badInput(code, msg string) error { return errs.New(errs.BadInput, code, msg) }

// WriteMethodNotAllowed answers a wrong method on a Doshii endpoint in Doshii's shape, on the
// platform events API in its own (the server has set Allow).
func (m *Module) WriteMethodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	msg := "method not allowed; use " + allow
	if strings.HasPrefix(r.URL.Path, "/v1/doshii/") {
		// The platform events API speaks RFC 6750's shape, not Doshii's.
		httpx.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", msg)
		return
	}
	httpx.WriteJSON(w, http.StatusMethodNotAllowed, errorBody{Message: msg})
}

var _ app.MethodNotAllowedWriter = (*Module)(nil)
