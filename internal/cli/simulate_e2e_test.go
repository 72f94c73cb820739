package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/client/doshii"
	"github.com/posgate/posgate/client/orderpay"
	"github.com/posgate/posgate/internal/server/servertest"
)

// integrator holds a posgate access token with the given scopes.
type integrator struct {
	inst *servertest.Instance
	tok  string
}

func newIntegrator(t *testing.T, inst *servertest.Instance, scope, audience string) *integrator {
	t.Helper()
	st, resp := inst.Admin(t, "POST", "/clients", map[string]any{"name": "integrator", "grant_types": []string{"client_credentials"},
		"scopes": []string{scope}, "audiences": []string{audience}})
	if st != http.StatusCreated {
		t.Fatalf("create client: %d %v", st, resp)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "audience": {audience}, "scope": {scope}}
	req, _ := http.NewRequest("POST", inst.URL+"/oauth/token", strings.NewReader(form.Encode()))
	req.SetBasicAuth(url.QueryEscape(resp["client_id"].(string)), url.QueryEscape(resp["client_secret"].(string)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	st, body := send(t, inst, req)
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if st != 200 || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		t.Fatalf("token: %d %s", st, body)
	}
	return &integrator{inst: inst, tok: tr.AccessToken}
}

func send(t *testing.T, inst *servertest.Instance, req *http.Request) (int, []byte) {
	t.Helper()
	res, err := inst.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, body
}

func (in *integrator) call(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, in.inst.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+in.tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	st, data := send(t, in.inst, req)
	var m map[string]any
	_ = json.Unmarshal(data, &m)
	return st, m
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polls for a state, not for time to pass
	}
}

// TestSimulateOrderpayAgainstPosgate runs the simulator (and so client/orderpay) against a real
// posgate: requests through the integrator API are answered with the canned payloads; a request
// queued while the POS is away is delivered when it comes back; a second POS for the outlet
// replaces the first (4009), and disabling the outlet stops the POS (4003).
func TestSimulateOrderpayAgainstPosgate(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			inst := servertest.Start(t, servertest.Options{Driver: driver})
			st, o := inst.Admin(t, "POST", "/orderpay/outlets", map[string]any{"provider_outlet_id": "outlet-7",
				"pos_remote_id": "pe-7", "provider_id": 321, "provider_name": "Acme"})
			if st != http.StatusCreated {
				t.Fatalf("create outlet: %d %v", st, o)
			}
			id, secret := o["id"].(string), o["auth_secret"].(string)
			env := map[string]string{"POSGATE_ORDERPAY_AUTH_SECRET": secret}
			args := []string{"simulate", "orderpay-pos", "--url", inst.URL, "--outlet", "outlet-7", "--pos-remote-id", "pe-7", "-v"}
			online := func() bool {
				_, got := inst.Admin(t, "GET", "/orderpay/outlets/"+id, nil)
				return got["online"] == true
			}
			in := newIntegrator(t, inst, "orderpay:send", "posgate")
			const reqs = "/v1/orderpay/outlets/outlet-7/requests"

			sim := startCommand(t, env, "", args...)
			eventually(t, "the simulator online", online)
			st, a := in.call(t, "POST", reqs+"?wait=10", `{"MessageType":1,"Payload":{},"RequestID":"open-1"}`)
			if st != 200 || a["RequestID"] != "open-1" || a["ResultCode"] != float64(0) || !strings.Contains(mustJSON(a["Payload"]), "sim-1001") {
				t.Fatalf("GetOpenOrders: %d %v", st, a)
			}
			st, a = in.call(t, "POST", reqs+"?wait=10", `{"MessageType":0,"Payload":{"PIN":"0000"},"RequestID":"pin-1"}`)
			if st != 200 || a["ResultCode"] != float64(4) || a["ErrorMessage"] != "no user found" {
				t.Fatalf("GetUserFromPIN: %d %v", st, a)
			}
			waitFor(t, sim.stdout, `RequestID="pin-1" MessageType=0 (GetUserFromPIN) -> ResultCode 4`)

			// The POS goes away; a request is queued (202) and delivered when it is back.
			if code := sim.stop(t); code != 0 {
				t.Fatalf("simulator exit %d: %s", code, sim.stderr)
			}
			eventually(t, "the outlet offline", func() bool { return !online() })
			st, a = in.call(t, "POST", reqs+"?wait=0", `{"MessageType":12,"Payload":{"OrderID":"o-55"},"RequestID":"upd-1"}`)
			if st != 202 || a["RequestID"] != "upd-1" {
				t.Fatalf("offline: %d %v", st, a)
			}
			sim = startCommand(t, env, "", args...)
			eventually(t, "the queued request answered", func() bool {
				_, got := in.call(t, "GET", reqs+"/upd-1", "")
				return got["State"] == "answered"
			})
			_, got := in.call(t, "GET", reqs+"/upd-1", "")
			if p := mustJSON(got["Answer"]); !strings.Contains(p, `"OrderID":"o-55"`) || !strings.Contains(p, `"Status":"Updated"`) {
				t.Fatalf("answer of the queued request: %v", got)
			}

			// A second POS for the same outlet replaces the first, which stops.
			second := startCommand(t, env, "", args...)
			select {
			case code := <-sim.code:
				sim.code <- code
				if code != 1 || !strings.Contains(sim.stderr.String(), "replaced") {
					t.Fatalf("replaced simulator: exit %d: %s", code, sim.stderr)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the replaced simulator did not stop")
			}
			eventually(t, "the second simulator online", online)
			// Disabling the outlet closes its socket with 4003; the POS stops and says why.
			if st, body := inst.Admin(t, "POST", "/orderpay/outlets/"+id+"/disable", nil); st != 200 && st != 204 {
				t.Fatalf("disable: %d %v", st, body)
			}
			select {
			case code := <-second.code:
				second.code <- code
				if code != 1 || !strings.Contains(second.stderr.String(), "disabled") {
					t.Fatalf("disabled simulator: exit %d: %s", code, second.stderr)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the simulator of a disabled outlet did not stop")
			}
			// Nothing the simulators printed or logged carries the secret; the server's logs carry
			// no ticket query.
			for _, out := range []string{sim.stdout.String(), sim.stderr.String(), second.stdout.String(), second.stderr.String()} {
				if strings.Contains(out, secret) {
					t.Fatal("the AuthSecret was printed")
				}
			}
			if strings.Contains(inst.Logs(), "token=") {
				t.Fatal("a ?token= reached posgate's log")
			}
		})
	}
}

// TestSimulateDoshiiAgainstPosgate runs two doshii simulators (and so client/doshii's POSSocket)
// against a real posgate: an on-premises POS with its location token and a cloud POS with its
// vendor key. Both bring the venue online, both print a published event once (even when it is
// published twice), and disabling the venue stops the on-premises POS (4003).
func TestSimulateDoshiiAgainstPosgate(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			inst := servertest.Start(t, servertest.Options{Driver: driver})
			st, v := inst.Admin(t, "POST", "/doshii/vendors", map[string]any{"api_name": "simco"})
			if st != http.StatusCreated {
				t.Fatalf("create vendor: %d %v", st, v)
			}
			vendorKey := v["vendor_key"].(string)
			vc := &doshii.Client{BaseURL: inst.URL + "/pos/v3", Vendor: "simco", Key: doshii.NewVendorKey(vendorKey), HTTPClient: inst.Client}
			org, err := vc.CreateOrganisation(context.Background(), doshii.Organisation{Name: "Sim Cafe", Country: "AU",
				Location: &doshii.Location{Name: "Sim Cafe CBD", Timezone: "Australia/Melbourne"}})
			if err != nil {
				t.Fatal(err)
			}
			loc := org.Location
			tokenFile := filepath.Join(t.TempDir(), "location-token")
			os.WriteFile(tokenFile, []byte(loc.Token+"\n"), 0o600)
			online := func() bool {
				_, got := inst.Admin(t, "GET", "/doshii/locations/"+loc.ID, nil)
				return got["online"] == true
			}
			if online() {
				t.Fatal("online before any socket")
			}
			onPrem := startCommand(t, nil, "", "simulate", "doshii-pos", "--url", inst.URL, "--location-token-file", tokenFile, "-v")
			cloud := startCommand(t, map[string]string{"POSGATE_DOSHII_VENDOR_KEY": vendorKey}, "",
				"simulate", "doshii-pos", "--url", inst.URL, "--vendor", "simco", "-v")
			eventually(t, "the venue online", online)

			pub := newIntegrator(t, inst, "doshii:publish", "doshii")
			body := `{"type":"order_created","data":{"orderId":"1001"},"id":"order-1001"}`
			for range 2 {
				if st, got := pub.call(t, "POST", "/v1/doshii/locations/"+loc.ID+"/events", body); st != 202 {
					t.Fatalf("publish: %d %v", st, got)
				}
			}
			line := `event id="order-1001" type="order_created" location="` + loc.ID + `" data={"orderId":"1001"}`
			waitFor(t, onPrem.stdout, line)
			waitFor(t, cloud.stdout, line)
			eventually(t, "the event delivered", func() bool {
				_, got := pub.call(t, "GET", "/v1/doshii/locations/"+loc.ID+"/events/order-1001", "")
				return got["state"] == "delivered"
			})
			// A second event after the first proves the first was not followed by a duplicate.
			if st, got := pub.call(t, "POST", "/v1/doshii/locations/"+loc.ID+"/events", `{"type":"order_updated","data":{"orderId":"1001"},"id":"order-1001-u"}`); st != 202 {
				t.Fatalf("publish: %d %v", st, got)
			}
			waitFor(t, onPrem.stdout, `id="order-1001-u"`)
			waitFor(t, cloud.stdout, `id="order-1001-u"`)
			for _, out := range []string{onPrem.stdout.String(), cloud.stdout.String()} {
				if n := strings.Count(out, `id="order-1001"`); n != 1 {
					t.Fatalf("the event was printed %d times:\n%s", n, out)
				}
			}

			// Disabling the venue closes its POS socket with 4003: the on-premises POS stops.
			if st, got := inst.Admin(t, "POST", "/doshii/locations/"+loc.ID+"/disable", nil); st != 200 && st != 204 {
				t.Fatalf("disable: %d %v", st, got)
			}
			select {
			case code := <-onPrem.code:
				onPrem.code <- code
				if code != 1 || !strings.Contains(onPrem.stderr.String(), "disabled") {
					t.Fatalf("on-premises simulator: exit %d: %s", code, onPrem.stderr)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("the POS of a disabled venue did not stop: %s", onPrem.stderr)
			}
			if code := cloud.stop(t); code != 0 {
				t.Fatalf("cloud simulator: exit %d: %s", code, cloud.stderr)
			}
			for _, out := range []string{onPrem.stderr.String(), cloud.stderr.String(), onPrem.stdout.String(), cloud.stdout.String()} {
				if strings.Contains(out, loc.Token) || strings.Contains(out, vendorKey) || strings.Contains(out, "eyJ") {
					t.Fatal("a credential was printed")
				}
			}
			if strings.Contains(inst.Logs(), "token=") {
				t.Fatal("a ?token= reached posgate's log")
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// proxy forwards loopback TCP connections to target; cut drops every live one, as a broken
// network link would.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestOrderpayClientRedeliveryAgainstPosgate: the link breaks while the POS is still working on
// a request; posgate re-delivers it on the new connection under the same RequestID, and the
// client answers it there without running the handler a second time.
func TestOrderpayClientRedeliveryAgainstPosgate(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	st, o := inst.Admin(t, "POST", "/orderpay/outlets", map[string]any{"provider_outlet_id": "outlet-r",
		"pos_remote_id": "pe-r", "provider_id": 1, "provider_name": "Acme"})
	if st != http.StatusCreated {
		t.Fatalf("create outlet: %d %v", st, o)
	}
	u, _ := url.Parse(inst.URL)
	px := newProxy(t, u.Host)
	var calls atomic.Int32
	entered, release := make(chan struct{}, 4), make(chan struct{})
	c := &orderpay.Client{URL: "http://" + px.l.Addr().String(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Credentials: orderpay.Credentials{ProviderOutletID: "outlet-r", POSRemoteID: "pe-r", AuthSecret: o["auth_secret"].(string)},
		Handler: orderpay.HandlerFunc(func(ctx context.Context, r *orderpay.Request) orderpay.Answer {
			calls.Add(1)
			entered <- struct{}{}
			<-release
			return orderpay.Answer{Payload: map[string]any{"done": r.RequestID}}
		})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	online := func() bool {
		_, got := inst.Admin(t, "GET", "/orderpay/outlets/"+o["id"].(string), nil)
		return got["online"] == true
	}
	eventually(t, "the POS online", online)
	in := newIntegrator(t, inst, "orderpay:send", "posgate")
	if st, got := in.call(t, "POST", "/v1/orderpay/outlets/outlet-r/requests?wait=0", `{"MessageType":1,"Payload":{},"RequestID":"slow-1"}`); st != 202 {
		t.Fatalf("send: %d %v", st, got)
	}
	<-entered
	px.cut() // the answer will have no connection to go to
	eventually(t, "the outlet offline", func() bool { return !online() })
	eventually(t, "the POS back online", online)
	close(release)
	eventually(t, "the request answered", func() bool {
		_, got := in.call(t, "GET", "/v1/orderpay/outlets/outlet-r/requests/slow-1", "")
		return got["State"] == "answered"
	})
	_, got := in.call(t, "GET", "/v1/orderpay/outlets/outlet-r/requests/slow-1", "")
	if !strings.Contains(mustJSON(got["Answer"]), `"done":"slow-1"`) {
		t.Fatalf("answer %v", got)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the handler ran %d times for one RequestID", n)
	}
}
