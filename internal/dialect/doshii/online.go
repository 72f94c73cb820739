package doshii

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/posgate/posgate/internal/metrics"
)

// Heartbeats and the store statements that record them, on /metrics.
var (
	heartbeatsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "posgate", Name: "doshii_heartbeats_total",
		Help: "Heartbeats received on doshii POS and cloud sockets.",
	})
	onlineWritesTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "posgate", Name: "doshii_online_writes_total",
		Help: "Store statements writing the doshii heartbeats' online deadlines (one per batch).",
	})
)

func init() { metrics.Registry.MustRegister(heartbeatsTotal, onlineWritesTotal) }

// onlineStore is the store call the heartbeats' deadlines are written with.
type onlineStore interface {
	ExtendDoshiiOnline(ctx context.Context, locations, vendors map[string]time.Time) error
}

// pongSender is the socket a pong goes to (a *hub.Conn).
type pongSender interface {
	Send(msg []byte, done func(error)) error
}

// onlineWriter writes the heartbeats' online deadlines in batches: every location and vendor
// whose POS sent a heartbeat since the last tick, in one store statement per tick, instead of one
// statement per heartbeat.
//
// A pong says "you are online on every replica", so a heartbeat whose stored deadline may be
// close (the socket's first, or the first after a silence or a failed write) has its pong sent
// only once the batch holding it is written, and wakes the writer at once. Every other pong is
// sent right away: its location's stored deadline is at least half of offlineAfter away, far
// beyond the next tick. A socket's pongs keep their order (one waiting holds the later ones).
type onlineWriter struct {
	st           onlineStore
	log          *slog.Logger
	offlineAfter time.Duration
	every        time.Duration

	mu      sync.Mutex
	beats   map[*posConn]int64 // heartbeat time (unix ns) to write, per socket
	waiting []waitingPong
	wake    chan struct{} // capacity 1: an urgent heartbeat is waiting

	statements atomic.Int64 // store statements written (tests, benchmarks)
	running    atomic.Bool  // run is writing the batches; without it beat writes at once
}

type waitingPong struct {
	pc    *posConn
	to    pongSender
	frame []byte
}

func newOnlineWriter(st onlineStore, log *slog.Logger, offlineAfter time.Duration) *onlineWriter {
	every := offlineAfter / 10
	if every > time.Second {
		every = time.Second
	}
	if every < 10*time.Millisecond {
		every = 10 * time.Millisecond
	}
	return &onlineWriter{st: st, log: log, offlineAfter: offlineAfter, every: every,
		beats: map[*posConn]int64{}, wake: make(chan struct{}, 1)}
}

// beat records pc's heartbeat at now and sends its pong frame to to, at once or after the
// batch holding the heartbeat is written (see onlineWriter).
func (w *onlineWriter) beat(pc *posConn, to pongSender, now int64, frame []byte) {
	heartbeatsTotal.Inc()
	written := pc.written.Load()
	urgent := written == 0 || now-written >= int64(w.offlineAfter/2)
	w.mu.Lock()
	// A deadline is queued at most once per tenth of the offline delay (a POS sending heartbeats
	// in a loop costs one row a tick), and always when urgent.
	if urgent || pc.queued == 0 || now-pc.queued >= int64(w.offlineAfter/10) {
		if now > w.beats[pc] {
			w.beats[pc] = now
		}
		pc.queued = now
	}
	if urgent || pc.waiting > 0 {
		pc.waiting++
		w.waiting = append(w.waiting, waitingPong{pc: pc, to: to, frame: frame})
		w.mu.Unlock()
		if !w.running.Load() {
			w.flush(context.Background()) // a module that was not started: no batches
			return
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
		return
	}
	w.mu.Unlock()
	_ = to.Send(frame, nil) // an error means the socket is closing
}

// run writes a batch every tick, or at once when a heartbeat waits for it, until ctx ends; then
// it writes what is left.
func (w *onlineWriter) run(ctx context.Context) {
	w.running.Store(true)
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// From here beat writes at once; this writes what was queued before.
			w.running.Store(false)
			fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			w.flush(fctx)
			cancel()
			return
		case <-t.C:
		case <-w.wake:
		}
		w.flush(ctx)
	}
}

// flush writes the deadlines queued since the last flush in one statement, then sends the pongs
// that waited for it (also when the write failed: the heartbeat is answered, and the next one
// is urgent again and retries).
func (w *onlineWriter) flush(ctx context.Context) {
	w.mu.Lock()
	var beats map[*posConn]int64
	if len(w.beats) > 0 {
		beats = w.beats
		w.beats = make(map[*posConn]int64, len(beats))
	}
	pongs := w.waiting
	w.waiting = nil
	w.mu.Unlock()
	if len(beats) > 0 {
		locs, vendors := map[string]time.Time{}, map[string]time.Time{}
		for pc, at := range beats {
			m, id := locs, pc.location
			if id == "" {
				m, id = vendors, pc.vendor.ID
			}
			if d := time.Unix(0, at).Add(w.offlineAfter); d.After(m[id]) {
				m[id] = d
			}
		}
		w.statements.Add(1)
		onlineWritesTotal.Inc()
		if err := w.st.ExtendDoshiiOnline(ctx, locs, vendors); err != nil {
			// The heartbeats are answered all the same: a store outage must not close POS
			// sockets.
			w.log.LogAttrs(ctx, slog.LevelWarn, "doshii: recording heartbeats failed",
				slog.Int("sockets", len(beats)), slog.String("error", err.Error()))
		} else {
			for pc, at := range beats {
				if at > pc.written.Load() {
					pc.written.Store(at) // only this goroutine writes it
				}
			}
		}
	}
	if len(pongs) == 0 {
		return
	}
	// Sent under the lock, so a later pong of the same socket (sent at once by beat once
	// waiting is back to 0) cannot overtake these. Send does not block.
	w.mu.Lock()
	for _, p := range pongs {
		_ = p.to.Send(p.frame, nil)
		p.pc.waiting--
	}
	w.mu.Unlock()
}
