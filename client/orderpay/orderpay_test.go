package orderpay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func request(id string, mt int) map[string]any {
	return map[string]any{"ProviderID": 321, "ProviderName": "Acme", "DeviceID": "", "UserIdentifier": "",
		"MessageType": mt, "Payload": map[string]any{"OrderID": "o-1"}, "RequestID": id}
}

// countingHandler answers every request with its MessageType echoed in the payload and counts calls
// per RequestID.
type countingHandler struct {
	mu    sync.Mutex
	calls map[string]int
	gate  chan struct{} // when set, each call waits for a receive
}

func (h *countingHandler) Answer(ctx context.Context, r *Request) Answer {
	h.mu.Lock()
	if h.calls == nil {
		h.calls = map[string]int{}
	}
	h.calls[r.RequestID]++
	n := h.calls[r.RequestID]
	h.mu.Unlock()
	if h.gate != nil {
		<-h.gate
	}
	return Answer{Payload: map[string]any{"echo": r.MessageType, "call": n, "payload": r.Payload}}
}

func (h *countingHandler) count(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[id]
}

func TestAnswersARequest(t *testing.T) {
	fs := newFakeServer(t)
	h := &countingHandler{}
	hs := newHarness(t, fs, h, nil)
	hs.start()
	fc := fs.next(t)
	fc.send(t, request("r-1", 12))
	a := fc.read(t)
	if a["RequestID"] != "r-1" || a["MessageType"] != float64(12) || a["ResultCode"] != float64(0) {
		t.Fatalf("answer %v", a["_raw"])
	}
	if v, ok := a["ErrorMessage"]; !ok || v != nil {
		t.Fatalf("ErrorMessage must be present and null on success: %v", a["_raw"])
	}
	p := a["Payload"].(map[string]any)
	if p["echo"] != float64(12) || p["payload"].(map[string]any)["OrderID"] != "o-1" {
		t.Fatalf("payload %v", a["_raw"])
	}
	if err := hs.Stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v", err)
	}
	// The client closed properly: the server saw a close frame, not a dropped connection.
	<-fc.closed
	if code := websocket.CloseStatus(fc.err); code != websocket.StatusGoingAway {
		t.Fatalf("server saw %v, want a 1001 close", fc.err)
	}
}

func TestNonZeroResultCodeAndPanics(t *testing.T) {
	fs := newFakeServer(t)
	h := HandlerFunc(func(ctx context.Context, r *Request) Answer {
		switch r.MessageType {
		case GetUserFromPIN:
			return Answer{ResultCode: 4, ErrorMessage: "no user found"}
		case 99:
			panic("boom")
		default:
			return Answer{Payload: func() {}} // cannot be marshalled
		}
	})
	hs := newHarness(t, fs, h, nil)
	hs.start()
	fc := fs.next(t)
	fc.send(t, request("a", GetUserFromPIN))
	if a := fc.read(t); a["ResultCode"] != float64(4) || a["ErrorMessage"] != "no user found" || a["Payload"] != nil {
		t.Fatalf("answer %v", a["_raw"])
	}
	fc.send(t, request("b", 99))
	if a := fc.read(t); a["ResultCode"] != float64(ResultHandlerFailed) || a["RequestID"] != "b" || a["ErrorMessage"] == nil {
		t.Fatalf("panic answer %v", a["_raw"])
	}
	fc.send(t, request("c", 5))
	if a := fc.read(t); a["ResultCode"] != float64(ResultHandlerFailed) || a["RequestID"] != "c" {
		t.Fatalf("unencodable answer %v", a["_raw"])
	}
	if !strings.Contains(hs.logs.String(), "panicked") {
		t.Fatal("the panic was not logged")
	}
}

func TestReconnectsWithAFreshTicketEveryTime(t *testing.T) {
	fs := newFakeServer(t)
	hs := newHarness(t, fs, &countingHandler{}, nil)
	hs.start()
	// Every way posgate may end a connection short of 4003/4009 leads to a new authentication
	// and a new ticket; a ticket is never presented twice.
	codes := []websocket.StatusCode{websocket.StatusNormalClosure, websocket.StatusGoingAway, websocket.StatusInternalError, 4001, websocket.StatusPolicyViolation}
	for _, code := range codes {
		fc := fs.next(t)
		fc.send(t, request("ping-"+fmt.Sprint(code), 1))
		fc.read(t)
		fc.c.Close(code, "test")
	}
	fc := fs.next(t)
	fc.c.CloseNow() // a dropped TCP connection, no close frame
	fs.next(t)
	auth, issued, reused := fs.counts()
	if auth != len(codes)+2 || issued != len(codes)+2 || reused != 0 {
		t.Fatalf("auth calls %d, tickets %d, reused %d; want %d, %d, 0", auth, issued, reused, len(codes)+2, len(codes)+2)
	}
}

func TestUsedTicketIsRefusedAndTheClientAuthenticatesAgain(t *testing.T) {
	fs := newFakeServer(t)
	fs.upgradeScript = []int{401, 401, 503}
	fs.retryAfter = "3"
	hs := newHarness(t, fs, &countingHandler{}, nil)
	hs.start()
	fs.next(t)
	auth, issued, _ := fs.counts()
	if auth != 4 || issued != 4 {
		t.Fatalf("auth calls %d, tickets %d; want 4 (three refused upgrades, one accepted)", auth, issued)
	}
	s := hs.Sleeps()
	if len(s) != 3 || s[2] < 3*time.Second {
		t.Fatalf("sleeps %v: want 3, the last honouring Retry-After 3 s", s)
	}
	if !strings.Contains(hs.logs.String(), "scripted refusal") {
		t.Fatalf("the refusal's message is not in the log:\n%s", hs.logs)
	}
}

func TestAuthErrors(t *testing.T) {
	for _, c := range []struct {
		status int
		want   error
	}{{400, ErrBadRequest}, {401, ErrUnauthorized}, {403, ErrDisabled}} {
		t.Run(fmt.Sprint(c.status), func(t *testing.T) {
			fs := newFakeServer(t)
			fs.authScript = []int{c.status}
			hs := newHarness(t, fs, &countingHandler{}, nil)
			hs.start()
			err := hs.Wait(t)
			var ae *AuthError
			if !errors.Is(err, c.want) || !errors.As(err, &ae) || ae.StatusCode != c.status || ae.Message != "scripted refusal" {
				t.Fatalf("Run: %v, want %v", err, c.want)
			}
			if auth, _, _ := fs.counts(); auth != 1 {
				t.Fatalf("%d auth calls: a refused credential must not be retried", auth)
			}
		})
	}
	t.Run("wrong secret", func(t *testing.T) {
		fs := newFakeServer(t)
		c := &Client{URL: fs.srv.URL, Credentials: Credentials{"outlet-1", "pos-9", "wrong"}}
		_, err := c.Authenticate(context.Background())
		if !errors.Is(err, ErrUnauthorized) || strings.Contains(err.Error(), "wrong") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("throttled then unavailable then ok", func(t *testing.T) {
		fs := newFakeServer(t)
		fs.authScript = []int{429, 503}
		fs.retryAfter = "7"
		hs := newHarness(t, fs, &countingHandler{}, nil)
		hs.start()
		fs.next(t)
		s := hs.Sleeps()
		if len(s) != 2 || s[0] < 7*time.Second || s[1] < 7*time.Second {
			t.Fatalf("sleeps %v: Retry-After 7 s not honoured", s)
		}
	})
}

// A Retry-After given as an HTTP-date counts from the server's own Date, so a POS whose clock is
// hours off waits what the server meant, not hours or nothing.
func TestRetryAfterDateIgnoresTheLocalClock(t *testing.T) {
	fs := newFakeServer(t)
	serverNow := time.Now().Add(-3 * time.Hour).UTC()
	fs.authScript = []int{429}
	fs.date = serverNow.Format(http.TimeFormat)
	fs.retryAfter = serverNow.Add(9 * time.Second).Format(http.TimeFormat)
	hs := newHarness(t, fs, &countingHandler{}, func(c *Client) { c.MaxBackoff = time.Second })
	hs.start()
	fs.next(t)
	if s := hs.Sleeps(); len(s) != 1 || s[0] != 9*time.Second {
		t.Fatalf("sleeps %v, want exactly 9 s", s)
	}
}

func TestStopsOnDisabledAndReplaced(t *testing.T) {
	for _, c := range []struct {
		code websocket.StatusCode
		want error
	}{{4003, ErrDisabled}, {4009, ErrReplaced}} {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			fs := newFakeServer(t)
			hs := newHarness(t, fs, &countingHandler{}, nil)
			hs.start()
			fs.next(t).c.Close(c.code, "bye")
			err := hs.Wait(t)
			var ce *CloseError
			if !errors.Is(err, c.want) || !errors.As(err, &ce) || ce.Code != int(c.code) || ce.Reason != "bye" {
				t.Fatalf("Run: %v, want %v", err, c.want)
			}
			if auth, _, _ := fs.counts(); auth != 1 {
				t.Fatalf("%d auth calls after %d", auth, c.code)
			}
		})
	}
}

func TestRedeliveredRequestIsAnsweredFromMemory(t *testing.T) {
	fs := newFakeServer(t)
	h := &countingHandler{}
	hs := newHarness(t, fs, h, nil)
	hs.start()
	fc := fs.next(t)
	fc.send(t, request("dup", 1))
	first := fc.read(t)
	// The same connection, and then a new one after a drop: posgate re-delivers under the same
	// RequestID; the answer is the same bytes and the handler ran once.
	fc.send(t, request("dup", 1))
	if again := fc.read(t); again["_raw"] != first["_raw"] {
		t.Fatalf("second answer %v, first %v", again["_raw"], first["_raw"])
	}
	fc.c.Close(websocket.StatusGoingAway, "restart")
	fc = fs.next(t)
	fc.send(t, request("dup", 1))
	if again := fc.read(t); again["_raw"] != first["_raw"] {
		t.Fatalf("answer after reconnect %v, first %v", again["_raw"], first["_raw"])
	}
	if n := h.count("dup"); n != 1 {
		t.Fatalf("handler called %d times for one RequestID", n)
	}
}

func TestRedeliveryWhileTheHandlerRuns(t *testing.T) {
	fs := newFakeServer(t)
	h := &countingHandler{gate: make(chan struct{})}
	hs := newHarness(t, fs, h, nil)
	hs.start()
	fc := fs.next(t)
	fc.send(t, request("slow", 1))
	fc.send(t, request("slow", 1)) // same connection, while in flight: answered once
	// The connection drops while the handler still runs; the new one asks again.
	fc.c.Close(websocket.StatusGoingAway, "restart")
	fc2 := fs.next(t)
	fc2.send(t, request("slow", 1))
	fc2.send(t, request("next", 1))
	h.gate <- struct{}{}
	a := fc2.read(t)
	if a["RequestID"] != "slow" {
		t.Fatalf("first answer on the new connection %v", a["_raw"])
	}
	h.gate <- struct{}{}
	if b := fc2.read(t); b["RequestID"] != "next" {
		t.Fatalf("second answer %v", b["_raw"])
	}
	if n := h.count("slow"); n != 1 {
		t.Fatalf("handler called %d times", n)
	}
	select {
	case extra := <-fc2.in:
		t.Fatalf("unexpected extra frame %s", extra)
	default:
	}
}

func TestDedupMemoryIsBounded(t *testing.T) {
	fs := newFakeServer(t)
	h := &countingHandler{}
	hs := newHarness(t, fs, h, func(c *Client) { c.DedupEntries = 2 })
	hs.start()
	fc := fs.next(t)
	for _, id := range []string{"a", "b", "c", "a"} {
		fc.send(t, request(id, 1))
		fc.read(t)
	}
	// "a" was forgotten when "c" came (two entries kept), so it was answered by the handler again.
	if h.count("a") != 2 || h.count("b") != 1 || h.count("c") != 1 {
		t.Fatalf("calls %v", h.calls)
	}
	hs.c.mu.Lock()
	n := hs.c.answered.Len()
	hs.c.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d answers remembered, want 2", n)
	}
}

func TestConcurrentHandlers(t *testing.T) {
	fs := newFakeServer(t)
	started := make(chan struct{}, 3)
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, r *Request) Answer {
		started <- struct{}{}
		<-release
		return Answer{}
	})
	hs := newHarness(t, fs, h, func(c *Client) { c.Concurrency = 3 })
	hs.start()
	fc := fs.next(t)
	for i := range 3 {
		fc.send(t, request(fmt.Sprint("r", i), 1))
	}
	// All three handlers start before any is released: with one at a time this never happens.
	for range 3 {
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			t.Fatal("the requests were not handled concurrently")
		}
	}
	close(release)
	for range 3 {
		fc.read(t)
	}
}

func TestIgnoresMalformedFramesAndKeepsTheConnection(t *testing.T) {
	fs := newFakeServer(t)
	hs := newHarness(t, fs, &countingHandler{}, nil)
	hs.start()
	fc := fs.next(t)
	for _, bad := range []string{`not json`, `{"MessageType":1}`, `{"RequestID":"x"}`, `{"RequestID":"x","MessageType":"one"}`,
		`{"RequestID":"x","MessageType":1.5}`, `[1,2]`, `{"RequestID":"x","MessageType":1} {}`,
		`{"RequestID":"` + strings.Repeat("i", 257) + `","MessageType":1}`} {
		fc.sendRaw(t, websocket.MessageText, []byte(bad))
	}
	fc.sendRaw(t, websocket.MessageBinary, []byte(`{"RequestID":"zq-marker","MessageType":1}`))
	fc.send(t, request("good", 1))
	if a := fc.read(t); a["RequestID"] != "good" {
		t.Fatalf("answer %v", a["_raw"])
	}
	if auth, _, _ := fs.counts(); auth != 1 {
		t.Fatal("malformed frames cost a reconnection")
	}
	if strings.Contains(hs.logs.String(), "zq-marker") {
		t.Fatal("a frame's content reached the log")
	}
}

func TestOversizedFrameDropsTheConnection(t *testing.T) {
	fs := newFakeServer(t)
	hs := newHarness(t, fs, &countingHandler{}, func(c *Client) { c.MaxMessage = 1000 })
	hs.start()
	fc := fs.next(t)
	r := request("big", 1)
	r["Payload"] = map[string]any{"x": strings.Repeat("y", 4000)}
	fc.send(t, r)
	<-fc.closed
	if code := websocket.CloseStatus(fc.err); code != websocket.StatusMessageTooBig {
		t.Fatalf("server saw %v, want 1009", fc.err)
	}
	fs.next(t) // and it reconnected
}

func TestPingsAndDeadServer(t *testing.T) {
	fs := newFakeServer(t)
	fs.deaf.Store(true) // the first connection never answers pings
	hs := newHarness(t, fs, &countingHandler{}, func(c *Client) {
		c.PingInterval = 20 * time.Millisecond
		c.PingTimeout = 50 * time.Millisecond
	})
	hs.start()
	fs.next(t)
	fs.deaf.Store(false)
	fs.next(t) // the client gave up on the silent connection and reconnected
	if !strings.Contains(hs.logs.String(), "ping not answered") {
		t.Fatalf("logs:\n%s", hs.logs)
	}
	// On a live connection pings are answered and the connection stays.
	for fs.pings.Load() < 3 {
		time.Sleep(5 * time.Millisecond) // waits for an event, not for a duration to pass
	}
}

func TestCancelDuringBackoff(t *testing.T) {
	fs := newFakeServer(t)
	fs.authScript = []int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503}
	hs := newHarness(t, fs, &countingHandler{}, nil)
	entered := make(chan struct{}, 16)
	hs.c.sleep = func(ctx context.Context, d time.Duration) error {
		entered <- struct{}{}
		<-ctx.Done() // a real wait, as long as it takes
		return ctx.Err()
	}
	hs.start()
	<-entered
	if err := hs.Stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	fs := newFakeServer(t)
	for range 12 {
		fs.authScript = append(fs.authScript, 500)
	}
	hs := newHarness(t, fs, &countingHandler{}, func(c *Client) { c.MinBackoff, c.MaxBackoff = 100*time.Millisecond, time.Second })
	hs.start()
	fs.next(t)
	s := hs.Sleeps()
	if len(s) != 12 {
		t.Fatalf("%d sleeps, want 12", len(s))
	}
	for i, d := range s {
		ceil := min(100*time.Millisecond<<i, time.Second)
		if d < ceil/2 || d > ceil {
			t.Fatalf("sleep %d = %v, want in [%v, %v]", i, d, ceil/2, ceil)
		}
	}
}

func TestRefusesPlainHTTPToAnotherHost(t *testing.T) {
	c := &Client{URL: "http://pos.example.com", Credentials: testCreds, Handler: &countingHandler{}}
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "in clear") {
		t.Fatalf("Run: %v", err)
	}
	for _, u := range []string{"ftp://x", "https://x/?a=1", "https://user:pw@x", "https://"} {
		c.URL = u
		if err := c.Run(context.Background()); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

// failingUpgrades makes every websocket upgrade fail inside the transport, the way a refused TCP
// connection does; net/http then quotes the whole URL, ticket included, in its error.
type failingUpgrades struct{ next http.RoundTripper }

func (f failingUpgrades) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == SocketPath {
		return nil, errors.New("connection refused")
	}
	return f.next.RoundTrip(r)
}

func TestDialErrorsDoNotCarryTheTicket(t *testing.T) {
	fs := newFakeServer(t)
	fs.authScript = make([]int, 0)
	hs := newHarness(t, fs, &countingHandler{}, nil)
	hs.c.HTTPClient = &http.Client{Transport: failingUpgrades{fs.srv.Client().Transport}}
	var sleeps atomic.Int32
	hs.c.sleep = func(ctx context.Context, d time.Duration) error {
		if sleeps.Add(1) == 3 {
			hs.Cancel()
		}
		return ctx.Err()
	}
	hs.start()
	if err := hs.Wait(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if !strings.Contains(hs.logs.String(), "connection refused") || !strings.Contains(hs.logs.String(), "REDACTED") {
		t.Fatalf("the dial error is not logged, redacted:\n%s", hs.logs)
	}
	// The harness's cleanup checks that none of the issued tickets is in the logs.
}

func TestDecodeRequest(t *testing.T) {
	r, err := DecodeRequest([]byte(`{"providerid":321,"providerName":"Acme","deviceid":"d","useridentifier":"u","messagetype":12,"payload":{"a":1},"requestid":"r"}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.ProviderID != 321 || r.ProviderName != "Acme" || r.DeviceID != "d" || r.UserIdentifier != "u" || r.MessageType != 12 || string(r.Payload) != `{"a":1}` || r.RequestID != "r" {
		t.Fatalf("%+v", r)
	}
	r, err = DecodeRequest([]byte(`{"RequestID":"r","MessageType":0,"Payload":null}`))
	if err != nil || r.Payload != nil || r.MessageType != 0 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{``, `null`, `{}`, `{"RequestID":"","MessageType":1}`, `{"RequestID":"r","MessageType":null}`,
		`{"RequestID":"r","MessageType":1e3}`, `{"RequestID":"r","MessageType":1,"ProviderID":1.5}`,
		`{"RequestID":"r","MessageType":1,"DeviceID":"` + strings.Repeat("d", 65) + `"}`,
		`{"RequestID":"r","MessageType":1,"UserIdentifier":"` + strings.Repeat("u", 37) + `"}`,
		`{"RequestID":"r","MessageType":99999999999}`} {
		if _, err := DecodeRequest([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestEncodeAnswer(t *testing.T) {
	req := &Request{RequestID: "r", MessageType: 1}
	got := string(encodeAnswer(req, Answer{Payload: json.RawMessage(`{"Orders":[]}`)}))
	if want := `{"RequestID":"r","ResultCode":0,"ErrorMessage":null,"MessageType":1,"Payload":{"Orders":[]}}`; got != want {
		t.Fatalf("%s\nwant %s", got, want)
	}
}

func TestUntrustedCertificateStops(t *testing.T) {
	fs := newFakeServer(t)
	tlsSrv := httptest.NewTLSServer(fs.srv.Config.Handler)
	defer tlsSrv.Close()
	c := &Client{URL: tlsSrv.URL, Credentials: testCreds, Handler: &countingHandler{}}
	if err := c.Run(context.Background()); !errors.Is(err, ErrUntrustedCertificate) {
		t.Fatalf("Run: %v", err)
	}
	if auth, _, _ := fs.counts(); auth != 0 {
		t.Fatal("the secret was sent to an untrusted server")
	}
}

// A handler that never finishes and a flood that fills the queue: cancelling Run still returns.
func TestCancelWithAFullQueue(t *testing.T) {
	fs := newFakeServer(t)
	started := make(chan struct{}, 1)
	h := HandlerFunc(func(ctx context.Context, r *Request) Answer {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return Answer{}
	})
	hs := newHarness(t, fs, h, nil)
	hs.start()
	fc := fs.next(t)
	for i := range 300 {
		fc.send(t, request(fmt.Sprint("flood-", i), 1))
	}
	<-started
	if err := hs.Stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}
