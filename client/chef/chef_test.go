package chef_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/posgate/posgate/client/chef"
	"github.com/posgate/posgate/client/tokensource"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

// counter counts the calls that reach the network, by JSON-RPC method.
type counter struct {
	mu      sync.Mutex
	methods map[string]int
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	data, _ := io.ReadAll(r.Body)
	r.Body.Close()
	var b struct {
		Method string `json:"method"`
	}
	_ = json.Unmarshal(data, &b)
	c.mu.Lock()
	c.methods[b.Method]++
	c.mu.Unlock()
	r.Body = io.NopCloser(strings.NewReader(string(data)))
	return http.DefaultTransport.RoundTrip(r)
}

func (c *counter) get(m string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.methods[m]
}

const auth = "Authentication.authenticateClient"

type env struct {
	inst *servertest.Instance
	net  *counter
	clk  *clock.Fake // the server's clock (nil: real)
	now  atomic.Int64
	cfg  chef.Config
}

func newEnv(t *testing.T, serverClock *clock.Fake, configure func(*config.Config)) *env {
	t.Helper()
	e := &env{net: &counter{methods: map[string]int{}}, clk: serverClock}
	e.now.Store(time.Now().UnixNano())
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID json.RawMessage `json:"id"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":{"success":true,"data":{"sales":[],"device":` +
			jsonString(r.Header.Get("X-Posgate-Principal") != "") + `},"error_num":0,"error_message":""}}`))
	}))
	t.Cleanup(up.Close)
	opts := servertest.Options{Configure: func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": up.URL}
		if configure != nil {
			configure(c)
		}
	}}
	if serverClock != nil {
		opts.Clock = serverClock
	}
	e.inst = servertest.Start(t, opts)
	e.cfg = chef.Config{
		Endpoint: e.inst.URL + "/api/json-rpc/v1", DeviceID: "till-1", DeviceName: "Front till", UserAgent: "FrontTill/2.4",
		HTTPClient: &http.Client{Transport: e.net, Timeout: 90 * time.Second},
		Options:    tokensource.Options{Now: func() time.Time { return time.Unix(0, e.now.Load()) }},
	}
	return e
}

func jsonString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// decide waits until the device's request is pending and approves or declines it; it returns
// posgate's device id.
func (e *env) decide(t *testing.T, verb string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		_, list := e.inst.Admin(t, "GET", "/chef/devices?state=pending", nil)
		devs, _ := list["devices"].([]any)
		for _, d := range devs {
			if m := d.(map[string]any); m["device_id"] == "till-1" && m["waiting"] == true {
				if st, b := e.inst.Admin(t, "POST", "/chef/devices/"+m["id"].(string)+"/"+verb, nil); st != 200 {
					t.Fatalf("%s: %d %v", verb, st, b)
				}
				return m["id"].(string)
			}
		}
		time.Sleep(20 * time.Millisecond) // polling for the request to arrive, not for time to pass
	}
	t.Fatal("the pairing request never appeared")
	return ""
}

func TestPairRenewRestart(t *testing.T) {
	e := newEnv(t, nil, nil)
	store := tokensource.FileStore{Path: filepath.Join(t.TempDir(), "device-token.json")}
	e.cfg.Persist = store.Save
	c := chef.New(context.Background(), e.cfg)

	done := make(chan struct{})
	var tok *oauth2.Token
	var err error
	go func() { defer close(done); tok, err = c.Token() }()
	e.decide(t, "approve")
	<-done
	if err != nil || tok.Extra("new_device") != true || tok.Expiry.IsZero() {
		t.Fatalf("pairing: %v %v", tok, err)
	}
	var out struct {
		Sales  []any `json:"sales"`
		Device bool  `json:"device"`
	}
	if err := c.Call(context.Background(), "Reports.getSales", []any{map[string]string{"from": "2026-01-01"}}, &out); err != nil || !out.Device {
		t.Fatalf("data call: %v %+v", err, out)
	}

	// Near expiry, 100 callers at once: one renewal, answered without a person.
	e.now.Store(tok.Expiry.Add(-30 * time.Second).UnixNano())
	var wg sync.WaitGroup
	var fails atomic.Int64
	for range 100 {
		wg.Go(func() {
			if t2, err := c.Token(); err != nil || t2.AccessToken == tok.AccessToken || t2.Extra("new_device") != false {
				fails.Add(1)
			}
		})
	}
	wg.Wait()
	if fails.Load() != 0 || e.net.get(auth) != 2 {
		t.Fatalf("%d failures, %d authenticate calls (want 0, 2)", fails.Load(), e.net.get(auth))
	}

	// The device restarts elsewhere (another User-Agent, as after an upgrade): the persisted token
	// renews it at once instead of asking a person again.
	saved, err := store.Load()
	if err != nil || saved == nil {
		t.Fatalf("load: %v", err)
	}
	cfg := e.cfg
	cfg.UserAgent, cfg.Token = "FrontTill/2.5", saved
	e.now.Store(saved.Expiry.Add(time.Minute).UnixNano())
	c2 := chef.New(context.Background(), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c2.Call(ctx, "Reports.getSales", nil, nil); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}

func TestRetriesOnTimeoutStopsOnDecline(t *testing.T) {
	e := newEnv(t, nil, func(c *config.Config) { c.Chef.ApprovalTimeout = 1; c.Chef.PendingRetention = 120 })
	c := chef.New(context.Background(), e.cfg)
	done := make(chan error, 1)
	go func() { _, err := c.Token(); done <- err }()
	// Nobody decides through two windows: the client keeps asking (56, then again).
	deadline := time.Now().Add(60 * time.Second)
	for e.net.get(auth) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if e.net.get(auth) < 3 {
		t.Fatalf("the client did not ask again after 56: %d calls", e.net.get(auth))
	}
	e.decide(t, "decline")
	err := <-done
	if !errors.Is(err, chef.ErrDeclined) {
		t.Fatalf("declined: %v", err)
	}
	var ce *chef.Error
	if !errors.As(err, &ce) || ce.Num != 57 || !strings.Contains(ce.Message, "declined") {
		t.Fatalf("error: %#v", err)
	}
	// Declined: no retry storm, the source backs off.
	n := e.net.get(auth)
	for range 50 {
		if _, err := c.Token(); !errors.Is(err, chef.ErrDeclined) {
			t.Fatalf("during the back-off: %v", err)
		}
	}
	if e.net.get(auth) != n {
		t.Fatalf("%d calls during the back-off", e.net.get(auth)-n)
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := chef.New(context.Background(), e.cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := c.TokenContext(ctx); done <- err }()
	deadline := time.Now().Add(60 * time.Second)
	for e.net.get(auth) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("cancelling did not stop the wait for an approval")
	}
}

func TestExpiredByServerClockRenewsOnce(t *testing.T) {
	srv := clock.NewFake(time.Now())
	e := newEnv(t, srv, nil)
	c := chef.New(context.Background(), e.cfg)
	done := make(chan error, 1)
	go func() { _, err := c.Token(); done <- err }()
	e.decide(t, "approve")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The server's clock is two hours ahead of the device's: the device still thinks its token is
	// valid, the server answers 52, the client renews once and the call goes through.
	srv.Advance(2 * time.Hour)
	if err := c.Call(context.Background(), "Reports.getSales", nil, nil); err != nil {
		t.Fatalf("call after server-side expiry: %v", err)
	}
	if e.net.get(auth) != 2 || e.net.get("Reports.getSales") != 2 {
		t.Fatalf("authenticate %d, data calls %d (want 2, 2)", e.net.get(auth), e.net.get("Reports.getSales"))
	}
}

func TestRevokedDevice(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := chef.New(context.Background(), e.cfg)
	done := make(chan error, 1)
	go func() { _, err := c.Token(); done <- err }()
	id := e.decide(t, "approve")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st, _ := e.inst.Admin(t, "POST", "/chef/devices/"+id+"/revoke", nil); st != 200 {
		t.Fatalf("revoke: %d", st)
	}
	err := c.Call(context.Background(), "Reports.getSales", nil, nil)
	if !errors.Is(err, chef.ErrDeclined) || e.net.get("Reports.getSales") != 1 {
		t.Fatalf("revoked device: %v (data calls %d)", err, e.net.get("Reports.getSales"))
	}
}
