package cli_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/client/orderpay"
	"github.com/posgate/posgate/internal/cli"
	"github.com/posgate/posgate/internal/server"
	"github.com/posgate/posgate/internal/testutil/syncbuf"
)

// background runs a long-lived command (a simulator) until stop is called; stop returns its
// exit code.
type background struct {
	stdout, stderr *syncbuf.Buffer
	cancel         context.CancelFunc
	code           chan int
}

func startCommand(t *testing.T, env map[string]string, stdin string, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, cancel: cancel, code: make(chan int, 1)}
	go func() {
		b.code <- cli.Run(args, cli.Env{Stdin: strings.NewReader(stdin), Stdout: b.stdout, Stderr: b.stderr, Context: ctx,
			Getenv: func(k string) string { return env[k] }})
	}()
	t.Cleanup(func() { b.stop(t) })
	return b
}

func (b *background) stop(t *testing.T) int {
	b.cancel()
	select {
	case c := <-b.code:
		b.code <- c
		return c
	case <-time.After(20 * time.Second):
		t.Fatal("the command did not stop")
		return -1
	}
}

// waitFor waits until out contains s.
func waitFor(t *testing.T, out *syncbuf.Buffer, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("%q never appeared in:\n%s", s, out.String())
		}
		time.Sleep(10 * time.Millisecond) // polls for output, not for a duration to pass
	}
}

func TestSimulateUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"simulate"}, 2, "usage"},
		{[]string{"simulate", "nope"}, 2, "unknown simulator"},
		{[]string{"simulate", "orderpay-pos", "--outlet", "o"}, 2, "--pos-remote-id are required"},
		{[]string{"simulate", "orderpay-pos", "--outlet", "o", "--pos-remote-id", "p"}, 2, "no AuthSecret"},
		{[]string{"simulate", "orderpay-pos", "--outlet", "o", "--pos-remote-id", "p", "--secret-file", "/nonexistent"}, 1, "--secret-file: open /nonexistent"},
		{[]string{"simulate", "doshii-pos"}, 2, "no credential"},
		{[]string{"simulate", "doshii-pos", "--vendor", "v"}, 2, "no vendor key"},
		{[]string{"simulate", "doshii-pos", "--vendor", "v", "--location-token-file", "f"}, 2, "not both"},
		{[]string{"simulate", "doshii-pos", "--vendor-key-file", "f"}, 2, "needs --vendor"},
		{[]string{"simulate", "orderpay-pos", "--outlet", "o", "--pos-remote-id", "p", "--secret", "x", "--url", "http://pos.example.com"}, 1, "in clear"},
	} {
		r := posgate(t, "", c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
	r := posgate(t, "", "simulate", "help")
	if r.code != 0 || !strings.Contains(r.stdout, "every local user can read") {
		t.Fatalf("help: %d %s", r.code, r.stdout)
	}
	r = posgate(t, "", "simulate", "orderpay-pos", "--outlet", "o", "--pos-remote-id", "p", "--secret", "x", "--url", "http://pos.example.com")
	if !strings.Contains(r.stderr, "warning: --secret shows the AuthSecret") {
		t.Fatalf("no warning about argv: %s", r.stderr)
	}
}

func TestCannedOrderpayAnswers(t *testing.T) {
	for _, c := range []struct {
		mt      int
		payload string
		code    int
		want    string
	}{
		{orderpay.GetUserFromPIN, `{"PIN":"1234"}`, 0, `"FirstName":"Sam"`},
		{orderpay.GetUserFromPIN, `{"PIN":"0000"}`, 4, `null`},
		{orderpay.GetOpenOrders, ``, 0, `"OrderID":"sim-1001"`},
		{orderpay.UpdateOrder, `{"OrderID":"o-77"}`, 0, `{"OrderID":"o-77","Status":"Updated"}`},
		{33, `{}`, 0, `{"Simulated":true}`},
	} {
		a := cli.CannedOrderpayAnswer(&orderpay.Request{MessageType: c.mt, Payload: json.RawMessage(c.payload)})
		p, _ := json.Marshal(a.Payload)
		if a.ResultCode != c.code || !strings.Contains(string(p), c.want) {
			t.Errorf("type %d %s: %d %s", c.mt, c.payload, a.ResultCode, p)
		}
	}
}

// writeCert writes srv's certificate as PEM and returns the file.
func writeCert(t *testing.T, srv *httptest.Server) string {
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A stand-in for posgate's orderpay side over TLS: one ticket per auth call, four requests on
// each connection, the answers collected.
func TestSimulateOrderpayOverTLS(t *testing.T) {
	answers := make(chan map[string]any, 16)
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+orderpay.AuthPath, func(w http.ResponseWriter, r *http.Request) {
		var b map[string]string
		json.NewDecoder(r.Body).Decode(&b)
		if b["AuthSecret"] != "from-a-file" || b["ProviderOutletID"] != "o-1" || b["POSRemoteID"] != "p-1" {
			w.WriteHeader(401)
			w.Write([]byte(`{"ErrorMessage":"invalid credentials"}`))
			return
		}
		w.Write([]byte(`{"AccessToken":"ticket-1"}`))
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "ticket-1" {
			w.WriteHeader(401)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background()
		for i, mt := range []int{0, 1, 12, 40} {
			req, _ := json.Marshal(map[string]any{"ProviderID": 1, "ProviderName": "P", "DeviceID": "", "UserIdentifier": "",
				"MessageType": mt, "Payload": map[string]any{"OrderID": "o-9"}, "RequestID": "req-" + string(rune('a'+i))})
			if c.Write(ctx, websocket.MessageText, req) != nil {
				return
			}
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			var m map[string]any
			json.Unmarshal(data, &m)
			answers <- m
		}
		c.Read(ctx) // until the simulator closes
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte("from-a-file\n"), 0o600)

	b := startCommand(t, nil, "", "simulate", "orderpay-pos", "--url", srv.URL, "--outlet", "o-1", "--pos-remote-id", "p-1",
		"--secret-file", secretFile, "--cacert", writeCert(t, srv), "--data-dir", t.TempDir())
	for _, want := range []string{"sim-user-1", "sim-1001", "o-9", "Simulated"} {
		select {
		case a := <-answers:
			p, _ := json.Marshal(a["Payload"])
			if a["ResultCode"] != float64(0) || !strings.Contains(string(p), want) {
				t.Fatalf("answer %v, want %s in its payload", a, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no answer; stderr:\n%s", b.stderr)
		}
	}
	waitFor(t, b.stdout, `RequestID="req-d" MessageType=40 (other) -> ResultCode 0`)
	if lines := strings.Count(b.stdout.String(), "\n"); lines != 4 {
		t.Fatalf("%d lines, want one per request:\n%s", lines, b.stdout)
	}
	if code := b.stop(t); code != 0 {
		t.Fatalf("exit %d: %s", code, b.stderr)
	}
	if strings.Contains(b.stderr.String()+b.stdout.String(), "ticket-1") || strings.Contains(b.stderr.String()+b.stdout.String(), "from-a-file") {
		t.Fatal("a credential was printed")
	}
}

func TestSimulateOrderpayUntrustedCertificate(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	r := posgate(t, "s3cret\n", "simulate", "orderpay-pos", "--url", srv.URL, "--outlet", "o", "--pos-remote-id", "p",
		"--secret-file", "-", "--data-dir", t.TempDir())
	// Neither pinned (empty data dir) nor given with --ca: refused, and not retried forever.
	if r.code != 1 || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}

// A stand-in for posgate's /pos/socket: answers the first heartbeat with a pong, then pushes two
// events; the simulator prints them.
func TestSimulateDoshii(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pos/socket", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "pg_lt_env" {
			w.WriteHeader(401)
			w.Write([]byte(`{"message":"invalid token"}`))
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := context.Background()
		_, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		var hb struct {
			Doshii struct {
				Ping    json.Number
				Version string
			}
		}
		json.Unmarshal(data, &hb)
		if hb.Doshii.Version != "sim 9" {
			return
		}
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"message","data":{"doshii":{"pong":`+hb.Doshii.Ping.String()+`,"version":"v3"}}}`))
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"order_created","id":"ev-1","locationId":"loc-1","data":{"orderId": "o-1",
			"status":"pending"}}`))
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"order_created","id":"ev-1","data":{}}`))
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"checkin_created","id":"ev-2","data":{"checkinId":"c"}}`))
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	b := startCommand(t, map[string]string{"POSGATE_DOSHII_LOCATION_TOKEN": "pg_lt_env"}, "", "simulate", "doshii-pos", "--url", srv.URL, "--version", "sim 9")
	waitFor(t, b.stdout, `event id="ev-2" type="checkin_created" location="" data={"checkinId":"c"}`)
	out := b.stdout.String()
	if !strings.Contains(out, `event id="ev-1" type="order_created" location="loc-1" data={"orderId":"o-1","status":"pending"}`) || strings.Count(out, "ev-1") != 1 {
		t.Fatalf("output:\n%s", out)
	}
	if code := b.stop(t); code != 0 {
		t.Fatalf("exit %d: %s", code, b.stderr)
	}
}

// The data dir's certificate is pinned, as `posgate admin` does: the right one connects without
// --ca, another one stops the simulator at once instead of retrying.
func TestSimulateDoshiiPinsTheDataDirCertificate(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pos/socket", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"hello","id":"ev-pin","data":{}}`))
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	pinned := t.TempDir()
	os.WriteFile(filepath.Join(pinned, server.CertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	env := map[string]string{"POSGATE_DOSHII_LOCATION_TOKEN": "pg_lt_x"}
	b := startCommand(t, env, "", "simulate", "doshii-pos", "--url", srv.URL, "--data-dir", pinned)
	waitFor(t, b.stdout, `event id="ev-pin"`)
	if code := b.stop(t); code != 0 {
		t.Fatalf("exit %d: %s", code, b.stderr)
	}

	// A data dir pinning another certificate (httptest servers all share one, so the pin changes).
	otherDir := t.TempDir()
	os.WriteFile(filepath.Join(otherDir, server.CertFile), selfSignedPEM(t), 0o600)
	r := cli.Run([]string{"simulate", "doshii-pos", "--url", srv.URL, "--data-dir", otherDir},
		cli.Env{Stdout: io.Discard, Stderr: b.stderr, Getenv: func(k string) string { return env[k] }})
	if r != 1 || !strings.Contains(b.stderr.String(), "not the one pinned") {
		t.Fatalf("exit %d: %s", r, b.stderr)
	}
}

func selfSignedPEM(t *testing.T) []byte {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "other"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
