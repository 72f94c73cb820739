package doshii

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// apiNamePattern is what a vendor's API name may look like: it travels in an HTTP header and in
// URLs, so it is kept to a safe, readable alphabet.
var apiNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// writeAdminError renders err in the admin API's shape with the status of its kind.
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
		w.Header().Set("Retry-After", "2")
	}
	if status >= 500 {
		// The error chain names kinds, codes and store failures, never a secret.
		m.svc.Log.LogAttrs(r.Context(), slog.LevelError, "doshii admin request failed",
			slog.String("route", r.Pattern), slog.Int("status", status), slog.String("error", err.Error()))
	}
	httpx.WriteError(w, status, code, msg)
}

type vendorKeyInfo struct {
	ID        string     `json:"id"`
	CreatedAt time.Time  `json:"created_at"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
}

type vendorInfo struct {
	ID        string          `json:"id"`
	APIName   string          `json:"api_name"`
	Disabled  bool            `json:"disabled"`
	CreatedAt time.Time       `json:"created_at"`
	Keys      []vendorKeyInfo `json:"keys"`
}

func vendorView(v *store.DoshiiVendor) vendorInfo {
	out := vendorInfo{ID: v.ID, APIName: v.APIName, Disabled: v.Disabled, CreatedAt: v.CreatedAt.UTC(), Keys: []vendorKeyInfo{}}
	for _, k := range v.Keys {
		ki := vendorKeyInfo{ID: k.ID, CreatedAt: k.CreatedAt.UTC()}
		if k.NotAfter != nil {
			t := k.NotAfter.UTC()
			ki.NotAfter = &t
		}
		out.Keys = append(out.Keys, ki)
	}
	return out
}

// newVendorKey generates a vendor key and its store record: sealed (the server needs the key in
// clear to check HMACs) with additional data binding it to its vendor and key id, plus its SHA-256
// for the onboarding bearer check.
func (m *Module) newVendorKey(vendorID string, now time.Time) (store.VendorKey, string, error) {
	raw := secret.Generate(secret.PrefixVendorKey)
	kid := secret.NewID(vendorKeyIDPrefix)
	sealed, err := m.svc.Sealer.Seal([]byte(raw), vendorKeyAD(vendorID, kid))
	if err != nil {
		return store.VendorKey{}, "", errs.Wrap(errs.Internal, "seal", "internal error", err)
	}
	return store.VendorKey{ID: kid, Sealed: sealed, Hash: secret.Hash(raw), CreatedAt: now}, raw, nil
}

// adminCreateVendor serves POST /doshii/vendors {api_name} → {id, api_name, vendor_key}; the key
// is shown in this answer only.
func (m *Module) adminCreateVendor(w http.ResponseWriter, r *http.Request) {
	var req struct {
		APIName string `json:"api_name"`
	}
	if err := httpx.ReadJSON(r, maxAdminBody, &req, true); err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	if !apiNamePattern.MatchString(req.APIName) {
		m.writeAdminError(w, r, badInput("invalid_request",
			"api_name must be 1 to 64 characters: letters, digits, '.', '_' and '-', starting with a letter or digit"))
		return
	}
	v, raw, err := m.createVendor(r.Context(), req.APIName)
	if err != nil {
		m.auditAdmin(r, "doshii.vendor.create", req.APIName, "error", errs.CodeOf(err))
		m.writeAdminError(w, r, err)
		return
	}
	m.auditAdmin(r, "doshii.vendor.create", v.ID, "ok", "api_name="+v.APIName)
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusCreated, map[string]any{
		"id": v.ID, "api_name": v.APIName, "vendor_key": raw, "key_id": v.Keys[0].ID,
		"created_at": v.CreatedAt.UTC(),
	})
}

func (m *Module) createVendor(ctx context.Context, apiName string) (*store.DoshiiVendor, string, error) {
	now := m.svc.Clock.Now().UTC()
	id := secret.NewID(vendorIDPrefix)
	k, raw, err := m.newVendorKey(id, now)
	if err != nil {
		return nil, "", err
	}
	v := &store.DoshiiVendor{ID: id, APIName: apiName, Keys: []store.VendorKey{k}, CreatedAt: now}
	err = m.svc.Store.CreateDoshiiVendor(ctx, v)
	if errors.Is(err, store.ErrConflict) {
		return nil, "", errs.New(errs.Conflict, "conflict", "a vendor with this api_name already exists")
	}
	if err != nil {
		return nil, "", storeError(err)
	}
	return v, raw, nil
}

// adminListVendors serves GET /doshii/vendors: ids, names and key metadata, never a key.
func (m *Module) adminListVendors(w http.ResponseWriter, r *http.Request) {
	vs, err := m.svc.Store.ListDoshiiVendors(r.Context())
	if err != nil {
		m.writeAdminError(w, r, storeError(err))
		return
	}
	out := make([]vendorInfo, 0, len(vs))
	for _, v := range vs {
		out = append(out, vendorView(v))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"vendors": out})
}

// adminRotateVendorKey serves POST /doshii/vendors/{id}/rotate-key → {vendor_key}: the new key
// verifies at once; older keys keep verifying for doshii.key_overlap seconds.
func (m *Module) adminRotateVendorKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := m.svc.Store.GetDoshiiVendor(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		m.writeAdminError(w, r, errs.New(errs.NotFound, "not_found", "no such vendor"))
		return
	}
	if err != nil {
		m.writeAdminError(w, r, storeError(err))
		return
	}
	now := m.svc.Clock.Now().UTC()
	k, raw, err := m.newVendorKey(v.ID, now)
	if err != nil {
		m.writeAdminError(w, r, err)
		return
	}
	overlapEnd := now.Add(m.cfg.keyOverlap)
	err = m.svc.Store.AddVendorKey(r.Context(), v.ID, k, overlapEnd)
	if errors.Is(err, store.ErrNotFound) {
		m.writeAdminError(w, r, errs.New(errs.NotFound, "not_found", "no such vendor"))
		return
	}
	if err != nil {
		m.auditAdmin(r, "doshii.vendor.rotate_key", v.ID, "error", "store")
		m.writeAdminError(w, r, storeError(err))
		return
	}
	m.announce(r.Context(), change{Vendor: v.APIName})
	m.auditAdmin(r, "doshii.vendor.rotate_key", v.ID, "ok", "key="+k.ID)
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"id": v.ID, "api_name": v.APIName, "vendor_key": raw, "key_id": k.ID,
		"previous_keys_valid_until": overlapEnd,
	})
}

// adminRotateLocationToken serves POST /doshii/locations/{id}/rotate-token → {token}: the old
// token stops working at once, on every replica (event bus; a missed notice costs at most the
// location cache's lifetime).
func (m *Module) adminRotateLocationToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	tok, err := m.rotateLocationToken(r.Context(), id)
	if err != nil {
		if errs.KindOf(err) != errs.NotFound {
			m.auditAdmin(r, "doshii.location.rotate_token", id, "error", errs.CodeOf(err))
		}
		m.writeAdminError(w, r, err)
		return
	}
	m.auditAdmin(r, "doshii.location.rotate_token", id, "ok", "")
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "token": tok})
}

func (m *Module) rotateLocationToken(ctx context.Context, id string) (string, error) {
	notFound := errs.New(errs.NotFound, "not_found", "no such location")
	if _, err := m.svc.Store.GetDoshiiLocation(ctx, id); errors.Is(err, store.ErrNotFound) {
		return "", notFound
	} else if err != nil {
		return "", storeError(err)
	}
	tok := secret.Generate(secret.PrefixLocationToken)
	err := m.svc.Store.SetDoshiiLocationToken(ctx, id, secret.Hash(tok), m.svc.Clock.Now().UTC())
	if errors.Is(err, store.ErrNotFound) {
		return "", notFound
	}
	if err != nil {
		return "", storeError(err)
	}
	m.announce(ctx, change{Location: id})
	if m.sockets != nil {
		// The sockets opened with the old token are closed on every replica (4001); the POS
		// reconnects with the new one.
		m.sockets.hub.CloseTenant(context.WithoutCancel(ctx), locationTenant(id), hub.CodeRevoked, "location token rotated")
	}
	return tok, nil
}

func (m *Module) auditAdmin(r *http.Request, action, target, outcome, detail string) {
	m.svc.Audit(context.WithoutCancel(r.Context()), store.AuditEvent{
		Actor: "admin", Action: action, Target: target, Address: auth.Addr(r), Outcome: outcome, Detail: detail,
	})
}
