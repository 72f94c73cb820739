package orderpay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
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

// Flood bounds of one POS connection: messages per second (and burst) beyond those the
// connection was sent, and how many answers for requests it was never sent it may send before
// the connection is closed. A POS answering every request it is sent is never limited, however
// busy its outlet: the rate bounds only what it sends unasked.
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
//
// After CheckObject no two keys are the same under jsonx.FoldKey, which folds at least as much
// as encoding/json does when it matches a key to a field: so the key encoding/json decodes into
// RequestID, when there is one, is the one key parseAnswerKeys would find, and reading it costs
// no map of every field. A message in which encoding/json finds none (a key only FoldKey
// matches, such as one spelt with U+0130, or no RequestID at all) is read key by key.
func parseAnswer(msg []byte) (answer, error) {
	if err := jsonx.CheckObject(msg); err != nil {
		return answer{}, errMalformed
	}
	var f struct{ RequestID json.RawMessage }
	if err := json.Unmarshal(msg, &f); err != nil {
		return answer{}, errMalformed
	}
	if f.RequestID == nil {
		return parseAnswerKeys(msg)
	}
	return answerWithID(f.RequestID)
}

// parseAnswerKeys is parseAnswer reading every key of msg, which CheckObject has accepted.
func parseAnswerKeys(msg []byte) (answer, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(msg, &raw); err != nil {
		return answer{}, errMalformed
	}
	want := jsonx.FoldKey("RequestID")
	var id json.RawMessage
	for k, v := range raw {
		if jsonx.FoldKey(k) == want {
			id = v
		}
	}
	return answerWithID(id)
}

// answerWithID checks the RequestID value v as the message has it (nil when it has none).
func answerWithID(v json.RawMessage) (answer, error) {
	var a answer
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &a.RequestID) != nil {
		return a, errMalformed
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
	strays  atomic.Int32  // answers for requests this outlet was never sent
	read    atomic.Uint64 // messages read from the POS on this connection
	slots   chan struct{} // answers being stored

	mu      sync.Mutex
	storing map[string]chan struct{} // RequestID → closed when its answer being stored is done
}

// answersInFlight bounds the answers of one socket stored at once. The hub hands a socket's
// messages over one at a time; storing each answer before reading the next made a busy outlet's
// answers wait for one commit each in turn, so a socket could not be answered faster than the
// store commits. Answers to different requests are independent; two answers to one request are
// stored one after the other, so the first the POS sent stands.
const answersInFlight = 32

// answerTimeout bounds the storing of an answer that outlives its connection.
const answerTimeout = 10 * time.Second

// HandleMessage stores a POS answer against the request it names and wakes whoever waits for
// it. An answer for a RequestID the outlet was never sent is dropped, counted and logged without
// its payload; a connection that keeps sending them, or floods, is closed with 1008. The answer
// is stored on its own goroutine (at most answersInFlight at once; the reader waits beyond
// that), so the reader goes on with the next one.
func (h *connHandler) HandleMessage(ctx context.Context, c *hub.Conn, msg []byte) error {
	h.once.Do(func() {
		h.limiter = rate.NewLimiter(answerRate, answerBurst)
		h.slots = make(chan struct{}, answersInFlight)
		h.storing = map[string]chan struct{}{}
	})
	if !h.allow(c.Sent()) {
		messagesDropped.WithLabelValues("flood").Inc()
		return &hub.CloseError{Code: hub.CodePolicy, Reason: "too many messages"}
	}
	a, err := parseAnswer(msg)
	if err != nil {
		messagesDropped.WithLabelValues("malformed").Inc()
		return err
	}
	read := h.m.svc.Clock.Now()
	body := bytes.Clone(msg)
	h.mu.Lock()
	before := h.storing[a.RequestID]
	mine := make(chan struct{})
	h.storing[a.RequestID] = mine
	h.mu.Unlock()
	h.slots <- struct{}{}
	// The answer was received: it is stored even if the connection goes meanwhile.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), answerTimeout)
	// On a hub worker: a goroutine of its own per answer would grow its stack through the
	// store write every time.
	h.m.hub.Go(func() {
		defer func() {
			cancel()
			h.mu.Lock()
			if h.storing[a.RequestID] == mine {
				delete(h.storing, a.RequestID)
			}
			h.mu.Unlock()
			close(mine)
			<-h.slots
		}()
		if before != nil {
			<-before // an earlier answer to the same request goes first
		}
		stageAnswerQueue.Observe(h.m.since(read))
		if cerr := h.store(sctx, c, a.RequestID, body); cerr != nil {
			c.Close(cerr.Code, cerr.Reason)
		}
	})
	return nil
}

// allow counts one message read from the POS, sent being the frames the connection has begun
// sending it. Up to one message per frame sent is an answer it was asked for; only the messages
// beyond that count against the rate.
func (h *connHandler) allow(sent uint64) bool {
	return h.read.Add(1) <= sent || h.limiter.Allow()
}

// store stores one answer; a *hub.CloseError asks to close the connection.
func (h *connHandler) store(ctx context.Context, c *hub.Conn, requestID string, body []byte) *hub.CloseError {
	m := h.m
	start := m.svc.Clock.Now()
	got, err := m.outbox.AnswerOutbox(ctx, h.queue, requestID, body, start.UTC())
	stageStoreAnswer.Observe(m.since(start))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return h.stray(ctx, c, "unknown")
	case errors.Is(err, store.ErrAlreadyUsed):
		// A duplicate (the POS retried) or too late: the first answer stands.
		messagesDropped.WithLabelValues("duplicate").Inc()
		return nil
	case err != nil:
		h.storeFailed(ctx, err)
		return nil
	}
	answersStored.Inc()
	m.waiters.announce(ctx, got)
	return nil
}

func (h *connHandler) stray(ctx context.Context, c *hub.Conn, why string) *hub.CloseError {
	messagesDropped.WithLabelValues(why).Inc()
	// The RequestID is the POS's text: its length is logged, never the id or the payload.
	h.m.svc.Log.LogAttrs(ctx, slog.LevelWarn, "orderpay: answer for a request this outlet was not sent; dropped",
		slog.String("outlet", h.outlet.ID), slog.String("conn", c.ID()))
	if h.strays.Add(1) > maxStrayAnswer {
		return &hub.CloseError{Code: hub.CodePolicy, Reason: "too many answers to unknown requests"}
	}
	return nil
}

// storeFailed keeps the connection open when the store is briefly away: the answer is lost
// here, the request stays sent, and the caller gets 202 and can look again.
func (h *connHandler) storeFailed(ctx context.Context, err error) {
	h.m.svc.Log.LogAttrs(ctx, slog.LevelError, "orderpay: storing a POS answer failed",
		slog.String("outlet", h.outlet.ID), slog.String("error", err.Error()))
}
