package hub_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/events/pgbus"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/store/postgres"
	"github.com/posgate/posgate/internal/store/sqlite"
)

// hubStore is what these tests need of a store: the hub's roles plus reading a message back.
type hubStore interface {
	hub.Outbox
	hub.Presences
	GetOutbox(ctx context.Context, queue, id string) (*store.OutboxMessage, error)
	EnqueueOutbox(ctx context.Context, m *store.OutboxMessage) (*store.OutboxMessage, bool, error)
	CompleteOutbox(ctx context.Context, queue, id string, answer []byte, at time.Time) error
	AnswerOutbox(ctx context.Context, queue, id string, answer []byte, at time.Time) (*store.OutboxMessage, error)
	ListPresence(ctx context.Context, tenant string, seenSince time.Time) ([]*store.Presence, error)
}

func openSQLite(t *testing.T) hubStore {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "posgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func enqueue(t *testing.T, st hubStore, queue, id string) {
	t.Helper()
	now := time.Now()
	sum := sha256.Sum256([]byte(id))
	_, created, err := st.EnqueueOutbox(context.Background(), &store.OutboxMessage{
		Queue: queue, ID: id, BodyHash: sum[:], Payload: []byte(id), CreatedAt: now, ExpiresAt: now.Add(time.Hour),
	})
	if err != nil || !created {
		t.Fatalf("enqueue %s: created=%v, %v", id, created, err)
	}
}

func state(t *testing.T, st hubStore, queue, id string) store.OutboxState {
	t.Helper()
	m, err := st.GetOutbox(context.Background(), queue, id)
	if err != nil {
		t.Fatal(err)
	}
	return m.State
}

// waitState waits (bounded) for a message to reach want: the store is written after the frame.
func waitState(t *testing.T, st hubStore, queue, id string, want store.OutboxState) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		got := state(t, st, queue, id)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s", id, got, want)
		}
		time.Sleep(5 * time.Millisecond) // polling the store for a state change, not waiting for an expiry
	}
}

func readN(t *testing.T, ws *websocket.Conn, n int) []string {
	t.Helper()
	var out []string
	for range n {
		out = append(out, read(t, ws))
	}
	return out
}

func equal(a []string, b ...string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Orderpay's way: messages accepted before the peer connected are written in order when it
// connects and marked sent; a new one is written on Notify; when the connection goes, the
// unanswered ones are written again, in order, on the next connection; an answered one is not.
func TestDeliverAwaitAnswer(t *testing.T) {
	st := openSQLite(t)
	s := newServer(t, hub.Options{Outbox: st, Presences: st, Events: events.NewLocal(), PollInterval: time.Hour})
	const q = "orderpay:o1"
	for _, id := range []string{"r1", "r2", "r3"} {
		enqueue(t, st, q, id)
	}
	url := s.url(q, true) + "&deliver=answer"
	ws, c := s.dialURL(url, nil)
	if got := readN(t, ws, 3); !equal(got, "r1", "r2", "r3") {
		t.Fatalf("delivered %v", got)
	}
	for _, id := range []string{"r1", "r2", "r3"} {
		waitState(t, st, q, id, store.OutboxSent)
	}
	ps, err := st.ListPresence(context.Background(), q, time.Now().Add(-time.Minute))
	if err != nil || len(ps) != 1 || ps[0].ConnID != c.ID() || ps[0].Replica != s.hub.Replica() {
		t.Fatalf("presence = %+v, %v", ps, err)
	}

	enqueue(t, st, q, "r4")
	if err := s.hub.Notify(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if got := read(t, ws); got != "r4" {
		t.Fatalf("after Notify: %q", got)
	}
	waitState(t, st, q, "r4", store.OutboxSent)
	// The dialect records r2's answer.
	if err := st.CompleteOutbox(context.Background(), q, "r2", []byte(`{"ResultCode":0}`), time.Now()); err != nil {
		t.Fatal(err)
	}

	_ = ws.Close(websocket.StatusNormalClosure, "")
	s.waitGone()
	if ps, _ := st.ListPresence(context.Background(), q, time.Time{}); len(ps) != 0 {
		t.Fatalf("presence left after close: %+v", ps)
	}
	ws2, _ := s.dialURL(url, nil)
	if got := readN(t, ws2, 3); !equal(got, "r1", "r3", "r4") {
		t.Fatalf("redelivered %v, want the unanswered r1 r3 r4", got)
	}
}

// Doshii's way: a message is done once written. A message enqueued without a notice (a lost
// one) is delivered by the poll.
func TestDeliverDoneWhenWrittenAndPoll(t *testing.T) {
	st := openSQLite(t)
	s := newServer(t, hub.Options{Outbox: st, PollInterval: 20 * time.Millisecond})
	const q = "doshii:l1"
	ws, _ := s.dialURL(s.url(q, false)+"&deliver=written", nil)
	enqueue(t, st, q, "e1")
	enqueue(t, st, q, "e2")
	if got := readN(t, ws, 2); !equal(got, "e1", "e2") {
		t.Fatalf("delivered %v", got)
	}
	waitState(t, st, q, "e1", store.OutboxDone)
	waitState(t, st, q, "e2", store.OutboxDone)
	// Another queue's message is not written to this socket.
	enqueue(t, st, "doshii:l2", "other")
	enqueue(t, st, q, "e3")
	if got := read(t, ws); got != "e3" {
		t.Fatalf("got %q, want e3 (and never another location's event)", got)
	}
	if got := state(t, st, "doshii:l2", "other"); got != store.OutboxQueued {
		t.Fatalf("other location's event is %s", got)
	}
}

// One notice for several queues wakes the delivery of each, and a batch written together is
// recorded (done) together.
func TestNotifySeveralQueues(t *testing.T) {
	st := openSQLite(t)
	s := newServer(t, hub.Options{Outbox: st, Events: events.NewLocal(), PollInterval: time.Hour})
	const a, b = "doshii:l1", "doshii-vendor:v1"
	wsA, _ := s.dialURL(s.url(a, false)+"&deliver=written", nil)
	wsB, _ := s.dialURL(s.url(b, false)+"&deliver=written", nil)
	// The connections' first runs found nothing; what follows arrives only by the notice.
	time.Sleep(50 * time.Millisecond) // lets those runs end: a wake-up during a run would hide a missed notice
	for _, id := range []string{"e1", "e2", "e3"} {
		enqueue(t, st, a, id)
	}
	enqueue(t, st, b, "l1/e1")
	if err := s.hub.Notify(context.Background(), a, b); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, wsA, 3); !equal(got, "e1", "e2", "e3") {
		t.Fatalf("queue a got %v", got)
	}
	if got := read(t, wsB); got != "l1/e1" {
		t.Fatalf("queue b got %q", got)
	}
	for _, id := range []string{"e1", "e2", "e3"} {
		waitState(t, st, a, id, store.OutboxDone)
	}
	waitState(t, st, b, "l1/e1", store.OutboxDone)
}

// Two replicas sharing a store and a bus: the message is accepted on A, the peer is on B; A's
// notice wakes B, which delivers (the poll is an hour away).
func TestDeliverAcrossReplicasSQLite(t *testing.T) {
	st := openSQLite(t)
	bus := events.NewLocal()
	testAcrossReplicas(t, st, st, bus, bus)
}

func TestDeliverAcrossReplicasPostgres(t *testing.T) {
	stores, buses := openPostgresReplicas(t)
	testAcrossReplicas(t, stores[0], stores[1], buses[0], buses[1])
}

// openPostgresReplicas opens two replicas' stores and buses on one new PostgreSQL database.
func openPostgresReplicas(t *testing.T) ([2]hubStore, [2]events.Bus) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	var stores [2]hubStore
	var buses [2]events.Bus
	for i := range 2 {
		st, err := postgres.Open(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		bus, err := pgbus.New(ctx, dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bus.Close() })
		stores[i], buses[i] = st, bus
	}
	return stores, buses
}

// deadReplica is the outbox as a replica killed with kill -9 leaves it: it gives nothing back.
type deadReplica struct{ hubStore }

func (deadReplica) ReleaseOutbox(context.Context, string, string) error {
	return errors.New("the replica is dead")
}

func (deadReplica) RenewOutbox(context.Context, string, string, time.Time, time.Time) ([]string, error) {
	return nil, errors.New("the replica is dead")
}

// A request written to the socket of a replica that then died (no release) is not delivered to
// the POS's next connection on another replica while the dead one's lease lasts, and is delivered
// once hub.lease has run out, under the same id.
func TestDeliverAfterLeaseOfDeadReplicaSQLite(t *testing.T) {
	st := openSQLite(t)
	bus := events.NewLocal()
	testLeaseOfDeadReplica(t, st, st, bus, bus)
}

func TestDeliverAfterLeaseOfDeadReplicaPostgres(t *testing.T) {
	stores, buses := openPostgresReplicas(t)
	testLeaseOfDeadReplica(t, stores[0], stores[1], buses[0], buses[1])
}

func testLeaseOfDeadReplica(t *testing.T, stA, stB hubStore, busA, busB events.Bus) {
	clk := clock.NewFake(time.Now())
	lease := hub.OptionsFromConfig(config.Hub{Lease: 30}).Lease
	if lease != 30*time.Second {
		t.Fatalf("hub.lease 30 → %v", lease)
	}
	a := newServer(t, hub.Options{Outbox: deadReplica{stA}, Events: busA, Replica: "a", Clock: clk, Lease: lease, PollInterval: time.Hour})
	b := newServer(t, hub.Options{Outbox: stB, Events: busB, Replica: "b", Clock: clk, Lease: lease, PollInterval: 10 * time.Millisecond})
	const q = "orderpay:dead"
	wsA, _ := a.dialURL(a.url(q, true)+"&deliver=answer", nil)
	enqueue(t, stA, q, "r1")
	if err := a.hub.Notify(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if got := read(t, wsA); got != "r1" {
		t.Fatalf("got %q", got)
	}
	waitState(t, stA, q, "r1", store.OutboxSent)
	_ = wsA.CloseNow() // the POS loses the dead replica
	a.waitGone()

	wsB, _ := b.dialURL(b.url(q, true)+"&deliver=answer", nil)
	// B polls every 10 ms meanwhile; within the lease it must not take the message.
	redeliveredAfterLease(t, wsB, clk, lease, "r1")
	m, err := stB.GetOutbox(context.Background(), q, "r1")
	if err != nil || m.Attempts != 2 || !strings.HasPrefix(m.LeaseOwner, "b/") {
		t.Fatalf("after redelivery: %+v, %v", m, err)
	}
}

func testAcrossReplicas(t *testing.T, stA, stB hubStore, busA, busB events.Bus) {
	a := newServer(t, hub.Options{Outbox: stA, Events: busA, Replica: "a", PollInterval: time.Hour})
	b := newServer(t, hub.Options{Outbox: stB, Events: busB, Replica: "b", PollInterval: time.Hour})
	const q = "orderpay:o9"
	ws, _ := b.dialURL(b.url(q, true)+"&deliver=answer", nil)
	for i, id := range []string{"x1", "x2", "x3"} {
		enqueue(t, stA, q, id)
		if err := a.hub.Notify(context.Background(), q); err != nil {
			t.Fatal(err)
		}
		if got := read(t, ws); got != id {
			t.Fatalf("message %d: got %q, want %q", i, got, id)
		}
	}
	waitState(t, stA, q, "x3", store.OutboxSent)
	// A newer connection on A replaces B's (4009); B releases its leases and announces them, and
	// A redelivers at once (its poll is an hour away).
	ws2, _ := a.dialURL(a.url(q, true)+"&deliver=answer", nil)
	if code := readClose(t, ws); code != 4009 {
		t.Fatalf("older connection closed with %v, want 4009", code)
	}
	b.waitGone()
	if got := readN(t, ws2, 3); !equal(got, "x1", "x2", "x3") {
		t.Fatalf("redelivered on replica a: %v", got)
	}
}

// A replacement on the same replica: what the older connection was sent and not answered is
// written to the newer one at once (not after the lease runs out, not at the next poll).
func TestDeliverReplacementSameReplica(t *testing.T) {
	st := openSQLite(t)
	s := newServer(t, hub.Options{Outbox: st, Events: events.NewLocal(), PollInterval: time.Hour, Lease: time.Hour})
	const q = "orderpay:o1"
	enqueue(t, st, q, "r1")
	url := s.url(q, true) + "&deliver=answer"
	old, _ := s.dialURL(url, nil)
	if got := read(t, old); got != "r1" {
		t.Fatalf("got %q", got)
	}
	waitState(t, st, q, "r1", store.OutboxSent)
	newer, _ := s.dialURL(url, nil)
	if code := readClose(t, old); code != 4009 {
		t.Fatalf("older closed with %v", code)
	}
	if got := read(t, newer); got != "r1" {
		t.Fatalf("newer got %q, want r1 again", got)
	}
	enqueue(t, st, q, "r2")
	if err := s.hub.Notify(context.Background(), q); err != nil {
		t.Fatal(err)
	}
	if got := read(t, newer); got != "r2" {
		t.Fatalf("newer got %q, want r2", got)
	}
}

// A connection of several tenants is present for each of them, on both stores; its rows are
// refreshed together and gone with it.
func TestPresenceOfEveryTenantSQLite(t *testing.T) {
	testPresenceOfEveryTenant(t, openSQLite(t))
}

func TestPresenceOfEveryTenantPostgres(t *testing.T) {
	stores, _ := openPostgresReplicas(t)
	testPresenceOfEveryTenant(t, stores[0])
}

func testPresenceOfEveryTenant(t *testing.T, st hubStore) {
	s := newServer(t, hub.Options{Presences: st, Replica: "r1"})
	tenants := []string{"doshii-vendor:v1", "doshii:l1", "doshii:l2"}
	ws, c := s.dialURL(s.url(tenants[0], true)+"&also="+tenants[1]+"&also="+tenants[2], nil)
	ctx := context.Background()
	for _, tn := range tenants {
		ps, err := st.ListPresence(ctx, tn, time.Now().Add(-time.Minute))
		if err != nil || len(ps) != 1 || ps[0].ConnID != c.ID() || ps[0].Replica != "r1" || ps[0].Tenant != tn {
			t.Fatalf("presence of %s = %+v, %v", tn, ps, err)
		}
	}
	if ps, _ := st.ListPresence(ctx, "doshii:l3", time.Now().Add(-time.Minute)); len(ps) != 0 {
		t.Fatalf("presence of another tenant: %+v", ps)
	}
	_ = ws.Close(websocket.StatusNormalClosure, "")
	s.waitGone()
	for _, tn := range tenants {
		if ps, err := st.ListPresence(ctx, tn, time.Time{}); err != nil || len(ps) != 0 {
			t.Fatalf("presence of %s after close = %+v, %v", tn, ps, err)
		}
	}
}

// redeliveredAfterLease reads ws and fails unless nothing arrives while a dead replica's lease of
// want lasts (until lease−1s on clk) and want arrives once clk is past the lease.
func redeliveredAfterLease(t *testing.T, ws *websocket.Conn, clk *clock.Fake, lease time.Duration, want string) {
	t.Helper()
	got := readInto(ws)
	clk.Advance(lease - time.Second)
	select {
	case m := <-got:
		t.Fatalf("delivered %q while the dead replica's lease lasts", m)
	case <-time.After(300 * time.Millisecond):
	}
	clk.Advance(2 * time.Second)
	select {
	case m := <-got:
		if m != want {
			t.Fatalf("got %q, want %s", m, want)
		}
	case <-time.After(testTimeout):
		t.Fatal("not redelivered after the lease")
	}
}

// readInto reads ws in a goroutine of its own until it fails, passing each message on.
func readInto(ws *websocket.Conn) <-chan string {
	got := make(chan string, 4)
	go func() {
		for {
			_, m, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			got <- string(m)
		}
	}()
	return got
}
