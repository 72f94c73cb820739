package chef

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/store"
)

// Action is a person's decision about a device.
type Action = app.DeviceAction

const (
	ActionApprove = app.DeviceApprove
	ActionDecline = app.DeviceDecline
	ActionRevoke  = app.DeviceRevoke
)

// DeviceView is a device as the admin API and the console show it.
type DeviceView = app.DeviceView

// View returns d as shown to people; now and the approval window decide Waiting.
func View(d *store.ChefDevice, now time.Time, approvalTimeout time.Duration) DeviceView {
	decidedAt, decidedBy := utcPtr(d.DecidedAt), d.DecidedBy
	if d.State == store.DevicePending { // a refreshed request carries its refresh time there
		decidedAt, decidedBy = nil, ""
	}
	return DeviceView{
		ID: d.ID, DeviceID: deviceIDOfKey(d.DeviceKey), Label: d.Label, Address: d.Address, UserAgent: d.UserAgent,
		State: string(d.State), FirstSeen: d.FirstSeen.UTC(), UpdatedAt: d.UpdatedAt.UTC(), DecidedAt: decidedAt,
		DecidedBy: decidedBy,
		Waiting:   d.State == store.DevicePending && now.Before(d.UpdatedAt.Add(approvalTimeout)),
	}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// PendingRetention is how long after its last call a pending request nobody waits for is kept
// (then the sweep deletes it).
func (m *Module) PendingRetention() time.Duration { return m.cfg.retention }

// Devices lists the devices in state ("" for every state) as people see them.
func (m *Module) Devices(ctx context.Context, state store.DeviceState) ([]DeviceView, error) {
	list, err := m.svc.Store.ListChefDevices(ctx, state)
	if err != nil {
		return nil, unavailable(err)
	}
	return m.views(list), nil
}

// RecentPending lists at most limit pending requests, the most recently asked first (the ones a
// device may still be waiting on), and how many are pending in all.
func (m *Module) RecentPending(ctx context.Context, limit int) ([]DeviceView, int, error) {
	list, err := m.svc.Store.ListRecentChefDevices(ctx, store.DevicePending, limit)
	if err != nil {
		return nil, 0, unavailable(err)
	}
	total := len(list)
	if total >= limit {
		if total, err = m.svc.Store.CountChefDevices(ctx, store.DevicePending); err != nil {
			return nil, 0, unavailable(err)
		}
	}
	return m.views(list), max(total, len(list)), nil
}

func (m *Module) views(list []*store.ChefDevice) []DeviceView {
	now := m.svc.Clock.Now()
	out := make([]DeviceView, 0, len(list))
	for _, d := range list {
		out = append(out, View(d, now, m.cfg.approvalTimeout))
	}
	return out
}

// Decide applies a person's decision to device id: the store is updated with a conditional
// transition, a revocation revokes the pairing's sid (immediate on every replica), the decision is
// audited (actor, address, via), the calls held here are answered at once and the decision is
// announced on the bus for the other replicas. Errors are *errs.Error: NotFound, Conflict (the
// device is not in a state the action applies to), Unavailable.
func (m *Module) Decide(ctx context.Context, id string, action Action, actor, addr, via string) (DeviceView, error) {
	dev, err := m.decide(ctx, id, action, actor, addr, via)
	if err != nil {
		return DeviceView{}, err
	}
	return View(dev, m.svc.Clock.Now(), m.cfg.approvalTimeout), nil
}

func (m *Module) decide(ctx context.Context, id string, action Action, actor, addr, via string) (*store.ChefDevice, error) {
	svc, cfg := m.svc, m.cfg
	var from []store.DeviceState
	var to store.DeviceState
	switch action {
	case ActionApprove:
		from, to = []store.DeviceState{store.DevicePending}, store.DeviceApproved
	case ActionDecline:
		from, to = []store.DeviceState{store.DevicePending}, store.DeviceDeclined
	case ActionRevoke:
		// Revoking a revoked device again re-issues the sid revocation (a retry after a failure).
		from, to = []store.DeviceState{store.DeviceApproved, store.DeviceRevoked}, store.DeviceRevoked
	default:
		return nil, errs.New(errs.BadInput, "invalid_request", "unknown action")
	}
	now := svc.Clock.Now()
	audit := func(outcome, detail string) {
		svc.Audit(ctx, store.AuditEvent{Actor: actor, Action: "chef.device." + string(action), Target: id, Address: addr, Outcome: outcome, Detail: detail})
	}
	dev, err := svc.Store.DecideChefDevice(ctx, id, from, to, actor, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		audit("denied", "no such device; via "+via)
		return nil, errs.New(errs.NotFound, "not_found", "no such device")
	case errors.Is(err, store.ErrConflict):
		cur, gerr := svc.Store.GetChefDevice(ctx, id)
		state := "in another state"
		if gerr == nil {
			state = string(cur.State)
		}
		audit("denied", "device is "+state+"; via "+via)
		return nil, errs.New(errs.Conflict, "conflict", "device is "+state+"; cannot "+string(action)+" it")
	case err != nil:
		audit("error", "store unavailable; via "+via)
		return nil, unavailable(err)
	}
	if action == ActionRevoke {
		exp := now.Add(cfg.tokenLifetime + cfg.leeway + time.Minute)
		if err := svc.Revoker.Revoke(ctx, "sid", sessionID(dev.ID, dev.Generation), exp, "chef device revoked"); err != nil {
			audit("error", "device marked revoked but its tokens could not be revoked yet (retry); via "+via)
			return nil, unavailable(err)
		}
	}
	// Wake the held calls first (here, then on every replica), then write the audit event: the
	// decision is already durable in the store, and the device should not wait for the audit write.
	m.pairing.decided(dev)
	m.publish(ctx, dev.ID, dev.State)
	audit("ok", "label="+clip(dev.Label, 64)+"; via "+via)
	return dev, nil
}

// Admin API (relative to /admin/api/v1; the server has authenticated the admin token).

func (m *Module) adminList(w http.ResponseWriter, r *http.Request) {
	state := store.DeviceState(r.URL.Query().Get("state"))
	switch state {
	case "", store.DevicePending, store.DeviceApproved, store.DeviceDeclined, store.DeviceRevoked:
	default:
		adminError(w, errs.New(errs.BadInput, "invalid_request", "state must be one of pending, approved, declined, revoked"))
		return
	}
	out, err := m.Devices(r.Context(), state)
	if err != nil {
		adminError(w, err)
		return
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"devices": out})
}

func (m *Module) adminGet(w http.ResponseWriter, r *http.Request) {
	d, err := m.svc.Store.GetChefDevice(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		adminError(w, errs.New(errs.NotFound, "not_found", "no such device"))
		return
	}
	if err != nil {
		adminError(w, unavailable(err))
		return
	}
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, View(d, m.svc.Clock.Now(), m.cfg.approvalTimeout))
}

func (m *Module) adminDecide(a Action) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := m.Decide(r.Context(), r.PathValue("id"), a, "admin", auth.Addr(r), "admin API")
		if err != nil {
			adminError(w, err)
			return
		}
		httpx.NoStore(w)
		httpx.WriteJSON(w, http.StatusOK, v)
	})
}

// adminError writes the admin API's error shape: {"error","error_description"} with the kind's status.
func adminError(w http.ResponseWriter, err error) {
	e, ok := errs.As(err)
	if !ok {
		e = errs.New(errs.Internal, "server_error", "internal error")
	}
	code, desc := e.Code, e.Message
	if e.Kind == errs.Internal {
		code, desc = "server_error", "internal error"
	}
	if e.Kind == errs.Unavailable {
		w.Header().Set("Retry-After", "5")
	}
	httpx.WriteError(w, errs.HTTPStatus(e.Kind), code, desc)
}
