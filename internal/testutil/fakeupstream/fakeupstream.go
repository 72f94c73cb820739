// Package fakeupstream is a POS API stand-in for gateway tests: an HTTP server on loopback that
// records every request reaching it and, given the gateway's signing key, verifies the identity
// headers posgate adds. It answers 200 (or the status set for a path) with the JSON
// {"upstream":"METHOD PATH"}, so a test sees which route reached it.
package fakeupstream

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/posgate/posgate/client/identity"
)

// Request is one request the upstream received.
type Request struct {
	Method, Path string
	Header       http.Header
	Body         []byte
	Principal    *identity.Principal // verified identity; nil without a key or when it did not verify
	VerifyErr    error               // why it did not verify (nil without a key)
}

// Server is the running upstream; it stops when the test ends.
type Server struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []Request
	status map[string]int
}

// Start starts an upstream. key, when not nil, is the gateway's identity signing key: each
// request's X-Posgate-Principal is then verified with it.
func Start(t testing.TB, key []byte) *Server {
	t.Helper()
	var v *identity.Verifier
	if key != nil {
		var err error
		if v, err = identity.NewVerifier(key); err != nil {
			t.Fatal(err)
		}
	}
	u := &Server{status: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
		if v != nil {
			rec.Principal, rec.VerifyErr = v.Verify(r)
		}
		u.mu.Lock()
		u.reqs = append(u.reqs, rec)
		st := u.status[r.URL.Path]
		u.mu.Unlock()
		if st == 0 {
			st = http.StatusOK
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(st)
		b, _ := json.Marshal(map[string]string{"upstream": r.Method + " " + r.URL.Path})
		_, _ = w.Write(b)
	}))
	t.Cleanup(u.Close)
	return u
}

// Requests returns what the upstream received so far, in order.
func (u *Server) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.reqs...)
}

// SetStatus makes the upstream answer requests for path with status.
func (u *Server) SetStatus(path string, status int) {
	u.mu.Lock()
	u.status[path] = status
	u.mu.Unlock()
}
