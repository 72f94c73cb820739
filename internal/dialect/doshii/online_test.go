package doshii

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"
)

// countingStore records the batches written.
type countingStore struct {
	mu      sync.Mutex
	batches []map[string]time.Time // locations and vendors ("v:" prefix) of each call
	fail    error
}

func (s *countingStore) ExtendDoshiiOnline(_ context.Context, locations, vendors map[string]time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := map[string]time.Time{}
	for id, t := range locations {
		b[id] = t
	}
	for id, t := range vendors {
		b["v:"+id] = t
	}
	s.batches = append(s.batches, b)
	return s.fail
}

// pongLog is a socket that records the frames sent to it.
type pongLog struct {
	mu   sync.Mutex
	sent []string
}

func (p *pongLog) Send(msg []byte, _ func(error)) error {
	p.mu.Lock()
	p.sent = append(p.sent, string(msg))
	p.mu.Unlock()
	return nil
}

func (p *pongLog) frames() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.sent...)
}

// TestOnlineWriterBatches: the heartbeats of many sockets become one store statement per flush;
// a socket's first heartbeat (or one whose stored deadline may be close) is answered only once
// its deadline is written, any other at once; a socket's pongs keep their order; a failed write
// still answers and is retried by the next heartbeat.
func TestOnlineWriterBatches(t *testing.T) {
	st := &countingStore{}
	const after = 90 * time.Second
	w := newOnlineWriter(st, slog.New(slog.NewTextHandler(io.Discard, nil)), after)
	w.running.Store(true) // flushes are driven by the test
	t0 := time.Unix(1_700_000_000, 0).UnixNano()
	var pcs []*posConn
	var socks []*pongLog
	for i := range 50 {
		pc := &posConn{location: "loc_" + strconv.Itoa(i)}
		if i == 49 {
			pc = &posConn{vendor: Vendor{ID: "dv_1"}} // a cloud socket
		}
		pcs, socks = append(pcs, pc), append(socks, &pongLog{})
	}

	// First heartbeats: urgent, held back until the write.
	for i, pc := range pcs {
		w.beat(pc, socks[i], t0, []byte("pong 1"))
	}
	for i, s := range socks {
		if got := s.frames(); len(got) != 0 {
			t.Fatalf("socket %d was answered %q before its deadline was written", i, got)
		}
	}
	w.flush(context.Background())
	if len(st.batches) != 1 || len(st.batches[0]) != 50 {
		t.Fatalf("50 first heartbeats: %d store calls (%v), want one of 50", len(st.batches), st.batches)
	}
	if got, want := st.batches[0]["loc_7"], time.Unix(0, t0).Add(after); !got.Equal(want) {
		t.Fatalf("deadline %v, want %v", got, want)
	}
	if _, ok := st.batches[0]["v:dv_1"]; !ok {
		t.Fatalf("the cloud socket's vendor is not in the batch: %v", st.batches[0])
	}
	for i, s := range socks {
		if got := s.frames(); len(got) != 1 {
			t.Fatalf("socket %d: %q after the write, want one pong", i, got)
		}
	}

	// 30 s later: a deadline 60 s away is far from close; answered at once, written in one batch.
	t1 := t0 + int64(30*time.Second)
	for i, pc := range pcs {
		w.beat(pc, socks[i], t1, []byte("pong 2"))
		if got := socks[i].frames(); len(got) != 2 {
			t.Fatalf("socket %d: %q, want the second pong at once", i, got)
		}
	}
	w.beat(pcs[0], socks[0], t1+int64(time.Second), []byte("pong 2b")) // within a tenth of offline_after: nothing more to write
	w.flush(context.Background())
	if len(st.batches) != 2 || len(st.batches[1]) != 50 || !st.batches[1]["loc_0"].Equal(time.Unix(0, t1).Add(after)) {
		t.Fatalf("second round: %d store calls, last %v", len(st.batches), st.batches[len(st.batches)-1])
	}

	// A failed write answers anyway; the socket's next heartbeat is urgent and written again,
	// and a pong sent meanwhile does not overtake the one waiting.
	st.fail = errors.New("store down")
	t2 := t1 + int64(time.Minute) // the stored deadline is 30 s away: urgent
	w.beat(pcs[1], socks[1], t2, []byte("pong 3"))
	w.beat(pcs[1], socks[1], t2+1, []byte("pong 4"))
	if got := socks[1].frames(); len(got) != 2 {
		t.Fatalf("%q: pong 3 went before its write, or pong 4 overtook it", got)
	}
	w.flush(context.Background())
	st.fail = nil
	if got := socks[1].frames(); len(got) != 4 || got[2] != "pong 3" || got[3] != "pong 4" {
		t.Fatalf("after a failed write: %q, want pong 3 then pong 4", got)
	}
	w.beat(pcs[1], socks[1], t2+int64(time.Second), []byte("pong 5"))
	if got := socks[1].frames(); len(got) != 4 {
		t.Fatalf("the heartbeat after a failed write must wait for its write: %q", got)
	}
	w.flush(context.Background())
	if last := st.batches[len(st.batches)-1]; len(last) != 1 || !last["loc_1"].Equal(time.Unix(0, t2+int64(time.Second)).Add(after)) {
		t.Fatalf("retry batch %v", last)
	}
	if got := socks[1].frames(); len(got) != 5 || got[4] != "pong 5" {
		t.Fatalf("%q", got)
	}
	if n := w.statements.Load(); n != int64(len(st.batches)) {
		t.Fatalf("statements %d, store calls %d", n, len(st.batches))
	}
}
