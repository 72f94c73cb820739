package hub

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/metrics"
	"github.com/posgate/posgate/internal/store"
)

// Outbox is the store role the deliverer works with: messages accepted for a peer, claimed by
// the replica that holds the peer's socket.
type Outbox interface {
	EnqueueOutboxHeld(ctx context.Context, msgs []*store.OutboxMessage, holds []*store.OutboxHold) ([]*store.OutboxMessage, []bool, error)
	ClaimOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*store.OutboxMessage, error)
	ClaimOutboxSent(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*store.OutboxMessage, error)
	RenewOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time) ([]string, error)
	CompleteOutboxBatch(ctx context.Context, queue string, ids []string, at time.Time) (int, error)
	ReleaseOutbox(ctx context.Context, queue, owner string) error
	CountOutbox(ctx context.Context, queue string) (int, error)
	ListOutboxClaimable(ctx context.Context, now time.Time) ([]string, error)
}

// completingOutbox is an Outbox that can complete messages in the transaction of an enqueue
// (the SQL stores' EnqueueOutboxCompleting): the done marks of events written to their sockets
// then ride on the next enqueue of their queue.
type completingOutbox interface {
	EnqueueOutboxCompleting(ctx context.Context, msgs []*store.OutboxMessage, holds []*store.OutboxHold, done []store.OutboxCompletion, at time.Time) ([]*store.OutboxMessage, []bool, error)
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
// wakes that one and finds the others at its next poll). Held carries messages stored already
// taken by a delivery (Hub.Enqueue's hand-off): the replica of that delivery writes them.
type outboxNotice struct {
	Queue string         `json:"queue,omitempty"`
	More  []string       `json:"more,omitempty"`
	Held  []handedNotice `json:"held,omitempty"`
}

// handedNotice is one message handed to a delivery, as the notice carries it. Payload is the
// message's payload as a JSON string (json.RawMessage when sent: it was encoded once to check
// its size, and string when read).
type handedNotice struct {
	Queue   string `json:"queue"`
	ID      string `json:"id"`
	Seq     int64  `json:"seq"`
	Owner   string `json:"owner"`
	Payload any    `json:"payload"`
	Created int64  `json:"created"` // unix milliseconds
	Expires int64  `json:"expires"`
	Sent    bool   `json:"sent,omitempty"`
}

func (h *Hub) onOutboxNotice(p []byte) {
	var n outboxNotice
	if json.Unmarshal(p, &n) != nil {
		return
	}
	if n.Queue != "" {
		h.d.wake(n.Queue)
	}
	for _, q := range n.More {
		if q != "" {
			h.d.wake(q)
		}
	}
	for _, hn := range n.Held {
		payload, ok := hn.Payload.(string)
		if !ok || hn.Queue == "" || hn.ID == "" || hn.Owner == "" || payload == "" {
			continue
		}
		m := &store.OutboxMessage{Queue: hn.Queue, ID: hn.ID, Seq: hn.Seq, Payload: []byte(payload),
			State: store.OutboxQueued, CreatedAt: time.UnixMilli(hn.Created), ExpiresAt: time.UnixMilli(hn.Expires),
			Attempts: 1, LeaseOwner: hn.Owner}
		if hn.Sent {
			m.State = store.OutboxSent
		}
		h.d.handedOver(m)
	}
}

// handedOver writes m, stored taken by the delivery m.LeaseOwner on another replica's enqueue,
// if that delivery is this replica's: at once when nothing of its queue waits to be written
// before it, else first thing in the queue's next run (as Hub.Enqueue's local fast path). A
// message handed to a delivery of this replica that has ended or changed owner meanwhile is
// given back, so another delivery claims it now rather than after its lease.
func (d *deliverer) handedOver(m *store.OutboxMessage) {
	d.mu.Lock()
	st := d.queues[m.Queue]
	if st == nil || st.gone || st.owner != m.LeaseOwner {
		d.mu.Unlock()
		if strings.HasPrefix(m.LeaseOwner, d.h.o.Replica+"/") {
			go d.release(&queueState{name: m.Queue, owner: m.LeaseOwner})
		}
		return
	}
	if len(st.conns) == 1 && !st.writing && len(st.handoff) == 0 && st.conns[0].roomy() {
		d.sendHeld(st, st.conns[0], m)
		d.mu.Unlock()
		return
	}
	st.handoff = append(st.handoff, m)
	slices.SortFunc(st.handoff, func(a, b *store.OutboxMessage) int { return cmp.Compare(a.Seq, b.Seq) })
	attached := len(st.conns) > 0
	d.mu.Unlock()
	if attached {
		d.wake(m.Queue)
	}
}

// claimBatch bounds one claim: it is also how many messages of one queue may await their
// answers on one connection before newer ones wait for them.
const claimBatch = 64

type deliverer struct {
	h       *Hub
	mu      sync.Mutex
	queues  map[string]*queueState
	depthAt time.Time // the last count for the depth gauge (poll's own: not under mu)
}

// queueState is the delivery of one queue on this replica, while it has connections.
//
// Frames of one queue reach a connection in queue order because every write of the queue is
// handed to the connection (Conn.Send, whose queue is first in, first out) either by the one
// run of the deliverer or, on the fast path (Hub.Enqueue), under d.mu while no run is between
// its claim and its last write (writing) and nothing waits in handoff — checked before the held
// insert and again after it, with gen telling whether a claim started in between.
type queueState struct {
	name    string
	owner   string // lease owner: unique to this delivery
	mode    DeliveryMode
	conns   []*Conn
	running bool // a run is in progress
	again   bool // woken during the run: run once more
	gone    bool // the last connection left
	// written: messages awaiting answers (AwaitAnswer) by the connection they were written to,
	// so a lapsed lease claimed again is not written twice to one connection. Entries of
	// answered messages go at the next lease renewal, which returns what is still held.
	written map[string]*Conn
	writing bool                   // a run is between its claim and its last write
	gen     uint64                 // claims started
	handoff []*store.OutboxMessage // held by owner on the fast path, to be written by the next run first
	done    []string               // written on the fast path, to be completed (DoneWhenWritten)
	flush   bool                   // a completion of done is armed (Options.DoneDelay) or running
	unknown map[string]bool        // held at the last renewal, never handed over here (renew)
}

func newDeliverer(h *Hub) *deliverer {
	return &deliverer{h: h, queues: map[string]*queueState{}}
}

// prepare makes sure each queue c delivers has a delivery on this replica, before c's presence
// is recorded. A new delivery's lease owner is the one presence names for c
// (store.PresenceOwner), so another replica can store a message already taken by it. c joins
// it in attach, once the dialect has opened the connection.
func (d *deliverer) prepare(c *Conn) {
	if c.delivery == nil || d.h.o.Outbox == nil {
		return
	}
	d.mu.Lock()
	for _, q := range c.delivery.Queues {
		if d.queues[q] == nil {
			d.queues[q] = &queueState{name: q, owner: store.PresenceOwner(d.h.o.Replica, c.id), mode: c.delivery.Mode}
		}
	}
	d.mu.Unlock()
}

func (d *deliverer) attach(c *Conn) {
	if c.delivery == nil || d.h.o.Outbox == nil {
		return
	}
	var runs []*queueState
	d.mu.Lock()
	for _, q := range c.delivery.Queues {
		st := d.queues[q]
		if st == nil {
			st = &queueState{name: q, owner: store.PresenceOwner(d.h.o.Replica, c.id), mode: c.delivery.Mode}
			d.queues[q] = st
		}
		st.conns = append(st.conns, c)
		// A run starts as the connection joins (as wake would, in the same critical section).
		if st.running {
			st.again = true
		} else {
			st.running = true
			runs = append(runs, st)
		}
	}
	d.mu.Unlock()
	for _, st := range runs {
		go d.run(st)
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
		// What was written to c alone must be written to the others.
		for id, w := range st.written {
			if w == c {
				delete(st.written, id)
			}
		}
		// Events written but not yet recorded are completed before their leases are given back,
		// or the next connection would get them again.
		done := st.done
		st.done = nil
		if len(st.conns) == 0 {
			delete(d.queues, q)
			st.gone = true
			if !st.running {
				release = append(release, &queueState{name: st.name, owner: st.owner, done: done})
			} else if len(done) > 0 {
				d.h.Go(func() { d.complete(st.name, done) })
			}
			continue
		}
		// Other connections stay (a replacement that arrived first, a second socket of the
		// peer): what was written to this one must be written to them, and the delivery's
		// leases would keep it from being claimed again until they run out. So the delivery
		// takes a new owner and gives back the old one's leases.
		release = append(release, &queueState{name: st.name, owner: st.owner, done: done})
		st.owner = d.nextOwner(st)
	}
	d.mu.Unlock()
	for _, st := range release {
		d.release(st)
	}
}

// nextOwner is the lease owner a delivery takes when a connection leaves it and others stay:
// the one presence names for its newest connection, so hand-offs from other replicas go on
// reaching it, unless that is the owner it had (then a fresh one). d.mu is held.
func (d *deliverer) nextOwner(st *queueState) string {
	newest := st.conns[0]
	for _, c := range st.conns[1:] {
		if olderThan(newest.since, newest.id, c.since, c.id) {
			newest = c
		}
	}
	if o := store.PresenceOwner(d.h.o.Replica, newest.id); o != st.owner {
		return o
	}
	return d.h.o.Replica + "/" + randomID()
}

// release gives back the leases of a delivery whose connections are gone, and announces the
// queue: a newer connection of the peer, here or on another replica, may be waiting for them.
func (d *deliverer) release(st *queueState) {
	d.complete(st.name, st.done)
	ctx, cancel := context.WithTimeout(context.Background(), d.h.o.WriteTimeout)
	defer cancel()
	if err := d.h.o.Outbox.ReleaseOutbox(ctx, st.name, st.owner); err != nil {
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
	if len(st.conns) == 0 {
		// Prepared, not attached yet: attach wakes it; what was handed over waits for it.
		d.mu.Unlock()
		return false
	}
	owner := st.owner
	st.writing = true
	st.gen++
	// Messages the fast path stored held by this delivery while a run was writing: they come
	// before anything the claim can return (see Hub.Enqueue). Those of an owner since replaced
	// were released with it and are claimed again instead.
	var msgs []*store.OutboxMessage
	for _, m := range st.handoff {
		if m.LeaseOwner == owner {
			msgs = append(msgs, m)
		}
	}
	st.handoff = nil
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		st.writing = false
		d.mu.Unlock()
	}()
	claim := h.o.Outbox.ClaimOutbox
	if st.mode == AwaitAnswer {
		claim = h.o.Outbox.ClaimOutboxSent // the claim is the mark: no write after the frames
	}
	claimed, err := claim(ctx, st.name, owner, now, now.Add(h.o.Lease), claimBatch)
	if err != nil {
		if ctx.Err() == nil {
			h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: claiming outbox messages failed", slog.String("error", err.Error()))
		}
		claimed = nil
		if len(msgs) == 0 {
			return false
		}
	}
	msgs = append(msgs, claimed...)
	d.mu.Lock()
	conns := append([]*Conn(nil), st.conns...)
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
			// Not for a connection detached meanwhile (the peer may have read the frame
			// and reconnected already): detach forgot what was written to it, and the
			// message, given back with its leases, must be written to the others.
			if slices.Contains(st.conns, c) {
				st.written[m.ID] = c
			}
			d.mu.Unlock()
		}
		written = append(written, m.ID)
	}
	d.mu.Lock()
	st.writing = false // every frame is handed over: the fast path may write again
	// A connection left while the claim ran and the delivery took a new owner: the old
	// owner's leases were given back, maybe before this claim took some under it. Those
	// would stop every claim of the new owner for a lease: give them back too.
	rotated := st.owner != owner
	d.mu.Unlock()
	if st.mode == DoneWhenWritten && len(written) > 0 {
		// One left unchanged moved on meanwhile (expired, completed by another delivery).
		if _, err := h.o.Outbox.CompleteOutboxBatch(ctx, st.name, written, h.o.Clock.Now()); err != nil && ctx.Err() == nil {
			h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: recording an outbox delivery failed", slog.String("error", err.Error()))
		}
	}
	if rotated && len(claimed) > 0 {
		d.release(&queueState{name: st.name, owner: owner})
	}
	return !stopped && len(claimed) == claimBatch && wrote > 0
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

// depthEvery bounds how often a replica counts the open messages for the outbox depth gauge.
// The count reads every open message: a queue no socket takes (a doshii vendor without a cloud
// socket) holds doshii.event_ttl × the event rate of them, 600 000 at 1 000 events/s, and a count
// at every poll (5 s) of every replica was a burst of PostgreSQL work that grew with it.
const depthEvery = time.Minute

// poll runs the delivery of every local queue that has something to claim or hand over (a lost
// wake-up only delays a message) and, at most every depthEvery, updates the outbox depth gauge.
// Which queues have claimable messages is one read: an idle socket's queue costs no claim (on
// SQLite a write) per poll. Expiry and cleanup are the server's housekeeping (the outbox
// module). Only the maintenance goroutine polls.
func (d *deliverer) poll(ctx context.Context) {
	ob := d.h.o.Outbox
	if now := d.h.o.Clock.Now(); d.depthAt.IsZero() || now.Sub(d.depthAt) >= depthEvery {
		d.depthAt = now
		if n, err := ob.CountOutbox(ctx, ""); err == nil {
			metrics.OutboxDepth.Set(float64(n))
		}
	}
	claimable, err := ob.ListOutboxClaimable(ctx, d.h.o.Clock.Now())
	if err != nil {
		if ctx.Err() == nil {
			d.h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: listing claimable outbox queues failed", slog.String("error", err.Error()))
		}
		return
	}
	due := make(map[string]bool, len(claimable))
	for _, q := range claimable {
		due[q] = true
	}
	d.mu.Lock()
	var names []string
	for q, st := range d.queues {
		if due[q] || len(st.handoff) > 0 {
			names = append(names, q)
		}
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

// Enqueue stores msgs in the outbox, in one transaction (as the store's EnqueueOutboxAll: all or
// none, idempotent by queue and id, ErrConflict with the stored message first on another body),
// and sees them delivered. A new message whose queue this replica delivers to exactly one live
// connection goes the fast way: the insert stores it already taken by that delivery (claimed,
// and sent for AwaitAnswer) and it is handed to the connection at once — no wake-up, no claim.
// The store takes it only when nothing older of the queue is open except what this delivery
// holds, and the hub hands it over only when everything this delivery holds was handed over
// before (else the deliverer writes it first thing in its next run), so a message never
// overtakes an older one. The other new messages are announced (Notify), as before.
func (h *Hub) Enqueue(ctx context.Context, msgs ...*store.OutboxMessage) ([]*store.OutboxMessage, []bool, error) {
	return h.EnqueueFor(ctx, 0, msgs...)
}

// EnqueueFor is Enqueue for messages whose queues are delivered in mode. With Options.HandOff, a
// new message whose queue this replica does not deliver is stored taken by the delivery presence
// names for the queue, if the store finds one and nothing older of the queue is open but what
// that delivery holds (the insert decides both), and the notice carries it to that delivery's
// replica, which writes it without a claim. A message too large for a notice, or mode 0, is
// stored queued and announced as before. If that replica died, the lease runs out and the
// message is claimed again, as any message of a dead replica's delivery.
func (h *Hub) EnqueueFor(ctx context.Context, mode DeliveryMode, msgs ...*store.OutboxMessage) ([]*store.OutboxMessage, []bool, error) {
	ob := h.o.Outbox
	if ob == nil {
		return nil, nil, errors.New("hub: no outbox")
	}
	type fast struct {
		st    *queueState
		c     *Conn
		owner string
		gen   uint64
	}
	var holds []*store.OutboxHold
	var fasts []fast
	var payloads []json.RawMessage // of the messages handed over by presence, as notices carry them
	now := h.o.Clock.Now()
	d := h.d
	d.mu.Lock()
	for i, m := range msgs {
		st := d.queues[m.Queue]
		if st == nil && h.o.HandOff && mode != 0 {
			if p, ok := handOffPayload(m.Payload); ok {
				if holds == nil {
					holds = make([]*store.OutboxHold, len(msgs))
					fasts = make([]fast, len(msgs))
				}
				if payloads == nil {
					payloads = make([]json.RawMessage, len(msgs))
				}
				holds[i] = &store.OutboxHold{Present: true, SeenSince: now.Add(-h.PresenceStale()),
					LeaseUntil: maxTime(now, m.CreatedAt).Add(h.o.Lease), Sent: mode == AwaitAnswer}
				payloads[i] = p
			}
			continue
		}
		if st == nil || st.gone || st.writing || len(st.handoff) > 0 || len(st.conns) != 1 {
			continue
		}
		if holds == nil {
			holds = make([]*store.OutboxHold, len(msgs))
			fasts = make([]fast, len(msgs))
		}
		// The lease starts at the message's creation, the time the store decides at.
		holds[i] = &store.OutboxHold{Owner: st.owner, LeaseUntil: maxTime(now, m.CreatedAt).Add(h.o.Lease), Sent: st.mode == AwaitAnswer}
		fasts[i] = fast{st: st, c: st.conns[0], owner: st.owner, gen: st.gen}
	}
	var done []store.OutboxCompletion
	var doneOf []*queueState
	co, completing := ob.(completingOutbox)
	if completing {
		done, doneOf = d.takeDone(msgs)
	}
	d.mu.Unlock()
	var stored []*store.OutboxMessage
	var created []bool
	var err error
	if len(done) > 0 {
		stored, created, err = co.EnqueueOutboxCompleting(ctx, msgs, holds, done, now)
	} else {
		stored, created, err = ob.EnqueueOutboxHeld(ctx, msgs, holds)
	}
	if err != nil {
		if len(done) > 0 {
			// Nothing was completed: the ids wait for the next enqueue or the delayed write.
			var arm []*queueState
			d.mu.Lock()
			for i, st := range doneOf {
				st.done = append(done[i].IDs, st.done...)
				if d.armLocked(st) {
					arm = append(arm, st)
				}
			}
			d.mu.Unlock()
			for _, st := range arm {
				d.startFlush(st)
			}
		}
		return stored, created, err
	}
	var notify, release []string
	var releaseOwners []string
	var handed []handedNotice
	for i, m := range stored {
		if !created[i] {
			continue
		}
		if holds != nil && holds[i] != nil && holds[i].Present {
			if m.LeaseOwner == "" {
				notify = append(notify, m.Queue)
				continue
			}
			handed = append(handed, handedNotice{Queue: m.Queue, ID: m.ID, Seq: m.Seq, Owner: m.LeaseOwner,
				Payload: payloads[i], Created: m.CreatedAt.UnixMilli(), Expires: m.ExpiresAt.UnixMilli(), Sent: m.State == store.OutboxSent})
			continue
		}
		if holds == nil || holds[i] == nil || m.LeaseOwner != holds[i].Owner {
			notify = append(notify, m.Queue)
			continue
		}
		f := fasts[i]
		d.mu.Lock()
		switch {
		case f.st.gone || f.st.owner != f.owner:
			// The delivery ended or changed owner meanwhile; its leases were given back, maybe
			// before this one was stored: give it back again and announce it.
			release, releaseOwners = append(release, m.Queue), append(releaseOwners, f.owner)
		case f.st.writing || f.st.gen != f.gen || len(f.st.handoff) > 0 || len(f.st.conns) != 1 || f.st.conns[0] != f.c || !f.c.roomy():
			// A run claimed meanwhile: what it took may be older; it writes this one next (and
			// a connection with a busy send queue gets it from the run, write by write).
			f.st.handoff = append(f.st.handoff, m)
			slices.SortFunc(f.st.handoff, func(a, b *store.OutboxMessage) int { return cmp.Compare(a.Seq, b.Seq) })
		default:
			d.sendHeld(f.st, f.c, m)
			d.mu.Unlock()
			continue
		}
		d.mu.Unlock()
		d.wake(m.Queue)
	}
	for i, q := range release {
		d.release(&queueState{name: q, owner: releaseOwners[i]})
	}
	if len(notify) > 0 || len(handed) > 0 {
		if err := h.announce(context.WithoutCancel(ctx), notify, handed); err != nil {
			// The holder of the socket polls too, and a hand-off whose notice is lost is
			// found by the holder's lease renewal or claimed after its lease: it only delays.
			h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: announcing outbox messages failed", slog.String("error", err.Error()))
		}
	}
	return stored, created, nil
}

// handOffPayload returns payload as a notice carries it (a JSON string), and whether it is
// small enough for a notice with the message's other fields, and text (a notice is text).
func handOffPayload(payload []byte) (json.RawMessage, bool) {
	if !utf8.Valid(payload) {
		return nil, false
	}
	p, err := json.Marshal(string(payload))
	return p, err == nil && len(p) <= events.MaxPayload-handOffRoom
}

// handOffRoom is what a handed-over message's notice keeps for its fields besides the payload
// (queue and id are short texts: an outlet or location id, a RequestID or event id).
const handOffRoom = 1024

// announce publishes one notice naming queues and carrying handed, or, when that is too large
// for the bus, one for the queues and one per handed-over message.
func (h *Hub) announce(ctx context.Context, queues []string, handed []handedNotice) error {
	if len(handed) == 0 {
		return h.Notify(ctx, queues...)
	}
	if h.o.Events == nil {
		return errors.New("hub: a hand-off needs the event bus")
	}
	n := outboxNotice{Held: handed}
	if len(queues) > 0 {
		n.Queue, n.More = queues[0], queues[1:]
	}
	p, _ := json.Marshal(n)
	if len(p) <= events.MaxPayload {
		if op, ok := h.o.Events.(events.OthersPublisher); ok && len(queues) == 0 && !h.holdsAny(handed) {
			// Every message went to another replica's delivery: this replica's own subscriber
			// would decode the notice to do nothing, once per request.
			return op.PublishOthers(ctx, events.TopicOutbox, p)
		}
		return h.o.Events.Publish(ctx, events.TopicOutbox, p)
	}
	err := h.Notify(ctx, queues...)
	for _, hn := range handed {
		p, _ := json.Marshal(outboxNotice{Held: []handedNotice{hn}})
		err = errors.Join(err, h.o.Events.Publish(ctx, events.TopicOutbox, p))
	}
	return err
}

// holdsAny reports whether a message of handed went to a delivery of this replica (presence
// may still name one that has ended: handedOver gives its lease back).
func (h *Hub) holdsAny(handed []handedNotice) bool {
	for _, hn := range handed {
		if strings.HasPrefix(hn.Owner, h.o.Replica+"/") {
			return true
		}
	}
	return false
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sendHeld hands m, stored held by st's delivery, to c; d.mu is held. A write that fails closes
// the connection, whose detach gives the lease back. An event written is completed with the
// others written about then, in one store write (done mark batched); one not completed when the
// process dies is delivered again after its lease, under its id.
func (d *deliverer) sendHeld(st *queueState, c *Conn, m *store.OutboxMessage) {
	h := d.h
	created := m.CreatedAt
	if st.mode == AwaitAnswer {
		if st.written == nil {
			st.written = map[string]*Conn{}
		}
		st.written[m.ID] = c
	}
	id := m.ID
	_ = c.Send(m.Payload, func(err error) {
		if err != nil {
			return
		}
		c.m.latency.Observe(h.o.Clock.Now().Sub(created).Seconds())
		if st.mode == DoneWhenWritten {
			d.completeLater(st, id)
		}
	})
}

// completeLater records id as written. The ids recorded ride on the next enqueue of the queue
// (Hub.Enqueue, when the outbox can complete in an enqueue's transaction); those still recorded
// DoneDelay after the first of them are completed by one write, which takes every id recorded
// meanwhile.
func (d *deliverer) completeLater(st *queueState, id string) {
	d.mu.Lock()
	st.done = append(st.done, id)
	start := d.armLocked(st)
	d.mu.Unlock()
	if start {
		d.startFlush(st)
	}
}

// armLocked reports whether st has done ids and no completion armed, and marks one armed; d.mu
// is held. The caller then calls startFlush.
func (d *deliverer) armLocked(st *queueState) bool {
	if st.flush || len(st.done) == 0 {
		return false
	}
	st.flush = true
	return true
}

// startFlush completes st's done ids after DoneDelay when they may ride on an enqueue meanwhile,
// else at once.
func (d *deliverer) startFlush(st *queueState) {
	if _, ok := d.h.o.Outbox.(completingOutbox); ok {
		time.AfterFunc(d.h.o.DoneDelay, func() { d.h.Go(func() { d.flushDone(st) }) })
		return
	}
	d.h.Go(func() { d.flushDone(st) })
}

func (d *deliverer) flushDone(st *queueState) {
	for {
		d.mu.Lock()
		ids := st.done
		st.done = nil
		if len(ids) == 0 {
			st.flush = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
		d.complete(st.name, ids)
	}
}

// complete records ids of queue as done, claimBatch at a time.
func (d *deliverer) complete(queue string, ids []string) {
	h := d.h
	for len(ids) > 0 {
		n := min(len(ids), claimBatch)
		// Not the hub's context: a shutdown still records what was written.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(h.bg), h.o.WriteTimeout)
		_, err := h.o.Outbox.CompleteOutboxBatch(ctx, queue, ids[:n], h.o.Clock.Now())
		cancel()
		if err != nil {
			h.o.Log.LogAttrs(h.bg, slog.LevelWarn, "hub: recording an outbox delivery failed", slog.String("error", err.Error()))
		}
		ids = ids[n:]
	}
}

// takeDone takes the recorded done ids of the queues of msgs (at most claimBatch per queue) for
// an enqueue to complete; d.mu is held.
func (d *deliverer) takeDone(msgs []*store.OutboxMessage) (done []store.OutboxCompletion, from []*queueState) {
	for _, m := range msgs {
		st := d.queues[m.Queue]
		if st == nil || len(st.done) == 0 {
			continue
		}
		n := min(len(st.done), claimBatch)
		done = append(done, store.OutboxCompletion{Queue: st.name, IDs: st.done[:n:n]})
		from = append(from, st)
		st.done = st.done[n:]
	}
	return done, from
}

// renewLoop renews, every third of hub.lease, the leases of the deliveries that have messages
// awaiting answers, so a live delivery keeps them while claims take only new messages.
func (d *deliverer) renewLoop(ctx context.Context) {
	timers, ok := d.h.o.Clock.(clock.Timers)
	if !ok {
		timers = clock.System{}
	}
	for {
		ch, stop := timers.After(d.h.o.Lease / 3)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-ch:
		}
		d.renew(ctx)
	}
}

// renew renews the leases of every local delivery with messages awaiting answers, one store
// write each, and forgets the messages no longer held (answered, expired).
func (d *deliverer) renew(ctx context.Context) {
	type job struct {
		st    *queueState
		owner string
		ids   []string
	}
	var jobs []job
	d.mu.Lock()
	for _, st := range d.queues {
		if len(st.written) == 0 {
			continue
		}
		j := job{st: st, owner: st.owner}
		for id := range st.written {
			j.ids = append(j.ids, id)
		}
		jobs = append(jobs, j)
	}
	d.mu.Unlock()
	h := d.h
	for _, j := range jobs {
		if ctx.Err() != nil {
			return
		}
		now := h.o.Clock.Now()
		held, err := h.o.Outbox.RenewOutbox(ctx, j.st.name, j.owner, now, now.Add(h.o.Lease))
		if err != nil {
			if ctx.Err() == nil {
				h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: renewing outbox leases failed", slog.String("error", err.Error()))
			}
			continue
		}
		keep := make(map[string]bool, len(held))
		for _, id := range held {
			keep[id] = true
		}
		lost := false
		d.mu.Lock()
		if j.st.owner == j.owner {
			// Only what was there before the renewal: a message written since has a fresh lease.
			for _, id := range j.ids {
				if !keep[id] {
					delete(j.st.written, id)
				}
			}
			// Held, yet neither written nor waiting to be: handed over by another replica
			// whose notice has not come. One still so at the next renewal was lost (the
			// listener reconnected): the delivery gives its leases back and claims again —
			// what it wrote already is not written twice to a connection (written).
			unknown := map[string]bool{}
			for _, id := range held {
				if _, w := j.st.written[id]; !w && !slices.ContainsFunc(j.st.handoff, func(m *store.OutboxMessage) bool { return m.ID == id }) {
					unknown[id] = true
					lost = lost || j.st.unknown[id]
				}
			}
			j.st.unknown = unknown
		}
		d.mu.Unlock()
		if lost {
			d.release(&queueState{name: j.st.name, owner: j.owner})
		}
	}
}
