package chef

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/jsonrpc"
	"github.com/posgate/posgate/internal/metrics"
	"github.com/posgate/posgate/internal/rendezvous"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/token"
)

// Identity limits: what a device may call itself.
const (
	maxDeviceIDLen  = 128
	maxLabelLen     = 128
	maxUserAgentLen = 512
)

// identity is who an authenticateClient call says it is.
type identity struct {
	deviceID  string // as sent (device_id / deviceId); "" when the device sent none
	label     string // device_name / deviceName, else the device id
	address   string
	userAgent string
}

// key is the store's DeviceKey: a fingerprint of the address and User-Agent, then the device id.
// One row per (device id, address, User-Agent): an approval is bound to all three, so a device id
// replayed from elsewhere finds no row and becomes a new pending request instead of inheriting an
// approval (or overwriting the approved row of the real device).
func (id identity) key() string {
	h := sha256.New()
	h.Write([]byte(id.address))
	h.Write([]byte{0})
	h.Write([]byte(id.userAgent))
	return hex.EncodeToString(h.Sum(nil)[:16]) + ":" + id.deviceID
}

// deviceIDOfKey returns the device id part of a DeviceKey ("" for a fingerprint-only device).
func deviceIDOfKey(k string) string {
	if len(k) > 33 && k[32] == ':' {
		return k[33:]
	}
	return ""
}

// parseIdentity reads the identity from params: an array whose first element is an object (the
// vendor's form, `[{}]`), an object (by-name params), or nothing. A wrong shape is -32602.
func parseIdentity(params json.RawMessage, r *http.Request) (identity, *jsonrpc.Error) {
	id := identity{address: auth.Addr(r), userAgent: clip(r.UserAgent(), maxUserAgentLen)}
	var obj json.RawMessage
	switch {
	case len(params) == 0:
	case params[0] == '[':
		var arr []json.RawMessage
		if err := json.Unmarshal(params, &arr); err != nil {
			return id, jsonrpc.NewError(jsonrpc.CodeInvalidParams, "params must be [{…}]")
		}
		if len(arr) > 0 {
			obj = arr[0]
		}
		if len(arr) > 1 {
			return id, jsonrpc.NewError(jsonrpc.CodeInvalidParams, "params takes one object")
		}
	default:
		obj = params
	}
	if obj == nil {
		return id, nil
	}
	if len(obj) == 0 || obj[0] != '{' {
		return id, jsonrpc.NewError(jsonrpc.CodeInvalidParams, "params[0] must be an object")
	}
	// Member names are matched exactly (duplicates, also by case, were refused by the parser), so
	// "DEVICE_ID" is an unknown member, not an alias.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return id, jsonrpc.NewError(jsonrpc.CodeInvalidParams, "params[0] must be an object")
	}
	devID, e := oneString(m, "device_id", "deviceId", maxDeviceIDLen)
	if e != nil {
		return id, e
	}
	name, e := oneString(m, "device_name", "deviceName", maxLabelLen)
	if e != nil {
		return id, e
	}
	id.deviceID = devID
	id.label = name
	if id.label == "" {
		id.label = devID
	}
	return id, nil
}

// oneString reads a string member that may be spelt two ways; both spellings must agree.
func oneString(m map[string]json.RawMessage, a, b string, max int) (string, *jsonrpc.Error) {
	var out string
	seen := false
	for _, name := range []string{a, b} {
		raw, ok := m[name]
		if !ok {
			continue
		}
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return "", jsonrpc.NewError(jsonrpc.CodeInvalidParams, name+" must be a string")
		}
		if !printable(s) || utf8.RuneCountInString(s) > max {
			return "", jsonrpc.NewError(jsonrpc.CodeInvalidParams, name+" must be printable text of at most "+strconv.Itoa(max)+" characters")
		}
		if seen && s != out {
			return "", jsonrpc.NewError(jsonrpc.CodeInvalidParams, a+" and "+b+" disagree")
		}
		out, seen = s, true
	}
	return out, nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == 0x2028 || r == 0x2029 {
			return false
		}
	}
	return true
}

// clip cuts s to at most max bytes on a rune boundary and drops control characters.
func clip(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// decision is the outcome a held call waits for.
type decision struct {
	dev  *store.ChefDevice // the decided device (approved, declined or revoked)
	gone bool              // the request was deleted (stale, by a replica whose clock runs ahead)
}

// pairing is the device-pairing engine of one process.
type pairing struct {
	m *Module

	// rv holds the calls waiting for a decision, by device id.
	rv *rendezvous.Point[decision]

	// keyMu serialises the create-or-join step per device key on this replica, so concurrent
	// calls from one device coalesce on one pending request.
	keyMu sync.Mutex
	keys  map[string]*keyLock
	// createMu serialises the pending-cap check with the creation it guards.
	createMu sync.Mutex
	// capLog spaces the warnings of the per-address [0] and global [1] caps.
	capLog [2]logLimiter
	// closing: the server is shutting down; no call is held any more.
	closing atomic.Bool
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func newPairing(m *Module) *pairing {
	p := &pairing{m: m, keys: map[string]*keyLock{}}
	p.rv = rendezvous.New(p.check, rendezvous.Options{})
	return p
}

// check reads the decision on device id from the store: a held call ends when the device is no
// longer pending.
func (p *pairing) check(ctx context.Context, id string) (decision, bool, error) {
	dev, err := p.m.svc.Store.GetChefDevice(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return decision{gone: true}, true, nil
	case err != nil:
		return decision{}, false, err // store unavailable: keep holding, the recheck retries
	case dev.State == store.DevicePending:
		return decision{}, false, nil
	}
	return decision{dev: dev}, true, nil
}

func (p *pairing) lockKey(k string) func() {
	p.keyMu.Lock()
	l := p.keys[k]
	if l == nil {
		l = &keyLock{}
		p.keys[k] = l
	}
	l.refs++
	p.keyMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		p.keyMu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(p.keys, k)
		}
		p.keyMu.Unlock()
	}
}

// noticeKey is the device whose held calls a TopicChefDevice notice from any replica concerns
// ("" for a device still pending: nothing to wake).
func noticeKey(payload []byte) string {
	var n notice
	if json.Unmarshal(payload, &n) != nil || n.State == string(store.DevicePending) {
		return ""
	}
	return n.ID
}

// notice is the TopicChefDevice payload.
type notice struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

func (m *Module) publish(ctx context.Context, id string, state store.DeviceState) {
	b, _ := json.Marshal(notice{ID: id, State: string(state)})
	if err := m.svc.Events.Publish(ctx, events.TopicChefDevice, b); err != nil {
		m.svc.Log.Warn("chef: device notice not published", "device", id, "error", err.Error())
	}
}

// authenticateClient answers Authentication.authenticateClient: a token at once
// for an approved device or a renewal; otherwise a pending request held open until a person decides
// or the approval window ends. It returns the `result` to send, or an error (store unavailable).
func (p *pairing) authenticateClient(ctx context.Context, r *http.Request, id identity) (json.RawMessage, error) {
	m := p.m
	if p.closing.Load() {
		return nil, errShuttingDown
	}
	// A renewal: a token this posgate issued to the device, even expired up to the renew window.
	// An address throttled for bad tokens may not probe tokens this way: it pairs as usual.
	if raw := bearerToken(r); raw != "" && m.throttleCheck(ctx, id.address) == nil {
		res, err := p.renew(ctx, r, id, raw)
		if err != nil || res != nil {
			return res, err
		}
	}

	release := p.lockKey(id.key())
	devID, holdFor, immediate, err := p.createOrJoin(ctx, id)
	release()
	if err != nil {
		return nil, err
	}
	if immediate != nil {
		return immediate, nil
	}

	// Held open until a decision, the end of the request's approval window, or the caller going
	// away.
	timeout := failureResult(&Failure{NumTimeout, msgTimeout(int(m.cfg.approvalTimeout / time.Second))})
	d, err := p.rv.Wait(ctx, devID, holdFor)
	switch {
	case errors.Is(err, rendezvous.ErrTimeout):
		return timeout, nil
	case err != nil:
		return nil, err
	case d.gone:
		return timeout, nil // the device asks again and makes a new request
	}
	return p.answerDecided(ctx, d.dev, true)
}

// createOrJoin finds the device of id and either answers at once (immediate) or returns the
// device to hold the call on and how long to hold it, creating or refreshing the pending request when there
// is none a call may join.
//
// A call is held no longer than its request stays fresh (UpdatedAt + the approval window), so a
// request is "waiting" in the console, and counts toward the pairing caps, exactly while a call is
// held on it — and a request whose callers have all gone stops counting when its window ends. A
// call joining a request with less than half its window left refreshes it first, so no call is held
// for less than half a window.
//
// Replicas may race on one device (it called two of them at once). Every transition to pending is
// therefore single-winner across replicas, decided by the store: creating a device and re-asking
// for a declined or revoked one take a short single-use claim (store.UseOnce) on the device key or
// on (device, generation) before the upsert, and refreshing a pending request is a conditional
// update (pending → pending). A replica that loses re-reads the device and joins the request the
// winner made — so an approval given in between is never overwritten by a late upsert.
func (p *pairing) createOrJoin(ctx context.Context, id identity) (string, time.Duration, json.RawMessage, error) {
	m := p.m
	window := m.cfg.approvalTimeout
	for attempt := 0; attempt < 5; attempt++ {
		now := m.svc.Clock.Now()
		dev, err := m.svc.Store.GetChefDeviceByKey(ctx, id.key())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", 0, nil, unavailable(err)
		}
		if dev == nil {
			devID, res, retry, err := p.ask(ctx, id, nil, "chef.device.create:"+id.key(), now)
			if retry {
				continue
			}
			return devID, window, res, err
		}
		switch dev.State {
		case store.DeviceApproved:
			res, err := p.issue(ctx, dev, false)
			return "", 0, res, err
		case store.DevicePending:
			left := dev.UpdatedAt.Add(window).Sub(now)
			if left >= window/2 {
				// Fresh: a call here or on another replica asked; hold this one on the same request.
				return dev.ID, left, nil, nil
			}
			if left > 0 {
				// Fresh but ending soon: extend it. It already counts toward the caps, and it is
				// the same request (not audited again).
				fresh, err := m.svc.Store.DecideChefDevice(ctx, dev.ID, []store.DeviceState{store.DevicePending}, store.DevicePending, "", now)
				if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
					continue // decided or deleted meanwhile: read it again
				}
				if err != nil {
					return "", 0, nil, unavailable(err)
				}
				m.publish(ctx, fresh.ID, store.DevicePending)
				return fresh.ID, window, nil, nil
			}
			// A stale request nobody waits for: ask again (the caps apply), refreshing it only if
			// it is still pending.
			p.createMu.Lock()
			if res, err := p.checkCap(ctx, now, id); res != nil || err != nil {
				p.createMu.Unlock()
				return "", 0, res, err
			}
			fresh, err := m.svc.Store.DecideChefDevice(ctx, dev.ID, []store.DeviceState{store.DevicePending}, store.DevicePending, "", now)
			p.createMu.Unlock()
			if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
				continue // decided, or deleted by the sweeper, meanwhile: read it again
			}
			if err != nil {
				return "", 0, nil, unavailable(err)
			}
			p.asked(ctx, fresh, id)
			return fresh.ID, window, nil, nil
		case store.DeviceDeclined, store.DeviceRevoked:
			if dev.DecidedAt != nil && now.Before(dev.DecidedAt.Add(m.cfg.cooldown)) {
				return "", 0, failureResult(&Failure{NumDeclined, msgDeclined}), nil
			}
			claim := "chef.device.ask:" + dev.ID + ":" + strconv.Itoa(dev.Generation)
			devID, res, retry, err := p.ask(ctx, id, dev, claim, now)
			if retry {
				continue
			}
			return devID, window, res, err
		default:
			return "", 0, nil, errs.New(errs.Internal, "device_state", "device in an unknown state "+string(dev.State))
		}
	}
	return "", 0, nil, unavailable(errors.New("chef: the device kept changing under a pairing call"))
}

// ask makes a new pending request for id — a new device (was nil), or a declined or revoked one
// after its cool-down — if the pending cap allows and this replica wins the claim. retry means
// another replica won it: read the device again.
func (p *pairing) ask(ctx context.Context, id identity, was *store.ChefDevice, claim string, now time.Time) (string, json.RawMessage, bool, error) {
	p.createMu.Lock()
	if res, err := p.checkCap(ctx, now, id); res != nil || err != nil {
		p.createMu.Unlock()
		return "", res, false, err
	}
	won, err := p.claim(ctx, claim, now)
	if err != nil {
		p.createMu.Unlock()
		return "", nil, false, err
	}
	if !won {
		p.createMu.Unlock()
		p.awaitChange(ctx, id.key(), was)
		return "", nil, true, nil
	}
	stored, err := p.m.svc.Store.UpsertPendingChefDevice(ctx, p.pendingRecord(id, now))
	p.createMu.Unlock()
	if err != nil {
		return "", nil, false, unavailable(err)
	}
	p.asked(ctx, stored, id)
	return stored.ID, nil, false, nil
}

func (p *pairing) pendingRecord(id identity, now time.Time) *store.ChefDevice {
	return &store.ChefDevice{
		ID:         secret.NewID("dev_"),
		DeviceKey:  id.key(),
		Label:      id.label,
		Address:    id.address,
		AddressKey: auth.AddrKey(id.address),
		UserAgent:  id.userAgent,
		State:      store.DevicePending,
		FirstSeen:  now,
		UpdatedAt:  now,
	}
}

// asked audits a request just made pending here and announces it (the console's live list and the
// other replicas hear of it).
func (p *pairing) asked(ctx context.Context, dev *store.ChefDevice, id identity) {
	p.m.svc.Audit(ctx, store.AuditEvent{Actor: "device:" + dev.ID, Action: "chef.device.request", Target: dev.ID,
		Address: id.address, Outcome: "pending", Detail: "label=" + clip(id.label, 64)})
	p.m.publish(ctx, dev.ID, store.DevicePending)
}

// claimTTL bounds a creation claim: long enough to cover the upsert that follows it, short enough
// that a replica dying between the two does not block the device for long.
const claimTTL = 30 * time.Second

// claim takes a single-use claim on key across replicas; false means another replica holds it.
func (p *pairing) claim(ctx context.Context, key string, now time.Time) (bool, error) {
	err := p.m.svc.Store.UseOnce(ctx, key, now, now.Add(claimTTL))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrAlreadyUsed):
		return false, nil
	default:
		return false, unavailable(err)
	}
}

// awaitChange waits (briefly) until the device of key exists and differs from was (nil: absent):
// the replica that won the claim is writing it.
func (p *pairing) awaitChange(ctx context.Context, key string, was *store.ChefDevice) {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		d, err := p.m.svc.Store.GetChefDeviceByKey(ctx, key)
		if err == nil && (was == nil || d.Generation != was.Generation || d.State != was.State) {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// checkCap answers 58 when a new request from id would exceed a pairing cap: max_pending requests
// waiting in all, or max_pending_per_address of them from id's address — so one address cannot
// fill the global cap and lock every other device out. An address counts as the throttle counts
// it (auth.AddrKey): IPv4 by itself, IPv6 by its /64. A request counts while it is fresh (see
// createOrJoin): one nobody waits for stops counting when its window ends. One query counts both.
// Callers hold createMu from the check to the write it guards, so this replica's concurrent new
// requests cannot overshoot a cap together (replicas may, by at most one each).
func (p *pairing) checkCap(ctx context.Context, now time.Time, id identity) (json.RawMessage, error) {
	cfg := p.m.cfg
	all, fromAddr, err := p.m.svc.Store.CountPendingChefDevicesSince(ctx, now.Add(-cfg.approvalTimeout), auth.AddrKey(id.address))
	if err != nil {
		return nil, unavailable(err)
	}
	switch {
	case fromAddr >= cfg.maxPerAddress:
		if ok, more := p.capLog[0].allow(now); ok {
			p.m.svc.Log.Warn("chef: pending device cap per address reached", "cap", cfg.maxPerAddress, "address", id.address, "refused_unlogged", more)
		}
	case all >= cfg.maxPending:
		if ok, more := p.capLog[1].allow(now); ok {
			p.m.svc.Log.Warn("chef: pending device cap reached", "cap", cfg.maxPending, "address", id.address, "refused_unlogged", more)
		}
	default:
		return nil, nil
	}
	return failureResult(&Failure{NumTooManyPending, msgTooManyPending}), nil
}

// capLogEvery spaces the cap warnings: a caller hammering the caps must not flood the log (each
// refusal is in the access log already). A warning says how many refusals went unlogged before it.
const capLogEvery = 10 * time.Second

type logLimiter struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many were suppressed since the last one logged.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < capLogEvery {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}

// decided answers the calls held for dev on this replica at once with the device as decided (the
// local decision path: no store read between the decision and the answer).
func (p *pairing) decided(dev *store.ChefDevice) {
	if dev.State != store.DevicePending {
		p.rv.Resolve(dev.ID, decision{dev: dev})
	}
}

// answerDecided turns a decided device into the call's result.
func (p *pairing) answerDecided(ctx context.Context, dev *store.ChefDevice, newDevice bool) (json.RawMessage, error) {
	if dev.State != store.DeviceApproved {
		return failureResult(&Failure{NumDeclined, msgDeclined}), nil
	}
	return p.issue(ctx, dev, newDevice)
}

// issue mints a device token for an approved device.
func (p *pairing) issue(ctx context.Context, dev *store.ChefDevice, newDevice bool) (json.RawMessage, error) {
	m := p.m
	c := token.Claims{
		Subject:   dev.ID,
		Audience:  []string{Audience},
		SessionID: sessionID(dev.ID, dev.Generation),
	}
	if did := deviceIDOfKey(dev.DeviceKey); did != "" {
		c.Extra = map[string]any{"device_id": did}
	}
	tok, _, err := m.svc.Issuer.Issue(ctx, c, m.cfg.tokenLifetime)
	if err != nil {
		return nil, unavailable(err)
	}
	grant := "device"
	if !newDevice {
		grant = "device_again"
	}
	metrics.TokensIssued.WithLabelValues("chef", grant).Inc()
	return successResult(tok, newDevice), nil
}

// renew answers at once a call carrying a token previously issued to an approved device (expired
// less than the renew window ago, device not revoked), from whatever address or User-Agent: the
// token, not the binding, is the proof. nil, nil means "not a renewal: pair as usual".
func (p *pairing) renew(ctx context.Context, r *http.Request, id identity, raw string) (json.RawMessage, error) {
	m := p.m
	c, err := m.svc.Verifier.Verify(ctx, raw, token.VerifyOptions{Audience: Audience, Leeway: m.cfg.leeway, AllowExpiredFor: m.cfg.renewWindow})
	if err != nil {
		f := tokenFailure(raw, err)
		if f == nil {
			return nil, unavailable(err)
		}
		metrics.TokenVerifications.WithLabelValues("chef", outcome(f)).Inc()
		m.throttleFail(ctx, id.address, f)
		return nil, nil
	}
	devID, gen, ok := parseSessionID(c.SessionID)
	if !ok || devID != c.Subject {
		return nil, nil
	}
	dev, err := m.svc.Store.GetChefDevice(ctx, devID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(err)
	}
	if dev.State != store.DeviceApproved || dev.Generation != gen {
		return nil, nil
	}
	// A token names its device; a call that names another device id is not its renewal.
	if id.deviceID != "" && id.deviceID != deviceIDOfKey(dev.DeviceKey) {
		return nil, nil
	}
	if id.address != dev.Address || id.userAgent != dev.UserAgent {
		m.svc.Audit(ctx, store.AuditEvent{Actor: "device:" + dev.ID, Action: "chef.device.renew", Target: dev.ID,
			Address: id.address, Outcome: "ok", Detail: "renewed with a previously issued token from another address or User-Agent"})
	}
	return p.issue(ctx, dev, false)
}

// unavailable wraps a store or keyring failure: the caller answers 503 with Retry-After.
func unavailable(err error) error {
	if _, ok := errs.As(err); ok && errs.KindOf(err) == errs.Unavailable {
		return err
	}
	return &errs.Error{Kind: errs.Unavailable, Code: "unavailable", Message: "service unavailable; retry later", RetryAfter: 5 * time.Second, Err: err}
}
