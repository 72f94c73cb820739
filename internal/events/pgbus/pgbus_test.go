package pgbus

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/store/pgtest"
)

// inbox collects payloads delivered to one subscriber.
type inbox struct {
	mu  sync.Mutex
	got []string
	ch  chan struct{}
}

func subscribe(b events.Bus, topic string) (*inbox, func()) {
	in := &inbox{ch: make(chan struct{}, 1000)}
	cancel := b.Subscribe(topic, func(p []byte) {
		in.mu.Lock()
		in.got = append(in.got, string(p))
		in.mu.Unlock()
		in.ch <- struct{}{}
	})
	return in, cancel
}

// wait returns once want has been delivered, or fails after a generous deadline (a real
// database round trip; the deadline only bounds a hang, it is not a timing assertion).
func (in *inbox) wait(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		in.mu.Lock()
		for _, g := range in.got {
			if g == want {
				in.mu.Unlock()
				return
			}
		}
		in.mu.Unlock()
		select {
		case <-in.ch:
		case <-deadline:
			t.Fatalf("%q not delivered; got %q", want, in.snapshot())
		}
	}
}

func (in *inbox) snapshot() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.got...)
}

func newBus(t *testing.T, dsn string) *Bus {
	t.Helper()
	b, err := New(t.Context(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestTwoBusesBothReceive(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := newBus(t, dsn), newBus(t, dsn)
	inA, _ := subscribe(a, events.TopicRevocation)
	inB, _ := subscribe(b, events.TopicRevocation)
	otherB, _ := subscribe(b, events.TopicChefDevice)

	payload := `{"kind":"jti","value":"abc","note":"ünïcode 'quotes' \"and\" $1; DROP TABLE x"}`
	if err := a.Publish(t.Context(), events.TopicRevocation, []byte(payload)); err != nil {
		t.Fatal(err)
	}
	// The publisher's own subscribers have it when Publish returns.
	if got := inA.snapshot(); len(got) != 1 || got[0] != payload {
		t.Fatalf("publisher's subscriber got %q right after Publish, want [%q]", got, payload)
	}
	inB.wait(t, payload)

	if err := b.Publish(t.Context(), events.TopicChefDevice, []byte(`{"id":"dev_1"}`)); err != nil {
		t.Fatal(err)
	}
	otherB.wait(t, `{"id":"dev_1"}`)
	// A marker published after everything else: once it arrives, earlier notices have too
	// (notifications from one session arrive in order), so the counts below are final.
	if err := a.Publish(t.Context(), events.TopicRevocation, []byte("marker")); err != nil {
		t.Fatal(err)
	}
	inB.wait(t, "marker")
	if got := inA.snapshot(); len(got) != 2 {
		t.Errorf("publisher's subscriber got %q: its own notice must not come back a second time", got)
	}
	if got := inB.snapshot(); len(got) != 2 {
		t.Errorf("other bus got %q, want the revocation and the marker once each (not the chef notice)", got)
	}
}

func TestUnsubscribeAndClose(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := newBus(t, dsn), newBus(t, dsn)
	in, cancel := subscribe(b, "t")
	marker, _ := subscribe(b, "t")
	cancel()
	if err := a.Publish(t.Context(), "t", []byte("x")); err != nil {
		t.Fatal(err)
	}
	marker.wait(t, "x")
	if got := in.snapshot(); len(got) != 0 {
		t.Fatalf("cancelled subscriber got %q", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(t.Context(), "t", []byte("y")); err == nil {
		t.Fatal("Publish on a closed bus succeeded")
	}
}

func TestPublishRefusesBadInput(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	b, other := newBus(t, dsn), newBus(t, dsn)
	in, _ := subscribe(b, "t")
	for name, c := range map[string]struct {
		topic   string
		payload []byte
	}{
		"empty topic":    {"", []byte("x")},
		"space in topic": {"a b", []byte("x")},
		"long topic":     {strings.Repeat("t", 64), []byte("x")},
		"invalid UTF-8":  {"t", []byte{0xff, 0xfe}},
		"NUL":            {"t", []byte("a\x00b")},
		"too large":      {"t", []byte(strings.Repeat("x", MaxPayload+1))},
	} {
		if err := b.Publish(t.Context(), c.topic, c.payload); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if got := in.snapshot(); len(got) != 0 {
		t.Fatalf("refused publishes were delivered: %q", got)
	}
	// The largest accepted payload with the longest topic fits PostgreSQL's limit and arrives whole.
	long, big := strings.Repeat("t", maxTopic), strings.Repeat("x", MaxPayload)
	far, _ := subscribe(other, long)
	if err := b.Publish(t.Context(), long, []byte(big)); err != nil {
		t.Fatalf("largest payload: %v", err)
	}
	far.wait(t, big)
}

// TestReconnect kills the listening connection from the server side; the bus reconnects by
// itself and notices published afterwards arrive again.
func TestReconnect(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := newBus(t, dsn), newBus(t, dsn)
	in, _ := subscribe(b, "t")

	admin, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var killed int
	if err := admin.QueryRow(t.Context(), `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'posgate-events'`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 2 {
		t.Fatalf("terminated %d listening connections, want 2", killed)
	}
	// Notices sent while b reconnects may be lost (best effort); keep publishing until one lands.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		msg := fmt.Sprintf("after-%d", i)
		_ = a.Publish(t.Context(), "t", []byte(msg))
		select {
		case <-in.ch:
			return
		case <-time.After(200 * time.Millisecond): // polling for the reconnect, not waiting on an expiry
		}
		if time.Now().After(deadline) {
			t.Fatal("bus did not reconnect")
		}
	}
}

func TestNewUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if b, err := New(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable", nil); err == nil {
		b.Close()
		t.Fatal("New against a closed port succeeded")
	}
}

// Publishers that arrive while a notice is being sent share the next transaction: here every
// connection of the publishing pool is held, so the first notice waits for one while twenty
// more queue behind it; once the connections are free, the twenty go in one transaction, and
// the other bus receives all twenty-one, each publisher's notices in order.
func TestConcurrentPublishersShareATransaction(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := newBus(t, dsn), newBus(t, dsn)
	in, _ := subscribe(b, events.TopicRevocation)
	var held []*pgxpool.Conn
	for range a.pool.Config().MaxConns {
		c, err := a.pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	errs := make(chan error, 21)
	go func() { errs <- a.Publish(t.Context(), events.TopicRevocation, []byte("first")) }()
	waitQueued := func(want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			a.smu.Lock()
			n := 0
			for _, g := range a.queue {
				n += len(g.msgs)
			}
			sending := a.sending
			a.smu.Unlock()
			if n == want && sending {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d notices queued, want %d", n, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitQueued(0) // the sender took "first" and waits for a connection
	for p := range 4 {
		go func() {
			for i := range 5 {
				errs <- a.Publish(t.Context(), events.TopicRevocation, []byte(fmt.Sprintf("p%d-%d", p, i)))
			}
		}()
	}
	// Each publisher waits for its notice to be sent before the next: four queued at most.
	waitQueued(4)
	for _, c := range held {
		c.Release()
	}
	for range 21 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	in.wait(t, "first")
	for p := range 4 {
		in.wait(t, fmt.Sprintf("p%d-4", p))
	}
	got := in.snapshot()
	if len(got) != 21 {
		t.Fatalf("other bus got %d notices, want 21: %q", len(got), got)
	}
	next := map[int]int{}
	for _, m := range got[1:] {
		var p, i int
		if _, err := fmt.Sscanf(m, "p%d-%d", &p, &i); err != nil || i != next[p] {
			t.Fatalf("notices out of order: %q", got)
		}
		next[p]++
	}
	// "first", then the four queued together, then at most one transaction per remaining notice.
	if n := a.sends.Load(); n > 18 {
		t.Errorf("%d transactions for 21 notices from 4 publishers, want at most 18", n)
	}
}

// PublishOthers reaches the other replicas' subscribers and not the publisher's own: the
// publisher has done locally what the notice asks.
func TestPublishOthersSkipsThePublisher(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a, b := newBus(t, dsn), newBus(t, dsn)
	inA, _ := subscribe(a, "t")
	inB, _ := subscribe(b, "t")
	if err := events.PublishOthers(t.Context(), a, "t", []byte("others")); err != nil {
		t.Fatal(err)
	}
	inB.wait(t, "others")
	// A marker published after it: once the publisher hears the marker, its own NOTIFY of the
	// first, committed before it, has come back too (in commit order) and was ignored.
	if err := b.Publish(t.Context(), "t", []byte("marker")); err != nil {
		t.Fatal(err)
	}
	inA.wait(t, "marker")
	if got := inA.snapshot(); len(got) != 1 {
		t.Fatalf("publisher's subscriber got %q, want only the marker", got)
	}
	if err := events.PublishOthers(t.Context(), a, "t", make([]byte, MaxPayload+1)); err == nil {
		t.Fatal("an oversized payload was accepted")
	}
}
