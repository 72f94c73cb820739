package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/hub"
)

// waiters correlates answers with the requests waiting for them, by the id that leads a message
// ("<id> <payload>").
type waiters struct {
	mu sync.Mutex
	m  map[int64]chan struct{}
}

func (w *waiters) add(id int64) chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	if w.m == nil {
		w.m = map[int64]chan struct{}{}
	}
	w.m[id] = ch
	w.mu.Unlock()
	return ch
}

func (w *waiters) done(msg []byte) {
	head, _, _ := strings.Cut(string(msg), " ")
	id, err := strconv.ParseInt(head, 10, 64)
	if err != nil {
		return
	}
	w.mu.Lock()
	ch := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

func (w *waiters) wait(ctx context.Context, id int64, ch chan struct{}) error {
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		w.mu.Lock()
		delete(w.m, id)
		w.mu.Unlock()
		return errors.New("no answer within 30 s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

const requestBody = `{"MessageType":1,"Payload":{"OrderID":"12345","Lines":[{"PLU":"100","Qty":2}]}}`

func request(id int64) []byte { return []byte(strconv.FormatInt(id, 10) + " " + requestBody) }

// peerEcho dials url and answers every message with itself until the connection ends.
func peerEcho(url string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			typ, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
			err = c.Write(wctx, typ, b)
			wcancel()
			if err != nil {
				return
			}
		}
	}()
	return c, nil
}

// echoDialect is a round trip through the hub without a store: Send to the peer's connection,
// the peer echoes, the hub's Handler hands the answer to the waiting request. It is the floor
// under every dialect's round trip (which adds the outbox, the event bus and HTTP).
type echoDialect struct {
	h    *hub.Hub
	srv  *echoServer
	peer *websocket.Conn
	w    waiters
	conn chan *hub.Conn
	c    *hub.Conn
}

func (d *echoDialect) Start(ctx context.Context, o RoundTripOptions) error {
	d.h = hub.New(hub.Options{SendQueue: 4096})
	d.conn = make(chan *hub.Conn, 1)
	handler := &echoHandler{d: d}
	var err error
	d.srv, err = startEchoServer(func(w http.ResponseWriter, r *http.Request) {
		_ = d.h.Accept(w, r, hub.Spec{Dialect: "bench", Tenants: []string{"bench:peer"}, Handler: handler})
	})
	if err != nil {
		return err
	}
	if d.peer, err = peerEcho(d.srv.url); err != nil {
		return err
	}
	select {
	case d.c = <-d.conn:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("the peer's connection did not open")
	}
}

type echoHandler struct{ d *echoDialect }

func (e *echoHandler) HandleMessage(_ context.Context, _ *hub.Conn, msg []byte) error {
	e.d.w.done(msg)
	return nil
}

func (e *echoHandler) Opened(c *hub.Conn) { e.d.conn <- c }

func (d *echoDialect) Do(ctx context.Context, i int64) error {
	ch := d.w.add(i)
	if err := d.c.Send(request(i), nil); err != nil {
		return err
	}
	return d.w.wait(ctx, i, ch)
}

func (d *echoDialect) Stop() {
	_ = d.peer.CloseNow()
	_ = d.h.Shutdown(context.Background())
	d.srv.close()
}

// bareDialect is the baseline: the same request → peer → answer over a bare coder/websocket
// connection (the server writes, a reader correlates), no hub, no store.
type bareDialect struct {
	srv  *echoServer
	peer *websocket.Conn
	conn chan *websocket.Conn
	c    *websocket.Conn
	w    waiters
}

func (d *bareDialect) Start(ctx context.Context, o RoundTripOptions) error {
	d.conn = make(chan *websocket.Conn, 1)
	var err error
	d.srv, err = startEchoServer(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		d.conn <- c
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			d.w.done(b)
		}
	})
	if err != nil {
		return err
	}
	if d.peer, err = peerEcho(d.srv.url); err != nil {
		return err
	}
	d.c = <-d.conn
	return nil
}

func (d *bareDialect) Do(ctx context.Context, i int64) error {
	ch := d.w.add(i)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := d.c.Write(wctx, websocket.MessageText, request(i))
	cancel()
	if err != nil {
		return err
	}
	return d.w.wait(ctx, i, ch)
}

func (d *bareDialect) Stop() {
	_ = d.peer.CloseNow()
	_ = d.c.CloseNow()
	d.srv.close()
}
