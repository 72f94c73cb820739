package hub

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/metrics"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// Conn is one live websocket connection. Its methods are safe for concurrent use.
type Conn struct {
	h         *Hub
	ws        *websocket.Conn
	raw       net.Conn // the hijacked socket under ws
	id        string
	dialect   string
	tenants   []string
	exclusive bool
	handler   Handler
	delivery  *Delivery
	value     any
	since     time.Time
	m         *dialectMetrics

	ctx    context.Context // done once the connection starts closing
	cancel context.CancelFunc

	mu      sync.Mutex
	queue   []outgoing
	closing bool
	code    Code // the close code, once closing

	wake chan struct{} // the writer has frames to write (capacity 1)
	// handled carries HandleMessage's result from the worker back to the reader (capacity 1,
	// made at the first message, with runHandler); inMsg is the message the worker handles.
	// Both are used by the reader and the one worker running its message, one after the other.
	handled    chan error
	inMsg      []byte
	runHandler func() // runs the Handler on inMsg and sends its result to handled
	writerDone chan struct{}
	unanswered atomic.Int32  // pings sent since the last pong
	sent       atomic.Uint64 // frames the writer started writing (see Sent)
	touched    atomic.Int64  // unix nanoseconds of the last presence refresh
	presence   atomic.Bool   // a presence row was written
	// presencePartial: writing the presence rows failed part-way; the next refresh rewrites them.
	presencePartial atomic.Bool
}

type outgoing struct {
	data []byte
	done func(error)
}

// ID is the connection's unique id (its presence row and lease owner).
func (c *Conn) ID() string { return c.id }

// Dialect is Spec.Dialect.
func (c *Conn) Dialect() string { return c.dialect }

// Tenants are Spec.Tenants; do not modify.
func (c *Conn) Tenants() []string { return c.tenants }

// Value is Spec.Value.
func (c *Conn) Value() any { return c.value }

// Since is when the connection was accepted.
func (c *Conn) Since() time.Time { return c.since }

// Context is done once the connection starts closing.
func (c *Conn) Context() context.Context { return c.ctx }

// Send queues msg as one text frame; msg must not be modified afterwards. It never blocks. When
// Sent is how many frames queued with Send the writer has begun writing to the peer. It is
// counted before each write starts, so an answer the peer sends to a frame can never be read
// before that frame is counted: a dialect can tell answers it asked for from unsolicited
// messages (orderpay's flood bound).
func (c *Conn) Sent() uint64 { return c.sent.Load() }

// Send returns nil, done (may be nil) is called exactly once, on the connection's writer
// goroutine, with nil once the frame was written to the socket, or with the error why it was
// not (ErrClosed when the connection closed first). done must not block. When the queue is full
// the peer is too slow: the connection is closed (1008) and Send returns ErrQueueFull.
func (c *Conn) Send(msg []byte, done func(error)) error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return ErrClosed
	}
	if len(c.queue) >= c.h.o.SendQueue {
		c.mu.Unlock()
		c.h.o.Log.LogAttrs(c.ctx, slog.LevelWarn, "hub: peer too slow, closing",
			slog.String("dialect", c.dialect), slog.String("conn", c.id))
		c.Close(CodePolicy, "send queue full")
		return ErrQueueFull
	}
	c.queue = append(c.queue, outgoing{data: msg, done: done})
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// roomy reports whether the send queue is at most half full: a frame handed over without
// waiting for the previous write (a hand-off) may be queued; beyond that it goes through the
// deliverer, which waits for each write, so bursts of them cannot close a peer that is only
// briefly slow.
func (c *Conn) roomy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue) < max(1, c.h.o.SendQueue/2)
}

// Close starts closing the connection with code and reason (the close handshake runs in the
// background, bounded by the library's 5 s per step). Frames still queued are not written. A
// second Close is a no-op.
func (c *Conn) Close(code Code, reason string) {
	if !c.beginClose(code) {
		return
	}
	go c.handshake(code, reason)
}

// closeSync closes from the reader goroutine, which then reads the peer's closing frame itself.
func (c *Conn) closeSync(code Code, reason string) {
	if c.beginClose(code) {
		c.handshake(code, reason)
	}
}

// handshake runs the close handshake, bounded by WriteTimeout: a peer that does not read (the
// reason it is closed, often) cannot hold the socket open for the library's longer timeouts.
func (c *Conn) handshake(code Code, reason string) {
	t := time.AfterFunc(c.h.o.WriteTimeout, c.abort)
	_ = c.ws.Close(websocket.StatusCode(code), reason)
	t.Stop()
}

// abort drops the connection without a close handshake. It closes the socket underneath the
// library, which then fails every pending read and write (CloseNow would wait for a handshake
// in progress).
func (c *Conn) abort() {
	c.beginClose(CodeGoingAway)
	_ = c.raw.Close()
}

func (c *Conn) beginClose(code Code) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	c.closing = true
	c.code = code
	c.mu.Unlock()
	c.cancel()
	return true
}

func (c *Conn) closeCode() (Code, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code, c.closing
}

func (h *Hub) upgrade(w http.ResponseWriter, r *http.Request, s Spec) (*Conn, error) {
	c := &Conn{
		h:          h,
		id:         secret.NewID("ws_"),
		dialect:    s.Dialect,
		tenants:    s.Tenants,
		exclusive:  s.Exclusive,
		handler:    s.Handler,
		delivery:   s.Delivery,
		value:      s.Value,
		since:      h.o.Clock.Now(),
		m:          h.dialectMetrics(s.Dialect),
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
	}
	hw := &hijackWriter{ResponseWriter: w}
	ws, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		OnPongReceived: func(context.Context, []byte) { c.unanswered.Store(0) },
	})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(h.o.MaxMessage)
	c.ws = ws
	c.raw = hw.conn
	c.ctx, c.cancel = context.WithCancel(h.bg)
	return c, nil
}

// open does a registered connection's start-up work on the calling goroutine (Accept's, which
// ends soon after): starts the writer, records presence, tells the dialect and the deliverer.
// None of it runs on the reader, whose stack would keep the depth of a store write for the
// life of the socket.
func (c *Conn) open() {
	h := c.h
	go c.writeLoop()
	// The delivery exists before presence names this connection: a message handed to it by
	// another replica from then on finds it (see Hub.Enqueue).
	h.d.prepare(c)
	h.putPresence(c)
	if o, ok := c.handler.(Opener); ok {
		o.Opened(c)
	}
	h.d.attach(c)
}

// serve runs an opened connection on the calling goroutine (the reader) until it is closed.
func (c *Conn) serve() {
	h := c.h
	defer h.live.Done()
	code := c.readLoop()

	c.beginClose(code)
	_ = c.ws.CloseNow()
	<-c.writerDone
	h.unregister(c)
	h.d.detach(c)
	h.deletePresence(c)
	metrics.HubCloses.WithLabelValues(c.dialect, closeLabel(code)).Inc()
	if cl, ok := c.handler.(Closer); ok {
		cl.Closed(c, code)
	}
}

// hijackWriter keeps the socket the websocket library hijacks, so the hub can drop it when a
// close handshake overstays.
type hijackWriter struct {
	http.ResponseWriter
	conn net.Conn
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return c, rw, err
	}
	w.conn = c
	// The HTTP server's buffers are 4 KiB each way and live as long as the socket. An idle POS
	// socket carries small frames; larger ones bypass a buffer anyway (bufio reads and writes
	// big slices directly), so smaller buffers cost little and save most of the per-socket
	// memory they held. Bytes the peer sent right after its handshake are kept.
	if n := rw.Reader.Buffered(); n <= connBufferSize {
		buffered, _ := rw.Reader.Peek(n)
		br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(append([]byte(nil), buffered...)), c), connBufferSize)
		if _, err := br.Peek(n); err == nil {
			rw = bufio.NewReadWriter(br, bufio.NewWriterSize(c, connBufferSize))
		}
	}
	return c, rw, nil
}

// connBufferSize is the read and the write buffer of one socket.
const connBufferSize = 1024

func (w *hijackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readLoop reads messages until the connection ends and returns the close code.
func (c *Conn) readLoop() Code {
	max := c.h.o.MaxMessage
	for {
		// The read context is never cancelled: cancelling it would make the library drop the
		// socket without the close handshake. Close and CloseNow end a pending read instead.
		typ, r, err := c.ws.Reader(context.Background())
		if err != nil {
			return c.readErrCode(err)
		}
		if code, reason := checkMessage(typ, nil, max); code != 0 {
			c.closeSync(code, reason)
			return code
		}
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			putBuf(buf)
			if errors.Is(err, websocket.ErrMessageTooBig) {
				c.closeSync(CodeTooBig, "message too big")
				return CodeTooBig
			}
			return c.readErrCode(err)
		}
		if code, reason := checkMessage(typ, buf.Bytes(), max); code != 0 {
			putBuf(buf)
			c.closeSync(code, reason)
			return code
		}
		c.m.in.Inc()
		err = c.h.handle(c, buf.Bytes())
		putBuf(buf)
		if err != nil {
			var ce *CloseError
			if errors.As(err, &ce) && sendableCode(ce.Code) {
				c.closeSync(ce.Code, ce.Reason)
				return ce.Code
			}
			c.h.o.Log.LogAttrs(c.ctx, slog.LevelError, "hub: message handler failed",
				slog.String("dialect", c.dialect), slog.String("conn", c.id), slog.String("error", err.Error()))
			c.closeSync(CodeServerError, "server error")
			return CodeServerError
		}
	}
}

// handle runs c's Handler on msg on a worker goroutine (Go) and waits for it. A reader spends
// the life of its socket blocked in a read, keeping the stack it has: running the Handler there
// (a JSON decoder, a store write, a log line) grows that stack and the runtime never gives it
// back, because a reader parked in the websocket library uses more than the quarter of a grown
// stack below which the collector shrinks it. A few workers keep the deep stacks instead, and
// every idle socket's reader stays at its starting size.
func (h *Hub) handle(c *Conn, msg []byte) error {
	if c.handled == nil {
		c.handled = make(chan error, 1)
		c.runHandler = func() { c.handled <- c.handler.HandleMessage(c.ctx, c, c.inMsg) }
	}
	c.inMsg = msg
	h.Go(c.runHandler)
	err := <-c.handled
	c.inMsg = nil
	return err
}

// Go runs f on one of the hub's worker goroutines: an idle one, or a new one when none is idle,
// so f never waits for another f. A worker stays for workerIdle after its last function, keeping
// the stack that function grew: a dialect's store writes (SQLite's frames are deep) would grow
// a new goroutine's stack anew each time, copying it on every doubling. Workers end once the hub
// has stopped; Go still runs f then, on a goroutine of its own.
func (h *Hub) Go(f func()) {
	select {
	case h.work <- f: // an idle worker took it
	default:
		go h.worker(f)
	}
}

// worker runs f, then every function handed to it, until it has been idle for workerIdle.
func (h *Hub) worker(f func()) {
	var t *time.Timer
	for {
		f()
		f = nil
		if t == nil {
			t = time.NewTimer(workerIdle)
		} else {
			t.Reset(workerIdle)
		}
		select {
		case f = <-h.work:
		case <-t.C:
			return
		case <-h.bg.Done():
			return
		}
	}
}

// workerIdle is how long a message worker waits for the next message before it ends.
const workerIdle = 10 * time.Second

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		bufPool.Put(b)
	}
}

// readErrCode names how the connection ended: the code we closed with, the peer's close code,
// or 1006 (abnormal: the socket died).
func (c *Conn) readErrCode(err error) Code {
	if code, ok := c.closeCode(); ok {
		return code
	}
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return CodeTooBig
	}
	if s := websocket.CloseStatus(err); s != -1 {
		return Code(s)
	}
	return 1006
}

func (c *Conn) writeLoop() {
	defer close(c.writerDone)
	o := &c.h.o
	t := time.NewTimer(o.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.wake:
			for {
				m, ok := c.pop()
				if !ok {
					break
				}
				// Counted before the write: the peer may answer before Write returns.
				c.sent.Add(1)
				ctx, cancel := context.WithTimeout(context.Background(), o.WriteTimeout)
				err := c.ws.Write(ctx, websocket.MessageText, m.data)
				cancel()
				if err != nil {
					// The library has closed the socket (a write that timed out included).
					c.beginClose(1006)
					_ = c.raw.Close()
					err = ErrClosed
				} else {
					c.m.out.Inc()
				}
				if m.done != nil {
					m.done(err)
				}
				if err != nil {
					c.drain()
					return
				}
			}
		case <-t.C:
			if c.unanswered.Add(1) > 2 {
				// Two pings went unanswered: the peer is gone or stuck. The close handshake
				// runs in the background, bounded by the library's timeouts.
				c.h.o.Log.LogAttrs(c.ctx, slog.LevelInfo, "hub: peer missed two pongs, closing",
					slog.String("dialect", c.dialect), slog.String("conn", c.id))
				c.Close(CodePolicy, "missed two pongs")
				c.drain()
				return
			}
			go c.ping()
			t.Reset(o.PingInterval)
		case <-c.ctx.Done():
			c.drain()
			return
		}
	}
}

// ping writes a ping and, when the pong comes, refreshes the presence row if it is due.
func (c *Conn) ping() {
	ctx, cancel := context.WithTimeout(c.ctx, c.h.o.PingInterval)
	defer cancel()
	if err := c.ws.Ping(ctx); err != nil {
		return
	}
	c.h.touchPresence(c)
}

func (c *Conn) pop() (outgoing, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || len(c.queue) == 0 {
		return outgoing{}, false
	}
	m := c.queue[0]
	c.queue[0] = outgoing{}
	c.queue = c.queue[1:]
	if len(c.queue) == 0 {
		c.queue = nil // an idle connection keeps no queue memory
	}
	return m, true
}

// drain fails every frame still queued; Send refuses new ones from now on.
func (c *Conn) drain() {
	c.mu.Lock()
	c.closing = true
	q := c.queue
	c.queue = nil
	c.mu.Unlock()
	for _, m := range q {
		if m.done != nil {
			m.done(ErrClosed)
		}
	}
}

func (h *Hub) putPresence(c *Conn) {
	if h.o.Presences == nil {
		return
	}
	now := h.o.Clock.Now()
	// One row per tenant: each tenant the connection serves is online through it.
	for i, t := range c.tenants {
		p := &store.Presence{ConnID: c.id, Tenant: t, Replica: h.o.Replica, Since: c.since, SeenAt: now}
		if err := h.o.Presences.PutPresence(c.ctx, p); err != nil {
			h.o.Log.LogAttrs(c.ctx, slog.LevelWarn, "hub: recording presence failed", slog.String("error", err.Error()))
			if i > 0 {
				c.presence.Store(true) // the rows written are deleted when the connection ends
			}
			// The next refresh writes every row again (a touch would refresh only these).
			c.presencePartial.Store(true)
			return
		}
	}
	c.presencePartial.Store(false)
	c.touched.Store(now.UnixNano())
	c.presence.Store(true)
}

func (h *Hub) touchPresence(c *Conn) {
	if h.o.Presences == nil {
		return
	}
	now := h.o.Clock.Now()
	if now.Sub(time.Unix(0, c.touched.Load())) < h.o.PresenceRefresh {
		return
	}
	if c.presencePartial.Load() {
		h.putPresence(c)
		return
	}
	c.touched.Store(now.UnixNano())
	err := h.o.Presences.TouchPresence(c.ctx, c.id, now)
	if errors.Is(err, store.ErrNotFound) {
		// Deleted by a cleanup that judged this replica dead (a long pause): write it again.
		h.putPresence(c)
		return
	}
	if err != nil && c.ctx.Err() == nil {
		h.o.Log.LogAttrs(c.ctx, slog.LevelWarn, "hub: refreshing presence failed", slog.String("error", err.Error()))
	}
}

func (h *Hub) deletePresence(c *Conn) {
	if h.o.Presences == nil || !c.presence.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.o.WriteTimeout)
	defer cancel()
	if err := h.o.Presences.DeletePresence(ctx, c.id); err != nil {
		h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: deleting presence failed", slog.String("error", err.Error()))
	}
}
