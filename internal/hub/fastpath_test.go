package hub_test

import (
	"context"
	"crypto/sha256"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/store"
)

// countingStore counts the deliverer's claims and renewals and lets a test act around them.
type countingStore struct {
	hubStore
	claims     atomic.Int32
	renews     atomic.Int32
	afterClaim func() // called after a claim's write, before the deliverer sees its result
	beforeHeld func() // called before an enqueue through the hub
}

func (s *countingStore) ClaimOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*store.OutboxMessage, error) {
	l, err := s.hubStore.ClaimOutbox(ctx, queue, owner, now, leaseUntil, limit)
	s.claims.Add(1)
	if s.afterClaim != nil {
		s.afterClaim()
	}
	return l, err
}

func (s *countingStore) ClaimOutboxSent(ctx context.Context, queue, owner string, now, leaseUntil time.Time, limit int) ([]*store.OutboxMessage, error) {
	l, err := s.hubStore.ClaimOutboxSent(ctx, queue, owner, now, leaseUntil, limit)
	s.claims.Add(1)
	if s.afterClaim != nil {
		s.afterClaim()
	}
	return l, err
}

func (s *countingStore) RenewOutbox(ctx context.Context, queue, owner string, now, leaseUntil time.Time) ([]string, error) {
	s.renews.Add(1)
	return s.hubStore.RenewOutbox(ctx, queue, owner, now, leaseUntil)
}

func (s *countingStore) EnqueueOutboxHeld(ctx context.Context, msgs []*store.OutboxMessage, holds []*store.OutboxHold) ([]*store.OutboxMessage, []bool, error) {
	if s.beforeHeld != nil {
		s.beforeHeld()
	}
	return s.hubStore.EnqueueOutboxHeld(ctx, msgs, holds)
}

func newMessage(clk clock.Clock, queue, id string) *store.OutboxMessage {
	now := clk.Now()
	sum := sha256.Sum256([]byte(id))
	return &store.OutboxMessage{Queue: queue, ID: id, BodyHash: sum[:], Payload: []byte(id), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
}

func hubEnqueue(t *testing.T, h *hub.Hub, m *store.OutboxMessage) (*store.OutboxMessage, bool) {
	t.Helper()
	got, created, err := h.Enqueue(context.Background(), m)
	if err != nil || len(got) != 1 || len(created) != 1 {
		t.Fatalf("enqueue %s: %v, %v, %v", m.ID, got, created, err)
	}
	return got[0], created[0]
}

// waitIdle waits (bounded) until no delivery run of queue is going, so the next enqueue meets
// a quiet delivery.
func waitIdle(t *testing.T, h *hub.Hub, queue string) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !h.Idle(queue) {
		if time.Now().After(deadline) {
			t.Fatalf("the delivery of %s does not settle", queue)
		}
		time.Sleep(time.Millisecond) // polling a state change, not waiting for a duration
	}
}

// countingBus counts outbox notices.
type countingBus struct {
	events.Bus
	outbox atomic.Int32
}

func (b *countingBus) Publish(ctx context.Context, topic string, p []byte) error {
	if topic == events.TopicOutbox {
		b.outbox.Add(1)
	}
	return b.Bus.Publish(ctx, topic, p)
}

// A request enqueued on the replica that holds the peer's socket is stored taken and sent and
// written at once: no claim, no notice. A repeat of it changes nothing and writes nothing.
func TestEnqueueFastPath(t *testing.T) {
	st := &countingStore{hubStore: openSQLite(t)}
	bus := &countingBus{Bus: events.NewLocal()}
	s := newServer(t, hub.Options{Outbox: st, Events: bus, PollInterval: time.Hour})
	const q = "orderpay:fast"
	ws, _ := s.dialURL(s.url(q, true)+"&deliver=answer", nil)
	waitIdle(t, s.hub, q)
	claims := st.claims.Load()
	clk := clock.System{}
	for _, id := range []string{"r1", "r2"} {
		m, created := hubEnqueue(t, s.hub, newMessage(clk, q, id))
		if !created || m.State != store.OutboxSent || m.Attempts != 1 || m.LeaseOwner == "" || m.SentAt == nil {
			t.Fatalf("%s stored as %+v, want taken and sent", id, m)
		}
		if got := read(t, ws); got != id {
			t.Fatalf("got %q, want %s", got, id)
		}
	}
	// An idempotent repeat: the stored message, not written again.
	m, created := hubEnqueue(t, s.hub, newMessage(clk, q, "r1"))
	if created || m.ID != "r1" || m.Attempts != 1 {
		t.Fatalf("repeat: created %v, %+v", created, m)
	}
	hubEnqueue(t, s.hub, newMessage(clk, q, "r3"))
	if got := read(t, ws); got != "r3" {
		t.Fatalf("after the repeat got %q, want r3", got)
	}
	if n := st.claims.Load() - claims; n != 0 {
		t.Fatalf("%d claims on the fast path", n)
	}
	if n := bus.outbox.Load(); n != 0 {
		t.Fatalf("%d outbox notices on the fast path", n)
	}
	// The answer is taken as for a claimed message.
	if _, err := st.AnswerOutbox(context.Background(), q, "r2", []byte("ok"), time.Now()); err != nil {
		t.Fatal(err)
	}
}

// A message enqueued behind an older one still queued is not taken by the fast path: the
// deliverer writes both, the older first.
func TestEnqueueFastPathKeepsOrderBehindQueued(t *testing.T) {
	for _, mode := range []string{"answer", "written"} {
		t.Run(mode, func(t *testing.T) {
			st := &countingStore{hubStore: openSQLite(t)}
			s := newServer(t, hub.Options{Outbox: st, Events: events.NewLocal(), PollInterval: time.Hour})
			const q = "q:order"
			ws, _ := s.dialURL(s.url(q, true)+"&deliver="+mode, nil)
			waitIdle(t, s.hub, q)
			enqueue(t, st, q, "old") // stored, not announced: waits for a poll an hour away
			m, _ := hubEnqueue(t, s.hub, newMessage(clock.System{}, q, "new"))
			if m.LeaseOwner != "" || m.State != store.OutboxQueued {
				t.Fatalf("new stored as %+v behind a queued message, want queued", m)
			}
			if got := readN(t, ws, 2); !equal(got, "old", "new") {
				t.Fatalf("delivered %v, want old then new", got)
			}
		})
	}
}

// A message the store takes while a run of the deliverer is writing what it claimed (which is
// older) is written after that, by the run, not before it by the enqueue.
func TestEnqueueFastPathWaitsForRun(t *testing.T) {
	for _, mode := range []string{"answer", "written"} {
		t.Run(mode, func(t *testing.T) {
			st := &countingStore{hubStore: openSQLite(t)}
			s := newServer(t, hub.Options{Outbox: st, Events: events.NewLocal(), PollInterval: time.Hour})
			const q = "q:run"
			ws, _ := s.dialURL(s.url(q, true)+"&deliver="+mode, nil)
			waitIdle(t, s.hub, q)
			enqueue(t, st, q, "old")
			claimed, resume := make(chan struct{}), make(chan struct{})
			var once atomic.Bool
			st.afterClaim = func() {
				if once.CompareAndSwap(false, true) {
					close(claimed)
					<-resume
				}
			}
			// The hub has decided to try the fast path (no run was going); before its insert a
			// run claims "old" and stops before writing it.
			st.beforeHeld = func() {
				st.beforeHeld = nil
				if err := s.hub.Notify(context.Background(), q); err != nil {
					t.Error(err)
				}
				<-claimed
			}
			done := make(chan *store.OutboxMessage, 1)
			go func() {
				got, _, err := s.hub.Enqueue(context.Background(), newMessage(clock.System{}, q, "new"))
				if err != nil {
					t.Error(err)
				}
				done <- got[0]
			}()
			m := <-done
			if m.LeaseOwner == "" {
				t.Fatalf("new not taken behind the delivery's own claim: %+v", m)
			}
			close(resume)
			if got := readN(t, ws, 2); !equal(got, "old", "new") {
				t.Fatalf("delivered %v, want old then new", got)
			}
		})
	}
}

// The leases of messages awaiting answers are renewed on a timer (a third of hub.lease), so no
// other delivery takes them while the connection lives, though claims no longer renew them; an
// answered message is forgotten at the next renewal, after which nothing is renewed.
func TestLeaseRenewalTimer(t *testing.T) {
	clk := clock.NewFake(time.Now())
	st := &countingStore{hubStore: openSQLite(t)}
	const lease = 30 * time.Second
	s := newServer(t, hub.Options{Outbox: st, Clock: clk, Lease: lease, PollInterval: time.Hour})
	const q = "orderpay:renew"
	ws, _ := s.dialURL(s.url(q, true)+"&deliver=answer", nil)
	waitIdle(t, s.hub, q)
	m, _ := hubEnqueue(t, s.hub, newMessage(clk, q, "r1"))
	if got := read(t, ws); got != "r1" {
		t.Fatalf("got %q", got)
	}
	first := *m.LeaseUntil
	// tick moves the clock by a third of the lease once the renewal timer is armed, and waits
	// until the timer is armed again (the renewal ran).
	tick := func() {
		t.Helper()
		deadline := time.Now().Add(testTimeout)
		for clk.PendingTimers() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no renewal timer")
			}
			time.Sleep(time.Millisecond)
		}
		clk.Advance(lease/3 + time.Millisecond)
		for clk.PendingTimers() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the renewal did not end")
			}
			time.Sleep(time.Millisecond)
		}
	}
	for range 4 {
		tick()
	}
	if !clk.Now().After(first) {
		t.Fatalf("the clock did not pass the first lease")
	}
	got := getMsg(t, st, q, "r1")
	if got.LeaseUntil == nil || !got.LeaseUntil.After(clk.Now()) || got.Attempts != 1 || got.State != store.OutboxSent {
		t.Fatalf("after %v: %+v, want a live lease", clk.Now().Sub(first), got)
	}
	l, err := st.ClaimOutbox(context.Background(), q, "another", clk.Now(), clk.Now().Add(lease), 10)
	if err != nil || len(l) != 0 {
		t.Fatalf("another delivery claimed %v, %v", l, err)
	}
	if _, err := st.AnswerOutbox(context.Background(), q, "r1", []byte("ok"), clk.Now()); err != nil {
		t.Fatal(err)
	}
	renews := st.renews.Load()
	tick() // renews nothing and forgets r1
	tick()
	if n := st.renews.Load() - renews; n != 1 {
		t.Fatalf("%d renewals after the answer, want 1", n)
	}
}

func getMsg(t *testing.T, st hubStore, queue, id string) *store.OutboxMessage {
	t.Helper()
	m, err := st.GetOutbox(context.Background(), queue, id)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// pollCountingStore counts the deliverer's polls (each lists the claimable queues once) and its
// counts of every queue's open messages (the depth gauge).
type pollCountingStore struct {
	*countingStore
	polls, depths atomic.Int32
}

func (s *pollCountingStore) ListOutboxClaimable(ctx context.Context, now time.Time) ([]string, error) {
	s.polls.Add(1)
	return s.countingStore.ListOutboxClaimable(ctx, now)
}

func (s *pollCountingStore) CountOutbox(ctx context.Context, queue string) (int, error) {
	if queue == "" {
		s.depths.Add(1)
	}
	return s.countingStore.CountOutbox(ctx, queue)
}

// The depth gauge is counted at the first poll and then at most once a minute, not at every
// poll: the count reads every open message of every queue. Fails when every poll counts.
func TestPollCountsDepthRarely(t *testing.T) {
	st := &pollCountingStore{countingStore: &countingStore{hubStore: openSQLite(t)}}
	_ = newServer(t, hub.Options{Outbox: st, PollInterval: 5 * time.Millisecond})
	deadline := time.Now().Add(testTimeout)
	for st.polls.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatal("the deliverer does not poll")
		}
		time.Sleep(time.Millisecond) // polling a counter, not waiting for a duration
	}
	if n := st.depths.Load(); n != 1 {
		t.Fatalf("%d depth counts in %d polls, want 1", n, st.polls.Load())
	}
}

// The poll claims only queues with something to claim: idle sockets cost no claim (on SQLite a
// write transaction each) per poll, and a message enqueued without a notice is still delivered
// by the poll.
func TestPollClaimsOnlyClaimableQueues(t *testing.T) {
	st := &pollCountingStore{countingStore: &countingStore{hubStore: openSQLite(t)}}
	s := newServer(t, hub.Options{Outbox: st, PollInterval: 5 * time.Millisecond})
	var sockets []*websocket.Conn
	for i := range 5 {
		q := "orderpay:idle" + strconv.Itoa(i)
		ws, _ := s.dialURL(s.url(q, true)+"&deliver=answer", nil)
		waitIdle(t, s.hub, q)
		sockets = append(sockets, ws)
	}
	claims, polls := st.claims.Load(), st.polls.Load()
	deadline := time.Now().Add(testTimeout)
	for st.polls.Load() < polls+5 {
		if time.Now().After(deadline) {
			t.Fatal("the deliverer does not poll")
		}
		time.Sleep(time.Millisecond) // polling a counter, not waiting for a duration
	}
	if n := st.claims.Load() - claims; n != 0 {
		t.Fatalf("%d claims in 4 polls of 5 idle queues, want none", n)
	}
	enqueue(t, st, "orderpay:idle3", "r1") // no notice: only the poll finds it
	if got := read(t, sockets[3]); got != "r1" {
		t.Fatalf("got %q, want r1", got)
	}
	waitState(t, st, "orderpay:idle3", "r1", store.OutboxSent)
}

// completionCountingStore counts the done marks written by a statement of their own.
type completionCountingStore struct {
	hubStore
	own atomic.Int32
}

func (s *completionCountingStore) CompleteOutboxBatch(ctx context.Context, queue string, ids []string, at time.Time) (int, error) {
	s.own.Add(1)
	return s.hubStore.CompleteOutboxBatch(ctx, queue, ids, at)
}

func (s *completionCountingStore) EnqueueOutboxCompleting(ctx context.Context, msgs []*store.OutboxMessage, holds []*store.OutboxHold, done []store.OutboxCompletion, at time.Time) ([]*store.OutboxMessage, []bool, error) {
	c := s.hubStore.(interface {
		EnqueueOutboxCompleting(context.Context, []*store.OutboxMessage, []*store.OutboxHold, []store.OutboxCompletion, time.Time) ([]*store.OutboxMessage, []bool, error)
	})
	return c.EnqueueOutboxCompleting(ctx, msgs, holds, done, at)
}

// Events written on the fast path are recorded done by the next enqueue of their queue, in its
// transaction: while events keep coming, no done mark is a write of its own. What is still
// unrecorded when the socket goes is recorded before its leases are given back.
func TestDoneMarksRideOnEnqueues(t *testing.T) {
	st := &completionCountingStore{hubStore: openSQLite(t)}
	s := newServer(t, hub.Options{Outbox: st, PollInterval: time.Hour, DoneDelay: time.Hour})
	const q = "doshii:ride"
	ws, _ := s.dialURL(s.url(q, false)+"&deliver=written", nil)
	waitIdle(t, s.hub, q)
	clk := clock.System{}
	const n = 10
	for i := range n {
		id := "e" + strconv.Itoa(i)
		if m, created := hubEnqueue(t, s.hub, newMessage(clk, q, id)); !created || m.LeaseOwner == "" {
			t.Fatalf("%s stored as %+v, want taken (the fast path)", id, m)
		}
		if got := read(t, ws); got != id {
			t.Fatalf("got %q, want %s", got, id)
		}
	}
	// e(i) is recorded once written, which is before e(i+1) is written: the enqueue of e(i+2)
	// takes it along.
	for i := range n - 2 {
		if got := state(t, st, q, "e"+strconv.Itoa(i)); got != store.OutboxDone {
			t.Fatalf("e%d is %s after the enqueues that followed it", i, got)
		}
	}
	if got := st.own.Load(); got != 0 {
		t.Fatalf("%d done marks written on their own while events kept coming", got)
	}
	_ = ws.Close(websocket.StatusNormalClosure, "")
	waitState(t, st, q, "e"+strconv.Itoa(n-1), store.OutboxDone)
}
