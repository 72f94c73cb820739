package hub

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

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
			st.written[m.ID] = c
			d.mu.Unlock()
		}
		written = append(written, m.ID)
	}
	d.mu.Lock()
	st.writing = false // every frame is handed over: the fast path may write again
	d.mu.Unlock()
	if st.mode == DoneWhenWritten && len(written) > 0 {
		// One left unchanged moved on meanwhile (expired, completed by another delivery).
		if _, err := h.o.Outbox.CompleteOutboxBatch(ctx, st.name, written, h.o.Clock.Now()); err != nil && ctx.Err() == nil {
			h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: recording an outbox delivery failed", slog.String("error", err.Error()))
		}
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

// poll runs the delivery of every local queue that has something to claim or hand over (a lost
// wake-up only delays a message) and updates the outbox depth gauge. Which queues have claimable
// messages is one read: an idle socket's queue costs no claim (on SQLite a write) per poll.
// Expiry and cleanup are the server's housekeeping (the outbox module).
func (d *deliverer) poll(ctx context.Context) {
	ob := d.h.o.Outbox
	if n, err := ob.CountOutbox(ctx, ""); err == nil {
		metrics.OutboxDepth.Set(float64(n))
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
	now := h.o.Clock.Now()
	d := h.d
	d.mu.Lock()
	for i, m := range msgs {
		st := d.queues[m.Queue]
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
	for i, m := range stored {
		if !created[i] {
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
		case f.st.writing || f.st.gen != f.gen || len(f.st.handoff) > 0 || len(f.st.conns) != 1 || f.st.conns[0] != f.c:
			// A run claimed meanwhile: what it took may be older; it writes this one next.
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
	if len(notify) > 0 {
		if err := h.Notify(context.WithoutCancel(ctx), notify...); err != nil {
			// The holder of the socket polls too: a lost notice only delays delivery.
			h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: announcing outbox messages failed", slog.String("error", err.Error()))
		}
	}
	return stored, created, nil
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
		d.mu.Lock()
		if j.st.owner == j.owner {
			// Only what was there before the renewal: a message written since has a fresh lease.
			for _, id := range j.ids {
				if !keep[id] {
					delete(j.st.written, id)
				}
			}
		}
		d.mu.Unlock()
	}
}
