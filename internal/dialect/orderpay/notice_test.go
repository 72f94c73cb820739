package orderpay

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/store"
)

// readCountingOutbox answers GetOutbox with its message and counts the reads.
type readCountingOutbox struct {
	store.Outbox
	msg   *store.OutboxMessage
	reads atomic.Int64
}

func (o *readCountingOutbox) GetOutbox(_ context.Context, queue, id string) (*store.OutboxMessage, error) {
	o.reads.Add(1)
	if o.msg == nil || o.msg.Queue != queue || o.msg.ID != id {
		return nil, store.ErrNotFound
	}
	return o.msg, nil
}

// An answer stored on another replica reaches the waiting call inside the bus notice: the call
// returns it without reading the store. An answer too large for a notice is read back once.
func TestAnswerNoticeCarriesTheAnswer(t *testing.T) {
	bus := events.NewLocal()
	ob := &readCountingOutbox{}
	m := &Module{svc: &app.Services{Clock: clock.System{}, Log: slog.New(slog.DiscardHandler), Events: bus},
		cfg: settings{pollInterval: time.Hour}, outbox: ob}
	m.waiters = newWaiters(m)
	for _, tc := range []struct {
		name   string
		answer string
		reads  int64
	}{
		{"small", `{"RequestID":"r1","ResultCode":0,"Payload":{"a":"é \u0000"}}`, 0},
		{"too large for a notice", `{"RequestID":"r2","Payload":"` + strings.Repeat("x", events.MaxPayload) + `"}`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := tc.name
			answered := &store.OutboxMessage{Queue: tenant("op_1"), ID: id, State: store.OutboxDone,
				Answer: []byte(tc.answer), ExpiresAt: time.Now().Add(time.Minute)}
			ob.msg, ob.reads = answered, atomic.Int64{}
			tk := m.waiters.hold(answered.Queue, id)
			// What the replica that stored the answer publishes, as another replica hears it.
			bus.Deliver(TopicAnswered, noticeOf(answered))
			got, err := tk.Wait(context.Background(), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Answer) != tc.answer || got.State != store.OutboxDone {
				t.Fatalf("got %s %q, want the answer as sent", got.State, got.Answer)
			}
			if requestState(time.Now(), got) != "answered" {
				t.Fatalf("state %q", requestState(time.Now(), got))
			}
			if n := ob.reads.Load(); n != tc.reads {
				t.Fatalf("%d store reads, want %d", n, tc.reads)
			}
		})
	}
}

// The replica that stores an answer hands it to its own waiters directly; its notice is for the
// other replicas only, not decoded again by this replica's own subscribers (once per request on
// the round trip's hot path). Fails on the old code, which published to this replica too.
func TestAnswerNoticeSkipsItsOwnReplica(t *testing.T) {
	bus := events.NewLocal()
	m := &Module{svc: &app.Services{Clock: clock.System{}, Log: slog.New(slog.DiscardHandler), Events: bus},
		cfg: settings{pollInterval: time.Hour}, outbox: &readCountingOutbox{}}
	m.waiters = newWaiters(m)
	var heard atomic.Int64
	bus.Subscribe(TopicAnswered, func([]byte) { heard.Add(1) })
	answered := &store.OutboxMessage{Queue: tenant("op_1"), ID: "r1", State: store.OutboxDone,
		Answer: []byte(`{"RequestID":"r1","ResultCode":0}`), ExpiresAt: time.Now().Add(time.Minute)}
	tk := m.waiters.hold(answered.Queue, answered.ID)
	m.waiters.announce(context.Background(), answered)
	got, err := tk.Wait(context.Background(), 10*time.Second)
	if err != nil || string(got.Answer) != string(answered.Answer) {
		t.Fatalf("waiting call got %v, %v; want the answer", got, err)
	}
	if n := heard.Load(); n != 0 {
		t.Fatalf("the answering replica's own subscribers heard %d notices, want 0", n)
	}
}

// BenchmarkAnswerNotice is the answer's trip through the bus as posgate does it per answered
// request: encoded by the replica that stored it, decoded by the one whose caller waits (held)
// and by the publisher itself, where nobody waits (echo).
func BenchmarkAnswerNotice(b *testing.B) {
	m := &Module{svc: &app.Services{Clock: clock.System{}, Log: slog.New(slog.DiscardHandler)},
		cfg: settings{pollInterval: time.Hour}}
	m.waiters = newWaiters(m)
	msg := &store.OutboxMessage{Queue: tenant("op_6o6f4hpihik3l2p4"), ID: "r-4471", State: store.OutboxDone,
		Answer:    []byte(`{"RequestID":"r-4471","ResultCode":0,"ErrorMessage":null,"MessageType":1,"Payload":{"OrderID":"12345","Status":"OK"}}`),
		ExpiresAt: time.Now().Add(time.Minute)}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = noticeOf(msg)
		}
	})
	n := noticeOf(msg)
	b.Run("decode held", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			tk := m.waiters.hold(msg.Queue, msg.ID)
			b.StartTimer()
			m.waiters.onNotice(n)
			b.StopTimer()
			tk.Leave()
			b.StartTimer()
		}
	})
	b.Run("decode echo", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.waiters.onNotice(n)
		}
	})
}
