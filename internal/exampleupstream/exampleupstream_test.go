package exampleupstream_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/exampleupstream"
)

func TestExampleUpstream(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	h, err := exampleupstream.New(key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := identity.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	principal := identity.EncodePrincipal([]byte(`{"dialect":"chef","means":"chef.device","device":"dev_1"}`))
	do := func(method, target, body string, signed bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		if signed {
			r.Header.Set(identity.HeaderPrincipal, principal)
			r.Header.Set(identity.HeaderSignature, signer.Sign(method, target, time.Now(), principal))
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	// Without posgate's signed identity: refused.
	if w := do("GET", "/orders", "", false); w.Code != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d %s", w.Code, w.Body)
	}
	// A plain request: what was asked and who asked.
	w := do("GET", "/orders?b=2&a=1", "", true)
	var a exampleupstream.Answer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || w.Code != 200 || a.Target != "/orders?b=2&a=1" || a.Caller.Device != "dev_1" {
		t.Fatalf("plain: %d %s", w.Code, w.Body)
	}
	// JSON-RPC: a call is answered in chef's envelope, a batch per call with an id, a
	// notification not at all.
	w = do("POST", "/api/json-rpc/v1", `{"jsonrpc":"2.0","method":"Reports.list","params":[{}],"id":7}`, true)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `{"jsonrpc":"2.0","id":7,"result":{"success":true,"data":{"upstream":"posgate example upstream","method":"Reports.list","caller":{"dialect":"chef"`) {
		t.Fatalf("call: %d %s", w.Code, w.Body)
	}
	w = do("POST", "/api/json-rpc/v1", `[{"jsonrpc":"2.0","method":"A","id":1},{"jsonrpc":"2.0","method":"B"},{"jsonrpc":"2.0","method":"C","id":"x"}]`, true)
	var batch []struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &batch); err != nil || len(batch) != 2 || string(batch[0].ID) != "1" || string(batch[1].ID) != `"x"` {
		t.Fatalf("batch: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/api/json-rpc/v1", `{"jsonrpc":"2.0","method":"Orders.touch"}`, true); w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("notification: %d %s", w.Code, w.Body)
	}
}
