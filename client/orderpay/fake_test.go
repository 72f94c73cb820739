package orderpay

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/testutil/runtest"
	"github.com/posgate/posgate/internal/testutil/syncbuf"
)

// fakeServer is posgate's orderpay side as the protocol describes it: an auth endpoint that
// issues single-use tickets for one outlet, and a websocket on /ws (and /) that accepts each
// ticket once, refusing anything else with 401 {"ErrorMessage"} before the upgrade.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	unused    map[string]bool // issued and not yet used
	issued    []string
	authCalls int
	// authScript answers the next auth calls with these statuses (0 = issue a ticket).
	authScript []int
	retryAfter string
	date       string // when set, the Date header of refusals (a server clock far from ours)
	// upgradeScript refuses the next upgrades with these statuses (0 = accept).
	upgradeScript []int
	reused        int // upgrades presenting a ticket already used or never issued

	conns chan *fakeConn
	pings atomic.Int64 // pings received from clients
	deaf  atomic.Bool  // new connections are never read: pings go unanswered
}

type fakeConn struct {
	c      *websocket.Conn
	in     chan []byte   // text frames from the client
	closed chan struct{} // closed when the reader ends
	err    error         // why the reader ended (read after closed)
}

var testCreds = Credentials{ProviderOutletID: "outlet-1", POSRemoteID: "pos-9", AuthSecret: "s3cret-of-the-outlet"}

func newFakeServer(t *testing.T) *fakeServer {
	fs := &fakeServer{t: t, unused: map[string]bool{}, conns: make(chan *fakeConn, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+AuthPath, fs.auth)
	mux.HandleFunc("GET /ws", fs.upgrade)
	mux.HandleFunc("GET /{$}", fs.upgrade)
	fs.srv = httptest.NewServer(mux)
	t.Cleanup(fs.srv.Close)
	return fs
}

func errorMessage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"ErrorMessage": msg})
}

func (fs *fakeServer) auth(w http.ResponseWriter, r *http.Request) {
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		errorMessage(w, 400, "malformed JSON")
		return
	}
	fs.mu.Lock()
	fs.authCalls++
	status := 0
	if len(fs.authScript) > 0 {
		status, fs.authScript = fs.authScript[0], fs.authScript[1:]
	}
	fs.mu.Unlock()
	if status != 0 {
		if fs.retryAfter != "" {
			w.Header().Set("Retry-After", fs.retryAfter)
		}
		if fs.date != "" {
			w.Header().Set("Date", fs.date)
		}
		errorMessage(w, status, "scripted refusal")
		return
	}
	if body["ProviderOutletID"] != testCreds.ProviderOutletID || body["POSRemoteID"] != testCreds.POSRemoteID || body["AuthSecret"] != testCreds.AuthSecret {
		errorMessage(w, 401, "invalid credentials")
		return
	}
	var b [32]byte
	rand.Read(b[:])
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	fs.mu.Lock()
	fs.unused[tok] = true
	fs.issued = append(fs.issued, tok)
	fs.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]string{"AccessToken": tok})
}

func (fs *fakeServer) upgrade(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	fs.mu.Lock()
	status := 0
	if len(fs.upgradeScript) > 0 {
		status, fs.upgradeScript = fs.upgradeScript[0], fs.upgradeScript[1:]
	}
	ok := fs.unused[tok]
	delete(fs.unused, tok)
	if !ok && status == 0 {
		fs.reused++
	}
	fs.mu.Unlock()
	if status != 0 {
		if fs.retryAfter != "" {
			w.Header().Set("Retry-After", fs.retryAfter)
		}
		errorMessage(w, status, "scripted refusal")
		return
	}
	if !ok {
		errorMessage(w, 401, "invalid or expired token")
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OnPingReceived: func(context.Context, []byte) bool {
		fs.pings.Add(1)
		return true
	}})
	if err != nil {
		return
	}
	fc := &fakeConn{c: c, in: make(chan []byte, 64), closed: make(chan struct{})}
	fs.t.Cleanup(func() { c.CloseNow() })
	if !fs.deaf.Load() {
		go func() {
			defer close(fc.closed)
			for {
				_, data, err := c.Read(context.Background())
				if err != nil {
					fc.err = err
					return
				}
				fc.in <- data
			}
		}()
	}
	fs.conns <- fc
}

// next waits for the next accepted connection.
func (fs *fakeServer) next(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case fc := <-fs.conns:
		return fc
	case <-time.After(20 * time.Second):
		t.Fatal("no connection from the client")
		return nil
	}
}

func (fs *fakeServer) counts() (authCalls, issued, reused int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.authCalls, len(fs.issued), fs.reused
}

func (fc *fakeConn) send(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	fc.sendRaw(t, websocket.MessageText, b)
}

func (fc *fakeConn) sendRaw(t *testing.T, typ websocket.MessageType, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fc.c.Write(ctx, typ, b); err != nil {
		t.Fatalf("server write: %v", err)
	}
}

// read returns the next frame from the client, decoded, with the raw text under "_raw".
func (fc *fakeConn) read(t *testing.T) map[string]any {
	t.Helper()
	var data []byte
	select {
	case data = <-fc.in:
	case <-fc.closed:
		t.Fatalf("server read: %v", fc.err)
	case <-time.After(20 * time.Second):
		t.Fatal("no answer from the client")
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("answer %s: %v", data, err)
	}
	m["_raw"] = string(data)
	return m
}

// harness runs a Client against a fakeServer; sleeps are recorded and skipped.
type harness struct {
	runtest.Runner
	fs   *fakeServer
	c    *Client
	logs *syncbuf.Buffer
}

func newHarness(t *testing.T, fs *fakeServer, h Handler, adjust func(*Client)) *harness {
	hs := &harness{fs: fs, logs: &syncbuf.Buffer{}}
	hs.c = &Client{URL: fs.srv.URL, Credentials: testCreds, Handler: h, HTTPClient: fs.srv.Client(),
		Logger: slog.New(slog.NewTextHandler(hs.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	hs.c.sleep = hs.Sleep
	if adjust != nil {
		adjust(hs.c)
	}
	t.Cleanup(func() {
		hs.Stop(t)
		// Whatever happened, no ticket and no secret reached a log line.
		fs.mu.Lock()
		issued := append([]string(nil), fs.issued...)
		fs.mu.Unlock()
		logs := hs.logs.String()
		for _, tok := range append(issued, testCreds.AuthSecret) {
			if strings.Contains(logs, tok) {
				t.Errorf("a credential appears in the logs:\n%s", logs)
			}
		}
	})
	return hs
}

func (hs *harness) start() { hs.Start(hs.c.Run) }
