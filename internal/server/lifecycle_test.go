package server

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/posgate/posgate/internal/hub"
)

// recordingPart is infrastructure that records when it is shut down relative to the server's
// background work.
type recordingPart struct {
	bg        func() context.Context
	mu        sync.Mutex
	calls     int
	bgEndedAt []bool // per Shutdown call: had the background context already been cancelled?
	deadline  []bool // per Shutdown call: did ctx carry the shutdown deadline?
}

func (p *recordingPart) Start(context.Context) error { return nil }

func (p *recordingPart) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	p.bgEndedAt = append(p.bgEndedAt, p.bg().Err() != nil)
	_, ok := ctx.Deadline()
	p.deadline = append(p.deadline, ok)
	return nil
}

func newTestServer(t *testing.T) *Server {
	t.Helper()
	srv, err := New(context.Background(), Options{Config: testConfig(t, t.TempDir()), Log: NewLogger(io.Discard, "info"),
		Out: io.Discard, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// TestServeShutsInfrastructureDownFirst: when Serve stops, infrastructure (the hub) is shut down
// under the shutdown deadline while background work still runs, and the hub refuses new sockets.
func TestServeShutsInfrastructureDownFirst(t *testing.T) {
	srv := newTestServer(t)
	if len(srv.infra) != 2 || srv.infra[0].name != "token verifier" || srv.infra[1].name != "hub" {
		t.Fatalf("infrastructure %+v, want the token verifier then the hub", srv.infra)
	}
	p := &recordingPart{bg: func() context.Context { return srv.bg }}
	if err := srv.startInfra("recording", p); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	cancel()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if p.calls == 0 || p.bgEndedAt[0] || !p.deadline[0] {
		t.Fatalf("shutdown calls %d, background ended at first %v, deadline %v", p.calls, p.bgEndedAt, p.deadline)
	}
	rec := httptest.NewRecorder()
	err := srv.svc.Hub.Accept(rec, httptest.NewRequest("GET", "/ws", nil), hub.Spec{Tenants: []string{"t"},
		Handler: hub.HandlerFunc(func(context.Context, *hub.Conn, []byte) error { return nil })})
	if !errors.Is(err, hub.ErrShuttingDown) || rec.Code != 503 {
		t.Fatalf("hub after Serve: %v %d, want ErrShuttingDown and 503", err, rec.Code)
	}
}

// TestCloseShutsInfrastructureDownWithoutServe: a server closed without serving (New's caller
// gave up, or New failed half-way) still shuts its infrastructure down before the background
// work ends.
func TestCloseShutsInfrastructureDownWithoutServe(t *testing.T) {
	srv := newTestServer(t)
	p := &recordingPart{bg: func() context.Context { return srv.bg }}
	if err := srv.startInfra("recording", p); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if p.calls != 1 || p.bgEndedAt[0] || !p.deadline[0] {
		t.Fatalf("shutdown calls %d, background ended %v, deadline %v", p.calls, p.bgEndedAt, p.deadline)
	}
	err := srv.svc.Hub.Accept(httptest.NewRecorder(), httptest.NewRequest("GET", "/ws", nil), hub.Spec{Tenants: []string{"t"},
		Handler: hub.HandlerFunc(func(context.Context, *hub.Conn, []byte) error { return nil })})
	if !errors.Is(err, hub.ErrShuttingDown) {
		t.Fatalf("hub after Close: %v, want ErrShuttingDown", err)
	}
}
