// Package httpcheck holds the checks tests of every HTTP surface share: sending a request with
// exactly the headers a case needs (repeated ones included) and the rules every error body obeys.
package httpcheck

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Do sends method path with header (each value list sent as repeated headers) and body, and
// returns the status, the headers and the body.
func Do(t testing.TB, c *http.Client, method, url string, header http.Header, body string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, data
}

// ErrorBody checks that body is a JSON object whose members are exactly the names in shape
// ("error_description" may be left out when "error" is there), each a string, and that no
// message member contains '"' or '\' (RFC 6749 §5.2 for error_description; the same rule for
// every surface's message, so a client never has to unescape one). It returns the object.
func ErrorBody(t testing.TB, what string, body []byte, shape ...string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%s: body %q is not a JSON object", what, body)
	}
	allowed := map[string]bool{}
	for _, k := range shape {
		allowed[k] = true
	}
	for k, v := range m {
		if !allowed[k] {
			t.Errorf("%s: member %q in %s, want only %v", what, k, body, shape)
			continue
		}
		s, ok := v.(string)
		if !ok {
			t.Errorf("%s: member %q is not a string: %s", what, k, body)
			continue
		}
		if strings.ContainsAny(s, "\"\\") {
			t.Errorf("%s: %s contains a quote or backslash: %q", what, k, s)
		}
	}
	if _, ok := m[shape[0]]; !ok {
		t.Errorf("%s: no %q in %s", what, shape[0], body)
	}
	return m
}

// Header builds a header from name, value pairs; a name given twice is sent twice.
func Header(kv ...string) http.Header {
	out := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Add(kv[i], kv[i+1])
	}
	return out
}

// Upgrade is a websocket handshake's header plus the name, value pairs kv.
func Upgrade(kv ...string) http.Header {
	return Header(append([]string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13",
		"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, kv...)...)
}

// Case is one refused request: what is sent, the status, the Allow header (for a 405) and the
// members of the error body (see ErrorBody).
type Case struct {
	Name, Method, Path string
	Header             http.Header
	Body               string
	Status             int
	Allow              string
	Shape              []string
}

// Run sends every case to base and checks its answer. In the {"error","error_description"}
// shape a 400 must say invalid_request and a 405 method_not_allowed.
func Run(t testing.TB, c *http.Client, base string, cases []Case) {
	t.Helper()
	for _, k := range cases {
		st, hdr, body := Do(t, c, k.Method, base+k.Path, k.Header, k.Body)
		if st != k.Status {
			t.Errorf("%s: %d %s, want %d", k.Name, st, body, k.Status)
			continue
		}
		if k.Allow != "" && hdr.Get("Allow") != k.Allow {
			t.Errorf("%s: Allow %q, want %q", k.Name, hdr.Get("Allow"), k.Allow)
		}
		m := ErrorBody(t, k.Name, body, k.Shape...)
		if k.Shape[0] == "error" && (k.Status == 400 && m["error"] != "invalid_request" || k.Status == 405 && m["error"] != "method_not_allowed") {
			t.Errorf("%s: error %v", k.Name, m["error"])
		}
	}
}

// C is a Case from its fields in order (a table of cases reads better without field names).
func C(name, method, path string, header http.Header, body string, status int, allow string, shape []string) Case {
	return Case{Name: name, Method: method, Path: path, Header: header, Body: body, Status: status, Allow: allow, Shape: shape}
}

// CrossHostRedirect sends GET path through rt to a server that redirects it (302) to another
// host, and returns the headers that other host received: a transport that adds a credential
// must not send it there. It fails t when the redirect target was never reached.
func CrossHostRedirect(t testing.TB, rt http.RoundTripper, path string) http.Header {
	t.Helper()
	var got http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	defer other.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/x", http.StatusFound)
	}))
	defer api.Close()
	resp, err := (&http.Client{Transport: rt}).Get(api.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got == nil {
		t.Fatal("the redirect was not followed to the other host")
	}
	return got
}
