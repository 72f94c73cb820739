package hub_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/hub"
)

// FuzzConnFrames sends each input as one frame on a real connection and checks what the hub did
// with it: a text message within the limit and valid UTF-8 reaches the handler (echoed back);
// anything else closes the connection with the documented code.
//
//	go test -run '^$' -fuzz FuzzConnFrames -fuzztime 2m ./internal/hub
func FuzzConnFrames(f *testing.F) {
	const max = 256
	h := hub.New(hub.Options{MaxMessage: max})
	echo := hub.HandlerFunc(func(_ context.Context, c *hub.Conn, msg []byte) error {
		return c.Send(append([]byte(nil), msg...), nil)
	})
	// The connections run over in-memory pipes: a fuzz run makes tens of thousands of them, which
	// over loopback TCP would exhaust the ephemeral ports of the machine (TIME_WAIT).
	ln := newPipeListener()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = h.Accept(w, r, hub.Spec{Dialect: "fuzz", Tenants: []string{"fuzz"}, Handler: echo})
	})}
	go func() { _ = srv.Serve(ln) }()
	f.Cleanup(func() {
		_ = h.Shutdown(context.Background())
		_ = srv.Close()
	})
	url := "ws://pipe/"
	dialOpts := &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: ln.dial}}}

	for _, s := range []string{"", "{}", "caf\xc3\x28", "\xed\xa0\x80", "é", strings.Repeat("x", max), strings.Repeat("x", max+1)} {
		f.Add(true, []byte(s))
		f.Add(false, []byte(s))
	}
	f.Fuzz(func(t *testing.T, text bool, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ws, _, err := websocket.Dial(ctx, url, dialOpts)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer ws.CloseNow()
		ws.SetReadLimit(-1)
		typ := websocket.MessageBinary
		if text {
			typ = websocket.MessageText
		}
		// Written while reading, as a real peer does: the pipe has no buffer, and the hub may
		// answer (close) before the whole frame is written.
		wrote := make(chan error, 1)
		go func() { wrote <- ws.Write(ctx, typ, data) }()
		var want websocket.StatusCode = -1
		switch {
		case !text:
			want = websocket.StatusPolicyViolation
		case len(data) > max:
			want = websocket.StatusMessageTooBig
		case !utf8.Valid(data):
			want = websocket.StatusInvalidFramePayloadData
		}
		gotTyp, got, err := ws.Read(ctx)
		if want == -1 {
			if werr := <-wrote; werr != nil {
				t.Fatalf("write text=%v len=%d: %v", text, len(data), werr)
			}
			if err != nil || gotTyp != websocket.MessageText || string(got) != string(data) {
				t.Fatalf("valid text %q: got %v %q, %v; want it echoed", data, gotTyp, got, err)
			}
			_ = ws.Close(websocket.StatusNormalClosure, "")
			return
		}
		if code := websocket.CloseStatus(err); code != want {
			t.Fatalf("text=%v %q: read %q, %v; want close %v", text, data, got, err, want)
		}
	})
}

// pipeListener hands the server one end of an in-memory pipe per dial.
type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, errors.New("listener closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }
