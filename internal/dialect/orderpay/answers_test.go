package orderpay

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/rendezvous"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/testutil/goroutines"
	"golang.org/x/time/rate"
)

// slowOutbox stores answers; the answer to "slow" waits until release is closed.
type slowOutbox struct {
	store.Outbox
	release chan struct{}
	mu      sync.Mutex
	calls   []string // RequestIDs, in the order AnswerOutbox was entered
	stored  chan string
}

func (o *slowOutbox) AnswerOutbox(ctx context.Context, queue, id string, answer []byte, at time.Time) (*store.OutboxMessage, error) {
	o.mu.Lock()
	first := !slices.Contains(o.calls, id)
	o.calls = append(o.calls, id)
	o.mu.Unlock()
	if id == "slow" && first {
		<-o.release
	}
	o.stored <- string(answer)
	if !first {
		return nil, store.ErrAlreadyUsed
	}
	return &store.OutboxMessage{Queue: queue, ID: id, State: store.OutboxDone, Answer: answer}, nil
}

// A socket's answers are stored side by side: one held up in the store does not hold up the
// answers after it; a second answer to the same request waits for the first.
func TestAnswersOfOneSocketStoredSideBySide(t *testing.T) {
	ob := &slowOutbox{release: make(chan struct{}), stored: make(chan string, 10)}
	m := &Module{svc: &app.Services{Clock: clock.System{}, Log: slog.New(slog.DiscardHandler)}, outbox: ob, hub: hub.New(hub.Options{})}
	m.waiters = &waiters{m: m}
	m.waiters.rv = rendezvous.New(m.waiters.check, rendezvous.Options{Recheck: time.Hour})
	h := &connHandler{m: m, outlet: &store.OrderpayOutlet{ID: "op_1"}, queue: tenant("op_1")}
	go func() {
		for _, msg := range []string{`{"RequestID":"slow","n":1}`, `{"RequestID":"slow","n":2}`, `{"RequestID":"fast","n":3}`} {
			if err := h.HandleMessage(context.Background(), new(hub.Conn), []byte(msg)); err != nil {
				t.Error(err)
			}
		}
	}()
	// "fast" is stored while the first answer to "slow" is still being stored. (Storing each
	// answer before taking the next never gets there: the bound is only reached by that failure.)
	select {
	case got := <-ob.stored:
		if got != `{"RequestID":"fast","n":3}` {
			t.Fatalf("stored %s first, want the answer to fast", got)
		}
	case <-time.After(10 * time.Second):
		close(ob.release)
		t.Fatal("the answer to fast waits behind the answer to slow")
	}
	close(ob.release)
	if a, b := <-ob.stored, <-ob.stored; a != `{"RequestID":"slow","n":1}` || b != `{"RequestID":"slow","n":2}` {
		t.Fatalf("answers to slow stored as %s then %s, want the first sent first", a, b)
	}
}

// The flood bound: every message up to the number of frames sent passes, however fast; the
// messages beyond count against the rate, and a burst of them is refused. (The old bound
// counted every message, so a busy outlet answering its requests was closed.)
func TestFloodBoundCountsOnlyUnasked(t *testing.T) {
	h := &connHandler{limiter: rate.NewLimiter(answerRate, answerBurst)}
	const sent = 5 * answerBurst
	for i := range sent {
		if !h.allow(sent) {
			t.Fatalf("answer %d of %d asked for was refused", i+1, sent)
		}
	}
	// Nothing more was sent: what follows is unasked. The loop is far faster than the refill
	// (answerRate a second), so it stops at about the burst, long before its own cap.
	for i := range 200 * answerBurst {
		if !h.allow(sent) {
			if i < answerBurst {
				t.Fatalf("refused after %d unasked messages, before the burst of %d", i, answerBurst)
			}
			return
		}
	}
	t.Fatal("unasked messages were never refused")
}

// Storing a socket's answers starts no goroutine per answer: they run on the hub's workers,
// which keep the stacks the store writes grew (a goroutine per answer grew its stack anew each
// time).
func TestAnswersStoredOnHubWorkers(t *testing.T) {
	ob := &slowOutbox{release: make(chan struct{}), stored: make(chan string, 1)}
	m := &Module{svc: &app.Services{Clock: clock.System{}, Log: slog.New(slog.DiscardHandler)}, outbox: ob, hub: hub.New(hub.Options{})}
	m.waiters = &waiters{m: m}
	m.waiters.rv = rendezvous.New(m.waiters.check, rendezvous.Options{Recheck: time.Hour})
	h := &connHandler{m: m, outlet: &store.OrderpayOutlet{ID: "op_1"}, queue: tenant("op_1")}
	answer := func(i int) {
		if err := h.HandleMessage(context.Background(), new(hub.Conn), []byte(fmt.Sprintf(`{"RequestID":"r%d"}`, i))); err != nil {
			t.Fatal(err)
		}
		<-ob.stored
	}
	answer(0) // starts a worker
	goroutines.StartNone(t, "answers", 50, func(i int) { answer(i + 1) })
}
