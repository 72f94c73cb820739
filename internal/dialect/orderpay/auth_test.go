package orderpay_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

const authPath = "/api/powerepos/v1/auth"

func postAuth(t *testing.T, inst *servertest.Instance, body string) (int, http.Header, map[string]any) {
	t.Helper()
	st, h, data := do(t, inst, "POST", authPath, map[string]string{"Content-Type": "application/json"}, body)
	return st, h, jsonMap(t, data)
}

// TestAuthBadInput: every refusal has its status and an {"ErrorMessage"} body, and creates no
// ticket; the three credential mismatches share one message.
func TestAuthBadInput(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	o := createOutlet(t, inst, "outlet-1")
	other := createOutlet(t, inst, "outlet-2")

	// Field names are case-insensitive: the vendor's examples use camelCase too.
	st, _, body := postAuth(t, inst, `{"providerOutletId":"outlet-1","posRemoteID":"pos-outlet-1","authsecret":"`+o.Secret+`"}`)
	if st != 200 || len(body["AccessToken"].(string)) != 43 {
		t.Fatalf("camelCase auth: %d %v", st, body)
	}

	for _, tc := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"not JSON", `{"ProviderOutletID":`, 400, ""},
		{"array", `[]`, 400, ""},
		{"two documents", authBody(o) + authBody(o), 400, ""},
		{"duplicate key", `{"ProviderOutletID":"outlet-1","providerOutletID":"outlet-2","POSRemoteID":"pos-outlet-1","AuthSecret":"` + o.Secret + `"}`, 400, "a field is repeated"},
		{"missing secret", `{"ProviderOutletID":"outlet-1","POSRemoteID":"pos-outlet-1"}`, 400, ""},
		{"empty secret", `{"ProviderOutletID":"outlet-1","POSRemoteID":"pos-outlet-1","AuthSecret":""}`, 400, ""},
		{"number", `{"ProviderOutletID":1,"POSRemoteID":"pos-outlet-1","AuthSecret":"x"}`, 400, ""},
		{"null", `{"ProviderOutletID":null,"POSRemoteID":"pos-outlet-1","AuthSecret":"x"}`, 400, ""},
		{"too long", `{"ProviderOutletID":"` + strings.Repeat("a", 200) + `","POSRemoteID":"p","AuthSecret":"x"}`, 400, ""},
		{"oversized", `{"ProviderOutletID":"outlet-1","POSRemoteID":"pos-outlet-1","AuthSecret":"` + strings.Repeat("a", 9000) + `"}`, 413, ""},
		{"unknown outlet", `{"ProviderOutletID":"nope","POSRemoteID":"pos-outlet-1","AuthSecret":"` + o.Secret + `"}`, 401, "invalid credentials"},
		{"wrong remote id", `{"ProviderOutletID":"outlet-1","POSRemoteID":"pos-outlet-2","AuthSecret":"` + o.Secret + `"}`, 401, "invalid credentials"},
		{"wrong secret", `{"ProviderOutletID":"outlet-1","POSRemoteID":"pos-outlet-1","AuthSecret":"` + other.Secret + `"}`, 401, "invalid credentials"},
		{"another outlet's secret", `{"ProviderOutletID":"outlet-2","POSRemoteID":"pos-outlet-2","AuthSecret":"` + o.Secret + `"}`, 401, "invalid credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, h, body := postAuth(t, inst, tc.body)
			msg, _ := body["ErrorMessage"].(string)
			if st != tc.status || msg == "" || len(body) != 1 || (tc.msg != "" && msg != tc.msg) {
				t.Fatalf("%d %v, want %d %q", st, body, tc.status, tc.msg)
			}
			if h.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", h.Get("Cache-Control"))
			}
		})
	}

	// Disabled: 403 with the right credentials, 401 with wrong ones (nothing is revealed).
	if st, _ := inst.Admin(t, "POST", "/orderpay/outlets/"+o.ID+"/disable", nil); st != 200 {
		t.Fatalf("disable: %d", st)
	}
	if st, _, body := postAuth(t, inst, authBody(o)); st != 403 || body["ErrorMessage"] != "outlet is disabled" {
		t.Fatalf("disabled: %d %v", st, body)
	}
	bad := o
	bad.Secret = "wrong-secret-123"
	if st, _, _ := postAuth(t, inst, authBody(bad)); st != 401 {
		t.Fatalf("disabled, wrong secret: %d", st)
	}
	if st, _ := inst.Admin(t, "POST", "/orderpay/outlets/"+o.ID+"/enable", nil); st != 200 {
		t.Fatalf("enable: %d", st)
	}
	ticket(t, inst, o)

	// The audit trail has the refusals, never a secret.
	_, audit := inst.Admin(t, "GET", "/audit?limit=200", nil)
	raw, _ := json.Marshal(audit)
	if !strings.Contains(string(raw), "orderpay.auth") || strings.Contains(string(raw), o.Secret) || strings.Contains(inst.Logs(), o.Secret) {
		t.Errorf("audit/logs: %s", raw)
	}
}

// TestAuthThrottle: repeated failures from one address are refused with 429 and Retry-After, even
// with the right credentials, while another outlet's identity-wide limit is far away.
func TestAuthThrottle(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) {
		c.Throttle.PerAddress = 6
		c.Throttle.PerAddressIdent = 3
		c.Throttle.PerIdentity = 100
	}})
	o := createOutlet(t, inst, "outlet-1")
	bad := o
	bad.Secret = "wrong-secret-123"
	for i := range 3 {
		if st, _, _ := postAuth(t, inst, authBody(bad)); st != 401 {
			t.Fatalf("attempt %d: %d", i, st)
		}
	}
	st, h, body := postAuth(t, inst, authBody(o))
	if st != 429 || h.Get("Retry-After") == "" || body["ErrorMessage"] == "" {
		t.Fatalf("after 3 failures: %d %v %v", st, h, body)
	}
	// Other outlets from this address are still allowed until the per-address limit.
	o2 := createOutlet(t, inst, "outlet-2")
	if st, _, _ := postAuth(t, inst, authBody(o2)); st != 200 {
		t.Fatalf("other outlet: %d", st)
	}
	bad2 := o2
	bad2.Secret = "wrong-secret-123"
	for range 3 {
		postAuth(t, inst, authBody(bad2))
	}
	if st, h, _ := postAuth(t, inst, `{"ProviderOutletID":"outlet-3","POSRemoteID":"x","AuthSecret":"y"}`); st != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("address over its limit: %d", st)
	}
}

// TestUpgradeRefusals: a missing, malformed, unknown, used or expired ticket is a 401
// {"ErrorMessage"} before any 101; a plain GET is 426 and does not use the ticket up; no log
// line holds a ticket.
func TestUpgradeRefusals(t *testing.T) {
	clk := clock.NewFake(time.Now())
	inst := servertest.Start(t, servertest.Options{Clock: clk, Configure: func(c *config.Config) {
		c.Throttle.PerAddress = 1000
	}})
	o := createOutlet(t, inst, "outlet-1")
	refused := func(path, tok string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		u := wsURL(inst, path, tok)
		if tok == "" {
			u = strings.TrimSuffix(u, "?token=")
		}
		ws, resp, err := websocket.Dial(ctx, u, nil)
		if err == nil {
			ws.CloseNow()
			t.Fatalf("upgrade with %q accepted", tok)
		}
		if resp == nil || resp.StatusCode != 401 {
			t.Fatalf("upgrade with %q: %v %v", tok, resp, err)
		}
	}
	tok := ticket(t, inst, o)
	// A plain GET is not a handshake: 426, and the ticket stays usable.
	if st, _, body := do(t, inst, "GET", "/?token="+tok, nil, ""); st != http.StatusUpgradeRequired || !strings.Contains(string(body), "ErrorMessage") {
		t.Fatalf("plain GET: %d %s", st, body)
	}
	refused("/ws", "")
	refused("/ws", "short")
	refused("/ws", strings.Repeat("A", 43)) // well-formed, unknown
	// The same 32 bytes with other trailing bits: not the canonical spelling, refused.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	refused("/ws", tok[:42]+string(alphabet[strings.IndexByte(alphabet, tok[42])|1]))
	refused("/ws", tok+"&token="+tok) // repeated

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL(inst, "/", tok), nil) // "/" works as well as "/ws"
	if err != nil {
		t.Fatalf("first use: %v", err)
	}
	defer ws.CloseNow()
	refused("/ws", tok) // used

	late := ticket(t, inst, o)
	clk.Advance(300 * time.Second) // orderpay.ticket_lifetime
	refused("/ws", late)

	for _, line := range strings.Split(inst.Logs(), "\n") {
		if strings.Contains(line, tok) || strings.Contains(line, late) || strings.Contains(line, "token=") {
			t.Fatalf("a log line holds a ticket: %s", line)
		}
	}
}

// TestReplaceAndDisable: a newer connection of an outlet closes the older with 4009; disabling
// the outlet closes its socket with 4003.
func TestReplaceAndDisable(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	o := createOutlet(t, inst, "outlet-1")
	first := dial(t, inst, o)
	second := dial(t, inst, o)
	if code := first.closed(); code != 4009 {
		t.Fatalf("older connection closed with %d, want 4009", code)
	}
	eventually(t, "online", func() bool {
		_, v := inst.Admin(t, "GET", "/orderpay/outlets/"+o.ID, nil)
		return v["online"] == true && v["connected_since"] != nil && v["replica"] != ""
	})
	if st, _ := inst.Admin(t, "POST", "/orderpay/outlets/"+o.ID+"/disable", nil); st != 200 {
		t.Fatalf("disable: %d", st)
	}
	if code := second.closed(); code != 4003 {
		t.Fatalf("disabled outlet's socket closed with %d, want 4003", code)
	}
	eventually(t, "offline", func() bool {
		_, v := inst.Admin(t, "GET", "/orderpay/outlets/"+o.ID, nil)
		return v["online"] == false
	})
}
