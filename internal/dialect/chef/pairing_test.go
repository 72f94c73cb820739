package chef_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/dialect/chef/cheftest"
	"github.com/posgate/posgate/internal/store"
)

// TestPairingApproved: the held call is answered with a token the moment a person approves; the
// token is a chef device token; calling again gets a fresh token at once with new_device false.
func TestPairingApproved(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	ch := async(t, inst, authBody("1", "POS-1", "Front counter"))
	list := inst.WaitPending(t, 1)
	d := list[0]
	if d.Label != "Front counter" || d.Address != "127.0.0.1" || d.UserAgent != "chef-test/1.0" {
		t.Fatalf("pending device %+v", d)
	}
	select {
	case a := <-ch:
		t.Fatalf("answered before a decision: %s", a.body)
	default:
	}
	// The admin API lists it.
	st, body := inst.Admin(t, http.MethodGet, "/chef/devices?state=pending")
	if st != http.StatusOK || !strings.Contains(compactJSON(body), `"device_id":"POS-1"`) {
		t.Fatalf("list: %d %v", st, body)
	}
	approve(t, inst, d.ID)
	a := receive(t, ch)
	if m := single(t, a); string(m["id"]) != "1" {
		t.Fatalf("id %s", m["id"])
	}
	td := tokenOf(t, a)
	if !td.NewDevice {
		t.Fatal("new_device false on first pairing")
	}
	c := verify(t, inst, td.Token)
	if c.Subject != d.ID || c.Extra["device_id"] != "POS-1" || !strings.HasPrefix(c.SessionID, "chef."+d.ID+".") {
		t.Fatalf("claims %+v", c)
	}
	if got := c.ExpiresAt.Sub(c.IssuedAt); got != time.Hour {
		t.Fatalf("lifetime %v", got)
	}

	// Again from the same device: at once, new_device false, a different token.
	a = post(t, inst, rpcPath, authBody("2", "POS-1", "Front counter"))
	td2 := tokenOf(t, a)
	if td2.NewDevice || td2.Token == td.Token {
		t.Fatalf("second call: %+v", td2)
	}
	// deviceId / deviceName spellings name the same device.
	a = post(t, inst, rpcPath, `{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[{"deviceId":"POS-1","deviceName":"Front counter"}],"id":3}`)
	if tokenOf(t, a).NewDevice {
		t.Fatal("camelCase spelling is a new device")
	}
	// Audit: the request and the approval.
	ev, _ := inst.Svc.Store.ListAudit(context.Background(), 50)
	var sawReq, sawApprove bool
	for _, e := range ev {
		sawReq = sawReq || (e.Action == "chef.device.request" && e.Target == d.ID)
		sawApprove = sawApprove || (e.Action == "chef.device.approve" && e.Actor == "admin" && e.Outcome == "ok" && e.Address == "127.0.0.1")
	}
	if !sawReq || !sawApprove {
		t.Fatalf("audit %+v", ev)
	}
}

// TestFingerprintIdentity: without a device_id the device is its address and User-Agent.
func TestFingerprintIdentity(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	ch := async(t, inst, `{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[{}],"id":"f"}`)
	d := inst.WaitPending(t, 1)[0]
	approve(t, inst, d.ID)
	td := tokenOf(t, receive(t, ch))
	if c := verify(t, inst, td.Token); c.Extra["device_id"] != nil {
		t.Fatalf("fingerprint device has device_id %v", c.Extra["device_id"])
	}
	// Same address and User-Agent: the same device, at once.
	if td := tokenOf(t, post(t, inst, rpcPath, `{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[],"id":1}`)); td.NewDevice {
		t.Fatal("same fingerprint is a new device")
	}
	// Another User-Agent: another device, pending.
	ch = async(t, inst, `{"jsonrpc":"2.0","method":"Authentication.authenticateClient","id":2}`, "User-Agent", "other/2")
	list := inst.WaitPending(t, 1)
	if list[0].ID == d.ID || list[0].UserAgent != "other/2" {
		t.Fatalf("pending %+v", list[0])
	}
	decline(t, inst, list[0].ID)
	failureOf(t, receive(t, ch), 57, "Device authentication process is declined by user.")
}

func decline(t testing.TB, inst *cheftest.Instance, id string) {
	t.Helper()
	if st, body := inst.Admin(t, http.MethodPost, "/chef/devices/"+id+"/decline"); st != http.StatusOK {
		t.Fatalf("decline: HTTP %d %v", st, body)
	}
}

func revoke(t testing.TB, inst *cheftest.Instance, id string) {
	t.Helper()
	if st, body := inst.Admin(t, http.MethodPost, "/chef/devices/"+id+"/revoke"); st != http.StatusOK {
		t.Fatalf("revoke: HTTP %d %v", st, body)
	}
}

// TestTimeout56: nobody decides within the (short, configured) window.
func TestTimeout56(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{Configure: func(c *config.Config) { c.Chef.ApprovalTimeout = 1 }})
	a := post(t, inst, rpcPath, authBody("5", "slow", ""))
	failureOf(t, a, 56, "Connection request was not confirmed on Chef device within 1 seconds.")
	// The request stays for a person to see (not waiting any more); approving it lets the device in
	// on its next call.
	st, body := inst.Admin(t, http.MethodGet, "/chef/devices?state=pending")
	if st != http.StatusOK || !strings.Contains(compactJSON(body), `"waiting":false`) {
		t.Fatalf("pending after timeout: %v", body)
	}
	list := inst.WaitPending(t, 1)
	approve(t, inst, list[0].ID)
	if td := tokenOf(t, post(t, inst, rpcPath, authBody("6", "slow", ""))); td.NewDevice {
		t.Fatal("approved-after-timeout device: new_device true on a later call")
	}
}

// TestDeclineAndCooldown: a declined device gets 57; calls within the cool-down get 57 at once and
// create nothing; after it, the device is pending again (a new generation).
func TestDeclineAndCooldown(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	inst := cheftest.Start(t, cheftest.Options{Clock: clk, Configure: func(c *config.Config) { c.Chef.Cooldown = 10 }})
	ch := async(t, inst, authBody("1", "D", ""))
	d := inst.WaitPending(t, 1)[0]
	decline(t, inst, d.ID)
	failureOf(t, receive(t, ch), 57, "Device authentication process is declined by user.")

	clk.Advance(9 * time.Second)
	start := time.Now()
	failureOf(t, post(t, inst, rpcPath, authBody("2", "D", "")), 57, "Device authentication process is declined by user.")
	if time.Since(start) > 5*time.Second {
		t.Fatal("cool-down answer was held")
	}
	if n, _ := inst.Svc.Store.CountChefDevices(context.Background(), store.DevicePending); n != 0 {
		t.Fatalf("%d pending during the cool-down", n)
	}

	clk.Advance(2 * time.Second)
	ch = async(t, inst, authBody("3", "D", ""))
	again := inst.WaitPending(t, 1)[0]
	if again.ID != d.ID || again.Generation != d.Generation+1 {
		t.Fatalf("re-request %+v (was %+v)", again, d)
	}
	approve(t, inst, d.ID)
	if td := tokenOf(t, receive(t, ch)); !td.NewDevice {
		t.Fatal("new_device false")
	}
}

// TestCoalescing: concurrent calls from one device wait on one request and are all answered by
// one approval.
func TestCoalescing(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	const n = 8
	var chans []<-chan answer
	for i := 0; i < n; i++ {
		chans = append(chans, async(t, inst, authBody(itoa(i), "C", "Kitchen")))
	}
	// Also a batch holding two pairing calls of the same device.
	batch := async(t, inst, "["+authBody(`"b1"`, "C", "Kitchen")+","+authBody(`"b2"`, "C", "Kitchen")+"]")
	d := inst.WaitPending(t, 1)[0]
	// Give every call time to arrive and join (they are held either way; this only makes the test
	// exercise joining rather than arriving after the approval).
	waitCalls(t, inst, d.ID, n+2)
	if all, _ := inst.Svc.Store.ListChefDevices(context.Background(), ""); len(all) != 1 {
		t.Fatalf("%d devices for one device id", len(all))
	}
	approve(t, inst, d.ID)
	seen := map[string]bool{}
	for _, ch := range chans {
		td := tokenOf(t, receive(t, ch))
		if !td.NewDevice {
			t.Fatal("a coalesced call got new_device false")
		}
		if seen[td.Token] {
			t.Fatal("two calls got the same token")
		}
		seen[td.Token] = true
	}
	b := receive(t, batch)
	if b.status != http.StatusOK || strings.Count(string(b.body), `"success":true`) != 2 {
		t.Fatalf("batch: %s", b.body)
	}
	if dev, _ := inst.Svc.Store.GetChefDevice(context.Background(), d.ID); dev.Generation != 1 {
		t.Fatalf("generation %d: calls did not coalesce", dev.Generation)
	}
}

// waitCalls waits until n calls are held for device id (they are held until a decision, so this
// waits for arrivals, not for time to pass).
func waitCalls(t testing.TB, inst *cheftest.Instance, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for inst.Module.Waiting(id) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls held, want %d", inst.Module.Waiting(id), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestPendingCap58: beyond max_pending, a new device is refused at once.
func TestPendingCap58(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{Configure: func(c *config.Config) { c.Chef.MaxPending = 2 }})
	a1 := async(t, inst, authBody("1", "P1", ""))
	a2 := async(t, inst, authBody("2", "P2", ""))
	list := inst.WaitPending(t, 2)
	start := time.Now()
	failureOf(t, post(t, inst, rpcPath, authBody("3", "P3", "")), 58, "Too many pending device requests")
	if time.Since(start) > 5*time.Second {
		t.Fatal("58 was not answered at once")
	}
	// A device already pending is not a new request: it joins.
	a1b := async(t, inst, authBody("4", "P1", ""))
	for _, d := range list {
		approve(t, inst, d.ID)
	}
	tokenOf(t, receive(t, a1))
	tokenOf(t, receive(t, a2))
	tokenOf(t, receive(t, a1b))
	// Room again.
	a3 := async(t, inst, authBody("5", "P3", ""))
	d3 := inst.WaitPending(t, 1)[0]
	approve(t, inst, d3.ID)
	tokenOf(t, receive(t, a3))
}

// TestReplayFromAnotherAddress: a device id is not a secret; named from another address or
// User-Agent it is a new pending request, and the real device keeps its approval.
func TestReplayFromAnotherAddress(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	ch := async(t, inst, authBody("1", "REAL", "Till 1"), cheftest.AddrHeader, "10.0.0.5")
	d := inst.WaitPending(t, 1)[0]
	approve(t, inst, d.ID)
	tokenOf(t, receive(t, ch))

	// The same device id from elsewhere: pending, not a token.
	replay := async(t, inst, authBody("2", "REAL", "Till 1"), cheftest.AddrHeader, "203.0.113.9")
	p := inst.WaitPending(t, 1)[0]
	if p.ID == d.ID || p.Address != "203.0.113.9" {
		t.Fatalf("replay pending %+v", p)
	}
	select {
	case a := <-replay:
		t.Fatalf("replay answered without a decision: %s", a.body)
	case <-time.After(100 * time.Millisecond):
	}
	// Same address, other User-Agent: also pending.
	uaReplay := async(t, inst, authBody("3", "REAL", "Till 1"), cheftest.AddrHeader, "10.0.0.5", "User-Agent", "curl/8")
	inst.WaitPending(t, 2)
	// The real device is still approved and still gets tokens at once.
	if td := tokenOf(t, post(t, inst, rpcPath, authBody("4", "REAL", "Till 1"), cheftest.AddrHeader, "10.0.0.5")); td.NewDevice {
		t.Fatal("real device lost its approval")
	}
	decline(t, inst, p.ID)
	failureOf(t, receive(t, replay), 57, "Device authentication process is declined by user.")
	list := inst.WaitPending(t, 1)
	decline(t, inst, list[0].ID)
	failureOf(t, receive(t, uaReplay), 57, "Device authentication process is declined by user.")
	if dev, _ := inst.Svc.Store.GetChefDevice(context.Background(), d.ID); dev.State != store.DeviceApproved {
		t.Fatalf("real device %s", dev.State)
	}
}

// TestRenewalWithExpiredToken: a token issued to the device, expired less than the renew window
// ago, renews at once from a new address and User-Agent; past the window it does not.
func TestRenewalWithExpiredToken(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	inst := cheftest.Start(t, cheftest.Options{Clock: clk, Configure: func(c *config.Config) {
		c.Chef.TokenLifetime = 60
		c.Chef.ApprovalTimeout = 1
	}})
	ch := async(t, inst, authBody("1", "R", ""), cheftest.AddrHeader, "10.1.1.1")
	d := inst.WaitPending(t, 1)[0]
	approve(t, inst, d.ID)
	old := tokenOf(t, receive(t, ch)).Token

	clk.Advance(2 * time.Hour) // expired for almost two hours
	for _, auth := range []string{old, "Bearer " + old, "bearer " + old} {
		a := post(t, inst, rpcPath, authBody("2", "R", ""), cheftest.AddrHeader, "10.9.9.9", "User-Agent", "new-build/2", "Authorization", auth)
		td := tokenOf(t, a)
		if td.NewDevice || td.Token == old {
			t.Fatalf("renewal %+v", td)
		}
		if c := verify(t, inst, td.Token); c.Subject != d.ID {
			t.Fatalf("renewed for %s", c.Subject)
		}
	}
	// Without a device id in params the token still names its device.
	tokenOf(t, post(t, inst, rpcPath, `{"jsonrpc":"2.0","method":"Authentication.authenticateClient","params":[{}],"id":3}`, cheftest.AddrHeader, "10.9.9.9", "Authorization", old))
	// A token of device R does not renew a call naming another device id: that is a new request.
	failureOf(t, post(t, inst, rpcPath, authBody("4", "OTHER", ""), "Authorization", old), 56,
		"Connection request was not confirmed on Chef device within 1 seconds.")

	clk.Advance(31 * 24 * time.Hour) // past the 30-day renew window
	failureOf(t, post(t, inst, rpcPath, authBody("5", "R", ""), cheftest.AddrHeader, "10.9.9.9", "Authorization", old), 56,
		"Connection request was not confirmed on Chef device within 1 seconds.")

	// A revoked device does not renew.
	revoke(t, inst, d.ID)
	a := post(t, inst, rpcPath, authBody("6", "R", ""), cheftest.AddrHeader, "10.1.1.1", "Authorization", old)
	failureOf(t, a, 57, "Device authentication process is declined by user.") // within the cool-down
}

// TestDecisionsConflict: decisions apply only to the states they name.
func TestDecisionsConflict(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{})
	ch := async(t, inst, authBody("1", "X", ""))
	d := inst.WaitPending(t, 1)[0]
	if st, _ := inst.Admin(t, http.MethodPost, "/chef/devices/"+d.ID+"/revoke"); st != http.StatusConflict {
		t.Fatalf("revoke pending: %d", st)
	}
	approve(t, inst, d.ID)
	tokenOf(t, receive(t, ch))
	if st, body := inst.Admin(t, http.MethodPost, "/chef/devices/"+d.ID+"/approve"); st != http.StatusConflict || body["error"] != "conflict" {
		t.Fatalf("approve approved: %d %v", st, body)
	}
	if st, body := inst.Admin(t, http.MethodPost, "/chef/devices/dev_nope/approve"); st != http.StatusNotFound || body["error"] != "not_found" {
		t.Fatalf("unknown: %d %v", st, body)
	}
	if st, _ := inst.Admin(t, http.MethodGet, "/chef/devices?state=weird"); st != http.StatusBadRequest {
		t.Fatalf("bad state: %d", st)
	}
	// Concurrent decisions: exactly one wins.
	ch = async(t, inst, authBody("2", "Y", ""))
	y := inst.WaitPending(t, 1)[0]
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 10; i++ {
		wg.Go(func() {
			st, _ := inst.Admin(t, http.MethodPost, "/chef/devices/"+y.ID+"/approve")
			if st == http.StatusOK {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ok != 1 {
		t.Fatalf("%d approvals won", ok)
	}
	tokenOf(t, receive(t, ch))
}

func itoa(i int) string { return strconv.Itoa(i) }

func compactJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestReplicaRace: devices calling two replicas at the same moment, each approved as soon as it is
// pending: one request per device (generation 1), never re-opened by a late replica, and both
// calls answered with a token.
func TestReplicaRace(t *testing.T) {
	a := cheftest.Start(t, cheftest.Options{})
	b := cheftest.Start(t, cheftest.Options{Store: a.Svc.Store, Bus: a.Svc.Events, Master: a.Master})
	notices, cancel := pendingNotices(a)
	defer cancel()
	for i := 0; i < 15; i++ {
		dev := "race-" + itoa(i)
		ca := async(t, a, authBody("1", dev, ""))
		cb := async(t, b, authBody("2", dev, ""))
		id := <-notices
		approve(t, a, id)
		ta, tb := tokenOf(t, receive(t, ca)), tokenOf(t, receive(t, cb))
		if ta.Token == tb.Token {
			t.Fatal("same token twice")
		}
		d, err := a.Svc.Store.GetChefDevice(context.Background(), id)
		if err != nil || d.State != store.DeviceApproved || d.Generation != 1 {
			t.Fatalf("device %d after the race: %+v %v", i, d, err)
		}
	drain:
		for {
			select {
			case extra := <-notices:
				t.Fatalf("device %d re-opened as %s", i, extra)
			default:
				break drain
			}
		}
	}
}

// TestStaleRequestAskedAgain: a device whose request went stale (nobody waits on it any more) asks
// again: the same request is refreshed (not a new generation), held, and answered by one approval.
func TestStaleRequestAskedAgain(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	inst := cheftest.Start(t, cheftest.Options{Clock: clk, Configure: func(c *config.Config) { c.Chef.ApprovalTimeout = 30 }})
	// The first call gives up on its own (client timeout); its request stays pending.
	impatient := &http.Client{Timeout: 300 * time.Millisecond}
	req, _ := http.NewRequest(http.MethodPost, inst.URL+rpcPath, strings.NewReader(authBody("1", "stale", "")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "chef-test/1.0") // the same device as the calls below
	if resp, err := impatient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("answered without a decision")
	}
	before := inst.WaitPending(t, 1)[0]
	deadline := time.Now().Add(10 * time.Second)
	for inst.Module.Waiting(before.ID) != 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	clk.Advance(31 * time.Second) // the request is now older than the approval window

	ch := async(t, inst, authBody("2", "stale", ""))
	select {
	case a := <-ch:
		t.Fatalf("answered at once: %d %s", a.status, a.body)
	case <-time.After(200 * time.Millisecond):
	}
	waitCalls(t, inst, before.ID, 1)
	after, _ := inst.Svc.Store.GetChefDevice(context.Background(), before.ID)
	if after.Generation != before.Generation || !after.UpdatedAt.After(before.UpdatedAt) || after.State != store.DevicePending {
		t.Fatalf("refresh: before %+v after %+v", before, after)
	}
	approve(t, inst, before.ID)
	if td := tokenOf(t, receive(t, ch)); !td.NewDevice {
		t.Fatal("new_device false")
	}
}
