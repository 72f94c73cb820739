package doshii

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/httpx"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/jsonx"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// The platform events API: a platform publishes an event for a location; posgate stores it in the
// outbox before answering 202 and the hub pushes it to the location's live sockets.
//
//	POST /v1/doshii/locations/{location_id}/events {type, data, id?} → 202 {id, state}
//	GET  /v1/doshii/locations/{location_id}/events/{id}             → 200 {id, type, state}
//
// Bearer posgate access token with scope doshii:publish; errors are RFC 6750's
// {"error","error_description"}. One event is two outbox messages: queue "doshii:<location>"
// (the on-premises POS socket) and "doshii-vendor:<vendor>" (the vendor's cloud socket), so each
// kind of socket receives it whichever replica holds it. Both carry the same frame.

// ScopePublish is the scope the events API requires.
const ScopePublish = "doshii:publish"

// maxEventBody caps an event request; the frame must also fit the hub's message limit.
const maxEventBody = 64 << 10

var (
	eventTypePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`)
	eventIDPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
)

// EventOutbox is the store role the events API needs.
type EventOutbox interface {
	GetOutbox(ctx context.Context, queue, id string) (*store.OutboxMessage, error)
}

// eventRequest is the body of POST …/events.
type eventRequest struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	ID   string          `json:"id"`
}

// event is a checked eventRequest: data compacted, id chosen.
type event struct {
	id, typ string
	data    []byte
}

// parseEvent checks a request body. Every refusal is a BadInput error naming the member.
func parseEvent(body []byte, newID func() string) (*event, error) {
	var req eventRequest
	if err := jsonDecode(body, &req); err != nil {
		return nil, err
	}
	switch {
	case !eventTypePattern.MatchString(req.Type):
		return nil, badInput("invalid_request", "type must be 1 to 64 characters: letters, digits, '_', '.', ':' and '-'")
	case req.Type == "message" || req.Type == "health_check":
		return nil, badInput("invalid_request", "type "+req.Type+" is reserved by the socket protocol")
	case req.ID != "" && !eventIDPattern.MatchString(req.ID):
		return nil, badInput("invalid_request", "id must be 1 to 128 characters: letters, digits, '_', '.', ':' and '-'")
	}
	data := bytes.TrimSpace(req.Data)
	if len(data) == 0 || data[0] != '{' {
		return nil, badInput("invalid_request", "data must be a JSON object")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return nil, badInput("invalid_request", "data must be a JSON object")
	}
	ev := &event{id: req.ID, typ: req.Type, data: compact.Bytes()}
	if ev.id == "" {
		ev.id = newID()
	}
	return ev, nil
}

// jsonDecode decodes a strict JSON object (no repeated or unknown member) into v.
func jsonDecode(body []byte, v any) error {
	if len(body) > maxEventBody {
		return errs.New(errs.BadInput, "body_too_large", "request body is too large")
	}
	if !utf8.Valid(body) {
		// encoding/json would turn the bytes into U+FFFD and the POS would get other text.
		return errs.New(errs.BadInput, "invalid_request", "request body is not valid UTF-8")
	}
	if err := jsonx.Decode(body, v, true); err != nil {
		return errs.Wrap(errs.BadInput, "invalid_json", "request body is not a valid event: {type, data, id?}", err)
	}
	return nil
}

func newEventID() string { return secret.NewID("ev_") }

// hash is what makes two publications of one id the same event.
func (ev *event) hash() []byte {
	h := sha256.New()
	h.Write([]byte(ev.typ))
	h.Write([]byte{0})
	h.Write(ev.data)
	return h.Sum(nil)
}

// eventState maps outbox states to the API's: queued | delivered | expired. An event is
// delivered once either socket kind received it; a message still queued past its expiry (not
// swept yet) is expired.
func eventState(now time.Time, msgs ...*store.OutboxMessage) string {
	expired := true
	for _, m := range msgs {
		if m == nil {
			continue
		}
		if m.State == store.OutboxDone {
			return "delivered"
		}
		if m.State != store.OutboxExpired && now.Before(m.ExpiresAt) {
			expired = false
		}
	}
	if expired {
		return "expired"
	}
	return "queued"
}

type eventsAPI struct {
	m     *Module
	ob    EventOutbox
	ttl   time.Duration
	authn *gateway.PosgateAuthenticator
}

// authorize checks the bearer token and its scope; it writes the refusal and returns false.
func (a *eventsAPI) authorize(w http.ResponseWriter, r *http.Request) bool {
	// A token given twice or also in the URL (RFC 6750 §2) is refused before it is looked at.
	if err := gateway.CheckRequestShape(r); err != nil {
		gateway.WriteBearerError(w, "posgate", err)
		return false
	}
	p, err := a.authn.Authenticate(r)
	if err == nil && !p.HasScope(ScopePublish) {
		err = errs.Wrap(errs.Forbidden, "insufficient_scope", "the access token lacks the scope "+ScopePublish,
			&gateway.ScopeError{Required: []string{ScopePublish}})
	}
	if err != nil {
		gateway.WriteBearerError(w, "posgate", err)
		return false
	}
	return true
}

// location returns the location named by the path: a snapshot at most locationCacheTTL old, or
// fresher when a change (disable, enable, deletion) was announced.
func (a *eventsAPI) location(ctx context.Context, id string) (*store.DoshiiLocation, error) {
	l, err := a.m.verifier.locationByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "not_found", "no such location")
	}
	if err != nil {
		return nil, storeError(err)
	}
	return l, nil
}

// publish serves POST /v1/doshii/locations/{location_id}/events.
func (a *eventsAPI) publish(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r) {
		return
	}
	ctx := r.Context()
	if !httpx.IsJSON(r) {
		gateway.WriteBearerError(w, "posgate", errs.New(errs.UnsupportedMediaType, "invalid_request", "Content-Type must be application/json (UTF-8)"))
		return
	}
	body, err := httpx.ReadBody(r, maxEventBody)
	if err != nil {
		gateway.WriteBearerError(w, "posgate", err)
		return
	}
	ev, err := parseEvent(body, newEventID)
	if err != nil {
		gateway.WriteBearerError(w, "posgate", err)
		return
	}
	loc, err := a.location(ctx, r.PathValue("location_id"))
	if err == nil && loc.Disabled {
		err = errs.New(errs.Conflict, "location_disabled", "the location is disabled")
	}
	if err != nil {
		gateway.WriteBearerError(w, "posgate", err)
		return
	}
	now := a.m.svc.Clock.Now().UTC()
	frame := AppendEvent(nil, ev.id, loc.ID, ev.typ, ev.data)
	msgs := []*store.OutboxMessage{
		{Queue: locationTenant(loc.ID), ID: ev.id},
		{Queue: vendorTenant(loc.VendorID), ID: loc.ID + "/" + ev.id},
	}
	for _, m := range msgs {
		m.BodyHash, m.Payload, m.CreatedAt, m.ExpiresAt = ev.hash(), frame, now, now.Add(a.ttl)
	}
	// Both messages in one transaction: a failure stores neither, so a retry — which without an
	// id gets a new one — cannot leave the first socket kind with the event twice.
	// The hub stores both and writes each at once to a socket of its queue this replica holds,
	// or announces it to the replica that does (one notice for both queues).
	stored, _, err := a.m.svc.Hub.EnqueueFor(context.WithoutCancel(ctx), hub.DoneWhenWritten, msgs...)
	if errors.Is(err, store.ErrConflict) {
		gateway.WriteBearerError(w, "posgate", errs.New(errs.Conflict, "conflict", "an event with this id and another body exists"))
		return
	}
	if err != nil {
		gateway.WriteBearerError(w, "posgate", storeError(err))
		return
	}
	httpx.WriteJSON(w, http.StatusAccepted, map[string]string{"id": ev.id, "state": eventState(now, stored...)})
}

// get serves GET /v1/doshii/locations/{location_id}/events/{id}.
func (a *eventsAPI) get(w http.ResponseWriter, r *http.Request) {
	if !a.authorize(w, r) {
		return
	}
	ctx := r.Context()
	loc, err := a.location(ctx, r.PathValue("location_id"))
	if err != nil {
		gateway.WriteBearerError(w, "posgate", err)
		return
	}
	id := r.PathValue("id")
	notFound := errs.New(errs.NotFound, "not_found", "no such event")
	if !eventIDPattern.MatchString(id) {
		gateway.WriteBearerError(w, "posgate", notFound)
		return
	}
	pos, err := a.ob.GetOutbox(ctx, locationTenant(loc.ID), id)
	if errors.Is(err, store.ErrNotFound) {
		gateway.WriteBearerError(w, "posgate", notFound)
		return
	}
	if err != nil {
		gateway.WriteBearerError(w, "posgate", storeError(err))
		return
	}
	cloud, err := a.ob.GetOutbox(ctx, vendorTenant(loc.VendorID), loc.ID+"/"+id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		gateway.WriteBearerError(w, "posgate", storeError(err))
		return
	}
	var head struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(pos.Payload, &head) // our own frame
	httpx.NoStore(w)
	httpx.WriteJSON(w, http.StatusOK, map[string]string{"id": id, "type": head.Type,
		"state": eventState(a.m.svc.Clock.Now(), pos, cloud)})
}
