// Package console is posgate's web console at /admin/: a person signs in with the admin token and
// approves or declines chef devices as they ask (the pending list updates live through server-sent
// events), revokes devices, sees which orderpay outlets are connected (since when, to which
// replica), and reads the audit trail.
//
// Security, in one place:
//   - Sign-in compares the admin token in constant time (app.Services.CheckAdminToken); failures
//     are throttled per address and audited. A session is a random 256-bit id in an HttpOnly,
//     Secure, SameSite=Strict cookie scoped to /admin/; the store keeps only its SHA-256, with an
//     idle and an absolute expiry, so every replica serves it and a restart keeps it. A session
//     is bound to the admin token it signed in with (Services.AdminTokenID): a new admin token
//     ends every session. Sign-out deletes it for every replica at once; signing in again ends
//     the session the browser still holds before issuing a new id.
//   - Every state-changing request passes http.CrossOriginProtection (Sec-Fetch-Site / Origin), on
//     top of SameSite=Strict.
//   - A strict Content-Security-Policy: only this origin's own script and style files, no inline
//     script or style, no framing. Templates are html/template; the script builds rows with
//     textContent, never innerHTML.
//   - No external assets: templates, CSS and JS are embedded in the binary.
package console

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Session lifetimes.
const (
	sessionIdle     = time.Hour
	sessionAbsolute = 12 * time.Hour
	// touchEvery bounds the writes a busy person causes: the idle expiry moves forward at most
	// this often, so a session idles out between sessionIdle-touchEvery and sessionIdle after
	// the last request.
	touchEvery = time.Minute
)

// CookieName is the session cookie.
const CookieName = "posgate_console"

// csp is the Content-Security-Policy of every console response.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Devices is the device pairing the console shows and decides on (the chef dialect's). The server
// hands it over when it builds the console.
type Devices interface {
	// Devices lists the devices in state ("" for every state).
	Devices(ctx context.Context, state store.DeviceState) ([]app.DeviceView, error)
	// RecentPending lists at most limit pending requests, the most recently asked first, and how
	// many are pending in all.
	RecentPending(ctx context.Context, limit int) ([]app.DeviceView, int, error)
	// Decide applies a person's decision; errors are *errs.Error (NotFound, Conflict, Unavailable).
	Decide(ctx context.Context, id string, action app.DeviceAction, actor, addr, via string) (app.DeviceView, error)
	// PendingRetention is how long a pending request nobody calls about is kept.
	PendingRetention() time.Duration
}

// Locations are the websocket locations the console lists with their online state (the doshii
// dialect's). The server hands them over when it builds the console.
type Locations interface {
	LocationStatuses(ctx context.Context) ([]app.LocationStatus, error)
}

// LocationDeleter is implemented by Locations that can delete (the doshii module): a location,
// or a vendor with everything it owns, as the admin API's DELETE does — its sockets closed on
// every replica, audited as the admin from r's address. Errors are *errs.Error (NotFound,
// Unavailable…).
type LocationDeleter interface {
	DeleteLocation(r *http.Request, id string) error
	DeleteVendor(r *http.Request, id string) error
}

// Outlets are the websocket outlets the console lists with their online state (the orderpay
// dialect's). The server hands them over when it builds the console.
type Outlets interface {
	OutletStatuses(ctx context.Context) ([]app.OutletStatus, error)
}

// Module is the web console.
type Module struct {
	svc       *app.Services
	devices   Devices
	locations Locations // nil: the locations page lists none
	outlets   Outlets   // nil: the outlets page lists none
	pages     map[string]*template.Template
}

// New builds the console on the device pairing of devices, the locations of locations and the
// outlets of outlets (both may be nil).
func New(svc *app.Services, devices Devices, locations Locations, outlets Outlets) (app.Module, error) {
	if svc == nil || svc.Store == nil || svc.Clock == nil || svc.Log == nil || svc.Config == nil || svc.Events == nil {
		return nil, errors.New("console: Services lacks Config, Store, Clock, Log or Events")
	}
	if devices == nil {
		return nil, errors.New("console: no device pairing to show")
	}
	m := &Module{svc: svc, devices: devices, locations: locations, outlets: outlets, pages: map[string]*template.Template{}}
	funcs := template.FuncMap{"when": when, "whenp": whenPtr}
	for _, page := range []string{"login", "pending", "devices", "locations", "outlets", "audit", "confirm"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, err
		}
		m.pages[page] = t
	}
	return m, nil
}

// Mount registers the console's pages on the public mux (the admin API is the server's).
func (m *Module) Mount(public, _ app.Mux) error {
	cop := http.NewCrossOriginProtection()
	h := func(f http.HandlerFunc) http.Handler { return headers(cop.Handler(f)) }
	public.Handle("GET /admin/{$}", h(m.home))
	public.Handle("GET /admin/login", h(m.loginPage))
	public.Handle("POST /admin/login", h(m.login))
	public.Handle("POST /admin/logout", h(m.signedIn(m.logout)))
	public.Handle("GET /admin/pending", h(m.signedIn(m.pendingPage)))
	public.Handle("GET /admin/pending/events", h(m.signedIn(m.pendingEvents)))
	public.Handle("GET /admin/devices", h(m.signedIn(m.devicesPage)))
	public.Handle("POST /admin/devices/{id}/{action}", h(m.signedIn(m.decide)))
	public.Handle("GET /admin/locations", h(m.signedIn(m.locationsPage)))
	public.Handle("GET /admin/locations/{id}/delete", h(m.signedIn(m.confirmDelete("location"))))
	public.Handle("POST /admin/locations/{id}/delete", h(m.signedIn(m.deleteDoshii("location"))))
	public.Handle("GET /admin/vendors/{id}/delete", h(m.signedIn(m.confirmDelete("vendor"))))
	public.Handle("POST /admin/vendors/{id}/delete", h(m.signedIn(m.deleteDoshii("vendor"))))
	public.Handle("GET /admin/outlets", h(m.signedIn(m.outletsPage)))
	public.Handle("GET /admin/audit", h(m.signedIn(m.auditPage)))
	sub, _ := fs.Sub(staticFS, "static")
	public.Handle("GET /admin/static/", headers(http.StripPrefix("/admin/static/", staticFiles(http.FileServerFS(sub)))))
	return nil
}

// headers sets the security headers of every console response.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// staticFiles serves the embedded assets; directory listings are refused.
func staticFiles(fsrv http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || r.URL.Path[len(r.URL.Path)-1] == '/' {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}

// Maintenance deletes the sessions that have expired (expiry itself is enforced on every read).
func (m *Module) Maintenance() []app.Task {
	return []app.Task{{Name: "console sessions", Run: func(ctx context.Context) error {
		_, err := m.svc.Store.DeleteConsoleSessionsExpiredBefore(ctx, m.svc.Clock.Now())
		return err
	}}}
}

// ---------------------------------------------------------------------------------------------
// Sessions.

// newSession stores a new session and returns its cookie value.
func (m *Module) newSession(ctx context.Context) (string, error) {
	var b [32]byte
	rand.Read(b[:])
	v := base64.RawURLEncoding.EncodeToString(b[:])
	now := m.svc.Clock.Now()
	err := m.svc.Store.CreateConsoleSession(ctx, &store.ConsoleSession{Hash: secret.Hash(v), Binding: m.svc.AdminTokenID,
		CreatedAt: now, SeenAt: now, IdleExpiresAt: now.Add(sessionIdle), ExpiresAt: now.Add(sessionAbsolute)})
	return v, err
}

// current returns r's live session, nil when it has none (no cookie, signed out, expired, or
// signed in with another admin token), or an error when the store cannot tell. It moves the idle
// expiry forward, at most every touchEvery.
func (m *Module) current(r *http.Request) (*store.ConsoleSession, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || len(c.Value) != 43 {
		return nil, nil
	}
	ctx := r.Context()
	now := m.svc.Clock.Now()
	s, err := m.svc.Store.GetConsoleSession(ctx, secret.Hash(c.Value), now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !m.bound(s) {
		if err := m.svc.Store.DeleteConsoleSession(ctx, s.Hash); err != nil {
			m.svc.Log.Warn("console: deleting a session of a former admin token failed", "error", err.Error())
		}
		return nil, nil
	}
	if now.Sub(s.SeenAt) >= touchEvery {
		err := m.svc.Store.TouchConsoleSession(ctx, s.Hash, now, now.Add(sessionIdle))
		if errors.Is(err, store.ErrNotFound) { // signed out a moment ago, on some replica
			return nil, nil
		}
		if err != nil { // the session is live; only its extension was not recorded
			m.svc.Log.Warn("console: extending a session failed", "error", err.Error())
		}
	}
	return s, nil
}

// bound reports whether s was signed in with the current admin token.
func (m *Module) bound(s *store.ConsoleSession) bool {
	return len(m.svc.AdminTokenID) > 0 && secret.Equal(s.Binding, m.svc.AdminTokenID)
}

// stillValid reports whether session s is live, without touching it (the event stream asks). A
// store that cannot tell keeps the stream: it has nothing new to send either.
func (m *Module) stillValid(ctx context.Context, s *store.ConsoleSession) bool {
	cur, err := m.svc.Store.GetConsoleSession(ctx, s.Hash, m.svc.Clock.Now())
	if err != nil {
		return !errors.Is(err, store.ErrNotFound)
	}
	return m.bound(cur)
}

// setFlash leaves a one-time notice for the session's next page, whichever replica serves it.
func (m *Module) setFlash(r *http.Request, msg string) {
	if err := m.svc.Store.SetConsoleFlash(r.Context(), sessionOf(r).Hash, msg); err != nil {
		m.svc.Log.Warn("console: storing a notice failed", "error", err.Error())
	}
}

// popFlash returns the session's notice once: of two pages loaded together, one shows it.
func (m *Module) popFlash(r *http.Request) string {
	s := sessionOf(r)
	if s.Flash == "" {
		return ""
	}
	cleared, err := m.svc.Store.ClearConsoleFlash(r.Context(), s.Hash, s.Flash)
	if err != nil || !cleared {
		return ""
	}
	return s.Flash
}

type sessionCtxKey struct{}

// signedIn lets signed-in people through; others go to the sign-in page (pages) or get 401
// (the event stream, fetch calls). When the store cannot tell, the answer is 503, never a
// sign-out.
func (m *Module) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := m.current(r)
		page := r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream"
		switch {
		case err != nil:
			m.svc.Log.Warn("console: store unavailable", "page", r.URL.Path, "error", err.Error())
			w.Header().Set("Retry-After", "5")
			if page {
				m.render(w, http.StatusServiceUnavailable, "login", pageData{Title: "Unavailable", Error: storeDown})
				return
			}
			http.Error(w, "the store is unavailable", http.StatusServiceUnavailable)
			return
		case s == nil && page:
			http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
			return
		case s == nil:
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionCtxKey{}, s)))
	}
}

// storeDown is what a person is told when the store cannot be reached.
const storeDown = "The store is unavailable; this page will work again when it returns."

func sessionOf(r *http.Request) *store.ConsoleSession {
	s, _ := r.Context().Value(sessionCtxKey{}).(*store.ConsoleSession)
	return s
}

func setCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/admin/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   true,
		SameSite: http.SameSiteStrictMode,
	})
}

func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return when(*t)
}
