package orderpay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/jsonx"
	"github.com/posgate/posgate/internal/store"
)

// requestFrame is what the POS receives: every field, DeviceID and UserIdentifier "" when the
// caller gave none, in the protocol's PascalCase and order.
type requestFrame struct {
	ProviderID     int64           `json:"ProviderID"`
	ProviderName   string          `json:"ProviderName"`
	DeviceID       string          `json:"DeviceID"`
	UserIdentifier string          `json:"UserIdentifier"`
	MessageType    int64           `json:"MessageType"`
	Payload        json.RawMessage `json:"Payload"`
	RequestID      string          `json:"RequestID"`
}

// answer is what posgate reads of a POS answer; the answer itself is kept as the POS sent it.
type answer struct {
	RequestID string
}

// Flood bounds of one POS connection: messages per second (and burst), and how many answers for
// requests it was never sent it may send before the connection is closed.
const (
	answerRate     = 500
	answerBurst    = 1000
	maxStrayAnswer = 100
)

// errMalformed refuses a message the codec cannot read (closes with 1008).
var errMalformed = &hub.CloseError{Code: hub.CodePolicy, Reason: "malformed message"}

// parseAnswer reads a POS answer: one JSON object, no key repeated (case-insensitively), a
// RequestID that is a non-empty string of at most 256 bytes. Field names are matched
// case-insensitively as in the auth body. Other fields are the POS's and are kept as sent.
func parseAnswer(msg []byte) (answer, error) {
	var a answer
	if err := jsonx.CheckObject(msg); err != nil {
		return a, errMalformed
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(msg, &raw); err != nil {
		return a, errMalformed
	}
	want := jsonx.FoldKey("RequestID")
	for k, v := range raw {
		if jsonx.FoldKey(k) != want {
			continue
		}
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &a.RequestID) != nil {
			return a, errMalformed
		}
	}
	if a.RequestID == "" || len(a.RequestID) > maxRequestID || !utf8.ValidString(a.RequestID) {
		return a, errMalformed
	}
	return a, nil
}

// connHandler is the dialect's side of one POS connection: it matches answers to requests.
type connHandler struct {
	m      *Module
	outlet *store.OrderpayOutlet
	queue  string

	once    sync.Once
	limiter *rate.Limiter
	strays  int // answers for requests this outlet was never sent
}

// HandleMessage stores a POS answer against the request it names and wakes whoever waits for
// it. An answer for a RequestID the outlet was never sent is dropped, counted and logged without
// its payload; a connection that keeps sending them, or floods, is closed with 1008.
func (h *connHandler) HandleMessage(ctx context.Context, c *hub.Conn, msg []byte) error {
	h.once.Do(func() { h.limiter = rate.NewLimiter(answerRate, answerBurst) })
	if !h.limiter.Allow() {
		messagesDropped.WithLabelValues("flood").Inc()
		return &hub.CloseError{Code: hub.CodePolicy, Reason: "too many messages"}
	}
	a, err := parseAnswer(msg)
	if err != nil {
		messagesDropped.WithLabelValues("malformed").Inc()
		return err
	}
	m := h.m
	got, err := m.outbox.AnswerOutbox(ctx, h.queue, a.RequestID, bytes.Clone(msg), m.svc.Clock.Now().UTC())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return h.stray(ctx, c, "unknown")
	case errors.Is(err, store.ErrAlreadyUsed):
		// A duplicate (the POS retried) or too late: the first answer stands.
		messagesDropped.WithLabelValues("duplicate").Inc()
		return nil
	case err != nil:
		return h.storeFailed(ctx, err)
	}
	answersStored.Inc()
	m.waiters.announce(ctx, got)
	return nil
}

func (h *connHandler) stray(ctx context.Context, c *hub.Conn, why string) error {
	messagesDropped.WithLabelValues(why).Inc()
	h.strays++
	// The RequestID is the POS's text: its length is logged, never the id or the payload.
	h.m.svc.Log.LogAttrs(ctx, slog.LevelWarn, "orderpay: answer for a request this outlet was not sent; dropped",
		slog.String("outlet", h.outlet.ID), slog.String("conn", c.ID()))
	if h.strays > maxStrayAnswer {
		return &hub.CloseError{Code: hub.CodePolicy, Reason: "too many answers to unknown requests"}
	}
	return nil
}

// storeFailed keeps the connection open when the store is briefly away: the answer is lost
// here, the request stays sent, and the caller gets 202 and can look again.
func (h *connHandler) storeFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	h.m.svc.Log.LogAttrs(ctx, slog.LevelError, "orderpay: storing a POS answer failed",
		slog.String("outlet", h.outlet.ID), slog.String("error", err.Error()))
	return nil
}
