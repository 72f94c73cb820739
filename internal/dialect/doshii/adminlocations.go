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
	CreatedAt      time.Time  `json:"created_at"`
}

func (m *Module) locationView(l *store.DoshiiLocation, now time.Time) locationInfo {
	out := locationInfo{ID: l.ID, VendorID: l.VendorID, OrganisationID: l.OrganisationID, Name: l.Name,
		Disabled: l.Disabled, CreatedAt: l.CreatedAt.UTC()}
	if d := disconnectedAt(l, now); d != nil {
		t := d.UTC()
		out.Disconnected = &t
	} else {
		out.Online = true
	}
	return out
}

// LocationStatus is one location's state for the console.
type LocationStatus = app.LocationStatus

// LocationStatuses lists every location with its online state now (console.Locations).
func (m *Module) LocationStatuses(ctx context.Context) ([]LocationStatus, error) {
	return LocationStatuses(ctx, m.svc.Store, m.svc.Clock.Now())
}

// LocationStatuses lists every location with its online state at now (the console's view).
func LocationStatuses(ctx context.Context, st store.Doshii, now time.Time) ([]LocationStatus, error) {
	ls, err := st.ListDoshiiLocations(ctx, "")
	if err != nil {
		return nil, err
	}
	out := make([]LocationStatus, 0, len(ls))
	for _, l := range ls {
		s := LocationStatus{ID: l.ID, Name: l.Name, VendorID: l.VendorID, Disabled: l.Disabled}
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
	out := make([]locationInfo, 0, len(ls))
	for _, l := range ls {
		out = append(out, m.locationView(l, now))
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
	httpx.WriteJSON(w, http.StatusOK, m.locationView(l, m.svc.Clock.Now()))
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
		httpx.WriteJSON(w, http.StatusOK, m.locationView(l, m.svc.Clock.Now()))
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
