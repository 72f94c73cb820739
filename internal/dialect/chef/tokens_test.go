package chef_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/dialect/chef/cheftest"
	"github.com/posgate/posgate/internal/token"
)

const dataCall = `{"jsonrpc":"2.0","method":"Reports.getSales","params":[{"from":"2026-01-01"}],"id":42}`

// pair pairs device deviceID and returns its token and posgate device id.
func pair(t testing.TB, inst *cheftest.Instance, deviceID string, hdr ...string) (string, string) {
	t.Helper()
	ch := async(t, inst, authBody("1", deviceID, deviceID+" label"), hdr...)
	var id string
	deadline := time.Now().Add(10 * time.Second)
	for id == "" {
		list := inst.WaitPending(t, 1)
		for _, d := range list {
			if strings.HasSuffix(d.DeviceKey, ":"+deviceID) {
				id = d.ID
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("device never pending")
		}
	}
	approve(t, inst, id)
	return tokenOf(t, receive(t, ch)).Token, id
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestTokenErrorNumbers: every token problem on a data call gets Chef's number and text, inside
// `result`, with HTTP 200 and the call's id — and nothing reaches the upstream.
func TestTokenErrorNumbers(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	inst := cheftest.Start(t, cheftest.Options{Clock: clk})
	good, devID := pair(t, inst, "T1")
	parts := strings.Split(good, ".")
	var hdr map[string]any
	hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
	_ = json.Unmarshal(hb, &hdr)
	kid := hdr["kid"].(string)

	// Tokens minted at other moments, and one for another audience.
	clk.Advance(time.Hour + time.Minute)
	future, _, err := inst.Svc.Issuer.Issue(context.Background(), token.Claims{Subject: devID, Audience: []string{"chef"}, SessionID: "chef." + devID + ".1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(-time.Hour - time.Minute)
	otherAud, _, err := inst.Svc.Issuer.Issue(context.Background(), token.Claims{Subject: devID, Audience: []string{"pos-api"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])-1) + "A"

	tests := []struct {
		name  string
		auth  string
		num   int
		msg   string
		setup func()
	}{
		{"missing", "", 55, "Token is missing", nil},
		{"bearer only", "Bearer ", 55, "Token is missing", nil},
		{"alg HS256", b64(`{"alg":"HS256","kid":"`+kid+`","typ":"at+jwt"}`) + "." + parts[1] + "." + parts[2], 20, "Unsupported algorithm HS256", nil},
		{"alg none", b64(`{"alg":"none","typ":"at+jwt"}`) + "." + parts[1] + ".AA", 20, "Unsupported algorithm none", nil},
		{"alg number", b64(`{"alg":5,"typ":"at+jwt"}`) + "." + parts[1] + ".AA", 20, "Unsupported algorithm 5", nil},
		{"no alg", b64(`{"kid":"`+kid+`","typ":"at+jwt"}`) + "." + parts[1] + "." + parts[2], 22, "Invalid token: Missing header algorithm", nil},
		{"header not JSON", b64(`not json`) + "." + parts[1] + "." + parts[2], 40, "", nil},
		{"duplicate header key", b64(`{"alg":"EdDSA","alg":"none"}`) + "." + parts[1] + "." + parts[2], 40, "", nil},
		{"bad base64", "!!!." + parts[1] + "." + parts[2], 40, "", nil},
		{"two segments", parts[0] + "." + parts[1], 50, "Invalid token: Incomplete segments", nil},
		{"one segment", "abc", 50, "Invalid token: Incomplete segments", nil},
		{"too large", strings.Repeat("a", 9000) + ".b.c", 50, "Invalid token: Incomplete segments", nil},
		{"signature", tampered, 60, "Invalid Token: Signature Failed", nil},
		{"other audience", otherAud, 60, "Invalid Token: Signature Failed", nil},
		{"unknown kid", b64(`{"alg":"EdDSA","kid":"nope","typ":"at+jwt"}`) + "." + parts[1] + "." + parts[2], 70, "Invalid Token: Unknown key ID", nil},
		{"not yet valid", future, 54, "Invalid token: Not Now", nil},
		{"expired", good, 52, "Invalid token: Expired", func() { clk.Advance(2 * time.Hour) }},
		{"revoked", "", 57, "Device authentication process is declined by user.", nil}, // filled below
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			before := len(inst.Received())
			schemes := []string{"", "Bearer "}
			if tc.auth == "" || strings.HasPrefix(tc.auth, "Bearer") {
				schemes = schemes[:1]
			}
			for _, scheme := range schemes {
				a := post(t, inst, rpcPath, dataCall, "Authorization", scheme+tc.auth)
				if tc.auth == "" {
					a = post(t, inst, rpcPath, dataCall)
				}
				if m := single(t, a); string(m["id"]) != "42" {
					t.Fatalf("id %s", m["id"])
				}
				r := result(t, a)
				if r.Success || r.ErrorNum != tc.num {
					t.Fatalf("got %s", a.body)
				}
				if tc.msg != "" && r.ErrorMessage != tc.msg {
					t.Fatalf("message %q, want %q", r.ErrorMessage, tc.msg)
				}
				if tc.num == 40 && !strings.HasPrefix(r.ErrorMessage, "JSON failed: ") {
					t.Fatalf("message %q", r.ErrorMessage)
				}
			}
			if len(inst.Received()) != before {
				t.Fatal("a refused call reached the upstream")
			}
		})
		if tc.name == "expired" {
			break
		}
	}
}

// TestDataCallsAndRevocation: a data call with a device token is forwarded with the device as the
// principal and without the token; after revocation the next call gets 57 and is not forwarded.
func TestDataCallsAndRevocation(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	tok, devID := pair(t, inst, "D1")

	a := post(t, inst, "/pcu/server/public/index.php/api/customer/json-rpc/v1", dataCall, "Authorization", tok)
	if a.status != http.StatusOK || !strings.Contains(string(a.body), `"echo":true`) {
		t.Fatalf("data call: %d %s", a.status, a.body)
	}
	rec := inst.Received()
	if len(rec) != 1 {
		t.Fatalf("upstream saw %d requests", len(rec))
	}
	got := rec[0]
	if got.Path != "/pcu/server/public/index.php/api/customer/json-rpc/v1" || string(got.Body) != dataCall {
		t.Fatalf("forwarded %s %s", got.Path, got.Body)
	}
	if got.Header.Get("Authorization") != "" {
		t.Fatal("the device token reached the upstream")
	}
	if got.SigErr != nil {
		t.Fatalf("identity signature: %v", got.SigErr)
	}
	if p := got.Principal; p.Dialect != "chef" || p.Means != "chef.device" || p.Subject != devID || p.Device != devID || p.Claims["device_id"] != "D1" {
		t.Fatalf("principal %+v", p)
	}

	// A batch of data calls: authenticated once, forwarded once, unchanged.
	batch := `[` + dataCall + `,{"jsonrpc":"2.0","method":"Reports.getStock","id":"s"}]`
	inst.UpstreamAnswer = func(w http.ResponseWriter, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`[{"jsonrpc":"2.0","id":42,"result":1},{"jsonrpc":"2.0","id":"s","result":2}]`))
	}
	a = post(t, inst, rpcPath, batch, "Authorization", "Bearer "+tok)
	if string(a.body) != `[{"jsonrpc":"2.0","id":42,"result":1},{"jsonrpc":"2.0","id":"s","result":2}]` {
		t.Fatalf("batch answer %s", a.body)
	}
	if rec := inst.Received(); len(rec) != 2 || string(rec[1].Body) != batch {
		t.Fatalf("batch forwarded as %q", rec[len(rec)-1].Body)
	}

	// A mixed batch: the pairing call is answered here, the data call upstream, one array back.
	inst.UpstreamAnswer = func(w http.ResponseWriter, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`[{"jsonrpc":"2.0","id":42,"result":"up"}]`))
	}
	mixed := `[` + authBody(`"p"`, "D1", "D1 label") + `,` + dataCall + `,{"jsonrpc":"2.0","method":"Nope"}]`
	a = post(t, inst, rpcPath, mixed, "Authorization", tok)
	var arr []map[string]json.RawMessage
	if err := json.Unmarshal(a.body, &arr); err != nil || len(arr) != 2 {
		t.Fatalf("mixed answer %s", a.body)
	}
	if string(arr[0]["id"]) != `"p"` || !strings.Contains(string(arr[0]["result"]), `"new_device":false`) ||
		string(arr[1]["id"]) != "42" || string(arr[1]["result"]) != `"up"` {
		t.Fatalf("mixed answer %s", a.body)
	}
	// Every data call is forwarded, notifications included (the upstream decides what "Nope" is).
	if rec := inst.Received(); string(rec[len(rec)-1].Body) != "["+dataCall+`,{"jsonrpc":"2.0","method":"Nope"}]` {
		t.Fatalf("mixed forwarded %s", rec[len(rec)-1].Body)
	}
	// Data-call notifications are forwarded and answered 204 with no body, whatever the upstream
	// answers (JSON-RPC 2.0 §4.1).
	for _, up := range []func(w http.ResponseWriter, body []byte){
		func(w http.ResponseWriter, body []byte) {
			w.Write([]byte(`{"jsonrpc":"2.0","id":null,"result":"leak"}`))
		},
		func(w http.ResponseWriter, body []byte) {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte("boom"))
		},
	} {
		inst.UpstreamAnswer = up
		before := len(inst.Received())
		for _, body := range []string{`{"jsonrpc":"2.0","method":"Orders.touch"}`, `[{"jsonrpc":"2.0","method":"A"},{"jsonrpc":"2.0","method":"B"}]`} {
			a = post(t, inst, rpcPath, body, "Authorization", tok)
			if a.status != http.StatusNoContent || len(a.body) != 0 {
				t.Fatalf("notification %s: %d %q, want 204 and no body", body, a.status, a.body)
			}
		}
		if n := len(inst.Received()) - before; n != 2 {
			t.Fatalf("notifications forwarded %d times, want 2", n)
		}
	}
	inst.UpstreamAnswer = nil

	// The chef.device authenticator for gateway routes says the same.
	a9, ok := inst.Svc.Auth.Get("chef.device")
	if !ok {
		t.Fatal("chef.device not registered")
	}
	req, _ := http.NewRequest(http.MethodPost, "/x", strings.NewReader(dataCall))
	req.Header.Set("Authorization", tok)
	p, err := a9.Authenticate(req)
	if err != nil || p.Device != devID || p.Means != "chef.device" || p.SessionID == "" {
		t.Fatalf("authenticate: %+v %v", p, err)
	}

	// Revocation: the next data call gets 57, at once, and is not forwarded.
	revoke(t, inst, devID)
	before := len(inst.Received())
	failureOf(t, post(t, inst, rpcPath, dataCall, "Authorization", tok), 57, "Device authentication process is declined by user.")
	if len(inst.Received()) != before {
		t.Fatal("revoked call forwarded")
	}
	_, err = a9.Authenticate(req)
	if err == nil {
		t.Fatal("gateway authenticator accepted a revoked token")
	}
	rr := newRecorder()
	a9.WriteError(rr, req, err)
	if rr.code != http.StatusOK || !strings.Contains(rr.body.String(), `"id":42`) || !strings.Contains(rr.body.String(), `"error_num":57`) {
		t.Fatalf("WriteError: %d %s", rr.code, rr.body.String())
	}
	// And renewal is refused too (during the cool-down: 57).
	failureOf(t, post(t, inst, rpcPath, authBody("9", "D1", "D1 label"), "Authorization", tok), 57, "Device authentication process is declined by user.")
	// No credential at all: the gateway can tell.
	req2, _ := http.NewRequest(http.MethodPost, "/x", nil)
	if _, err := a9.Authenticate(req2); !auth.IsNoCredential(err) {
		t.Fatalf("no credential: %v", err)
	}
}

// TestRevocationAcrossReplicas: two instances share a store and bus; a revocation on one stops the
// token on the other at once, and an approval on one answers a call held on the other.
func TestRevocationAcrossReplicas(t *testing.T) {
	a := cheftest.Start(t, cheftest.Options{})
	// Replicas share the store, the bus and the master key (their keyrings load the same keys).
	b := cheftest.Start(t, cheftest.Options{Store: a.Svc.Store, Bus: a.Svc.Events, Master: a.Master})
	ch := async(t, b, authBody("1", "R1", ""))
	d := a.WaitPending(t, 1)[0]
	approve(t, a, d.ID) // decided on a, answered on b
	tok := tokenOf(t, receive(t, ch)).Token
	if r := post(t, a, rpcPath, dataCall, "Authorization", tok); r.status != http.StatusOK || !strings.Contains(string(r.body), "echo") {
		t.Fatalf("data call on a: %s", r.body)
	}
	revoke(t, b, d.ID)
	failureOf(t, post(t, a, rpcPath, dataCall, "Authorization", tok), 57, "Device authentication process is declined by user.")
}

// TestThrottleBadTokens: an address that keeps sending invalid tokens is throttled (429, -32029,
// Retry-After) before any token check; other addresses are not.
func TestThrottleBadTokens(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{Configure: func(c *config.Config) { c.Throttle.PerAddress = 3 }})
	good, _ := pair(t, inst, "TH")
	for i := 0; i < 3; i++ {
		if r := result(t, post(t, inst, rpcPath, dataCall, "Authorization", "a.b.c", cheftest.AddrHeader, "198.51.100.7")); r.ErrorNum != 40 {
			t.Fatalf("bad token %d: %+v", i, r)
		}
	}
	a := post(t, inst, rpcPath, dataCall, "Authorization", good, cheftest.AddrHeader, "198.51.100.7")
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" {
		t.Fatalf("throttled: %d %v %s", a.status, a.header, a.body)
	}
	if m := single(t, a); string(m["id"]) != "42" || !strings.Contains(string(m["error"]), `"code":-32029`) {
		t.Fatalf("throttled body %s", a.body)
	}
	// Another address is not affected.
	if r := post(t, inst, rpcPath, dataCall, "Authorization", good, cheftest.AddrHeader, "198.51.100.8"); r.status != http.StatusOK {
		t.Fatalf("another address: %d", r.status)
	}
}

// TestStoreDown: with the store gone, data calls with a valid token keep working (the token check
// needs no store), pairing answers 503 with Retry-After, and the admin API says unavailable.
func TestStoreDown(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	tok, devID := pair(t, inst, "SD")
	if err := inst.Svc.Store.Close(); err != nil {
		t.Fatal(err)
	}
	if a := post(t, inst, rpcPath, dataCall, "Authorization", tok); a.status != http.StatusOK || !strings.Contains(string(a.body), "echo") {
		t.Fatalf("data call with the store down: %d %s", a.status, a.body)
	}
	a := post(t, inst, rpcPath, authBody("5", "SD2", ""))
	if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("pairing with the store down: %d %v %s", a.status, a.header, a.body)
	}
	if m := single(t, a); string(m["id"]) != "5" || !strings.Contains(string(m["error"]), `"code":-32603`) {
		t.Fatalf("body %s", a.body)
	}
	if st, body := inst.Admin(t, http.MethodPost, "/chef/devices/"+devID+"/revoke"); st != http.StatusServiceUnavailable || body["error"] != "unavailable" {
		t.Fatalf("admin with the store down: %d %v", st, body)
	}
}
