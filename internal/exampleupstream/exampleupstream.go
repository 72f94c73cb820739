// Package exampleupstream is a stand-in for the POS API behind posgate, so the gateway's routes
// and chef's data calls answer something while an integration is tried out: `posgate serve
// --demo` starts one and routes to it, `posgate simulate upstream` runs one for the walkthroughs
// in docs/. It checks posgate's signed identity headers as a real upstream should (client/identity)
// and answers with what it was asked and who posgate says the caller is.
package exampleupstream

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/posgate/posgate/client/identity"
)

// Name is how the answers name their sender.
const Name = "posgate example upstream"

// maxBody caps the request body read to find JSON-RPC calls.
const maxBody = 1 << 20

// Answer is what the upstream answers a plain HTTP request with.
type Answer struct {
	Upstream string              `json:"upstream"`
	Method   string              `json:"method"`
	Target   string              `json:"target"` // the escaped path and the raw query, as received
	Caller   *identity.Principal `json:"caller"`
}

// New returns the upstream's handler; key is the gateway's identity-signature key
// (gateway.SigningKey). A request whose identity headers do not verify is answered 401.
func New(key []byte) (http.Handler, error) {
	v, err := identity.NewVerifier(key)
	if err != nil {
		return nil, err
	}
	v.Replay = identity.NewMemoryReplayCache(10_000)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := v.Verify(r)
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "identity_not_verified", "error_description": err.Error()})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "body_too_large"})
			return
		}
		if calls, batch, ok := jsonRPC(r, body); ok {
			answerRPC(w, calls, batch, p)
			return
		}
		writeJSON(w, http.StatusOK, Answer{Upstream: Name, Method: r.Method, Target: r.URL.RequestURI(), Caller: p})
	}), nil
}

// call is one JSON-RPC request; ID is absent for a notification.
type call struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	ID      json.RawMessage `json:"id"`
}

// jsonRPC reports whether body is a JSON-RPC 2.0 call or batch (chef's data calls).
func jsonRPC(r *http.Request, body []byte) (calls []call, batch, ok bool) {
	if r.Method != http.MethodPost {
		return nil, false, false
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, false, false
	}
	batch = body[0] == '['
	if batch {
		if json.Unmarshal(body, &calls) != nil {
			return nil, false, false
		}
	} else {
		var c call
		if json.Unmarshal(body, &c) != nil {
			return nil, false, false
		}
		calls = []call{c}
	}
	for _, c := range calls {
		if c.JSONRPC != "2.0" || c.Method == "" {
			return nil, false, false
		}
	}
	return calls, batch, len(calls) > 0
}

// Result is the data of a JSON-RPC answer, inside chef's result envelope.
type Result struct {
	Upstream string              `json:"upstream"`
	Method   string              `json:"method"`
	Caller   *identity.Principal `json:"caller"`
}

// answerRPC answers each call that has an id in chef's result envelope; notifications get none
// (JSON-RPC 2.0 §4.1), and a request of notifications only gets 204.
func answerRPC(w http.ResponseWriter, calls []call, batch bool, p *identity.Principal) {
	type envelope struct {
		Success         bool    `json:"success"`
		Data            Result  `json:"data"`
		ErrorNum        int     `json:"error_num"`
		ErrorMessage    string  `json:"error_message"`
		UndoID          *string `json:"undo_id"`
		UndoType        *string `json:"undo_type"`
		UndoMessage     *string `json:"undo_message"`
		ErrorForEndUser *string `json:"errorForEndUser"`
	}
	type response struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  envelope        `json:"result"`
	}
	var out []response
	for _, c := range calls {
		if len(c.ID) == 0 {
			continue
		}
		out = append(out, response{JSONRPC: "2.0", ID: c.ID, Result: envelope{Success: true, Data: Result{Upstream: Name, Method: c.Method, Caller: p}}})
	}
	switch {
	case len(out) == 0:
		w.WriteHeader(http.StatusNoContent)
	case batch:
		writeJSON(w, http.StatusOK, out)
	default:
		writeJSON(w, http.StatusOK, out[0])
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
