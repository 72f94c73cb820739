package hub_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/hub"
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
		return hub.Spec{Dialect: "test", Tenants: []string{r.URL.Query().Get("tenant")},
			Exclusive: r.URL.Query().Get("exclusive") == "1", Handler: &echo{s: s}}
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
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, s.url(tenant, exclusive), opts)
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
