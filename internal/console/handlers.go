package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/store"
)

// loginScope throttles failed console sign-ins per address.
const loginScope = "console.login"

// maxAdminTokenLen bounds what a sign-in form may carry.
const maxAdminTokenLen = 512

type pageData struct {
	Title   string
	Nav     string
	Error   string
	Notice  string
	Devices []app.DeviceView
	Outlets []app.OutletStatus
	Audit   []*store.AuditEvent
	// Locations are the doshii locations with their online state (the locations page).
	Locations []app.LocationStatus
	Limit     int
	Filter    string
	// The pending page: how many requests are pending in all (Devices holds at most
	// pendingShown of them) and how long a stale one is kept.
	Total     int
	Retention string
	// Confirm is the confirm page's question (deleting a doshii location or vendor).
	Confirm *confirmation
	// CanDelete: the locations page offers to delete locations and vendors.
	CanDelete bool
}

// confirmation is a destructive action the confirm page asks about: Action is where its form
// posts, with the field confirm=ID.
type confirmation struct {
	Question, Detail, Action, ID, Button, Back string
}

// pendingShown bounds the pending list of the pending page and its event stream: the most
// recently asked requests first, which are the ones a device may still be waiting on. The pairing
// caps keep the waiting ones far fewer by default (chef.max_pending, 100); the rest are stale
// requests kept for chef.pending_retention. The devices page (state pending) and the admin API
// list them all.
const pendingShown = 200

// pendingList is what the pending page and its event stream show: at most pendingShown pending
// requests, the most recently asked first, and how many are pending in all.
type pendingList struct {
	Devices []app.DeviceView `json:"devices"`
	Total   int              `json:"total"`
}

func (m *Module) pending(ctx context.Context) (pendingList, error) {
	list, total, err := m.devices.RecentPending(ctx, pendingShown)
	if err != nil {
		return pendingList{}, err
	}
	return pendingList{Devices: list, Total: total}, nil
}

func (m *Module) render(w http.ResponseWriter, status int, page string, d pageData) {
	var buf bytes.Buffer
	if err := m.pages[page].Execute(&buf, d); err != nil {
		m.svc.Log.Error("console: template failed", "page", page, "error", err.Error())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (m *Module) home(w http.ResponseWriter, r *http.Request) {
	if s, _ := m.current(r); s != nil {
		http.Redirect(w, r, "/admin/pending", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
}

func (m *Module) loginPage(w http.ResponseWriter, r *http.Request) {
	if s, _ := m.current(r); s != nil {
		http.Redirect(w, r, "/admin/pending", http.StatusSeeOther)
		return
	}
	d := pageData{Title: "Sign in"}
	if m.svc.CheckAdminToken == nil {
		d.Error = "Console sign-in is not configured on this server."
	}
	m.render(w, http.StatusOK, "login", d)
}

func (m *Module) login(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	addr := auth.Addr(r)
	if m.svc.Throttle != nil {
		if err := m.svc.Throttle.Check(ctx, loginScope, addr, ""); err != nil {
			if e, ok := errs.As(err); ok && e.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(e.RetryAfter/time.Second)))
			}
			m.render(w, http.StatusTooManyRequests, "login", pageData{Title: "Sign in", Error: "Too many failed attempts. Try again later."})
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if !httpx.IsForm(r) || r.ParseForm() != nil {
		m.render(w, http.StatusBadRequest, "login", pageData{Title: "Sign in", Error: "The sign-in form could not be read."})
		return
	}
	tok := r.PostForm.Get("token")
	ok := m.svc.CheckAdminToken != nil && tok != "" && len(tok) <= maxAdminTokenLen && m.svc.CheckAdminToken(tok)
	if !ok {
		if err := m.svc.FailAudited(ctx, loginScope, addr, "", store.AuditEvent{Actor: "anonymous", Action: "console.login",
			Address: addr, Outcome: "denied", Detail: "wrong admin token"}); err != nil {
			m.svc.Log.Warn("console: throttle count failed", "error", err.Error())
		}
		m.render(w, http.StatusUnauthorized, "login", pageData{Title: "Sign in", Error: "That is not the admin token."})
		return
	}
	if !m.endPrevious(w, r) {
		return
	}
	v, err := m.newSession(ctx)
	if err != nil {
		m.svc.Log.Warn("console: storing a session failed", "error", err.Error())
		w.Header().Set("Retry-After", "5")
		m.render(w, http.StatusServiceUnavailable, "login", pageData{Title: "Sign in", Error: "The store is unavailable, so you cannot sign in now. Try again shortly."})
		return
	}
	setCookie(w, v, int(sessionAbsolute/time.Second))
	m.svc.Audit(ctx, store.AuditEvent{Actor: "admin", Action: "console.login", Address: addr, Outcome: "ok"})
	http.Redirect(w, r, "/admin/pending", http.StatusSeeOther)
}

// endPrevious ends the live session the signing-in browser still holds, if any, so a sign-in
// always leaves one session: an id fixed or copied before the sign-in signs nobody in after it.
// When the store cannot end it, nothing is signed in (the answer is 503) and it reports false.
func (m *Module) endPrevious(w http.ResponseWriter, r *http.Request) bool {
	old, err := m.current(r)
	if err == nil && old != nil {
		err = m.svc.Store.DeleteConsoleSession(r.Context(), old.Hash)
		if err == nil {
			m.announceSignout(r.Context())
		}
	}
	if err != nil {
		m.svc.Log.Warn("console: ending the previous session failed", "error", err.Error())
		w.Header().Set("Retry-After", "5")
		m.render(w, http.StatusServiceUnavailable, "login", pageData{Title: "Sign in", Error: "The store is unavailable, so you cannot sign in now. Try again shortly."})
		return false
	}
	return true
}

// announceSignout tells every replica's event streams to re-check their sessions.
func (m *Module) announceSignout(ctx context.Context) {
	if err := m.svc.Events.Publish(ctx, events.TopicConsoleSignout, []byte("{}")); err != nil {
		// Streams still re-check their session on their next refresh.
		m.svc.Log.Warn("console: announcing a sign-out failed", "error", err.Error())
	}
}

func (m *Module) logout(w http.ResponseWriter, r *http.Request) {
	if err := m.svc.Store.DeleteConsoleSession(r.Context(), sessionOf(r).Hash); err != nil {
		// The cookie stays, so the person can sign out again once the store is back; clearing
		// it alone would leave the session usable by anyone holding a copy.
		m.svc.Log.Warn("console: ending a session failed", "error", err.Error())
		w.Header().Set("Retry-After", "5")
		m.render(w, http.StatusServiceUnavailable, "login", pageData{Title: "Sign out", Error: "The store is unavailable, so you are not signed out yet. Try again shortly."})
		return
	}
	setCookie(w, "", -1)
	m.announceSignout(r.Context())
	m.svc.Audit(r.Context(), store.AuditEvent{Actor: "admin", Action: "console.logout", Address: auth.Addr(r), Outcome: "ok"})
	http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
}

func (m *Module) unavailable(w http.ResponseWriter, page string, err error) {
	m.svc.Log.Warn("console: store unavailable", "page", page, "error", err.Error())
	w.Header().Set("Retry-After", "5")
	m.render(w, http.StatusServiceUnavailable, page, pageData{Title: "Unavailable", Nav: page, Error: storeDown})
}

func (m *Module) pendingPage(w http.ResponseWriter, r *http.Request) {
	p, err := m.pending(r.Context())
	if err != nil {
		m.unavailable(w, "pending", err)
		return
	}
	m.render(w, http.StatusOK, "pending", pageData{Title: "Pending devices", Nav: "pending", Devices: p.Devices, Total: p.Total,
		Retention: duration(m.devices.PendingRetention()), Notice: m.popFlash(r)})
}

// duration says d in whole hours, minutes or seconds, as a person would.
func duration(d time.Duration) string {
	unit := func(n int64, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return strconv.FormatInt(n, 10) + " " + one + "s"
	}
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute && d%time.Minute == 0:
		return unit(int64(d/time.Minute), "minute")
	default:
		return unit(int64(d/time.Second), "second")
	}
}

func (m *Module) devicesPage(w http.ResponseWriter, r *http.Request) {
	filter := store.DeviceState(r.URL.Query().Get("state"))
	switch filter {
	case "", store.DevicePending, store.DeviceApproved, store.DeviceDeclined, store.DeviceRevoked:
	default:
		filter = ""
	}
	list, err := m.devices.Devices(r.Context(), filter)
	if err != nil {
		m.unavailable(w, "devices", err)
		return
	}
	m.render(w, http.StatusOK, "devices", pageData{Title: "Devices", Nav: "devices", Devices: list, Filter: string(filter), Notice: m.popFlash(r)})
}

// locationsPage lists doshii locations: online (a heartbeat within doshii.offline_after), offline
// since when, or disabled.
func (m *Module) locationsPage(w http.ResponseWriter, r *http.Request) {
	var list []app.LocationStatus
	var err error
	if m.locations != nil {
		list, err = m.locations.LocationStatuses(r.Context())
	}
	if err != nil {
		m.unavailable(w, "locations", err)
		return
	}
	_, canDelete := m.locations.(LocationDeleter)
	m.render(w, http.StatusOK, "locations", pageData{Title: "Locations", Nav: "locations", Locations: list,
		CanDelete: canDelete, Notice: m.popFlash(r)})
}

// confirmDelete asks, on a page of its own, whether to delete the doshii location or vendor
// (kind) of the path: the delete button of the locations page leads here, and only this page's
// form carries the confirmation deleteDoshii requires.
func (m *Module) confirmDelete(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := m.locations.(LocationDeleter); !ok {
			http.NotFound(w, r)
			return
		}
		id := r.PathValue("id")
		c := &confirmation{ID: id, Back: "/admin/locations", Action: "/admin/" + kind + "s/" + id + "/delete"}
		switch kind {
		case "location":
			c.Question, c.Button = "Delete location "+id+"?", "Delete the location"
			c.Detail = "Its token stops working and its POS socket is closed at once, on every replica; the events waiting for it are deleted. This cannot be undone."
			if l := m.location(r, id); l != nil {
				c.Question = "Delete location " + l.Name + " (" + id + ")?"
			}
		default:
			c.Question, c.Button = "Delete vendor "+id+"?", "Delete the vendor"
			n := 0
			if list, err := m.locations.LocationStatuses(r.Context()); err == nil {
				for _, l := range list {
					if l.VendorID == id {
						n++
					}
				}
			}
			c.Detail = fmt.Sprintf("With its keys, its organisations and its %d locations: their tokens and JWTs stop working and their sockets (and the vendor's cloud socket) are closed at once, on every replica; the events waiting for them are deleted. This cannot be undone.", n)
		}
		m.render(w, http.StatusOK, "confirm", pageData{Title: "Confirm", Nav: "locations", Confirm: c})
	}
}

// location finds a location of the locations page by id (nil when unknown or unreadable).
func (m *Module) location(r *http.Request, id string) *app.LocationStatus {
	list, err := m.locations.LocationStatuses(r.Context())
	if err != nil {
		return nil
	}
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

// deleteDoshii deletes the doshii location or vendor (kind) of the path once the confirm page's
// form says so (confirm=<the same id>); anything else deletes nothing. The outcome is shown on
// the locations page.
func (m *Module) deleteDoshii(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d, ok := m.locations.(LocationDeleter)
		if !ok {
			http.NotFound(w, r)
			return
		}
		id := r.PathValue("id")
		if r.PostFormValue("confirm") != id {
			http.Redirect(w, r, "/admin/"+kind+"s/"+id+"/delete", http.StatusSeeOther) // ask first
			return
		}
		var err error
		if kind == "location" {
			err = d.DeleteLocation(r, id)
		} else {
			err = d.DeleteVendor(r, id)
		}
		if err != nil {
			msg := "internal error"
			if e, ok := errs.As(err); ok && e.Kind != errs.Internal {
				msg = e.Message
			}
			m.setFlash(r, "Not deleted: "+msg)
		} else {
			m.setFlash(r, "Deleted "+kind+" "+id)
		}
		http.Redirect(w, r, "/admin/locations", http.StatusSeeOther)
	}
}

// outletsPage lists the orderpay outlets: online or offline, since when, on which replica.
func (m *Module) outletsPage(w http.ResponseWriter, r *http.Request) {
	var list []app.OutletStatus
	if m.outlets != nil {
		var err error
		if list, err = m.outlets.OutletStatuses(r.Context()); err != nil {
			m.unavailable(w, "outlets", err)
			return
		}
	}
	m.render(w, http.StatusOK, "outlets", pageData{Title: "Outlets", Nav: "outlets", Outlets: list})
}

func (m *Module) auditPage(w http.ResponseWriter, r *http.Request) {
	limit := 200
	if s := r.URL.Query().Get("limit"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			limit = min(n, 1000)
		}
	}
	list, err := m.svc.Store.ListAudit(r.Context(), limit)
	if err != nil {
		m.unavailable(w, "audit", err)
		return
	}
	m.render(w, http.StatusOK, "audit", pageData{Title: "Audit", Nav: "audit", Audit: list, Limit: limit})
}

// decide applies approve / decline / revoke. The page's script posts with Accept: application/json
// and gets JSON; a plain form post (no script) is redirected back to the page it came from.
func (m *Module) decide(w http.ResponseWriter, r *http.Request) {
	action := app.DeviceAction(r.PathValue("action"))
	switch action {
	case app.DeviceApprove, app.DeviceDecline, app.DeviceRevoke:
	default:
		http.NotFound(w, r)
		return
	}
	wantJSON := r.Header.Get("Accept") == "application/json"
	back := "/admin/pending"
	if r.URL.Query().Get("from") == "devices" {
		back = "/admin/devices"
	}
	view, err := m.devices.Decide(r.Context(), r.PathValue("id"), action, "admin", auth.Addr(r), "console")
	if err != nil {
		e, _ := errs.As(err)
		status, msg := http.StatusInternalServerError, "internal error"
		if e != nil && e.Kind != errs.Internal {
			status, msg = errs.HTTPStatus(e.Kind), e.Message
		}
		if wantJSON {
			httpx.WriteJSON(w, status, map[string]string{"error": msg})
			return
		}
		m.setFlash(r, "Not done: "+msg)
		http.Redirect(w, r, back, http.StatusSeeOther)
		return
	}
	if wantJSON {
		httpx.NoStore(w)
		httpx.WriteJSON(w, http.StatusOK, view)
		return
	}
	label := view.Label
	if label == "" {
		label = view.ID
	}
	m.setFlash(r, fmt.Sprintf("%s: %s", label, view.State))
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// notices subscribes to topic: the channel holds one pending notice at most (several collapse into
// one, since each only means "look again").
func (m *Module) notices(topic string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	cancel := m.svc.Events.Subscribe(topic, func([]byte) {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return ch, cancel
}

// pendingEvents streams the pending list as server-sent events: a "pending" event whose data is
// {"devices": [...], "total": n} — the pendingShown most recently asked requests, newest first,
// and how many are pending in all — at once, then whenever a device notice arrives from any
// replica, and every refreshEvery in case a notice was lost or a request went stale. Sending the
// bounded list whole keeps the client simple and always right. The stream ends with a "signout"
// event once its session is gone: checked on every sign-out notice from any replica, and on every
// refresh in case a notice was lost.
func (m *Module) pendingEvents(w http.ResponseWriter, r *http.Request) {
	const (
		refreshEvery = 15 * time.Second
		maxStream    = 10 * time.Minute // then the browser reconnects (and the session is re-checked)
	)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	changed, cancel := m.notices(events.TopicChefDevice)
	defer cancel()
	signout, cancelSignout := m.notices(events.TopicConsoleSignout)
	defer cancelSignout()

	sess := sessionOf(r)
	ctx := r.Context()
	var last []byte
	send := func(force bool) bool {
		list, err := m.pending(ctx)
		if err != nil {
			return true // store down: keep the stream, try again on the next tick
		}
		b, _ := json.Marshal(list)
		if !force && bytes.Equal(b, last) {
			_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return false
			}
			return rc.Flush() == nil
		}
		last = b
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: pending\ndata: %s\n\n", b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	w.WriteHeader(http.StatusOK)
	_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := w.Write([]byte("retry: 1000\n\n")); err != nil {
		return
	}
	if !send(true) {
		return
	}
	tick := time.NewTicker(refreshEvery)
	defer tick.Stop()
	end := time.NewTimer(maxStream)
	defer end.Stop()
	// signedOut ends the stream with a signout event when the session is no longer live.
	signedOut := func() bool {
		if m.stillValid(ctx, sess) {
			return false
		}
		fmt.Fprint(w, "event: signout\ndata: {}\n\n")
		_ = rc.Flush()
		return true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-end.C:
			return
		case <-signout:
			if signedOut() {
				return
			}
		case <-changed:
			if signedOut() || !send(false) {
				return
			}
		case <-tick.C:
			if signedOut() || !send(false) {
				return
			}
		}
	}
}
