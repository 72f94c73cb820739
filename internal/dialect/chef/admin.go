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
type Action string

const (
	ActionApprove Action = "approve" // pending → approved: the held calls get a token
	ActionDecline Action = "decline" // pending → declined: the held calls get 57
	ActionRevoke  Action = "revoke"  // approved → revoked: every token of the pairing stops verifying
)

// DeviceView is a device as the admin API and the console show it.
type DeviceView struct {
	ID        string     `json:"id"`
	DeviceID  string     `json:"device_id"` // the id the device sent; "" when it sent none (fingerprint)
	Label     string     `json:"label"`
	Address   string     `json:"address"`
	UserAgent string     `json:"user_agent"`
	State     string     `json:"state"`
	FirstSeen time.Time  `json:"first_seen"`
	UpdatedAt time.Time  `json:"updated_at"`
	DecidedAt *time.Time `json:"decided_at"`
	DecidedBy string     `json:"decided_by"`
	// Waiting: a pending request younger than the approval window (its call may still be held).
	Waiting bool `json:"waiting"`
}

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

// ApprovalTimeout is the configured approval window of svc (for View).
func ApprovalTimeout(svc *app.Services) time.Duration {
	return settingsOf(svc.Config.Chef).approvalTimeout
}

// PendingRetention is how long after its last call a pending request nobody waits for is kept
// (then the sweeper deletes it).
func PendingRetention(svc *app.Services) time.Duration {
	return settingsOf(svc.Config.Chef).retention
}

// Decide applies a person's decision to device id: the store is updated with a conditional
// transition, a revocation revokes the pairing's sid (immediate on every replica), the decision is
// audited (actor, address, via) and announced on the bus so held calls on every replica are
// answered at once. Errors are *errs.Error: NotFound, Conflict (the device is not in a state the
// action applies to), Unavailable.
func Decide(ctx context.Context, svc *app.Services, id string, action Action, actor, addr, via string) (*store.ChefDevice, error) {
	cfg := settingsOf(svc.Config.Chef)
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
	if v, ok := modules.Load(svc); ok {
		m := v.(*Module)
		m.pairing.decided(dev)
		m.publish(ctx, dev.ID, dev.State)
	} else {
		(&Module{svc: svc}).publish(ctx, dev.ID, dev.State)
	}
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
	list, err := m.svc.Store.ListChefDevices(r.Context(), state)
	if err != nil {
		adminError(w, unavailable(err))
		return
	}
	now := m.svc.Clock.Now()
	out := make([]DeviceView, 0, len(list))
	for _, d := range list {
		out = append(out, View(d, now, m.cfg.approvalTimeout))
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
		d, err := Decide(r.Context(), m.svc, r.PathValue("id"), a, "admin", auth.Addr(r), "admin API")
		if err != nil {
			adminError(w, err)
			return
		}
		httpx.NoStore(w)
		httpx.WriteJSON(w, http.StatusOK, View(d, m.svc.Clock.Now(), m.cfg.approvalTimeout))
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
