package orderpay

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/rendezvous"
	"github.com/posgate/posgate/internal/store"
)

// waiters lets an integrator call wait for the answer to its request, whichever replica holds
// the POS socket: the replica that stores an answer announces it on the event bus, with the
// answer itself when it fits, and the rendezvous also rereads the store periodically (backing
// off), so a lost notice only delays the answer.
type waiters struct {
	m  *Module
	rv *rendezvous.Point[*store.OutboxMessage]
}

type answeredNotice struct {
	Queue string `json:"queue"`
	ID    string `json:"id"`
	// Answer is the POS's answer as it sent it, when the notice has room for it (the bus caps a
	// notice at events.MaxPayload): a call waiting on another replica returns it without reading
	// the store. Without it the waiter reads the store.
	Answer *string `json:"answer,omitempty"`
	// Expires is the request's ExpiresAt (unix milliseconds), sent with Answer.
	Expires int64 `json:"expires,omitempty"`
}

// noticeOf is the answered notice of msg, carrying the answer when it fits.
func noticeOf(msg *store.OutboxMessage) []byte {
	n := answeredNotice{Queue: msg.Queue, ID: msg.ID}
	if msg.State == store.OutboxDone && utf8.Valid(msg.Answer) {
		a := string(msg.Answer)
		n.Answer, n.Expires = &a, msg.ExpiresAt.UnixMilli()
		if p, _ := json.Marshal(n); len(p) <= events.MaxPayload {
			return p
		}
		n.Answer, n.Expires = nil, 0
	}
	p, _ := json.Marshal(n)
	return p
}

// onNotice hands an answer carried by a notice to this replica's waiters, or makes them read
// the store when the notice names the request only. With nobody waiting here the notice is not
// even decoded: a call holds before its request is stored, so none can start waiting for this
// answer after its notice. (The replica that stored the answer resolves its own waiters and
// publishes to the others only; a bus without PublishOthers still echoes it here.)
func (ws *waiters) onNotice(p []byte) {
	if ws.rv.Idle() {
		return
	}
	var n answeredNotice
	if json.Unmarshal(p, &n) != nil || n.Queue == "" || n.ID == "" {
		return
	}
	key := waitKey(n.Queue, n.ID)
	if n.Answer == nil {
		ws.rv.Wake(key)
		return
	}
	ws.rv.Resolve(key, &store.OutboxMessage{Queue: n.Queue, ID: n.ID, State: store.OutboxDone,
		Answer: []byte(*n.Answer), ExpiresAt: time.UnixMilli(n.Expires)})
}

// recheckBackoff caps a waiting call's recheck period at this many poll intervals, the longest
// a lost answer notice can delay its answer.
const recheckBackoff = 4

func waitKey(queue, id string) string { return queue + "\x00" + id }

func newWaiters(m *Module) *waiters {
	ws := &waiters{m: m}
	// A recheck reads the store once per waiting call; backing off keeps calls whose answers are
	// slow (a loaded POS or store) from adding reads as they pile up.
	ws.rv = rendezvous.New(ws.check, rendezvous.Options{Recheck: m.cfg.pollInterval, MaxRecheck: recheckBackoff * m.cfg.pollInterval})
	if m.svc.Events != nil {
		m.svc.Events.Subscribe(TopicAnswered, ws.onNotice)
	}
	return ws
}

// check reads a request's outcome from the store: decided once answered or expired.
func (ws *waiters) check(ctx context.Context, key string) (*store.OutboxMessage, bool, error) {
	queue, id, _ := strings.Cut(key, "\x00")
	msg, err := ws.m.outbox.GetOutbox(ctx, queue, id)
	if err != nil {
		return nil, false, err
	}
	return msg, finished(ws.m.svc.Clock.Now(), msg), nil
}

// announce hands msg (answered here) to this replica's waiters and wakes the other replicas'.
func (ws *waiters) announce(ctx context.Context, msg *store.OutboxMessage) {
	ws.rv.Resolve(waitKey(msg.Queue, msg.ID), msg)
	if ws.m.svc.Events == nil {
		return
	}
	p := noticeOf(msg)
	start := ws.m.svc.Clock.Now()
	defer func() { stageAnnounceAnswer.Observe(ws.m.since(start)) }()
	// Called on the goroutine that stored the answer, one of the socket's answersInFlight: the
	// reader has gone on, so waiting here for the notice (on PostgreSQL a NOTIFY transaction,
	// shared with concurrent publishers) delays only this answer's slot. A notice lost with
	// the process only delays the other replica's caller until its recheck. This replica's
	// waiters have the answer already: the notice goes to the others only.
	if err := events.PublishOthers(context.WithoutCancel(ctx), ws.m.svc.Events, TopicAnswered, p); err != nil {
		ws.m.svc.Log.LogAttrs(ctx, slog.LevelWarn, "orderpay: announcing an answer failed", slog.String("error", err.Error()))
	}
}

// hold registers an integrator call as waiting for the answer to (queue, id) before the request
// is stored, so that an answer arriving at any moment after the store reaches it without a read
// of the store (see rendezvous.Point.Hold). It returns nil when the server is shutting down.
func (ws *waiters) hold(queue, id string) *rendezvous.Ticket[*store.OutboxMessage] {
	t, err := ws.rv.Hold(waitKey(queue, id))
	if err != nil {
		return nil
	}
	return t
}

// wait returns the message (queue, id) once it is finished (answered or expired), or as it
// stands when d has passed or ctx ended. t is the call's hold (nil: no wait), stored the message
// as the enqueue returned it.
func (ws *waiters) wait(ctx context.Context, t *rendezvous.Ticket[*store.OutboxMessage], stored *store.OutboxMessage, d time.Duration) (*store.OutboxMessage, error) {
	if t == nil {
		return stored, nil
	}
	msg, err := t.Wait(ctx, d)
	if err == nil {
		return msg, nil
	}
	// Timed out, the caller left, or the server is shutting down: the request stays accepted,
	// and the caller gets its state as it stands.
	return ws.m.outbox.GetOutbox(context.WithoutCancel(ctx), stored.Queue, stored.ID)
}

// errShuttingDown ends the waits of a stopping server.
var errShuttingDown = errors.New("orderpay: shutting down")

// Shutdown answers every waiting integrator call at once with the state of its request (202), so
// a graceful shutdown does not wait out their waits.
func (m *Module) Shutdown(context.Context) error {
	m.waiters.rv.Stop(errShuttingDown)
	return nil
}

// finished reports whether msg will not change any more: answered, or expired (also when its
// expiry passed and no sweep has marked it yet).
func finished(now time.Time, msg *store.OutboxMessage) bool {
	return msg.State == store.OutboxDone || msg.State == store.OutboxExpired || !now.Before(msg.ExpiresAt)
}

// ticketRetention is how long an expired ticket is kept before housekeeping deletes it: only
// for the record (expiry is enforced on use), so its length is no security property.
const ticketRetention = time.Hour

// Maintenance deletes expired tickets.
func (m *Module) Maintenance() []app.Task {
	return []app.Task{{Name: "orderpay expired tickets", Run: func(ctx context.Context) error {
		return m.store.DeleteOrderpayTicketsExpiredBefore(ctx, m.svc.Clock.Now().Add(-ticketRetention))
	}}}
}
