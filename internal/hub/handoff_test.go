package hub_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/store"
)

func enqueueFor(t *testing.T, h *hub.Hub, mode hub.DeliveryMode, m *store.OutboxMessage) *store.OutboxMessage {
	t.Helper()
	got, created, err := h.EnqueueFor(context.Background(), mode, m)
	if err != nil || len(got) != 1 || !created[0] {
		t.Fatalf("enqueue %s: %v, %v, %v", m.ID, got, created, err)
	}
	return got[0]
}

// A message accepted on replica A for a peer connected to replica B is stored already taken by
// B's delivery (presence names it) and carried to B in A's notice: B writes it without a claim,
// once, in queue order.
func TestHandOffAcrossReplicasSQLite(t *testing.T) {
	st := openSQLite(t)
	bus := events.NewLocal()
	testHandOff(t, st, st, bus, bus)
}

func TestHandOffAcrossReplicasPostgres(t *testing.T) {
	stores, buses := openPostgresReplicas(t)
	testHandOff(t, stores[0], stores[1], buses[0], buses[1])
}

func testHandOff(t *testing.T, stA, stB hubStore, busA, busB events.Bus) {
	cb := &countingStore{hubStore: stB}
	a := newServer(t, hub.Options{Outbox: stA, Presences: stA, Events: busA, Replica: "a", HandOff: true, PollInterval: time.Hour})
	b := newServer(t, hub.Options{Outbox: cb, Presences: stB, Events: busB, Replica: "b", HandOff: true, PollInterval: time.Hour})
	for _, tc := range []struct {
		q    string
		mode hub.DeliveryMode
		url  string
		want store.OutboxState
	}{
		{"orderpay:h1", hub.AwaitAnswer, "&deliver=answer", store.OutboxSent},
		{"doshii:h2", hub.DoneWhenWritten, "&deliver=written", store.OutboxDone},
	} {
		ws, c := b.dialURL(b.url(tc.q, true)+tc.url, nil)
		clk := clock.System{}
		// Handed over before b's delivery has its connection (presence is recorded first):
		// written once it has.
		enqueueFor(t, a.hub, tc.mode, newMessage(clk, tc.q, "x0"))
		if got := read(t, ws); got != "x0" {
			t.Fatalf("%s: b wrote %q, want x0", tc.q, got)
		}
		waitIdle(t, b.hub, tc.q)
		claims := cb.claims.Load()
		for _, id := range []string{"x1", "x2", "x3"} {
			m := enqueueFor(t, a.hub, tc.mode, newMessage(clk, tc.q, id))
			if m.LeaseOwner != store.PresenceOwner("b", c.ID()) || m.Attempts != 1 {
				t.Fatalf("%s stored as %+v, want it taken by b's delivery", id, m)
			}
		}
		if got := readN(t, ws, 3); !equal(got, "x1", "x2", "x3") {
			t.Fatalf("%s: b wrote %v", tc.q, got)
		}
		waitState(t, stA, tc.q, "x3", tc.want)
		if n := cb.claims.Load(); n != claims {
			t.Fatalf("%s: b claimed %d times for handed-over messages", tc.q, n-claims)
		}
		// Nothing is written twice: a claim run finds nothing, and the next message written is
		// the next one.
		if err := b.hub.Notify(context.Background(), tc.q); err != nil {
			t.Fatal(err)
		}
		waitIdle(t, b.hub, tc.q)
		enqueueFor(t, a.hub, tc.mode, newMessage(clk, tc.q, "x4"))
		if got := read(t, ws); got != "x4" {
			t.Fatalf("%s: after the hand-offs b wrote %q, want x4", tc.q, got)
		}
	}
}

// A message handed to a replica that dies before writing it (its notice never arrives, it
// gives nothing back) is not written by the peer's next connection while the dead delivery's
// lease lasts, and is written once hub.lease has run out.
func TestHandOffToDeadReplicaSQLite(t *testing.T) {
	st := openSQLite(t)
	testHandOffToDead(t, st, st)
}

func TestHandOffToDeadReplicaPostgres(t *testing.T) {
	stores, _ := openPostgresReplicas(t)
	testHandOffToDead(t, stores[0], stores[1])
}

func testHandOffToDead(t *testing.T, stA, stB hubStore) {
	clk := clock.NewFake(time.Now())
	const lease = 30 * time.Second
	// b hears nothing of a's bus: the notice is lost with it.
	busA, busB := events.NewLocal(), events.NewLocal()
	a := newServer(t, hub.Options{Outbox: stA, Presences: stA, Events: busA, Replica: "a", Clock: clk, Lease: lease,
		HandOff: true, PollInterval: 10 * time.Millisecond})
	b := newServer(t, hub.Options{Outbox: deadReplica{stB}, Presences: stB, Events: busB, Replica: "b", Clock: clk,
		Lease: lease, HandOff: true, PollInterval: time.Hour})
	const q = "orderpay:dead-handoff"
	_, c := b.dialURL(b.url(q, true)+"&deliver=answer", nil)
	if m := enqueueFor(t, a.hub, hub.AwaitAnswer, newMessage(clk, q, "r1")); m.LeaseOwner != store.PresenceOwner("b", c.ID()) {
		t.Fatalf("stored as %+v, want it taken by b's delivery", m)
	}
	wsA, _ := a.dialURL(a.url(q, true)+"&deliver=answer", nil)
	redeliveredAfterLease(t, wsA, clk, lease, "r1")
	if m, err := stA.GetOutbox(context.Background(), q, "r1"); err != nil || m.Attempts != 2 {
		t.Fatalf("after redelivery: %+v, %v", m, err)
	}
}

// A burst of messages handed over without waiting (the fast path here; a hand-off across
// replicas takes the same turn) to a peer that reads nothing for a while does not close it as
// too slow: beyond half its send queue they go through the deliverer, write by write, and
// arrive in order once it reads.
func TestHandOffBurstDoesNotOverflowSendQueue(t *testing.T) {
	st := openSQLite(t)
	s := newServer(t, hub.Options{Outbox: st, Events: events.NewLocal(), PollInterval: time.Hour, SendQueue: 4})
	const q = "doshii:burst"
	ws, _ := s.dialURL(s.url(q, true)+"&deliver=written", nil)
	ws.SetReadLimit(-1)
	waitIdle(t, s.hub, q)
	clk := clock.System{}
	// Far more than the socket buffers hold, so the writer blocks while nothing is read.
	const n, size = 120, 128 << 10
	var want []string
	for i := range n {
		m := newMessage(clk, q, fmt.Sprintf("m%03d", i))
		m.Payload = append([]byte(m.ID+":"), bytes.Repeat([]byte("x"), size)...)
		hubEnqueue(t, s.hub, m)
		want = append(want, m.ID)
	}
	for i, id := range want {
		_, got, err := ws.Read(context.Background())
		if err != nil {
			t.Fatalf("read %d: %v (closed as too slow?)", i, err)
		}
		if g, _, _ := bytes.Cut(got, []byte(":")); string(g) != id {
			t.Fatalf("read %d: %s, want %s", i, g, id)
		}
	}
}

// A hand-off whose notice never reaches the live replica holding the socket (its listener was
// reconnecting) is held by that delivery and renewed with the rest; two renewals that find it
// held and never handed over make the delivery give its leases back and claim again, so it is
// written, late, and the message written before is not written twice.
func TestLostHandOffFoundByRenewal(t *testing.T) {
	st := openSQLite(t)
	clk := clock.NewFake(time.Now())
	const lease = 30 * time.Second
	a := newServer(t, hub.Options{Outbox: st, Presences: st, Events: events.NewLocal(), Replica: "a", Clock: clk,
		Lease: lease, HandOff: true, PollInterval: time.Hour})
	b := newServer(t, hub.Options{Outbox: st, Presences: st, Events: events.NewLocal(), Replica: "b", Clock: clk,
		Lease: lease, HandOff: true, PollInterval: time.Hour})
	const q = "orderpay:lost"
	ws, _ := b.dialURL(b.url(q, true)+"&deliver=answer", nil)
	waitIdle(t, b.hub, q)
	// r1 is written by b and awaits its answer (so b renews its leases); r2 is handed to b by
	// a, whose notice b never hears.
	hubEnqueue(t, b.hub, newMessage(clk, q, "r1"))
	if got := read(t, ws); got != "r1" {
		t.Fatalf("got %q, want r1", got)
	}
	enqueueFor(t, a.hub, hub.AwaitAnswer, newMessage(clk, q, "r2"))
	got := readInto(ws)
	for range 12 {
		clk.Advance(lease / 3)
		select {
		case m := <-got:
			if m != "r2" {
				t.Fatalf("got %q, want r2 (and r1 not again)", m)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatal("a hand-off whose notice was lost is never written")
}

// A notice that only hands messages to another replica's delivery goes to the other replicas
// only: the enqueuing replica's own subscriber decoded it to do nothing, once per request.
// Fails on the old code, which delivered every hand-off notice to the enqueuing replica too.
func TestHandOffNoticeSkipsTheEnqueuingReplica(t *testing.T) {
	stores, buses := openPostgresReplicas(t)
	var held atomic.Int64
	buses[0].Subscribe(events.TopicOutbox, func(p []byte) {
		if bytes.Contains(p, []byte(`"held"`)) {
			held.Add(1)
		}
	})
	a := newServer(t, hub.Options{Outbox: stores[0], Presences: stores[0], Events: buses[0], Replica: "a", HandOff: true, PollInterval: time.Hour})
	b := newServer(t, hub.Options{Outbox: stores[1], Presences: stores[1], Events: buses[1], Replica: "b", HandOff: true, PollInterval: time.Hour})
	const q = "orderpay:h1"
	ws, c := b.dialURL(b.url(q, true)+"&deliver=answer", nil)
	clk := clock.System{}
	enqueueFor(t, a.hub, hub.AwaitAnswer, newMessage(clk, q, "x0"))
	if got := read(t, ws); got != "x0" {
		t.Fatalf("b wrote %q, want x0", got)
	}
	for _, id := range []string{"x1", "x2"} {
		if m := enqueueFor(t, a.hub, hub.AwaitAnswer, newMessage(clk, q, id)); m.LeaseOwner != store.PresenceOwner("b", c.ID()) {
			t.Fatalf("%s stored as %+v, want it taken by b's delivery", id, m)
		}
	}
	if got := readN(t, ws, 2); !equal(got, "x1", "x2") {
		t.Fatalf("b wrote %v", got)
	}
	if n := held.Load(); n != 0 {
		t.Fatalf("replica a's own subscriber heard %d hand-off notices, want 0", n)
	}
}
