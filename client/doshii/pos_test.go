package doshii

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/testutil/runtest"
	"github.com/posgate/posgate/internal/testutil/syncbuf"
)

const (
	testLocationToken = "pg_lt_test-location-token-0123456789abcdef"
	testVendor        = "acme-pos"
	testVendorKey     = "pg_vk_test-vendor-key-0123456789abcdef0123456789"
)

// fakeDoshii is posgate's doshii socket side as the protocol describes it: /pos/socket with a
// location token, /vendor/socket with an HS256 vendor JWT {vendor, timestamp} in a window around
// the server's clock (600 s past, 60 s future), 401 {"message"} before the upgrade otherwise.
type fakeDoshii struct {
	t       *testing.T
	srv     *httptest.Server
	skew    time.Duration // the server's clock minus the real one
	refuse  atomic.Int32  // refuse the next N upgrades with 503 + Retry-After
	deaf    atomic.Bool   // new sockets never answer heartbeats
	forbid  atomic.Bool   // refuse upgrades with 403 (a disabled location)
	upgrade atomic.Int32  // upgrades attempted
	conns   chan *fakeSock
	jwts    chan string // vendor JWTs accepted
}

type fakeSock struct {
	c      *websocket.Conn
	in     chan map[string]any // frames from the POS that are not heartbeats
	pings  chan json.Number    // heartbeat values received
	closed chan struct{}
	err    error
}

func newFakeDoshii(t *testing.T, skew time.Duration) *fakeDoshii {
	fd := &fakeDoshii{t: t, skew: skew, conns: make(chan *fakeSock, 16), jwts: make(chan string, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+POSSocketPath, fd.serve)
	mux.HandleFunc("GET "+VendorSocketPath, fd.serve)
	fd.srv = httptest.NewServer(mux)
	t.Cleanup(fd.srv.Close)
	return fd
}

func (fd *fakeDoshii) message(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Date", time.Now().Add(fd.skew).UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func (fd *fakeDoshii) verifyJWT(raw, vendor string) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false
	}
	h, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var hdr struct{ Alg string }
	if json.Unmarshal(h, &hdr) != nil || hdr.Alg != "HS256" {
		return false
	}
	mac := hmac.New(sha256.New, []byte(testVendorKey))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return false
	}
	p, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Vendor    string
		Timestamp int64
	}
	if json.Unmarshal(p, &c) != nil || c.Vendor != vendor || vendor != testVendor {
		return false
	}
	now := time.Now().Add(fd.skew).Unix()
	return now-600 <= c.Timestamp && c.Timestamp <= now+60
}

func (fd *fakeDoshii) serve(w http.ResponseWriter, r *http.Request) {
	fd.upgrade.Add(1)
	if fd.refuse.Load() > 0 {
		fd.refuse.Add(-1)
		w.Header().Set("Retry-After", "5")
		fd.message(w, 503, "try later")
		return
	}
	if fd.forbid.Load() {
		fd.message(w, 403, "location disabled")
		return
	}
	tok := r.URL.Query().Get("token")
	if r.URL.Path == POSSocketPath {
		if tok != testLocationToken {
			fd.message(w, 401, "invalid location token")
			return
		}
	} else {
		if !fd.verifyJWT(tok, r.URL.Query().Get("vendor")) {
			fd.message(w, 401, "invalid vendor token")
			return
		}
		fd.jwts <- tok
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	fs := &fakeSock{c: c, in: make(chan map[string]any, 64), pings: make(chan json.Number, 64), closed: make(chan struct{})}
	fd.t.Cleanup(func() { c.CloseNow() })
	deaf := fd.deaf.Load()
	go func() {
		defer close(fs.closed)
		for {
			_, data, err := c.Read(context.Background())
			if err != nil {
				fs.err = err
				return
			}
			d := json.NewDecoder(bytes.NewReader(data))
			d.UseNumber()
			var m map[string]any
			if d.Decode(&m) != nil {
				continue
			}
			if hb, ok := m["doshii"].(map[string]any); ok {
				v, _ := hb["ping"].(json.Number)
				fs.pings <- v
				if !deaf {
					// The POS may close at any moment: a failed pong is not the test's concern.
					b, _ := json.Marshal(map[string]any{"type": "message", "data": map[string]any{"doshii": map[string]any{"pong": v, "version": "v3"}}})
					wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					c.Write(wctx, websocket.MessageText, b)
					cancel()
				}
				continue
			}
			fs.in <- m
		}
	}()
	fd.conns <- fs
}

func (fd *fakeDoshii) next(t *testing.T) *fakeSock {
	t.Helper()
	select {
	case fs := <-fd.conns:
		return fs
	case <-time.After(20 * time.Second):
		t.Fatal("no socket from the POS")
		return nil
	}
}

func (fs *fakeSock) write(t *testing.T, v any) {
	b, _ := json.Marshal(v)
	fs.writeRaw(t, websocket.MessageText, b)
}

func (fs *fakeSock) writeRaw(t *testing.T, typ websocket.MessageType, b []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fs.c.Write(ctx, typ, b); err != nil {
		t.Errorf("server write: %v", err)
	}
}

func (fs *fakeSock) ping(t *testing.T) json.Number {
	t.Helper()
	select {
	case v := <-fs.pings:
		return v
	case <-time.After(20 * time.Second):
		t.Fatal("no heartbeat from the POS")
		return ""
	}
}

// recorder is an EventHandler keeping what it received.
type recorder struct {
	ch chan *Event
}

func (r *recorder) HandleEvent(_ context.Context, e *Event) { r.ch <- e }

func (r *recorder) next(t *testing.T) *Event {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(20 * time.Second):
		t.Fatal("no event")
		return nil
	}
}

type sockHarness struct {
	runtest.Runner
	s    *POSSocket
	rec  *recorder
	logs *syncbuf.Buffer
}

func newSockHarness(t *testing.T, fd *fakeDoshii, cloud bool, adjust func(*POSSocket)) *sockHarness {
	h := &sockHarness{rec: &recorder{ch: make(chan *Event, 64)}, logs: &syncbuf.Buffer{}}
	h.s = &POSSocket{URL: fd.srv.URL, Handler: h.rec, Version: "test-pos 1.0", HTTPClient: fd.srv.Client(),
		Logger: slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if cloud {
		h.s.Vendor, h.s.VendorKey = testVendor, NewVendorKey(testVendorKey)
	} else {
		h.s.LocationToken = testLocationToken
	}
	h.s.sleep = h.Sleep
	if adjust != nil {
		adjust(h.s)
	}
	t.Cleanup(func() {
		h.Stop(t)
		logs := h.logs.String()
		if strings.Contains(logs, testLocationToken) || strings.Contains(logs, testVendorKey) || strings.Contains(logs, "eyJ") {
			t.Errorf("a credential appears in the logs:\n%s", logs)
		}
	})
	return h
}

func (h *sockHarness) start() { h.Start(h.s.Run) }

func TestHeartbeatsEventsAndDedup(t *testing.T) {
	fd := newFakeDoshii(t, 0)
	h := newSockHarness(t, fd, false, nil)
	start := time.Now()
	h.start()
	fs := fd.next(t)
	// The heartbeat comes right after opening, in unix milliseconds.
	v, err := fs.ping(t).Int64()
	if err != nil || v < start.UnixMilli() || v > time.Now().UnixMilli() {
		t.Fatalf("first ping %v, %v", v, err)
	}
	fs.write(t, map[string]any{"type": "order_created", "id": "ev-1", "locationId": "loc-1", "data": map[string]any{"orderId": "o-1"}})
	fs.write(t, map[string]any{"type": "order_created", "id": "ev-1", "locationId": "loc-1", "data": map[string]any{"orderId": "o-1"}}) // duplicate
	fs.write(t, map[string]any{"type": "order_updated", "id": "ev-2", "data": map[string]any{"orderId": "o-1"}})
	fs.write(t, map[string]any{"type": "table_updated"}) // no id: never deduplicated
	fs.write(t, map[string]any{"type": "message", "data": map[string]any{"text": "hello"}})
	e := h.rec.next(t)
	if e.ID != "ev-1" || e.Type != "order_created" || e.LocationID != "loc-1" || string(e.Data) != `{"orderId":"o-1"}` {
		t.Fatalf("%+v", e)
	}
	for _, want := range []string{"order_updated", "table_updated", "message"} {
		if e := h.rec.next(t); e.Type != want {
			t.Fatalf("got %+v, want %s", e, want)
		}
	}
	// A re-delivery after a reconnection is dropped too.
	fs.c.Close(websocket.StatusGoingAway, "restart")
	fs = fd.next(t)
	fs.ping(t)
	fs.write(t, map[string]any{"type": "order_created", "id": "ev-1", "data": map[string]any{}})
	fs.write(t, map[string]any{"type": "order_created", "id": "ev-3", "data": map[string]any{}})
	if e := h.rec.next(t); e.ID != "ev-3" {
		t.Fatalf("got %+v, want ev-3 (ev-1 was a duplicate)", e)
	}
	if err := h.Stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	<-fs.closed
	if websocket.CloseStatus(fs.err) != websocket.StatusGoingAway {
		t.Fatalf("server saw %v", fs.err)
	}
}

func TestHealthCheckGetsAHeartbeat(t *testing.T) {
	fd := newFakeDoshii(t, 0)
	h := newSockHarness(t, fd, false, nil)
	h.start()
	fs := fd.next(t)
	first := fs.ping(t)
	fs.write(t, map[string]any{"type": "health_check", "data": map[string]any{"ping": 1234}})
	second := fs.ping(t)
	if first == second {
		t.Fatalf("the heartbeat values repeat: %v", first)
	}
	if strings.Contains(h.logs.String(), "did not send") {
		t.Fatalf("a pong was not recognised:\n%s", h.logs)
	}
}

func TestMissedPongsReopenTheSocket(t *testing.T) {
	fd := newFakeDoshii(t, 0)
	fd.deaf.Store(true)
	h := newSockHarness(t, fd, false, func(s *POSSocket) { s.HeartbeatInterval = 20 * time.Millisecond })
	h.start()
	fs := fd.next(t)
	fd.deaf.Store(false)
	<-fs.closed // the POS gave up on it …
	fs = fd.next(t)
	fs.ping(t) // … and opened a new one, which answers
	if !strings.Contains(h.logs.String(), "heartbeats not answered") {
		t.Fatalf("logs:\n%s", h.logs)
	}
	// Bogus pongs (values never sent) do not keep a socket alive.
	fs.write(t, map[string]any{"type": "message", "data": map[string]any{"doshii": map[string]any{"pong": 42}}})
	for !strings.Contains(h.logs.String(), "did not send") {
		time.Sleep(5 * time.Millisecond) // waits for the log line, not for time to pass
	}
}

func TestCloudSocketSignsAFreshJWTEachTime(t *testing.T) {
	fd := newFakeDoshii(t, 0)
	var now atomic.Int64
	now.Store(time.Now().Unix())
	h := newSockHarness(t, fd, true, func(s *POSSocket) {
		s.Now = func() time.Time { return time.Unix(now.Load(), 0) }
	})
	h.start()
	fs := fd.next(t)
	first := <-fd.jwts
	now.Add(1)
	fs.c.Close(4001, "credential expired") // a cloud POS signs a new JWT and comes back
	fd.next(t)
	second := <-fd.jwts
	if first == second {
		t.Fatal("the JWT was reused")
	}
	if !strings.Contains(first, ".") || strings.Count(first, ".") != 2 {
		t.Fatalf("not a JWT: %q", first)
	}
}

func TestCloudSocketCorrectsClockSkew(t *testing.T) {
	fd := newFakeDoshii(t, 2*time.Hour) // the server's clock is two hours ahead of ours
	h := newSockHarness(t, fd, true, nil)
	h.start()
	fd.next(t)
	if n := fd.upgrade.Load(); n != 2 {
		t.Fatalf("%d upgrades, want 2 (refused, then signed with the server's time)", n)
	}
	if s := h.Sleeps(); len(s) != 0 {
		t.Fatalf("slept %v before re-signing", s)
	}
}

func TestCloudSocketWrongKeyStops(t *testing.T) {
	fd := newFakeDoshii(t, 0)
	h := newSockHarness(t, fd, true, func(s *POSSocket) { s.VendorKey = NewVendorKey("pg_vk_another-key-0123456789abcdef0123456789") })
	h.start()
	err := h.Wait(t)
	var re *SocketRefusedError
	if !errors.Is(err, ErrSocketRefused) || !errors.As(err, &re) || re.StatusCode != 401 || re.Message != "invalid vendor token" {
		t.Fatalf("Run: %v", err)
	}
	if n := fd.upgrade.Load(); n != 1 {
		t.Fatalf("%d upgrades: a refused key must not be retried", n)
	}
}

func TestStops(t *testing.T) {
	for _, c := range []struct {
		name  string
		cloud bool
		code  websocket.StatusCode
		want  error
	}{
		{"revoked location token", false, 4001, ErrSocketRevoked},
		{"disabled", false, 4003, ErrSocketDisabled},
		{"vendor disabled", true, 4003, ErrSocketDisabled},
		{"replaced", false, 4009, ErrSocketReplaced},
	} {
		t.Run(c.name, func(t *testing.T) {
			fd := newFakeDoshii(t, 0)
			h := newSockHarness(t, fd, c.cloud, nil)
			h.start()
			fd.next(t).c.Close(c.code, "bye")
			err := h.Wait(t)
			var ce *SocketCloseError
			if !errors.Is(err, c.want) || !errors.As(err, &ce) || ce.Code != int(c.code) {
				t.Fatalf("Run: %v, want %v", err, c.want)
			}
		})
	}
	t.Run("403 disabled before the upgrade", func(t *testing.T) {
		fd := newFakeDoshii(t, 0)
		fd.forbid.Store(true)
		h := newSockHarness(t, fd, false, nil)
		h.start()
		var re *SocketRefusedError
		if err := h.Wait(t); !errors.Is(err, ErrSocketDisabled) || !errors.As(err, &re) || re.StatusCode != 403 {
			t.Fatalf("Run: %v", err)
		}
	})
	t.Run("wrong location token", func(t *testing.T) {
		fd := newFakeDoshii(t, 0)
		h := newSockHarness(t, fd, false, func(s *POSSocket) { s.LocationToken = "pg_lt_wrong" })
		h.start()
		if err := h.Wait(t); !errors.Is(err, ErrSocketRefused) {
			t.Fatalf("Run: %v", err)
		}
	})
}

func TestReconnectsAfterOtherClosesAndRefusals(t *testing.T) {
	fd := newFakeDoshii(t, 0)
	fd.refuse.Store(2)
	h := newSockHarness(t, fd, false, nil)
	h.start()
	fs := fd.next(t)
	sleeps := h.Sleeps()
	if len(sleeps) != 2 || sleeps[0] < 5*time.Second || sleeps[1] < 5*time.Second {
		t.Fatalf("sleeps %v: Retry-After 5 s not honoured", sleeps)
	}
	for _, code := range []websocket.StatusCode{1000, 1001, 1011} {
		fs.c.Close(code, "x")
		fs = fd.next(t)
	}
	fs.c.CloseNow()
	fd.next(t)
}

func TestIgnoresMalformedFrames(t *testing.T) {
	fd := newFakeDoshii(t, 0)
	h := newSockHarness(t, fd, false, nil)
	h.start()
	fs := fd.next(t)
	for _, bad := range []string{`nope`, `{}`, `{"type":""}`, `{"type":7}`, `{"type":"x","id":7}`, `[]`, `{"type":"x"} 1`,
		`{"type":"` + strings.Repeat("t", 129) + `"}`} {
		fs.writeRaw(t, websocket.MessageText, []byte(bad))
	}
	fs.writeRaw(t, websocket.MessageBinary, []byte(`{"type":"zq-binary"}`))
	fs.write(t, map[string]any{"type": "good"})
	if e := h.rec.next(t); e.Type != "good" {
		t.Fatalf("%+v", e)
	}
	if n := fd.upgrade.Load(); n != 1 {
		t.Fatalf("%d upgrades", n)
	}
}

func TestConfigurationErrors(t *testing.T) {
	for i, s := range []*POSSocket{
		{URL: "https://h", Handler: &recorder{}},
		{URL: "https://h", Handler: &recorder{}, LocationToken: "t", Vendor: "v", VendorKey: NewVendorKey("k")},
		{URL: "https://h", Handler: &recorder{}, Vendor: "v"},
		{URL: "https://h", LocationToken: "t"},
		{URL: "http://pos.example.com", Handler: &recorder{}, LocationToken: "t"},
		{URL: "https://h", Handler: &recorder{}, LocationToken: "t", Version: strings.Repeat("v", 65)},
	} {
		if err := s.Run(context.Background()); err == nil {
			t.Errorf("%d: accepted", i)
		}
	}
}

func TestCloudSocketUsesTheRotatedKey(t *testing.T) {
	fd := newFakeDoshii(t, 0)
	h := newSockHarness(t, fd, true, func(s *POSSocket) { s.VendorKey = NewVendorKey("pg_vk_old-key-that-the-server-no-longer-accepts") })
	h.s.VendorKey.Set(testVendorKey) // rotated before the first connection
	h.start()
	fd.next(t)
	if jwt := <-fd.jwts; !fd.verifyJWT(jwt, testVendor) {
		t.Fatal("not signed with the current key")
	}
}

// A handler that never finishes and a flood that fills the queue: cancelling Run still returns.
func TestCancelWithAFullQueue(t *testing.T) {
	fd := newFakeDoshii(t, 0)
	started := make(chan struct{}, 1)
	h := newSockHarness(t, fd, false, func(s *POSSocket) {
		s.Handler = EventHandlerFunc(func(ctx context.Context, e *Event) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done()
		})
	})
	h.start()
	fs := fd.next(t)
	for i := range 300 {
		fs.write(t, map[string]any{"type": "flood", "id": strconv.Itoa(i)})
	}
	<-started
	if err := h.Stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}
