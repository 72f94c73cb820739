package chef_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/dialect/chef/cheftest"
	"github.com/posgate/posgate/internal/token"
)

const rpcPath = "/api/json-rpc/v1"

// answer is an HTTP answer of the JSON-RPC endpoint.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// chefResult is Chef's `result` envelope.
type chefResult struct {
	Success         bool            `json:"success"`
	Data            json.RawMessage `json:"data"`
	ErrorNum        int             `json:"error_num"`
	ErrorMessage    string          `json:"error_message"`
	UndoID          json.RawMessage `json:"undo_id"`
	UndoType        json.RawMessage `json:"undo_type"`
	UndoMessage     json.RawMessage `json:"undo_message"`
	ErrorForEndUser json.RawMessage `json:"errorForEndUser"`
}

type tokenData struct {
	Token     string `json:"token"`
	NewDevice bool   `json:"new_device"`
}

// post sends body to the endpoint with the given headers ("Content-Type: application/json" unless
// one is given).
func post(t testing.TB, inst *cheftest.Instance, path, body string, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, inst.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "chef-test/1.0")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// authBody is an authenticateClient request.
func authBody(id, deviceID, name string) string {
	p := map[string]string{}
	if deviceID != "" {
		p["device_id"] = deviceID
	}
	if name != "" {
		p["device_name"] = name
	}
	b, _ := json.Marshal(p)
	return fmt.Sprintf(`{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[%s],"id":%s}`, b, id)
}

// single decodes a single JSON-RPC response.
func single(t testing.TB, a answer) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("HTTP %d, body %q: %v", a.status, a.body, err)
	}
	return m
}

// result decodes the Chef envelope of a single response and checks its invariants.
func result(t testing.TB, a answer) chefResult {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("HTTP %d: %s", a.status, a.body)
	}
	m := single(t, a)
	if string(m["jsonrpc"]) != `"2.0"` {
		t.Fatalf("jsonrpc member %s", m["jsonrpc"])
	}
	var r chefResult
	if err := json.Unmarshal(m["result"], &r); err != nil {
		t.Fatalf("result %s: %v", a.body, err)
	}
	for name, v := range map[string]json.RawMessage{"undo_id": r.UndoID, "undo_type": r.UndoType, "undo_message": r.UndoMessage, "errorForEndUser": r.ErrorForEndUser} {
		if string(v) != "null" {
			t.Fatalf("%s = %s, want null", name, v)
		}
	}
	if !r.Success && string(r.Data) != `""` {
		t.Fatalf("failure data %s, want \"\"", r.Data)
	}
	return r
}

// tokenOf asserts a successful authenticateClient and returns its data.
func tokenOf(t testing.TB, a answer) tokenData {
	t.Helper()
	r := result(t, a)
	if !r.Success || r.ErrorNum != 0 || r.ErrorMessage != "" {
		t.Fatalf("not a success: %s", a.body)
	}
	var d tokenData
	if err := json.Unmarshal(r.Data, &d); err != nil || d.Token == "" {
		t.Fatalf("data %s: %v", r.Data, err)
	}
	return d
}

// failureOf asserts a Chef business error.
func failureOf(t testing.TB, a answer, num int, msg string) {
	t.Helper()
	r := result(t, a)
	if r.Success || r.ErrorNum != num || r.ErrorMessage != msg {
		t.Fatalf("want error %d %q, got %s", num, msg, a.body)
	}
}

// async runs post in a goroutine.
func async(t testing.TB, inst *cheftest.Instance, body string, hdr ...string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, inst.URL+rpcPath, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "chef-test/1.0")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := inst.Client.Do(req)
		if err != nil {
			ch <- answer{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- answer{status: resp.StatusCode, header: resp.Header, body: b}
	}()
	return ch
}

// receive waits for an answer.
func receive(t testing.TB, ch <-chan answer) answer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(30 * time.Second):
		t.Fatal("no answer within 30 s")
		return answer{}
	}
}

// verify checks a device token with the instance's verifier.
func verify(t testing.TB, inst *cheftest.Instance, tok string) *token.Claims {
	t.Helper()
	c, err := inst.Svc.Verifier.Verify(context.Background(), tok, token.VerifyOptions{Audience: "chef"})
	if err != nil {
		t.Fatalf("token does not verify: %v", err)
	}
	return c
}

// approve approves device id through the admin API.
func approve(t testing.TB, inst *cheftest.Instance, id string) {
	t.Helper()
	if st, body := inst.Admin(t, http.MethodPost, "/chef/devices/"+id+"/approve"); st != http.StatusOK {
		t.Fatalf("approve: HTTP %d %v", st, body)
	}
}

type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func newRecorder() *recorder            { return &recorder{h: http.Header{}} }
func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(c int)   { r.code = c }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(b)
}
