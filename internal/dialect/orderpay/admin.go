package orderpay

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// providerOutletIDPattern is what a provider_outlet_id may look like: it is a path segment of the
// integrator API, so it is kept to characters that need no escaping.
var providerOutletIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$`)

// OutletView is an outlet as the admin API and the console show it: never its secret.
type OutletView struct {
	ID               string     `json:"id"`
	ProviderOutletID string     `json:"provider_outlet_id"`
	POSRemoteID      string     `json:"pos_remote_id"`
	ProviderID       int64      `json:"provider_id"`
	ProviderName     string     `json:"provider_name"`
	Disabled         bool       `json:"disabled"`
	Online           bool       `json:"online"`
	ConnectedSince   *time.Time `json:"connected_since,omitempty"`
	Replica          string     `json:"replica,omitempty"`
	CreatedAt        time.Time  `json:"created_at"`
	UpdatedAt        time.Time  `json:"updated_at"`
	AuthSecret       string     `json:"auth_secret,omitempty"` // only when posgate generated it, once
}

// Presence of an outlet: the newest live connection on any replica.
type presence struct {
	online  bool
	since   *time.Time
	replica string
}

// presenceOf reads where outletID's socket is: from the store's presence rows (every replica),
// or, when the store keeps none, from this replica's hub.
func presenceOf(ctx context.Context, svc *app.Services, outletID string) (presence, error) {
	pres, ok := svc.Store.(store.Presences)
	if !ok {
		cs := svc.Hub.Conns(tenant(outletID))
		if len(cs) == 0 {
			return presence{}, nil
		}
		s := cs[0].Since().UTC()
		return presence{online: true, since: &s, replica: svc.Hub.Replica()}, nil
	}
	rows, err := pres.ListPresence(ctx, tenant(outletID), svc.Clock.Now().Add(-svc.Hub.PresenceStale()))
	if err != nil {
		return presence{}, err
	}
	if len(rows) == 0 {
		return presence{}, nil
	}
	s := rows[0].Since.UTC()
	return presence{online: true, since: &s, replica: rows[0].Replica}, nil
}

// View returns o as the admin API and the console show it, with its connection state.
func View(ctx context.Context, svc *app.Services, o *store.OrderpayOutlet) (OutletView, error) {
	v := OutletView{ID: o.ID, ProviderOutletID: o.ProviderOutletID, POSRemoteID: o.POSRemoteID,
		ProviderID: o.ProviderID, ProviderName: o.ProviderName, Disabled: o.Disabled,
		CreatedAt: o.CreatedAt.UTC(), UpdatedAt: o.UpdatedAt.UTC()}
	p, err := presenceOf(ctx, svc, o.ID)
	if err != nil {
		return v, storeError(err)
	}
	v.Online, v.ConnectedSince, v.Replica = p.online, p.since, p.replica
	return v, nil
}

// Outlets returns every outlet, oldest first, with its connection state.
func Outlets(ctx context.Context, svc *app.Services) ([]OutletView, error) {
	l, err := svc.Store.ListOrderpayOutlets(ctx)
	if err != nil {
		return nil, storeError(err)
	}
	out := make([]OutletView, 0, len(l))
	for _, o := range l {
		v, err := View(ctx, svc, o)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// secretHash checks a chosen AuthSecret, or generates one (returned to be shown once), and
// returns its argon2id hash.
func secretHash(chosen *string) (hash, generated string, err error) {
	pw := ""
	if chosen != nil {
		pw = *chosen
		if n := utf8.RuneCountInString(pw); !utf8.ValidString(pw) || n < minAuthSecret || len(pw) > maxAuthSecret {
			return "", "", badInput("auth_secret must be 12 to 1024 bytes of text (leave it out to have a strong one generated)")
		}
	} else {
		pw = secret.Generate(secret.PrefixOrderpaySecret)
		generated = pw
	}
	hash, err = secret.HashPassword(pw)
	if err != nil {
		return "", "", errs.Wrap(errs.Internal, "server_error", "internal error", err)
	}
	return hash, generated, nil
}

// adminCreate serves POST /orderpay/outlets → 201 the outlet, with auth_secret when posgate
// generated it (shown in this answer only).
func (m *Module) adminCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ProviderOutletID string  `json:"provider_outlet_id"`
		POSRemoteID      string  `json:"pos_remote_id"`
		ProviderID       *int64  `json:"provider_id"`
		ProviderName     string  `json:"provider_name"`
		AuthSecret       *string `json:"auth_secret"`
	}
	if err := httpx.ReadJSON(r, maxAdminBody, &req, true); err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	switch {
	case !providerOutletIDPattern.MatchString(req.ProviderOutletID):
		m.writeAdminError(w, r, badInput("provider_outlet_id must be 1 to 128 characters: letters, digits, '.', '_', ':', '~' and '-', starting with a letter or digit"))
		return
	case req.POSRemoteID == "" || len(req.POSRemoteID) > maxOutletID || !printable(req.POSRemoteID):
		m.writeAdminError(w, r, badInput("pos_remote_id must be 1 to 128 bytes of text"))
		return
	case req.ProviderID == nil || *req.ProviderID < 0:
		m.writeAdminError(w, r, badInput("provider_id must be a whole number, 0 or more"))
		return
	case req.ProviderName == "" || !printable(req.ProviderName) || utf8.RuneCountInString(req.ProviderName) > maxProviderName:
		m.writeAdminError(w, r, badInput("provider_name must be 1 to 64 characters of text"))
		return
	}
	hash, generated, err := secretHash(req.AuthSecret)
	if err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	now := m.svc.Clock.Now().UTC()
	o := &store.OrderpayOutlet{ID: secret.NewID(outletIDPrefix), ProviderOutletID: req.ProviderOutletID,
		POSRemoteID: req.POSRemoteID, ProviderID: *req.ProviderID, ProviderName: req.ProviderName,
		AuthSecretHash: hash, CreatedAt: now, UpdatedAt: now}
	err = m.store.CreateOrderpayOutlet(r.Context(), o)
	if errors.Is(err, store.ErrConflict) {
		m.writeAdminError(w, r, errs.New(errs.Conflict, "conflict", "an outlet with this provider_outlet_id already exists"))
		return
	}
	if err != nil {
		m.audit(r, "admin", "orderpay.outlet.create", req.ProviderOutletID, "error", "store")
		m.writeAdminError(w, r, storeError(err))
		return
	}
	detail := "provider_outlet_id=" + o.ProviderOutletID
	if generated != "" {
		detail += " secret=generated"
	}
	m.audit(r, "admin", "orderpay.outlet.create", o.ID, "ok", detail)
	v := OutletView{ID: o.ID, ProviderOutletID: o.ProviderOutletID, POSRemoteID: o.POSRemoteID,
		ProviderID: o.ProviderID, ProviderName: o.ProviderName, CreatedAt: now, UpdatedAt: now, AuthSecret: generated}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusCreated, v)
}

// adminList serves GET /orderpay/outlets → {"outlets":[…]}.
func (m *Module) adminList(w http.ResponseWriter, r *http.Request) {
	out, err := Outlets(r.Context(), m.svc)
	if err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"outlets": out})
}

func (m *Module) outletByID(ctx context.Context, id string) (*store.OrderpayOutlet, error) {
	o, err := m.store.GetOrderpayOutlet(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "not_found", "no such outlet")
	}
	if err != nil {
		return nil, storeError(err)
	}
	return o, nil
}

// adminGet serves GET /orderpay/outlets/{id}: the outlet with online, connected_since and the
// replica holding its socket.
func (m *Module) adminGet(w http.ResponseWriter, r *http.Request) {
	o, err := m.outletByID(r.Context(), r.PathValue("id"))
	if err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	v, err := View(r.Context(), m.svc, o)
	if err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}

// adminSecret serves POST /orderpay/outlets/{id}/secret {auth_secret?}: the new secret works at
// once; a generated one is shown in this answer only. Live sockets stay open (they were
// authenticated); the next auth needs the new secret.
func (m *Module) adminSecret(w http.ResponseWriter, r *http.Request) {
	var req struct {
		AuthSecret *string `json:"auth_secret"`
	}
	if r.ContentLength != 0 {
		if err := httpx.ReadJSON(r, maxAdminBody, &req, true); err != nil {
			m.writeAdminError(w, r, err)
			return
		}
	}
	o, err := m.outletByID(r.Context(), r.PathValue("id"))
	if err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	hash, generated, err := secretHash(req.AuthSecret)
	if err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	if err := m.store.SetOrderpayOutletSecret(r.Context(), o.ID, hash, m.svc.Clock.Now().UTC()); err != nil {
		m.audit(r, "admin", "orderpay.outlet.secret", o.ID, "error", "store")
		m.writeAdminError(w, r, storeError(err))
		return
	}
	detail := "secret=chosen"
	if generated != "" {
		detail = "secret=generated"
	}
	m.audit(r, "admin", "orderpay.outlet.secret", o.ID, "ok", detail)
	httpx.NoStore(w)
	body := map[string]any{"id": o.ID}
	if generated != "" {
		body["auth_secret"] = generated
	}
	httpx.WriteJSON(w, http.StatusOK, body)
}

func (m *Module) adminDisable(w http.ResponseWriter, r *http.Request) { m.setDisabled(w, r, true) }
func (m *Module) adminEnable(w http.ResponseWriter, r *http.Request)  { m.setDisabled(w, r, false) }

// setDisabled disables (its socket, on whichever replica, is closed with 4003; auth answers 403)
// or enables an outlet.
func (m *Module) setDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	ctx := r.Context()
	id := r.PathValue("id")
	action := "orderpay.outlet.enable"
	if disabled {
		action = "orderpay.outlet.disable"
	}
	err := m.store.SetOrderpayOutletDisabled(ctx, id, disabled, m.svc.Clock.Now().UTC())
	if errors.Is(err, store.ErrNotFound) {
		m.writeAdminError(w, r, errs.New(errs.NotFound, "not_found", "no such outlet"))
		return
	}
	if err != nil {
		m.audit(r, "admin", action, id, "error", "store")
		m.writeAdminError(w, r, storeError(err))
		return
	}
	m.outletChanged(ctx, id)
	if disabled {
		m.hub.CloseTenant(context.WithoutCancel(ctx), tenant(id), hub.CodeDisabled, "outlet disabled")
	}
	m.audit(r, "admin", action, id, "ok", "")
	o, err := m.outletByID(ctx, id)
	if err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	v, err := View(ctx, m.svc, o)
	if err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}

// OutletStatuses lists the outlets with their online state for the web console.
func (m *Module) OutletStatuses(ctx context.Context) ([]app.OutletStatus, error) {
	views, err := Outlets(ctx, m.svc)
	if err != nil {
		return nil, err
	}
	out := make([]app.OutletStatus, len(views))
	for i, v := range views {
		out[i] = app.OutletStatus{ID: v.ID, ProviderOutletID: v.ProviderOutletID, POSRemoteID: v.POSRemoteID,
			ProviderName: v.ProviderName, ProviderID: v.ProviderID, Disabled: v.Disabled, Online: v.Online,
			ConnectedSince: v.ConnectedSince, Replica: v.Replica}
	}
	return out, nil
}
