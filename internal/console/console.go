// Package console is posgate's web console at /admin/: a person signs in with the admin token and
// approves or declines chef devices as they ask (the pending list updates live through server-sent
// events), revokes devices, sees which orderpay outlets are connected (since when, to which
// replica), and reads the audit trail.
//
// Security, in one place:
//   - Sign-in compares the admin token in constant time (app.Services.CheckAdminToken); failures
//     are throttled per address and audited. A session is a random 256-bit id in an HttpOnly,
//     Secure, SameSite=Strict cookie scoped to /admin/; the server keeps only its SHA-256, with an
//     idle and an absolute expiry, in memory (a replica restart signs people out).
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
	"sync"
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
	maxSessions     = 1000
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

	mu       sync.Mutex
	sessions map[string]*session // by hex SHA-256 of the cookie value
}

type session struct {
	created  time.Time
	lastSeen time.Time
	flash    string // a one-time notice for the next page (the outcome of a form post)
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
	m := &Module{svc: svc, devices: devices, locations: locations, outlets: outlets, pages: map[string]*template.Template{}, sessions: map[string]*session{}}
	funcs := template.FuncMap{"when": when, "whenp": whenPtr}
	for _, page := range []string{"login", "pending", "devices", "locations", "outlets", "audit"} {
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

// ---------------------------------------------------------------------------------------------
// Sessions.

func (m *Module) newSession() string {
	var b [32]byte
	rand.Read(b[:])
	v := base64.RawURLEncoding.EncodeToString(b[:])
	now := m.svc.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now)
	if len(m.sessions) >= maxSessions { // drop the oldest: sessions are cheap to re-create
		var oldest string
		var at time.Time
		for k, s := range m.sessions {
			if oldest == "" || s.created.Before(at) {
				oldest, at = k, s.created
			}
		}
		delete(m.sessions, oldest)
	}
	m.sessions[sessionKey(v)] = &session{created: now, lastSeen: now}
	return v
}

func sessionKey(v string) string { return string(secret.Hash(v)) }

func (m *Module) expireLocked(now time.Time) {
	for k, s := range m.sessions {
		if !m.alive(s, now) {
			delete(m.sessions, k)
		}
	}
}

func (m *Module) alive(s *session, now time.Time) bool {
	return now.Before(s.created.Add(sessionAbsolute)) && now.Before(s.lastSeen.Add(sessionIdle))
}

// current returns the session key of r when its cookie names a live session (and touches it).
func (m *Module) current(r *http.Request) (string, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil || len(c.Value) != 43 {
		return "", false
	}
	k := sessionKey(c.Value)
	now := m.svc.Clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[k]
	if s == nil {
		return "", false
	}
	if !m.alive(s, now) {
		delete(m.sessions, k)
		return "", false
	}
	s.lastSeen = now
	return k, true
}

// stillValid reports whether session k is live, without touching it (the event stream asks).
func (m *Module) stillValid(k string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[k]
	return s != nil && m.alive(s, m.svc.Clock.Now())
}

func (m *Module) setFlash(k, msg string) {
	m.mu.Lock()
	if s := m.sessions[k]; s != nil {
		s.flash = msg
	}
	m.mu.Unlock()
}

func (m *Module) popFlash(k string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[k]
	if s == nil {
		return ""
	}
	f := s.flash
	s.flash = ""
	return f
}

func (m *Module) endSession(k string) {
	m.mu.Lock()
	delete(m.sessions, k)
	m.mu.Unlock()
}

type sessionCtxKey struct{}

// signedIn lets signed-in people through; others go to the sign-in page (pages) or get 401
// (the event stream, fetch calls).
func (m *Module) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, ok := m.current(r)
		if !ok {
			if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
				http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
				return
			}
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionCtxKey{}, k)))
	}
}

func sessionOf(r *http.Request) string {
	k, _ := r.Context().Value(sessionCtxKey{}).(string)
	return k
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
