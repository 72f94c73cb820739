package hub_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/metrics"
)

// testTimeout bounds every wait in these tests; none of them expects to come near it.
const testTimeout = 10 * time.Second

// server is a hub behind a real HTTP server on loopback. Every upgrade request is accepted for
// the tenant named by its ?tenant= query (the tests stand in for a dialect that authenticated).
type server struct {
	t    *testing.T
	hub  *hub.Hub
	srv  *httptest.Server
	spec func(r *http.Request) hub.Spec

	mu     sync.Mutex
	closed map[string]hub.Code // conn id → close code seen by the dialect
	opened chan *hub.Conn
	gone   chan *hub.Conn
}

func newServer(t *testing.T, o hub.Options) *server {
	t.Helper()
	s := &server{t: t, closed: map[string]hub.Code{}, opened: make(chan *hub.Conn, 100), gone: make(chan *hub.Conn, 100)}
	s.hub = hub.New(o)
	if err := s.hub.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.spec = func(r *http.Request) hub.Spec {
		q := r.URL.Query()
		dialect := q.Get("dialect")
		if dialect == "" {
			dialect = "test"
		}
		spec := hub.Spec{Dialect: dialect, Tenants: append([]string{q.Get("tenant")}, q["also"]...),
			Exclusive: q.Get("exclusive") == "1", Handler: &echo{s: s}}
		switch q.Get("deliver") {
		case "answer":
			spec.Delivery = &hub.Delivery{Queues: spec.Tenants, Mode: hub.AwaitAnswer}
		case "written":
			spec.Delivery = &hub.Delivery{Queues: spec.Tenants, Mode: hub.DoneWhenWritten}
		}
		return spec
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = s.hub.Accept(w, r, s.spec(r))
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = s.hub.Shutdown(ctx)
		s.srv.Close()
	})
	return s
}

// echo answers every message with "echo:<message>" and records opens and closes.
type echo struct{ s *server }

func (e *echo) HandleMessage(ctx context.Context, c *hub.Conn, msg []byte) error {
	if string(msg) == "bad" {
		return &hub.CloseError{Code: hub.CodePolicy, Reason: "malformed message"}
	}
	return c.Send(append([]byte("echo:"), msg...), nil)
}

func (e *echo) Opened(c *hub.Conn) { e.s.opened <- c }

func (e *echo) Closed(c *hub.Conn, code hub.Code) {
	e.s.mu.Lock()
	e.s.closed[c.ID()] = code
	e.s.mu.Unlock()
	e.s.gone <- c
}

func (s *server) url(tenant string, exclusive bool) string {
	u := "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/?tenant=" + tenant
	if exclusive {
		u += "&exclusive=1"
	}
	return u
}

func (s *server) dial(tenant string, exclusive bool, opts *websocket.DialOptions) (*websocket.Conn, *hub.Conn) {
	s.t.Helper()
	return s.dialURL(s.url(tenant, exclusive), opts)
}

func (s *server) dialURL(url string, opts *websocket.DialOptions) (*websocket.Conn, *hub.Conn) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		s.t.Fatalf("dial: %v", err)
	}
	s.t.Cleanup(func() { _ = ws.CloseNow() })
	return ws, s.waitOpened()
}

func (s *server) waitOpened() *hub.Conn {
	s.t.Helper()
	select {
	case c := <-s.opened:
		return c
	case <-time.After(testTimeout):
		s.t.Fatal("no connection opened")
	}
	return nil
}

func (s *server) waitGone() (*hub.Conn, hub.Code) {
	s.t.Helper()
	select {
	case c := <-s.gone:
		s.mu.Lock()
		defer s.mu.Unlock()
		return c, s.closed[c.ID()]
	case <-time.After(testTimeout):
		s.t.Fatal("no connection closed")
	}
	return nil, 0
}

// readClose reads from ws until the connection ends and returns the close code received.
func readClose(t *testing.T, ws *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		_, _, err := ws.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal("the server did not close the connection")
			}
			return websocket.CloseStatus(err)
		}
	}
}

func read(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	typ, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("read a %v frame, want text", typ)
	}
	return string(b)
}

func write(t *testing.T, ws *websocket.Conn, typ websocket.MessageType, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := ws.Write(ctx, typ, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestEchoAndSendResult(t *testing.T) {
	s := newServer(t, hub.Options{})
	ws, c := s.dial("orderpay:o1", false, nil)
	write(t, ws, websocket.MessageText, []byte("hello"))
	if got := read(t, ws); got != "echo:hello" {
		t.Fatalf("got %q", got)
	}
	if got := s.hub.Conns("orderpay:o1"); len(got) != 1 || got[0] != c {
		t.Fatalf("Conns = %v", got)
	}
	done := make(chan error, 1)
	if err := c.Send([]byte("pushed"), func(err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("done(%v), want nil: the frame was written", err)
	}
	if got := read(t, ws); got != "pushed" {
		t.Fatalf("got %q", got)
	}
	// Sent counts a frame before it is written: once the peer has read two, both are counted.
	if n := c.Sent(); n != 2 {
		t.Fatalf("Sent() = %d after two frames read by the peer, want 2", n)
	}
	_ = ws.Close(websocket.StatusNormalClosure, "bye")
	if _, code := s.waitGone(); code != hub.CodeNormal {
		t.Fatalf("close code %d, want 1000", code)
	}
	if err := c.Send([]byte("late"), func(error) { t.Error("done called for a refused Send") }); !errors.Is(err, hub.ErrClosed) {
		t.Fatalf("Send after close = %v, want ErrClosed", err)
	}
	if n := len(s.hub.Conns("orderpay:o1")); n != 0 {
		t.Fatalf("%d connections left registered", n)
	}
}

func TestHandlerCloseError(t *testing.T) {
	s := newServer(t, hub.Options{})
	ws, _ := s.dial("t", false, nil)
	write(t, ws, websocket.MessageText, []byte("bad"))
	if code := readClose(t, ws); code != websocket.StatusPolicyViolation {
		t.Fatalf("close %v, want 1008", code)
	}
}

// A peer that answers pings stays connected; one that leaves two unanswered is closed (1008).
func TestPingsAndMissedPongs(t *testing.T) {
	const interval = 20 * time.Millisecond
	s := newServer(t, hub.Options{PingInterval: interval})

	pings := make(chan struct{}, 100)
	live, _ := s.dial("live", false, &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
		pings <- struct{}{}
		return true // answer with a pong
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	liveErr := make(chan error, 1)
	go func() { _, _, err := live.Read(ctx); liveErr <- err }()
	// Without pongs the server closes after its third tick; six pings mean the pongs counted.
	for i := 0; i < 6; i++ {
		select {
		case <-pings:
		case err := <-liveErr:
			t.Fatalf("a peer answering pings was closed after %d pings: %v", i, err)
		case <-time.After(testTimeout):
			t.Fatal("no ping received")
		}
	}
	if n := len(s.hub.Conns("live")); n != 1 {
		t.Fatalf("live peer: %d connections registered, want 1", n)
	}

	silent := make(chan struct{}, 100)
	mute, _ := s.dial("mute", false, &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
		silent <- struct{}{}
		return false // no pong
	}})
	if code := readClose(t, mute); code != websocket.StatusPolicyViolation {
		t.Fatalf("mute peer closed with %v, want 1008", code)
	}
	if n := len(silent); n < 2 {
		t.Fatalf("mute peer was closed after %d pings, want at least 2 missed", n)
	}
	if _, code := s.waitGone(); code != hub.CodePolicy {
		t.Fatalf("dialect saw close code %d, want 1008", code)
	}
}

// Frames the hub refuses: each closes its own connection with its code, and another connection
// of the same hub carries on.
func TestRefusedFrames(t *testing.T) {
	s := newServer(t, hub.Options{MaxMessage: 1024})
	other, _ := s.dial("other", false, nil)
	for _, tc := range []struct {
		name string
		typ  websocket.MessageType
		msg  []byte
		want websocket.StatusCode
	}{
		{"oversize", websocket.MessageText, []byte(strings.Repeat("a", 1025)), websocket.StatusMessageTooBig},
		{"oversize binary", websocket.MessageBinary, make([]byte, 4096), websocket.StatusPolicyViolation},
		{"bad utf-8", websocket.MessageText, []byte("caf\xc3\x28"), websocket.StatusInvalidFramePayloadData},
		{"truncated utf-8", websocket.MessageText, []byte("\xe2\x82"), websocket.StatusInvalidFramePayloadData},
		{"binary", websocket.MessageBinary, []byte(`{"ok":true}`), websocket.StatusPolicyViolation},
		{"handler refusal", websocket.MessageText, []byte("bad"), websocket.StatusPolicyViolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ws, _ := s.dial("t", false, nil)
			write(t, ws, tc.typ, tc.msg)
			if code := readClose(t, ws); code != tc.want {
				t.Fatalf("close %v, want %v", code, tc.want)
			}
			if _, code := s.waitGone(); code != hub.Code(tc.want) {
				t.Fatalf("dialect saw close code %d, want %d", code, tc.want)
			}
			write(t, other, websocket.MessageText, []byte("still here"))
			if got := read(t, other); got != "echo:still here" {
				t.Fatalf("other connection got %q", got)
			}
		})
	}
	// The largest allowed message passes.
	big := strings.Repeat("é", 512) // 1024 bytes
	write(t, other, websocket.MessageText, []byte(big))
	if got := read(t, other); got != "echo:"+big {
		t.Fatal("a message of exactly max_message bytes was not delivered")
	}
}

// A peer that stops reading is closed once its send queue is full; the others are not slowed.
func TestSlowConsumerClosed(t *testing.T) {
	s := newServer(t, hub.Options{SendQueue: 4, WriteTimeout: 200 * time.Millisecond})
	_, slow := s.dial("slow", false, nil) // never reads
	fast, fastConn := s.dial("fast", false, nil)

	frame := make([]byte, 256<<10)
	for i := range frame {
		frame[i] = 'x'
	}
	var failed []error
	var mu sync.Mutex
	full := false
	for i := 0; i < 10000 && !full; i++ {
		err := slow.Send(frame, func(err error) {
			if err != nil {
				mu.Lock()
				failed = append(failed, err)
				mu.Unlock()
			}
		})
		switch {
		case errors.Is(err, hub.ErrQueueFull):
			full = true
		case err != nil:
			t.Fatalf("Send: %v", err)
		}
		// Meanwhile the fast peer is served at once.
		done := make(chan error, 1)
		if err := fastConn.Send([]byte("tick"), func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		if got := read(t, fast); got != "tick" {
			t.Fatalf("fast peer got %q", got)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if !full {
		t.Fatal("the send queue of a peer that never reads never filled")
	}
	c, code := s.waitGone()
	if c != slow || code == hub.CodeNormal {
		t.Fatalf("closed %v with %d, want the slow peer", c.Tenants(), code)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) == 0 {
		t.Fatal("no queued frame reported a failure")
	}
	for _, err := range failed {
		if !errors.Is(err, hub.ErrClosed) {
			t.Fatalf("done(%v), want ErrClosed", err)
		}
	}
	write(t, fast, websocket.MessageText, []byte("after"))
	if got := read(t, fast); got != "echo:after" {
		t.Fatalf("fast peer got %q", got)
	}
}

// Shutdown closes every socket with 1001 and refuses new upgrades with 503.
func TestShutdown(t *testing.T) {
	s := newServer(t, hub.Options{})
	a, _ := s.dial("a", false, nil)
	b, _ := s.dial("b", true, nil)
	codes := make(chan websocket.StatusCode, 2)
	for _, ws := range []*websocket.Conn{a, b} {
		go func() { codes <- readClose(t, ws) }()
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.hub.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if code := <-codes; code != websocket.StatusGoingAway {
			t.Fatalf("close %v, want 1001", code)
		}
	}
	if n := s.hub.Len(); n != 0 {
		t.Fatalf("%d connections left after Shutdown", n)
	}
	_, resp, err := websocket.Dial(ctx, s.url("c", false), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Shutdown: %v, %v; want 503", err, resp)
	}
}

// A newer exclusive connection of a tenant replaces the older one (4009); connections of other
// tenants and non-exclusive ones stay.
func TestReplacementLocal(t *testing.T) {
	s := newServer(t, hub.Options{})
	old, _ := s.dial("orderpay:o1", true, nil)
	other, _ := s.dial("orderpay:o2", true, nil)
	_, newer := s.dial("orderpay:o1", true, nil)
	if code := readClose(t, old); code != 4009 {
		t.Fatalf("older connection closed with %v, want 4009", code)
	}
	if _, code := s.waitGone(); code != hub.CodeReplaced {
		t.Fatalf("dialect saw %d, want 4009", code)
	}
	if got := s.hub.Conns("orderpay:o1"); len(got) != 1 || got[0] != newer {
		t.Fatalf("Conns(o1) = %v, want only the newer", got)
	}
	write(t, other, websocket.MessageText, []byte("x"))
	if got := read(t, other); got != "echo:x" {
		t.Fatalf("other tenant's connection: %q", got)
	}
}

// Two hubs (two replicas) sharing one event bus: a connection on B replaces the older one on A,
// and a tenant closed on A is closed on B.
func TestAcrossReplicas(t *testing.T) {
	bus := events.NewLocal()
	a := newServer(t, hub.Options{Events: bus, Replica: "a"})
	b := newServer(t, hub.Options{Events: bus, Replica: "b"})

	old, _ := a.dial("orderpay:o1", true, nil)
	b.dial("orderpay:o1", true, nil)
	if code := readClose(t, old); code != 4009 {
		t.Fatalf("connection on replica a closed with %v, want 4009", code)
	}
	if n := len(b.hub.Conns("orderpay:o1")); n != 1 {
		t.Fatalf("replica b holds %d connections of o1, want 1 (the newer)", n)
	}

	onB, _ := b.dial("doshii:l1", false, nil)
	onA, _ := a.dial("doshii:l1", false, nil)
	if n := a.hub.CloseTenant(context.Background(), "doshii:l1", hub.CodeDisabled, "location disabled"); n != 1 {
		t.Fatalf("CloseTenant closed %d here, want 1", n)
	}
	for _, ws := range []*websocket.Conn{onA, onB} {
		if code := readClose(t, ws); code != 4003 {
			t.Fatalf("closed with %v, want 4003", code)
		}
	}
}

// A request that is not a websocket handshake is answered by the library (426) and Accept
// returns its error; nothing is registered.
func TestAcceptRefusesPlainRequest(t *testing.T) {
	s := newServer(t, hub.Options{})
	resp, err := http.Get(s.srv.URL + "/?tenant=t")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired {
		t.Fatalf("status %d, want 426", resp.StatusCode)
	}
	if n := s.hub.Len(); n != 0 {
		t.Fatalf("%d connections registered", n)
	}
}

// The hub's series: live sockets by dialect, messages in and out, closes by code.
func TestMetrics(t *testing.T) {
	s := newServer(t, hub.Options{})
	in0, out0 := metric(t, "posgate_hub_messages_total", "metrics", "in"), metric(t, "posgate_hub_messages_total", "metrics", "out")
	closes0 := metric(t, "posgate_hub_closes_total", "1000", "metrics")
	ws, _ := s.dialURL(s.url("m", false)+"&dialect=metrics", nil)
	if got := metric(t, "posgate_hub_sockets", "metrics"); got != 1 {
		t.Fatalf("hub_sockets{dialect=metrics} = %v, want 1", got)
	}
	write(t, ws, websocket.MessageText, []byte("hi"))
	read(t, ws)
	if metric(t, "posgate_hub_messages_total", "metrics", "in")-in0 != 1 || metric(t, "posgate_hub_messages_total", "metrics", "out")-out0 != 1 {
		t.Fatal("messages in/out not counted")
	}
	_ = ws.Close(websocket.StatusNormalClosure, "")
	s.waitGone()
	if got := metric(t, "posgate_hub_sockets", "metrics"); got != 0 {
		t.Fatalf("hub_sockets after close = %v", got)
	}
	if metric(t, "posgate_hub_closes_total", "1000", "metrics")-closes0 != 1 {
		t.Fatal("close not counted under 1000")
	}
}

// metric reads a gauge or counter of the registry /metrics serves, by its label values in the
// order of the label names (as the registry sorts them).
func metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for i, l := range m.GetLabel() {
				if l.GetValue() != labels[i] {
					continue next
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// stackProbe is a Handler that notes the messages it was called for on a connection's reader
// goroutine, and blocks on "block" until release is closed.
type stackProbe struct {
	s        *server
	release  chan struct{}
	mu       sync.Mutex
	onReader []string
}

func (p *stackProbe) HandleMessage(ctx context.Context, c *hub.Conn, msg []byte) error {
	buf := make([]byte, 64<<10)
	if st := string(buf[:runtime.Stack(buf, false)]); strings.Contains(st, "readLoop") {
		p.mu.Lock()
		p.onReader = append(p.onReader, string(msg))
		p.mu.Unlock()
	}
	if string(msg) == "block" {
		<-p.release
	}
	return c.Send(append([]byte("echo:"), msg...), nil)
}

// Opened notes being called on the reader goroutine (which runs Conn.serve) as "opened".
func (p *stackProbe) Opened(c *hub.Conn) {
	buf := make([]byte, 64<<10)
	if st := string(buf[:runtime.Stack(buf, false)]); strings.Contains(st, "(*Conn).serve") || strings.Contains(st, "readLoop") {
		p.mu.Lock()
		p.onReader = append(p.onReader, "opened")
		p.mu.Unlock()
	}
	p.s.opened <- c
}

// TestHandlerRunsOffTheReader: HandleMessage and Opened (with the presence write beside it) do
// not run on the connection's reader goroutine, whose stack would keep whatever a deep handler
// grew it to for the life of an idle socket. And
// a handler blocked on one connection does not hold back another connection's messages, nor
// does it reorder its own connection's.
func TestHandlerRunsOffTheReader(t *testing.T) {
	s := newServer(t, hub.Options{})
	p := &stackProbe{s: s, release: make(chan struct{})}
	s.spec = func(r *http.Request) hub.Spec {
		return hub.Spec{Dialect: "test", Tenants: []string{r.URL.Query().Get("tenant")}, Handler: p}
	}
	slow, _ := s.dial("t:slow", false, nil)
	fast, _ := s.dial("t:fast", false, nil)
	write(t, slow, websocket.MessageText, []byte("block"))
	write(t, slow, websocket.MessageText, []byte("after"))
	for _, m := range []string{"one", "two", "three"} {
		write(t, fast, websocket.MessageText, []byte(m))
		if got := read(t, fast); got != "echo:"+m {
			t.Fatalf("fast connection read %q, want %q", got, "echo:"+m)
		}
	}
	close(p.release)
	for _, m := range []string{"block", "after"} {
		if got := read(t, slow); got != "echo:"+m {
			t.Fatalf("slow connection read %q, want %q", got, "echo:"+m)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.onReader) > 0 {
		t.Fatalf("called on the reader goroutine: %q", p.onReader)
	}
}
