package chef_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/dialect/chef/cheftest"
)

// TestProtocolFaults: the standard JSON-RPC errors, with HTTP 200 and the right ids, on every path.
func TestProtocolFaults(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{Configure: func(c *config.Config) {
		c.Chef.Prefix = "/chef"
		delete(c.Upstreams, "pos") // no upstream: data calls are "method not found"
	}})
	tests := []struct {
		name, body string
		want       string
	}{
		{"parse error", `{"jsonrpc":"2.0","method":`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error","data":"body is not valid JSON"}}`},
		{"empty body", ``, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error","data":"empty body"}}`},
		{"empty batch", `[]`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request","data":"empty batch"}}`},
		{"scalar", `42`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request","data":"request must be an object or an array of objects"}}`},
		{"no jsonrpc member, id kept", `{"method":"x","id":"a"}`, `{"jsonrpc":"2.0","id":"a","error":{"code":-32600,"message":"Invalid Request","data":"jsonrpc must be exactly \"2.0\""}}`},
		{"unknown method", `{"jsonrpc":"2.0","method":"Reports.list","id":7}`, `{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"Method not found"}}`},
		{"unknown Authentication method", `{"jsonrpc":"2.0","method":"Authentication.logout","id":7}`, `{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"Method not found"}}`},
		{"params not [{}]", `{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[1],"id":8}`, `{"jsonrpc":"2.0","id":8,"error":{"code":-32602,"message":"Invalid params","data":"params[0] must be an object"}}`},
		{"device_id not a string", `{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[{"device_id":5}],"id":9}`, `{"jsonrpc":"2.0","id":9,"error":{"code":-32602,"message":"Invalid params","data":"device_id must be a string"}}`},
		{"device ids disagree", `{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[{"device_id":"a","deviceId":"b"}],"id":10}`, `{"jsonrpc":"2.0","id":10,"error":{"code":-32602,"message":"Invalid params","data":"device_id and deviceId disagree"}}`},
		{"duplicate member", `{"jsonrpc":"2.0","method":"a","method":"Authentication.authenticateClient","id":11}`, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request","data":"duplicate key \"method\""}}`},
	}
	for _, path := range []string{rpcPath, "/api/customer/json-rpc/v1", "/pcu/server/public/index.php/api/json-rpc/v1", "/pcu/server/public/index.php/api/customer/json-rpc/v1", "/chef/api/json-rpc/v1", "/chef/api/customer/json-rpc/v1"} {
		for _, tc := range tests {
			t.Run(path+"/"+tc.name, func(t *testing.T) {
				a := post(t, inst, path, tc.body)
				if a.status != http.StatusOK {
					t.Fatalf("HTTP %d", a.status)
				}
				if got := strings.TrimSpace(string(a.body)); got != tc.want {
					t.Fatalf("got  %s\nwant %s", got, tc.want)
				}
				if a.header.Get("Content-Type") != "application/json" || a.header.Get("Cache-Control") != "no-store" {
					t.Fatalf("headers %v", a.header)
				}
			})
		}
	}

	// HTTP-level faults.
	if a := post(t, inst, rpcPath, `{"jsonrpc":"2.0","method":"m","id":1}`, "Content-Type", "text/plain"); a.status != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: HTTP %d", a.status)
	}
	if a := post(t, inst, rpcPath, `{"jsonrpc":"2.0","method":"Reports.list","id":1}`, "Content-Type", "application/json; charset=utf-8"); a.status != http.StatusOK {
		t.Fatalf("json with charset: HTTP %d", a.status)
	}
	big := `{"jsonrpc":"2.0","method":"m","params":["` + strings.Repeat("x", 1<<20) + `"],"id":1}`
	if a := post(t, inst, rpcPath, big); a.status != http.StatusRequestEntityTooLarge || !strings.Contains(string(a.body), "-32600") {
		t.Fatalf("too large: HTTP %d %.200s", a.status, a.body)
	}
	resp, err := inst.Client.Get(inst.URL + rpcPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: HTTP %d", resp.StatusCode)
	}
}

// TestIDsEchoedExactly: every id type comes back byte for byte.
func TestIDsEchoedExactly(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{Configure: func(c *config.Config) { delete(c.Upstreams, "pos") }})
	for _, id := range []string{`1`, `0`, `-3`, `1.0`, `1.50`, `12345678901234567890`, `1e3`, `-0.0e-7`, `"abc"`, `""`, `"<&>\u00e9\"\\/"`, `null`} {
		a := post(t, inst, rpcPath, `{"jsonrpc":"2.0","method":"Nope.nothing","id":`+id+`}`)
		m := single(t, a)
		if string(m["id"]) != id {
			t.Errorf("id %s echoed as %s", id, m["id"])
		}
	}
	// Invalid ids make the call invalid, answered with id null.
	for _, id := range []string{`{}`, `[1]`, `true`} {
		a := post(t, inst, rpcPath, `{"jsonrpc":"2.0","method":"Nope.nothing","id":`+id+`}`)
		m := single(t, a)
		if string(m["id"]) != "null" || !strings.Contains(string(m["error"]), "-32600") {
			t.Errorf("id %s: %s", id, a.body)
		}
	}
}

// TestNotifications: no body (204), and an authenticateClient notification creates nothing.
func TestNotifications(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{Configure: func(c *config.Config) { delete(c.Upstreams, "pos") }})
	for _, body := range []string{
		`{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[{"device_id":"n1"}]}`,
		`{"jsonrpc":"2.0","method":"Authentication.authenticateClient"}`,
		`{"jsonrpc":"2.0","method":"Nope.nothing","params":{}}`,
		`[{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[{}]},{"jsonrpc":"2.0","method":"x"}]`,
	} {
		a := post(t, inst, rpcPath, body)
		if a.status != http.StatusNoContent || len(a.body) != 0 {
			t.Fatalf("%s: HTTP %d %q", body, a.status, a.body)
		}
	}
	n, err := inst.Svc.Store.CountChefDevices(context.Background(), "")
	if err != nil || n != 0 {
		t.Fatalf("devices after notifications: %d %v", n, err)
	}
	// An invalid notification is still answered (its id cannot be trusted: null).
	a := post(t, inst, rpcPath, `{"jsonrpc":"1.0","method":"x"}`)
	if m := single(t, a); string(m["id"]) != "null" || !strings.Contains(string(m["error"]), "-32600") {
		t.Fatalf("invalid notification: %s", a.body)
	}
}

// TestBatches: arrays answered as arrays (notifications left out), in order, with a size limit.
func TestBatches(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{Configure: func(c *config.Config) {
		c.Chef.MaxBatch = 3
		delete(c.Upstreams, "pos")
	}})
	a := post(t, inst, rpcPath, `[
		{"jsonrpc":"2.0","method":"Nope.a","id":"1"},
		{"jsonrpc":"2.0","method":"Nope.b"},
		1
	]`)
	if a.status != http.StatusOK {
		t.Fatalf("HTTP %d", a.status)
	}
	want := `[{"jsonrpc":"2.0","id":"1","error":{"code":-32601,"message":"Method not found"}},` +
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request","data":"request must be an object"}}]`
	if got := strings.TrimSpace(string(a.body)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	// A batch of one is answered as an array of one.
	a = post(t, inst, rpcPath, `[{"jsonrpc":"2.0","method":"Nope.a","id":2}]`)
	var arr []json.RawMessage
	if err := json.Unmarshal(a.body, &arr); err != nil || len(arr) != 1 {
		t.Fatalf("batch of one: %s", a.body)
	}
	// Over the limit: one error object.
	a = post(t, inst, rpcPath, `[{"jsonrpc":"2.0","method":"a","id":1},{"jsonrpc":"2.0","method":"a","id":2},{"jsonrpc":"2.0","method":"a","id":3},{"jsonrpc":"2.0","method":"a","id":4}]`)
	if got := strings.TrimSpace(string(a.body)); got != `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request","data":"batch of 4 calls exceeds the limit of 3"}}` {
		t.Fatalf("over the limit: %s", got)
	}
}
