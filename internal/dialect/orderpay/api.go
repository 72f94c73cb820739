package orderpay

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/jsonx"
	"github.com/posgate/posgate/internal/rendezvous"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// sendRequest is the integrator's request body.
type sendRequest struct {
	DeviceID       *string         `json:"DeviceID"`
	UserIdentifier *string         `json:"UserIdentifier"`
	MessageType    *int64          `json:"MessageType"`
	Payload        json.RawMessage `json:"Payload"`
	RequestID      *string         `json:"RequestID"`
}

// parseSendBody reads and checks an integrator request body: one JSON object, no key repeated,
// no unknown field, MessageType an integer (passed through, never checked against a list),
// Payload any JSON value but null, the string fields within the protocol's limits.
func parseSendBody(data []byte) (sendRequest, error) {
	var req sendRequest
	if !utf8.Valid(data) {
		// encoding/json would turn the bytes into U+FFFD and the POS would get other text.
		return req, badInput("the body is not valid UTF-8")
	}
	if err := jsonx.Decode(data, &req, true); err != nil {
		if errors.Is(err, jsonx.ErrDuplicateKey) {
			return req, badInput("a field is repeated")
		}
		return req, badInput("the body must be a JSON object with DeviceID, UserIdentifier, MessageType (integer), Payload and RequestID only")
	}
	if req.MessageType == nil {
		return req, badInput("MessageType is required")
	}
	if len(req.Payload) == 0 || string(req.Payload) == "null" {
		return req, badInput("Payload is required")
	}
	for _, f := range []struct {
		name string
		v    *string
		max  int
	}{{"DeviceID", req.DeviceID, maxDeviceID}, {"UserIdentifier", req.UserIdentifier, maxUserIdentifier}, {"RequestID", req.RequestID, maxRequestID}} {
		if f.v == nil {
			continue
		}
		if !printable(*f.v) {
			return req, badInput(f.name + " must be text without control characters")
		}
		if utf8.RuneCountInString(*f.v) > f.max {
			return req, badInput(f.name + " is longer than " + strconv.Itoa(f.max) + " characters")
		}
	}
	if req.RequestID != nil && *req.RequestID == "" {
		return req, badInput("RequestID must not be empty (leave it out to have one generated)")
	}
	return req, nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// frameOf builds the frame the POS receives and the hash that decides whether a second call
// with the same RequestID asked the same thing (insignificant white space in Payload aside).
// Both are written by hand, byte for byte what json.Marshal writes for requestFrame and for
// [DeviceID, UserIdentifier, MessageType, Payload] (FuzzSendBody compares them): the hash must
// not change, or a retry across an upgrade would conflict with its own request.
func frameOf(o *store.OrderpayOutlet, req sendRequest, requestID string) (frame, hash []byte, err error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, req.Payload); err != nil {
		return nil, nil, badInput("Payload is not valid JSON")
	}
	// json.Marshal writes a json.RawMessage compacted and with <, >, &, U+2028 and U+2029
	// escaped in its strings.
	var payload bytes.Buffer
	payload.Grow(compact.Len())
	json.HTMLEscape(&payload, compact.Bytes())
	var deviceID, userID string
	if req.DeviceID != nil {
		deviceID = *req.DeviceID
	}
	if req.UserIdentifier != nil {
		userID = *req.UserIdentifier
	}
	p := payload.Bytes()
	frame = make([]byte, 0, 128+len(o.ProviderName)+len(deviceID)+len(userID)+len(p)+len(requestID))
	frame = append(frame, `{"ProviderID":`...)
	frame = strconv.AppendInt(frame, o.ProviderID, 10)
	frame = append(frame, `,"ProviderName":`...)
	frame = jsonx.AppendString(frame, o.ProviderName)
	frame = append(frame, `,"DeviceID":`...)
	frame = jsonx.AppendString(frame, deviceID)
	frame = append(frame, `,"UserIdentifier":`...)
	frame = jsonx.AppendString(frame, userID)
	// What the caller asked, without the outlet's fields (which an admin may change between two
	// retries of one request).
	asked := make([]byte, 0, 32+len(deviceID)+len(userID)+len(p))
	asked = append(asked, '[')
	asked = jsonx.AppendString(asked, deviceID)
	asked = append(asked, ',')
	asked = jsonx.AppendString(asked, userID)
	asked = append(asked, ',')
	asked = strconv.AppendInt(asked, *req.MessageType, 10)
	asked = append(asked, ',')
	asked = append(asked, p...)
	asked = append(asked, ']')
	frame = append(frame, `,"MessageType":`...)
	frame = strconv.AppendInt(frame, *req.MessageType, 10)
	frame = append(frame, `,"Payload":`...)
	frame = append(frame, p...)
	frame = append(frame, `,"RequestID":`...)
	frame = jsonx.AppendString(frame, requestID)
	frame = append(frame, '}')
	h := sha256.Sum256(asked)
	return frame, h[:], nil
}

// authorize checks the Bearer posgate access token and its orderpay:send scope.
func (m *Module) authorize(r *http.Request) error {
	// A token given twice or also in the URL (RFC 6750 §2) is refused before it is looked at.
	if err := gateway.CheckRequestShape(r); err != nil {
		return err
	}
	p, err := m.bearer.Authenticate(r)
	if err != nil {
		if errors.Is(err, auth.ErrNoCredential) {
			return errs.Wrap(errs.Unauthenticated, "no_credential", "a Bearer access token is required", err)
		}
		return err
	}
	if !p.HasScope(ScopeSend) {
		return &errs.Error{Kind: errs.Forbidden, Code: "insufficient_scope",
			Message: "the access token lacks the scope " + ScopeSend, Err: &gateway.ScopeError{Required: []string{ScopeSend}}}
	}
	return nil
}

// requestState is the integrator API's name for an outbox state.
func requestState(now time.Time, msg *store.OutboxMessage) string {
	switch {
	case msg.State == store.OutboxDone:
		return "answered"
	case msg.State == store.OutboxExpired || !now.Before(msg.ExpiresAt):
		return "expired"
	case msg.State == store.OutboxSent:
		return "sent"
	default:
		return "queued"
	}
}

// postRequest serves POST /v1/orderpay/outlets/{outlet}/requests[?wait=N]: the request is stored
// in the outbox before anything is answered, then the call waits up to N seconds (default and cap
// orderpay.request_wait) for the POS answer: 200 with the answer as the POS sent it, else 202
// {RequestID, State}.
func (m *Module) postRequest(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := m.authorize(r); err != nil {
		m.writeAPIError(w, r, err)
		return
	}
	wait, err := m.waitParam(r)
	if err != nil {
		m.writeAPIError(w, r, err)
		return
	}
	if !httpx.IsJSON(r) {
		m.writeAPIError(w, r, errs.New(errs.UnsupportedMediaType, "invalid_request", "Content-Type must be application/json"))
		return
	}
	data, err := httpx.ReadBody(r, m.cfg.maxBody)
	if err != nil {
		m.writeAPIError(w, r, err)
		return
	}
	req, err := parseSendBody(data)
	if err != nil {
		m.writeAPIError(w, r, err)
		return
	}
	o, err := m.outletByProviderID(ctx, r.PathValue("outlet"))
	if err != nil {
		m.writeAPIError(w, r, err)
		return
	}
	if o.Disabled {
		m.writeAPIError(w, r, errs.New(errs.Forbidden, "outlet_disabled", msgDisabled))
		return
	}
	id := secret.NewID("rq_")
	if req.RequestID != nil {
		id = *req.RequestID
	}
	frame, hash, err := frameOf(o, req, id)
	if err != nil {
		m.writeAPIError(w, r, err)
		return
	}
	q := tenant(o.ID)
	var ticket *rendezvous.Ticket[*store.OutboxMessage]
	if wait > 0 {
		ticket = m.waiters.hold(q, id)
	}
	started := m.svc.Clock.Now() // keeps the monotonic reading, for the stage's duration
	now := started.UTC()
	// The hub stores it and, when this replica holds the POS socket, writes it at once;
	// otherwise it announces it to the replica that does.
	var stored *store.OutboxMessage
	all, _, err := m.hub.EnqueueFor(ctx, hub.AwaitAnswer, &store.OutboxMessage{
		Queue: q, ID: id, BodyHash: hash, Payload: frame, CreatedAt: now, ExpiresAt: now.Add(m.cfg.requestTTL),
	})
	enqueued := m.svc.Clock.Now()
	stageStoreRequest.Observe(enqueued.Sub(started).Seconds())
	if len(all) == 1 {
		stored = all[0]
	}
	if err != nil || finished(enqueued, stored) {
		if ticket != nil {
			ticket.Leave()
		}
		ticket = nil
	}
	if errors.Is(err, store.ErrConflict) {
		m.writeAPIError(w, r, errs.New(errs.Conflict, "conflict", "this RequestID was used for another request"))
		return
	}
	if err != nil {
		m.writeAPIError(w, r, storeError(err))
		return
	}
	msg, err := m.waiters.wait(ctx, ticket, stored, wait)
	if ticket != nil {
		stageAwaitAnswer.Observe(m.since(enqueued))
	}
	if err != nil {
		m.writeAPIError(w, r, storeError(err)) // accepted already: a retry with the RequestID is safe
		return
	}
	m.writeResult(w, msg, false)
}

// writeResult answers 200 with the POS answer as sent when msg is answered, else 202 (or 200 for
// a GET) {RequestID, State}.
func (m *Module) writeResult(w http.ResponseWriter, msg *store.OutboxMessage, get bool) {
	state := requestState(m.svc.Clock.Now(), msg)
	httpx.NoStore(w)
	if get {
		body := map[string]any{"RequestID": msg.ID, "State": state}
		if state == "answered" && len(msg.Answer) > 0 {
			body["Answer"] = json.RawMessage(msg.Answer)
		}
		httpx.WriteJSON(w, http.StatusOK, body)
		return
	}
	if state == "answered" {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(msg.Answer)
		return
	}
	httpx.WriteJSON(w, http.StatusAccepted, map[string]string{"RequestID": msg.ID, "State": state})
}

// waitParam reads ?wait=N (seconds, 0 = do not wait), capped at orderpay.request_wait, which is
// also the default.
func (m *Module) waitParam(r *http.Request) (time.Duration, error) {
	vals, ok := r.URL.Query()["wait"]
	if !ok {
		return m.cfg.requestWait, nil
	}
	if len(vals) != 1 {
		return 0, badInput("wait is repeated")
	}
	n, err := strconv.Atoi(vals[0])
	if err != nil || n < 0 || len(vals[0]) > 6 {
		return 0, badInput("wait must be a whole number of seconds, 0 or more")
	}
	return min(time.Duration(n)*time.Second, m.cfg.requestWait), nil
}

// getRequest serves GET /v1/orderpay/outlets/{outlet}/requests/{id} → {RequestID, State, Answer?}.
func (m *Module) getRequest(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := m.authorize(r); err != nil {
		m.writeAPIError(w, r, err)
		return
	}
	o, err := m.outletByProviderID(ctx, r.PathValue("outlet"))
	if err != nil {
		m.writeAPIError(w, r, err)
		return
	}
	msg, err := m.outbox.GetOutbox(ctx, tenant(o.ID), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		m.writeAPIError(w, r, errs.New(errs.NotFound, "not_found", "no such request"))
		return
	}
	if err != nil {
		m.writeAPIError(w, r, storeError(err))
		return
	}
	m.writeResult(w, msg, true)
}
