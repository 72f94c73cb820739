package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/httpx"
)

// chain builds the server's middleware around mux, as New does, with logs into buf.
func chain(buf *bytes.Buffer, mux *http.ServeMux, maxBody int64) http.Handler {
	log := NewLogger(buf, "debug")
	return observe(log, nil, recoverPanics(log, canonicalPath(limitBody(maxBody, recordPattern("", mux)))))
}

func TestPanicIsA500WithoutInternals(t *testing.T) {
	var logs bytes.Buffer
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) {
		panic("database password is hunter2 at /srv/internal/path.go")
	})
	srv := httptest.NewServer(chain(&logs, mux, 1<<20))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/boom")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var e map[string]string
	if err := json.Unmarshal(body, &e); err != nil || e["error"] != "server_error" {
		t.Fatalf("body %s", body)
	}
	for _, leak := range []string{"hunter2", "path.go", "goroutine", "panic"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("500 body leaks %q: %s", leak, body)
		}
	}
	id := resp.Header.Get(RequestIDHeader)
	if id == "" || !strings.Contains(string(body), id) {
		t.Errorf("request id %q not in body %s", id, body)
	}
	// The log has the stack and the route; the access log line says 500.
	if !strings.Contains(logs.String(), `"msg":"panic"`) || !strings.Contains(logs.String(), `"route":"GET /boom"`) || !strings.Contains(logs.String(), `"status":500`) {
		t.Errorf("logs:\n%s", logs.String())
	}
	// The server keeps serving.
	resp, err = http.Get(srv.URL + "/boom")
	if err != nil || resp.StatusCode != 500 {
		t.Fatalf("second request: %v", err)
	}
	resp.Body.Close()
}

func TestNonCanonicalPathsAre400BeforeRouting(t *testing.T) {
	var logs bytes.Buffer
	reached := false
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { reached = true })
	srv := httptest.NewServer(chain(&logs, mux, 1<<20))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, target := range []string{
		"/a/../admin/api/v1/clients", "/a/./b", "/a/%2e%2e/b", "/a/%2E./b", "/a%2fb", "/a%2Fb", "/a%5cb",
		"/a\\b", "/a%00b", "//admin", "/a//b", "/.", "/..",
	} {
		reached = false
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		// A raw request: Go's client would clean the path before sending it.
		io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufioReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode != 400 || reached || !strings.Contains(string(body), `"error":"invalid_request"`) {
			t.Errorf("%s: %d %s (handler reached: %v)", target, resp.StatusCode, body, reached)
		}
	}
	// Canonical paths pass.
	resp, err := http.Get(srv.URL + "/a/b.c/..d?x=../y")
	if err != nil || resp.StatusCode != 200 || !reached {
		t.Errorf("canonical path refused: %v %v", err, resp.StatusCode)
	}
}

func TestBodyLimit(t *testing.T) {
	var logs bytes.Buffer
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		if _, err := httpx.ReadBody(r, 10<<20); err != nil {
			http.Error(w, "too large", 413)
			return
		}
		w.WriteHeader(204)
	})
	srv := httptest.NewServer(chain(&logs, mux, 1024))
	defer srv.Close()
	for _, tc := range []struct {
		n    int
		want int
	}{{1024, 204}, {1025, 413}} {
		resp, err := http.Post(srv.URL+"/echo", "text/plain", strings.NewReader(strings.Repeat("x", tc.n)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%d bytes: status %d, want %d", tc.n, resp.StatusCode, tc.want)
		}
	}
}

func TestAccessLogHoldsNoQueryOrCredentials(t *testing.T) {
	var logs bytes.Buffer
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x/{id}", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	srv := httptest.NewServer(chain(&logs, mux, 1<<20))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/x/1?token=QUERYSECRET&access_token=QS2", nil)
	req.Header.Set("Authorization", "Bearer HEADERSECRET")
	req.Header.Set("apikey", "APIKEYSECRET")
	req.Header.Set("vendor", "VENDORSECRET")
	req.Header.Set("Cookie", "s=COOKIESECRET")
	req.Header.Set("X-Request-Id", "forged-id")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(RequestIDHeader); got == "" || strings.Contains(got, "forged") {
		t.Errorf("request id %q", got)
	}
	l := logs.String()
	for _, s := range []string{"QUERYSECRET", "QS2", "HEADERSECRET", "APIKEYSECRET", "VENDORSECRET", "COOKIESECRET", "token=", "forged"} {
		if strings.Contains(l, s) {
			t.Errorf("log holds %q:\n%s", s, l)
		}
	}
	if !strings.Contains(l, `"route":"GET /x/{id}"`) || !strings.Contains(l, `"path":"/x/1"`) || !strings.Contains(l, `"status":200`) {
		t.Errorf("log line incomplete:\n%s", l)
	}
}

func TestClientAddressHonoursTrustedProxiesOnly(t *testing.T) {
	trusted := parseTrusted([]string{"10.0.0.0/8", "192.168.1.1"})
	cases := []struct {
		remote, xff, want string
	}{
		{"203.0.113.7:1234", "1.2.3.4", "203.0.113.7"},                // untrusted peer: header ignored
		{"10.1.2.3:1234", "1.2.3.4", "1.2.3.4"},                       // trusted proxy
		{"10.1.2.3:1234", "6.6.6.6, 1.2.3.4, 192.168.1.1", "1.2.3.4"}, // right-most untrusted hop
		{"10.1.2.3:1234", "garbage", "10.1.2.3"},                      // malformed: the peer
		{"10.1.2.3:1234", "", "10.1.2.3"},
		{"[::ffff:10.0.0.1]:1", "1.2.3.4", "1.2.3.4"},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := resolveAddr(r, trusted); got != tc.want {
			t.Errorf("%s / %q: %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
	// And the chain attaches it for handlers.
	var seen string
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { seen = auth.Addr(r) })
	h := observe(NewLogger(io.Discard, "info"), []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, recordPattern("", mux))
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "127.0.0.1:5"
	r.Header.Set("X-Forwarded-For", "198.51.100.9")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if seen != "198.51.100.9" {
		t.Errorf("handler saw %q", seen)
	}
}

func TestJoinPattern(t *testing.T) {
	if got := joinPattern("/admin/api/v1", "POST /clients/{id}/disable"); got != "POST /admin/api/v1/clients/{id}/disable" {
		t.Error(got)
	}
	if got := joinPattern("/admin/api/v1", "/"); got != "/admin/api/v1/" {
		t.Error(got)
	}
}
