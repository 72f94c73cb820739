package server

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/metrics"
	"github.com/posgate/posgate/internal/store"
)

// readyTimeout bounds the store ping of /readyz, so a hung database answers 503, not a hung probe.
const readyTimeout = 2 * time.Second

// mountStandard registers the endpoints every posgate has.
func (s *Server) mountStandard(public *http.ServeMux) {
	public.Handle("GET /.well-known/jwks.json", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		// Short: the next key is published a whole rotation ahead, so caches never miss a key.
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(s.keyring.JWKS())
	}))
	public.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	public.Handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.store.Ping(ctx); err != nil {
			s.log.Warn("readiness: store unreachable", slog.String("error", err.Error()))
			w.Header().Set("Retry-After", "5")
			httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "store": "unreachable"})
			return
		}
		if err := s.probeWrites(ctx); err != nil {
			w.Header().Set("Retry-After", "5")
			httpx.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "store": "writes_failing"})
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "store": "ok"})
	}))
	public.Handle("GET /metrics", metrics.Handler())
}

// requireAdmin puts admin-token authentication in front of the admin API. Failures — a missing
// token as much as a wrong one — are throttled per address and audited (a throttled request is
// not, so the audit rows one address can cause are bounded by throttle.per_address per window);
// the token is compared as a SHA-256 hash in constant time.
func requireAdmin(svc *app.Services, tok *adminToken, next http.Handler) http.Handler {
	const scope = "admin.token"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := auth.Addr(r)
		if err := svc.Throttle.Check(r.Context(), scope, addr, ""); err != nil {
			retry := 60
			if e, ok := errs.As(err); ok && e.RetryAfter > 0 {
				retry = int(e.RetryAfter.Seconds())
			}
			w.Header().Set("Retry-After", strconv.Itoa(retry))
			writeError(w, http.StatusTooManyRequests, "too_many_attempts",
				"too many failed admin sign-ins from this address; try again in "+strconv.Itoa(retry)+" s (at "+
					svc.Clock.Now().Add(time.Duration(retry)*time.Second).UTC().Format(time.RFC3339)+")")
			return
		}
		if len(r.Header.Values("Authorization")) > 1 {
			writeError(w, http.StatusBadRequest, "invalid_request", "the request carries more than one Authorization header")
			return
		}
		h := r.Header.Get("Authorization")
		scheme, cred, _ := strings.Cut(h, " ")
		if h == "" || !strings.EqualFold(scheme, "Bearer") || !tok.Check(strings.TrimSpace(cred)) {
			detail := "wrong admin token"
			if h == "" {
				detail = "no admin token"
			}
			// A request without any token counts too: otherwise each one is a free audit row, and
			// a loop of them fills the audit table (and hides real events in it) without limit.
			if err := svc.Throttle.Fail(r.Context(), scope, addr, ""); err != nil {
				svc.Log.Warn("throttle", slog.String("error", err.Error()))
			}
			svc.Audit(r.Context(), store.AuditEvent{Actor: "anonymous", Action: "admin.auth", Target: r.Method + " " + logPath(r), Address: addr, Outcome: "denied", Detail: detail})
			// RFC 6750 §3.1: a request without any credential gets a challenge without an error.
			switch {
			case h == "":
				w.Header().Set("WWW-Authenticate", `Bearer realm="posgate-admin"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "the admin API needs Authorization: Bearer <admin token>")
			case !strings.EqualFold(scheme, "Bearer"):
				w.Header().Set("WWW-Authenticate", `Bearer realm="posgate-admin", error="invalid_request"`)
				writeError(w, http.StatusUnauthorized, "invalid_request", "the admin API takes the admin token as Authorization: Bearer <admin token>")
			default:
				w.Header().Set("WWW-Authenticate", `Bearer realm="posgate-admin", error="invalid_token"`)
				writeError(w, http.StatusUnauthorized, "invalid_token", "the admin token is wrong")
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}
