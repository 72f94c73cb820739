package doshii

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/store"
)

// locationInfo is a location in the admin API: never its token.
type locationInfo struct {
	ID             string     `json:"id"`
	VendorID       string     `json:"vendor_id"`
	OrganisationID string     `json:"organisation_id"`
	Name           string     `json:"name"`
	Disabled       bool       `json:"disabled"`
	Online         bool       `json:"online"`
	Disconnected   *time.Time `json:"disconnected_date"` // null while online
	// Sockets are the live sockets carrying the location on any replica: its POS socket ("pos")
	// and its vendor's cloud socket ("cloud").
	Sockets   []app.SocketPresence `json:"sockets"`
	CreatedAt time.Time            `json:"created_at"`
}

// presenceReader reads the sockets of locations from the hub's presence rows (every replica),
// remembering a vendor's cloud sockets across the locations of one listing.
type presenceReader struct {
	m      *Module
	since  time.Time
	vendor map[string][]app.SocketPresence
}

func (m *Module) presenceReader(now time.Time) *presenceReader {
	pr := &presenceReader{m: m, vendor: map[string][]app.SocketPresence{}}
	if m.svc.Hub != nil {
		pr.since = now.Add(-m.svc.Hub.PresenceStale())
	}
	return pr
}

// sockets returns the live sockets of l: its POS socket, then its vendor's cloud socket.
func (pr *presenceReader) sockets(ctx context.Context, l *store.DoshiiLocation) ([]app.SocketPresence, error) {
	out := []app.SocketPresence{}
	pos, err := pr.list(ctx, locationTenant(l.ID), "pos")
	if err != nil {
		return nil, err
	}
	out = append(out, pos...)
	cloud, ok := pr.vendor[l.VendorID]
	if !ok {
		if cloud, err = pr.list(ctx, vendorTenant(l.VendorID), "cloud"); err != nil {
			return nil, err
		}
		pr.vendor[l.VendorID] = cloud
	}
	return append(out, cloud...), nil
}

func (pr *presenceReader) list(ctx context.Context, tenant, kind string) ([]app.SocketPresence, error) {
	h := pr.m.svc.Hub
	if h == nil {
		return nil, nil
	}
	pres, ok := pr.m.svc.Store.(store.Presences)
	if !ok {
		// A store without presence rows: this replica's sockets only.
		var out []app.SocketPresence
		for _, c := range h.Conns(tenant) {
			out = append(out, app.SocketPresence{Kind: kind, Replica: h.Replica(), Since: c.Since().UTC()})
		}
		return out, nil
	}
	rows, err := pres.ListPresence(ctx, tenant, pr.since)
	if err != nil {
		return nil, err
	}
	out := make([]app.SocketPresence, 0, len(rows))
	for _, p := range rows {
		out = append(out, app.SocketPresence{Kind: kind, Replica: p.Replica, Since: p.Since.UTC()})
	}
	return out, nil
}

func (m *Module) locationView(ctx context.Context, pr *presenceReader, l *store.DoshiiLocation, now time.Time) (locationInfo, error) {
	socks, err := pr.sockets(ctx, l)
	if err != nil {
		return locationInfo{}, storeError(err)
	}
	out := locationInfo{ID: l.ID, VendorID: l.VendorID, OrganisationID: l.OrganisationID, Name: l.Name,
		Disabled: l.Disabled, Sockets: socks, CreatedAt: l.CreatedAt.UTC()}
	if d := disconnectedAt(l, now); d != nil {
		t := d.UTC()
		out.Disconnected = &t
	} else {
		out.Online = true
	}
	return out, nil
}

// LocationStatus is one location's state for the console.
type LocationStatus = app.LocationStatus

// LocationStatuses lists every location with its online state and live sockets now
// (console.Locations).
func (m *Module) LocationStatuses(ctx context.Context) ([]LocationStatus, error) {
	now := m.svc.Clock.Now()
	return LocationStatuses(ctx, m.svc.Store, now, m.presenceReader(now).sockets)
}

// LocationStatuses lists every location with its online state at now (the console's view) and,
// when sockets is not nil, the live sockets it names.
func LocationStatuses(ctx context.Context, st store.Doshii, now time.Time,
	sockets func(context.Context, *store.DoshiiLocation) ([]app.SocketPresence, error)) ([]LocationStatus, error) {
	ls, err := st.ListDoshiiLocations(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]LocationStatus, 0, len(ls))
	for _, l := range ls {
		s := LocationStatus{ID: l.ID, Name: l.Name, VendorID: l.VendorID, Disabled: l.Disabled}
		if sockets != nil {
			if s.Sockets, err = sockets(ctx, l); err != nil {
				return nil, err
			}
		}
		if d := disconnectedAt(l, now); d != nil {
			t := d.UTC()
			s.Disconnected = &t
		} else {
			s.Online = true
		}
		out = append(out, s)
	}
	return out, nil
}

// adminListLocations serves GET /doshii/locations[?vendor=<vendor id>].
func (m *Module) adminListLocations(w http.ResponseWriter, r *http.Request) {
	ls, err := m.svc.Store.ListDoshiiLocations(r.Context(), r.URL.Query().Get("vendor"))
	if err != nil {
		m.writeAdminError(w, r, storeError(err))
		return
	}
	now := m.svc.Clock.Now()
	pr := m.presenceReader(now)
	out := make([]locationInfo, 0, len(ls))
	for _, l := range ls {
		v, err := m.locationView(r.Context(), pr, l, now)
		if err != nil {
			m.writeAdminError(w, r, err)
			return
		}
		out = append(out, v)
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"locations": out})
}

// adminGetLocation serves GET /doshii/locations/{id}.
func (m *Module) adminGetLocation(w http.ResponseWriter, r *http.Request) {
	l, err := m.svc.Store.GetDoshiiLocation(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		m.writeAdminError(w, r, errs.New(errs.NotFound, "not_found", "no such location"))
		return
	}
	if err != nil {
		m.writeAdminError(w, r, storeError(err))
		return
	}
	m.writeLocation(w, r, l)
}

// adminSetLocationDisabled serves POST /doshii/locations/{id}/disable and /enable. Disabling
// refuses the location's credentials at once on every replica and closes its POS sockets (4003).
func (m *Module) adminSetLocationDisabled(disabled bool) http.HandlerFunc {
	action := map[bool]string{true: "doshii.location.disable", false: "doshii.location.enable"}[disabled]
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := r.PathValue("id")
		err := m.svc.Store.SetDoshiiLocationDisabled(ctx, id, disabled, m.svc.Clock.Now().UTC())
		if errors.Is(err, store.ErrNotFound) {
			m.writeAdminError(w, r, errs.New(errs.NotFound, "not_found", "no such location"))
			return
		}
		if err != nil {
			m.auditAdmin(r, action, id, "error", "store")
			m.writeAdminError(w, r, storeError(err))
			return
		}
		m.announce(ctx, change{Location: id})
		if disabled && m.sockets != nil {
			m.sockets.hub.CloseTenant(context.WithoutCancel(ctx), locationTenant(id), hub.CodeDisabled, "location disabled")
		}
		m.auditAdmin(r, action, id, "ok", "")
		l, err := m.svc.Store.GetDoshiiLocation(ctx, id)
		if err != nil {
			m.writeAdminError(w, r, storeError(err))
			return
		}
		m.writeLocation(w, r, l)
	}
}

// adminSetVendorDisabled serves POST /doshii/vendors/{id}/disable and /enable. Disabling refuses
// the vendor's keys and its locations' credentials and closes its cloud socket and every socket of
// its locations (4003).
func (m *Module) adminSetVendorDisabled(disabled bool) http.HandlerFunc {
	action := map[bool]string{true: "doshii.vendor.disable", false: "doshii.vendor.enable"}[disabled]
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		id := r.PathValue("id")
		v, err := m.svc.Store.GetDoshiiVendor(ctx, id)
		if err == nil {
			err = m.svc.Store.SetDoshiiVendorDisabled(ctx, id, disabled)
		}
		if errors.Is(err, store.ErrNotFound) {
			m.writeAdminError(w, r, errs.New(errs.NotFound, "not_found", "no such vendor"))
			return
		}
		if err != nil {
			m.auditAdmin(r, action, id, "error", "store")
			m.writeAdminError(w, r, storeError(err))
			return
		}
		m.announce(ctx, change{Vendor: v.APIName})
		if disabled && m.sockets != nil {
			bg := context.WithoutCancel(ctx)
			m.sockets.hub.CloseTenant(bg, vendorTenant(id), hub.CodeDisabled, "vendor disabled")
			ls, err := m.svc.Store.ListDoshiiLocations(ctx, id)
			if err != nil {
				m.writeAdminError(w, r, storeError(err))
				return
			}
			for _, l := range ls {
				m.sockets.hub.CloseTenant(bg, locationTenant(l.ID), hub.CodeDisabled, "vendor disabled")
			}
		}
		m.auditAdmin(r, action, id, "ok", "")
		v.Disabled = disabled
		httpx.WriteJSON(w, http.StatusOK, vendorView(v))
	}
}

// writeLocation answers 200 with l as the admin API shows it.
func (m *Module) writeLocation(w http.ResponseWriter, r *http.Request, l *store.DoshiiLocation) {
	now := m.svc.Clock.Now()
	v, err := m.locationView(r.Context(), m.presenceReader(now), l, now)
	if err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}

// adminDeleteLocation serves DELETE /doshii/locations/{id} (see DeleteLocation).
func (m *Module) adminDeleteLocation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := m.DeleteLocation(r, id); err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

// DeleteLocation deletes location id for the admin making r (the admin API, the console): the
// location, its token and the events waiting for it are gone; its POS sockets are closed (4003)
// on every replica and its token and JWTs are refused there at once (a missed notice costs at
// most the location cache's lifetime). Its vendor's cloud socket stays open for the vendor's
// other locations. Errors are *errs.Error (NotFound, Unavailable).
func (m *Module) DeleteLocation(r *http.Request, id string) error {
	ctx := r.Context()
	err := m.svc.Store.DeleteDoshiiLocation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return errs.New(errs.NotFound, "not_found", "no such location")
	}
	if err != nil {
		m.auditAdmin(r, "doshii.location.delete", id, "error", "store")
		return storeError(err)
	}
	m.announce(ctx, change{Location: id})
	if m.sockets != nil {
		m.sockets.hub.CloseTenant(context.WithoutCancel(ctx), locationTenant(id), hub.CodeDisabled, "location deleted")
	}
	m.auditAdmin(r, "doshii.location.delete", id, "ok", "")
	return nil
}

// adminDeleteVendor serves DELETE /doshii/vendors/{id} (see DeleteVendor).
func (m *Module) adminDeleteVendor(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := m.DeleteVendor(r, id); err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true})
}

// DeleteVendor deletes vendor id for the admin making r, with its keys, organisations,
// locations and waiting events. Its cloud socket and its locations' sockets are closed (4003)
// on every replica, and its keys, tokens and JWTs are refused there at once. Errors are
// *errs.Error (NotFound, Unavailable).
func (m *Module) DeleteVendor(r *http.Request, id string) error {
	ctx := r.Context()
	v, err := m.svc.Store.GetDoshiiVendor(ctx, id)
	var ls []*store.DoshiiLocation
	if err == nil {
		ls, err = m.svc.Store.ListDoshiiLocations(ctx, id)
	}
	if err == nil {
		err = m.svc.Store.DeleteDoshiiVendor(ctx, id)
	}
	if errors.Is(err, store.ErrNotFound) {
		return errs.New(errs.NotFound, "not_found", "no such vendor")
	}
	if err != nil {
		m.auditAdmin(r, "doshii.vendor.delete", id, "error", "store")
		return storeError(err)
	}
	m.announce(ctx, change{Vendor: v.APIName})
	for _, l := range ls {
		m.announce(ctx, change{Location: l.ID})
	}
	if m.sockets != nil {
		bg := context.WithoutCancel(ctx)
		m.sockets.hub.CloseTenant(bg, vendorTenant(id), hub.CodeDisabled, "vendor deleted")
		for _, l := range ls {
			m.sockets.hub.CloseTenant(bg, locationTenant(l.ID), hub.CodeDisabled, "vendor deleted")
		}
	}
	m.auditAdmin(r, "doshii.vendor.delete", id, "ok", "api_name="+v.APIName)
	return nil
}
