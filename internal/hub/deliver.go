package hub

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/metrics"
	"github.com/posgate/posgate/internal/store"
)

// Outbox is the store role the deliverer works with: messages accepted for a peer, claimed by
// the replica that holds the peer's socket.
type Outbox interface {
	ClaimOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*store.OutboxMessage, error)
	ClaimOutboxSent(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*store.OutboxMessage, error)
	CompleteOutboxBatch(ctx context.Context, queue string, ids []string, at time.Time) (int, error)
	ReleaseOutbox(ctx context.Context, owner string) error
	CountOutbox(ctx context.Context, queue string) (int, error)
}

// DeliveryMode says when a delivered message is finished.
type DeliveryMode int

const (
	// AwaitAnswer: a message is marked sent as it is claimed for writing to the socket; the
	// dialect completes it (AnswerOutbox) when the peer answers. Until then it is not written again on the same
	// connection, but is on the next one (orderpay requests).
	AwaitAnswer DeliveryMode = iota + 1
	// DoneWhenWritten: a message written to the socket is done (doshii events).
	DoneWhenWritten
)

// Delivery asks the hub to deliver outbox queues to a connection. Queue names are tenant names
// ("orderpay:<outlet id>", "doshii:<location id>"). Messages are written in queue order, each as
// its stored Payload. When several connections on this replica deliver one queue, a message is
// written to each of them and counts as written when one write succeeded.
type Delivery struct {
	Queues []string
	Mode   DeliveryMode
}

// Notify announces that each of queues has a new message, on every replica (through the event
// bus, which also reaches this one) so the replica holding the peer delivers it now rather than
// at its next poll. Call it after the messages are stored. Several queues share one notice: on
// PostgreSQL each notice is a NOTIFY, a transaction of its own.
func (h *Hub) Notify(ctx context.Context, queues ...string) error {
	if len(queues) == 0 {
		return nil
	}
	if h.o.Events == nil {
		for _, q := range queues {
			h.d.wake(q)
		}
		return nil
	}
	p, _ := json.Marshal(outboxNotice{Queue: queues[0], More: queues[1:]})
	return h.o.Events.Publish(ctx, events.TopicOutbox, p)
}

// outboxNotice names the queues with news: Queue, and any More (a replica that knows only Queue
// wakes that one and finds the others at its next poll).
type outboxNotice struct {
	Queue string   `json:"queue"`
	More  []string `json:"more,omitempty"`
}

func (h *Hub) onOutboxNotice(p []byte) {
	var n outboxNotice
	if json.Unmarshal(p, &n) != nil || n.Queue == "" {
		return
	}
	h.d.wake(n.Queue)
	for _, q := range n.More {
		if q != "" {
			h.d.wake(q)
		}
	}
}

// claimBatch bounds one claim: it is also how many messages of one queue may await their
// answers on one connection before newer ones wait for them.
const claimBatch = 64

type deliverer struct {
	h      *Hub
	mu     sync.Mutex
	queues map[string]*queueState
}

// queueState is the delivery of one queue on this replica, while it has connections.
type queueState struct {
	name    string
	owner   string // lease owner: unique to this delivery
	mode    DeliveryMode
	conns   []*Conn
	running bool // a run is in progress
	again   bool // woken during the run: run once more
	gone    bool // the last connection left
	written map[string]*Conn
}

func newDeliverer(h *Hub) *deliverer {
	return &deliverer{h: h, queues: map[string]*queueState{}}
}

func (d *deliverer) attach(c *Conn) {
	if c.delivery == nil || d.h.o.Outbox == nil {
		return
	}
	d.mu.Lock()
	for _, q := range c.delivery.Queues {
		st := d.queues[q]
		if st == nil {
			st = &queueState{name: q, owner: d.h.o.Replica + "/" + randomID(), mode: c.delivery.Mode}
			d.queues[q] = st
		}
		st.conns = append(st.conns, c)
	}
	d.mu.Unlock()
	for _, q := range c.delivery.Queues {
		d.wake(q)
	}
}

func (d *deliverer) detach(c *Conn) {
	if c.delivery == nil || d.h.o.Outbox == nil {
		return
	}
	var release []*queueState
	d.mu.Lock()
	for _, q := range c.delivery.Queues {
		st := d.queues[q]
		if st == nil {
			continue
		}
		for i, o := range st.conns {
			if o == c {
				st.conns = append(st.conns[:i], st.conns[i+1:]...)
				break
			}
		}
		if len(st.conns) == 0 {
			delete(d.queues, q)
			st.gone = true
			if !st.running {
				release = append(release, &queueState{name: st.name, owner: st.owner})
			}
			continue
		}
		// Other connections stay (a replacement that arrived first, a second socket of the
		// peer): what was written to this one must be written to them, and the delivery's
		// leases would keep it from being claimed again until they run out. So the delivery
		// takes a new owner and gives back the old one's leases.
		release = append(release, &queueState{name: st.name, owner: st.owner})
		st.owner = d.h.o.Replica + "/" + randomID()
	}
	d.mu.Unlock()
	for _, st := range release {
		d.release(st)
	}
}

// release gives back the leases of a delivery whose connections are gone, and announces the
// queue: a newer connection of the peer, here or on another replica, may be waiting for them.
func (d *deliverer) release(st *queueState) {
	ctx, cancel := context.WithTimeout(context.Background(), d.h.o.WriteTimeout)
	defer cancel()
	if err := d.h.o.Outbox.ReleaseOutbox(ctx, st.owner); err != nil {
		d.h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: releasing outbox leases failed", slog.String("error", err.Error()))
		return
	}
	if err := d.h.Notify(ctx, st.name); err != nil {
		d.h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: announcing released messages failed", slog.String("error", err.Error()))
	}
}

// wake starts a delivery run of queue if this replica delivers it.
func (d *deliverer) wake(queue string) {
	if st := d.begin(queue); st != nil {
		go d.run(st)
	}
}

// begin marks queue's delivery as running and returns it, or nil when the queue is not
// delivered here or a run is already going (which is then told to look again).
func (d *deliverer) begin(queue string) *queueState {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.queues[queue]
	if st == nil {
		return nil
	}
	if st.running {
		st.again = true
		return nil
	}
	st.running = true
	return st
}

// run delivers st's queue until it has nothing more to write, then ends the run.
func (d *deliverer) run(st *queueState) {
	for {
		more := d.deliverOnce(st)
		d.mu.Lock()
		if st.gone {
			st.running = false
			owner := st.owner
			d.mu.Unlock()
			d.release(&queueState{name: st.name, owner: owner})
			return
		}
		if !more && !st.again {
			st.running = false
			d.mu.Unlock()
			return
		}
		st.again = false
		d.mu.Unlock()
	}
}

// deliverOnce claims one batch, writes what it has not written yet and then records the
// batch's writes in one store write. It reports whether it made progress on a full batch (so
// another claim may find more).
func (d *deliverer) deliverOnce(st *queueState) bool {
	h := d.h
	ctx := h.bg
	now := h.o.Clock.Now()
	d.mu.Lock()
	owner := st.owner
	d.mu.Unlock()
	claim := h.o.Outbox.ClaimOutbox
	if st.mode == AwaitAnswer {
		claim = h.o.Outbox.ClaimOutboxSent // the claim is the mark: no write after the frames
	}
	msgs, err := claim(ctx, st.name, owner, now, now.Add(h.o.Lease), claimBatch)
	if err != nil {
		if ctx.Err() == nil {
			h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: claiming outbox messages failed", slog.String("error", err.Error()))
		}
		return false
	}
	d.mu.Lock()
	conns := append([]*Conn(nil), st.conns...)
	// Forget what was written on connections that are gone or about messages no longer
	// claimable (answered, expired).
	claimed := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		claimed[m.ID] = true
	}
	for id, c := range st.written {
		if !claimed[id] || !contains(conns, c) {
			delete(st.written, id)
		}
	}
	d.mu.Unlock()
	if len(conns) == 0 {
		return false
	}
	// Each frame is written before the next (queue order, and a connection that fails stops
	// the batch). Events are recorded done all at once afterwards; a message written but not
	// recorded (the process dies, the record fails) is claimed and written again later: at
	// least once, under its own id.
	var written []string
	wrote, stopped := 0, false
	for _, m := range msgs {
		d.mu.Lock()
		_, done := st.written[m.ID]
		d.mu.Unlock()
		if done {
			continue // written on a live connection, awaiting its answer
		}
		c := writeAll(conns, m.Payload)
		if c == nil {
			stopped = true // every connection is closing; detach releases the leases
			break
		}
		wrote++
		c.m.latency.Observe(h.o.Clock.Now().Sub(m.CreatedAt).Seconds())
		if st.mode == AwaitAnswer {
			d.mu.Lock()
			if st.written == nil {
				st.written = map[string]*Conn{}
			}
			st.written[m.ID] = c
			d.mu.Unlock()
		}
		written = append(written, m.ID)
	}
	if st.mode == DoneWhenWritten && len(written) > 0 {
		// One left unchanged moved on meanwhile (expired, completed by another delivery).
		if _, err := h.o.Outbox.CompleteOutboxBatch(ctx, st.name, written, h.o.Clock.Now()); err != nil && ctx.Err() == nil {
			h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: recording an outbox delivery failed", slog.String("error", err.Error()))
		}
	}
	return !stopped && len(msgs) == claimBatch && wrote > 0
}

func contains(cs []*Conn, c *Conn) bool {
	for _, o := range cs {
		if o == c {
			return true
		}
	}
	return false
}

// writeAll writes frame to every connection and waits for the writes; it returns one connection
// that took it, or nil.
func writeAll(conns []*Conn, frame []byte) *Conn {
	type result struct {
		c   *Conn
		err error
	}
	res := make(chan result, len(conns))
	n := 0
	for _, c := range conns {
		if c.Send(frame, func(err error) { res <- result{c, err} }) == nil {
			n++
		}
	}
	var ok *Conn
	for ; n > 0; n-- {
		if r := <-res; r.err == nil && ok == nil {
			ok = r.c
		}
	}
	return ok
}

// poll looks at every local queue (a lost wake-up only delays a message) and updates the outbox
// depth gauge. Expiry and cleanup are the server's housekeeping (the outbox module).
func (d *deliverer) poll(ctx context.Context) {
	ob := d.h.o.Outbox
	if n, err := ob.CountOutbox(ctx, ""); err == nil {
		metrics.OutboxDepth.Set(float64(n))
	}
	d.mu.Lock()
	names := make([]string, 0, len(d.queues))
	for q := range d.queues {
		names = append(names, q)
	}
	d.mu.Unlock()
	// One queue at a time: a poll over thousands of idle queues must not become a burst of
	// thousands of concurrent claims.
	for _, q := range names {
		if ctx.Err() != nil {
			return
		}
		if st := d.begin(q); st != nil {
			d.run(st)
		}
	}
}
