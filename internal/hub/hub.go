// Package hub holds posgate's websocket connections to POS peers (orderpay outlets, doshii
// locations and cloud POS vendors), whatever their dialect. A dialect authenticates the upgrade
// request itself — a refused upgrade is its own error answer before any 101 — and then hands the
// request to Hub.Accept with a Spec: the tenants the connection serves and a Handler (the
// dialect's codec) for the messages it receives.
//
// The rules every connection lives by:
//   - one reader and one writer goroutine (Accept returns once the socket is registered);
//   - a bounded send queue: Send never blocks, and a peer that cannot keep up is closed rather
//     than allowed to stall anything else;
//   - a ping every PingInterval; a peer that leaves two pings unanswered is closed;
//   - every write is bounded by WriteTimeout;
//   - messages are text: one over MaxMessage is closed with 1009, text that is not UTF-8 with
//     1007, a binary frame with 1008;
//   - Shutdown closes every socket with 1001 (the HTTP server's own Shutdown does not know
//     hijacked connections).
//
// A connection may replace older ones of its tenants (Spec.Exclusive, closed with 4009), on this
// replica and — through the event bus — on the others. Messages for a peer that were accepted
// into the store's outbox are delivered by the hub's deliverer (see Outbox).
package hub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// Code is a websocket close code.
type Code int

// The close codes posgate sends.
const (
	CodeNormal      Code = 1000 // the peer or the dialect ended the connection normally
	CodeGoingAway   Code = 1001 // the server is shutting down
	CodeInvalidText Code = 1007 // a text message that is not valid UTF-8
	CodePolicy      Code = 1008 // a malformed message, a binary frame, a peer that cannot keep up
	CodeTooBig      Code = 1009 // a message over MaxMessage
	CodeServerError Code = 1011 // the server failed
	CodeRevoked     Code = 4001 // the credential the socket was opened with expired or was revoked
	CodeDisabled    Code = 4003 // the outlet, location or vendor was disabled
	CodeReplaced    Code = 4009 // a newer connection of the same tenant replaced this one
)

// CloseError asks the hub to close a connection with Code. A Handler returns one to refuse a
// message (a malformed message: CodePolicy). Reason is sent to the peer: keep it short (at most
// 123 bytes) and never put a secret or the peer's input in it.
type CloseError struct {
	Code   Code
	Reason string
}

func (e *CloseError) Error() string { return "websocket closed: " + e.Reason }

// Errors of Send and Accept.
var (
	// ErrClosed: the connection is closed or closing; the frame was not written.
	ErrClosed = errors.New("hub: connection closed")
	// ErrQueueFull: the peer could not keep up; the connection is being closed.
	ErrQueueFull = errors.New("hub: send queue full")
	// ErrShuttingDown: Accept was called after Shutdown began; it answered 503.
	ErrShuttingDown = errors.New("hub: shutting down")
)

// Handler is a dialect's side of one connection. HandleMessage is called for each complete text
// message, in order, one at a time, while the connection's reader waits (on a worker goroutine
// shared by the connections, so the reader's stack stays small); msg is valid only until it
// returns. Returning a *CloseError closes the connection with its code, any other error
// with 1011. A slow HandleMessage delays its own connection only.
type Handler interface {
	HandleMessage(ctx context.Context, c *Conn, msg []byte) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Conn, msg []byte) error

// HandleMessage calls f.
func (f HandlerFunc) HandleMessage(ctx context.Context, c *Conn, msg []byte) error {
	return f(ctx, c, msg)
}

// Opener is implemented by Handlers that act once the connection is registered and before its
// first message is read (a greeting, a dialect's own bookkeeping).
type Opener interface {
	Opened(c *Conn)
}

// Closer is implemented by Handlers that act when the connection is gone. code is the close
// code the hub sent or received (1006 when the socket simply died).
type Closer interface {
	Closed(c *Conn, code Code)
}

// Spec describes a connection to Accept.
type Spec struct {
	// Dialect names the dialect for metrics and logs ("orderpay", "doshii"): a fixed word.
	Dialect string
	// Tenants the connection is registered under ("orderpay:<outlet id>", "doshii:<location id>",
	// "doshii-vendor:<vendor id>"). Its presence is recorded for each of them.
	Tenants []string
	// Exclusive: a connection of the same tenants opened later (here or on another replica)
	// replaces this one, which is closed with 4009; this connection replaces older ones.
	Exclusive bool
	// Handler receives the connection's messages. Required.
	Handler Handler
	// Delivery, when set, makes the hub deliver these outbox queues to the connection.
	Delivery *Delivery
	// Value is the dialect's own data for the connection (the credential it was opened with…).
	Value any
}

// Options configure a Hub. Zero durations and sizes take the defaults of the hub config section.
type Options struct {
	PingInterval time.Duration // default 30 s
	WriteTimeout time.Duration // default 10 s
	MaxMessage   int64         // bytes, default 1 MiB
	SendQueue    int           // frames, default 64

	// Replica names this process among the replicas of the deployment (presence rows, lease
	// owners, bus notices). Default: random.
	Replica string
	Clock   clock.Clock // default the system clock
	Log     *slog.Logger
	// Events, when set, carries replacements, tenant closes and outbox wake-ups between replicas.
	Events events.Bus
	// Presences, when set, records which replica holds which tenant.
	Presences Presences
	// PresenceRefresh is how often a live connection's presence row is refreshed (on a pong);
	// default 60 s. Readers should treat rows older than PresenceStale as gone.
	PresenceRefresh time.Duration
	// Outbox, when set, is the store the deliverer claims messages from.
	Outbox Outbox
	// PollInterval is how often the deliverer looks at every local queue even without a wake-up,
	// so a lost notice only delays a message; default 5 s.
	PollInterval time.Duration
	// Lease is how long a claimed message stays with one connection before another may claim it
	// (a replica that died without releasing); default 60 s.
	Lease time.Duration
	// DoneDelay is how long the events written to a socket wait for an enqueue of their queue to
	// record them done in its transaction before they are recorded by a write of their own
	// (when the Outbox can: see completingOutbox); default 20 ms.
	DoneDelay time.Duration
	// HandOff: several replicas share the store. A message for a queue this replica does not
	// deliver is stored already taken by the delivery that presence names (the replica holding
	// the peer's socket), and the notice carries it, so that replica writes it without a claim.
	HandOff bool
}

// Presences is the store role the hub records presence through.
type Presences interface {
	PutPresence(ctx context.Context, p *store.Presence) error
	TouchPresence(ctx context.Context, connID string, at time.Time) error
	DeletePresence(ctx context.Context, connID string) error
	DeletePresenceSeenBefore(ctx context.Context, t time.Time) (int, error)
}

// OptionsFromConfig maps the hub config section onto Options.
func OptionsFromConfig(c config.Hub) Options {
	return Options{
		PingInterval: config.Seconds(c.PingInterval),
		WriteTimeout: config.Seconds(c.WriteTimeout),
		MaxMessage:   c.MaxMessage,
		SendQueue:    c.SendQueue,
		Lease:        config.Seconds(c.Lease),
	}
}

func (o *Options) defaults() {
	if o.PingInterval <= 0 {
		o.PingInterval = 30 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxMessage <= 0 {
		o.MaxMessage = 1 << 20
	}
	if o.SendQueue <= 0 {
		o.SendQueue = 64
	}
	if o.Replica == "" {
		o.Replica = randomID()
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.PresenceRefresh <= 0 {
		o.PresenceRefresh = 60 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 5 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = 60 * time.Second
	}
	if o.DoneDelay <= 0 {
		o.DoneDelay = 20 * time.Millisecond
	}
}

// Hub is the set of live websocket connections of this replica.
type Hub struct {
	o Options

	mu       sync.RWMutex
	conns    map[*Conn]struct{}
	tenants  map[string]map[*Conn]struct{}
	shutdown bool
	live     sync.WaitGroup // connections being served

	bg      context.Context
	stop    context.CancelFunc
	started bool
	unsub   []func()
	workers sync.WaitGroup
	d       *deliverer
	metrics sync.Map // dialect → *dialectMetrics
	// work hands a function to an idle worker (unbuffered: a send succeeds only when a worker
	// is waiting); see Go.
	work chan func()
}

// New returns a hub; call Start before serving connections that need the bus or the outbox.
func New(o Options) *Hub {
	o.defaults()
	h := &Hub{
		o:       o,
		conns:   map[*Conn]struct{}{},
		tenants: map[string]map[*Conn]struct{}{},
		work:    make(chan func()),
	}
	h.bg, h.stop = context.WithCancel(context.Background())
	h.d = newDeliverer(h)
	return h
}

// Replica returns the name of this replica (as in presence rows).
func (h *Hub) Replica() string { return h.o.Replica }

// PresenceStale is how old a presence row's SeenAt may be before readers treat the connection
// as gone: three refresh periods, so one slow refresh does not flap a tenant offline.
func (h *Hub) PresenceStale() time.Duration { return 3 * h.o.PresenceRefresh }

// maintain runs the periodic work: outbox polling and expiry every PollInterval, and the
// deletion of presence rows left by dead replicas every PresenceRefresh.
func (h *Hub) maintain(ctx context.Context) {
	var poll, clean <-chan time.Time
	if h.o.Outbox != nil {
		t := time.NewTicker(h.o.PollInterval)
		defer t.Stop()
		poll = t.C
	}
	if h.o.Presences != nil {
		t := time.NewTicker(h.o.PresenceRefresh)
		defer t.Stop()
		clean = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll:
			h.d.poll(ctx)
		case <-clean:
			before := h.o.Clock.Now().Add(-h.PresenceStale())
			if _, err := h.o.Presences.DeletePresenceSeenBefore(ctx, before); err != nil && ctx.Err() == nil {
				h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: deleting stale presence failed", slog.String("error", err.Error()))
			}
		}
	}
}

// Start subscribes to the event bus and starts the outbox deliverer. It returns at once.
func (h *Hub) Start(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started {
		return nil
	}
	h.started = true
	if b := h.o.Events; b != nil {
		h.unsub = append(h.unsub,
			b.Subscribe(events.TopicHubConnect, h.onConnectNotice),
			b.Subscribe(events.TopicHubClose, h.onCloseNotice),
			b.Subscribe(events.TopicOutbox, h.onOutboxNotice),
		)
	}
	if h.o.Outbox != nil || h.o.Presences != nil {
		h.workers.Add(1)
		go func() { defer h.workers.Done(); h.maintain(h.bg) }()
	}
	if h.o.Outbox != nil {
		h.workers.Add(1)
		go func() { defer h.workers.Done(); h.d.renewLoop(h.bg) }()
	}
	return nil
}

// Shutdown refuses new connections, closes every socket with 1001 and waits until they are gone
// or ctx ends (then the remaining sockets are closed without the close handshake).
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.shutdown = true
	conns := make([]*Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	unsub := h.unsub
	h.unsub = nil
	h.mu.Unlock()
	for _, u := range unsub {
		u()
	}
	for _, c := range conns {
		c.Close(CodeGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { h.live.Wait(); h.stop(); h.workers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, c := range conns {
			c.abort()
		}
		h.stop()
		<-done
		return ctx.Err()
	}
}

// Conns returns the live connections of tenant on this replica.
func (h *Hub) Conns(tenant string) []*Conn {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*Conn, 0, len(h.tenants[tenant]))
	for c := range h.tenants[tenant] {
		out = append(out, c)
	}
	return out
}

// Len returns how many connections this replica holds.
func (h *Hub) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}

// CloseTenant closes every connection of tenant with code (CodeDisabled, CodeRevoked…), on this
// replica at once and on the others through the event bus. It returns how many it closed here.
func (h *Hub) CloseTenant(ctx context.Context, tenant string, code Code, reason string) int {
	n := h.closeLocal(tenant, code, reason, nil)
	if b := h.o.Events; b != nil {
		p, _ := json.Marshal(closeNotice{Tenant: tenant, Code: int(code), Reason: reason, Replica: h.o.Replica})
		if err := b.Publish(ctx, events.TopicHubClose, p); err != nil {
			h.o.Log.LogAttrs(ctx, slog.LevelWarn, "hub: announcing a tenant close failed", slog.String("error", err.Error()))
		}
	}
	return n
}

func (h *Hub) closeLocal(tenant string, code Code, reason string, keep func(*Conn) bool) int {
	n := 0
	for _, c := range h.Conns(tenant) {
		if keep != nil && keep(c) {
			continue
		}
		c.Close(code, reason)
		n++
	}
	return n
}

// Bus notices. They carry no secret: tenant names and connection ids only.
type connectNotice struct {
	Tenants []string `json:"tenants"`
	Conn    string   `json:"conn"`
	Replica string   `json:"replica"`
	Since   int64    `json:"since"` // unix nanoseconds
}

type closeNotice struct {
	Tenant  string `json:"tenant"`
	Code    int    `json:"code"`
	Reason  string `json:"reason"`
	Replica string `json:"replica"`
}

func (h *Hub) onConnectNotice(p []byte) {
	var n connectNotice
	if json.Unmarshal(p, &n) != nil || n.Replica == h.o.Replica {
		return
	}
	since := time.Unix(0, n.Since)
	for _, t := range n.Tenants {
		h.closeLocal(t, CodeReplaced, "replaced by a newer connection", func(c *Conn) bool {
			return !c.exclusive || !olderThan(c.since, c.id, since, n.Conn)
		})
	}
}

func (h *Hub) onCloseNotice(p []byte) {
	var n closeNotice
	if json.Unmarshal(p, &n) != nil || n.Replica == h.o.Replica || !sendableCode(Code(n.Code)) {
		return
	}
	h.closeLocal(n.Tenant, Code(n.Code), n.Reason, nil)
}

// olderThan orders connections by their start, then by id, so two replicas agree which of two
// connections of one tenant is the newer.
func olderThan(aSince time.Time, aID string, bSince time.Time, bID string) bool {
	if !aSince.Equal(bSince) {
		return aSince.Before(bSince)
	}
	return aID < bID
}

// sendableCode reports whether code may be put in a close frame by posgate.
func sendableCode(c Code) bool {
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 4000 && c <= 4999)
}

// Accept upgrades r (already authenticated by the dialect), registers the connection, records its
// presence (Opener runs here too) and
// returns; the connection is served on its own reader and writer goroutines until it closes
// (Closer tells when). Returning frees what the HTTP server kept for the request, which an idle
// socket would otherwise hold for its whole life. It answers 503 without upgrading when the hub
// is shutting down, and returns the upgrade's error when the request was not a websocket
// handshake (the library has answered it).
func (h *Hub) Accept(w http.ResponseWriter, r *http.Request, s Spec) error {
	if s.Handler == nil || len(s.Tenants) == 0 {
		panic("hub: Accept needs a Handler and at least one tenant")
	}
	h.mu.RLock()
	down := h.shutdown
	if !down {
		h.live.Add(1)
	}
	h.mu.RUnlock()
	if down {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return ErrShuttingDown
	}
	c, err := h.upgrade(w, r, s)
	if err != nil {
		h.live.Done()
		return err
	}
	if !h.register(c) {
		defer h.live.Done()
		c.cancel()
		_ = c.ws.Close(websocket.StatusCode(CodeGoingAway), "server shutting down")
		return ErrShuttingDown
	}
	c.open()
	go c.serve()
	return nil
}

func (h *Hub) register(c *Conn) bool {
	h.mu.Lock()
	if h.shutdown {
		h.mu.Unlock()
		return false
	}
	h.conns[c] = struct{}{}
	var replaced []*Conn
	for _, t := range c.tenants {
		set := h.tenants[t]
		if set == nil {
			set = map[*Conn]struct{}{}
			h.tenants[t] = set
		}
		if c.exclusive {
			for o := range set {
				if o.exclusive {
					replaced = append(replaced, o)
				}
			}
		}
		set[c] = struct{}{}
	}
	h.mu.Unlock()
	c.m.sockets.Inc()
	for _, o := range replaced {
		o.Close(CodeReplaced, "replaced by a newer connection")
	}
	if c.exclusive && h.o.Events != nil {
		p, _ := json.Marshal(connectNotice{Tenants: c.tenants, Conn: c.id, Replica: h.o.Replica, Since: c.since.UnixNano()})
		if err := h.o.Events.Publish(c.ctx, events.TopicHubConnect, p); err != nil {
			h.o.Log.LogAttrs(c.ctx, slog.LevelWarn, "hub: announcing a connection failed", slog.String("error", err.Error()))
		}
	}
	return true
}

func (h *Hub) unregister(c *Conn) {
	h.mu.Lock()
	if _, ok := h.conns[c]; !ok {
		h.mu.Unlock()
		return
	}
	delete(h.conns, c)
	for _, t := range c.tenants {
		if set := h.tenants[t]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(h.tenants, t)
			}
		}
	}
	h.mu.Unlock()
	c.m.sockets.Dec()
}

func randomID() string { return secret.NewID("") }
