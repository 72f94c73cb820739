package chef_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/dialect/chef/cheftest"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/testutil/syncbuf"
)

const (
	msgTooMany = "Too many pending device requests"
	msgTimeout = "Connection request was not confirmed on Chef device within 60 seconds."
)

// countPending counts the pending rows in the store.
func countPending(t testing.TB, inst *cheftest.Instance) int {
	t.Helper()
	n, err := inst.Svc.Store.CountChefDevices(context.Background(), store.DevicePending)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pendingByDeviceID returns the pending device that sent device id did.
func pendingByDeviceID(t testing.TB, inst *cheftest.Instance, did string) *store.ChefDevice {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := inst.Svc.Store.ListChefDevices(context.Background(), store.DevicePending)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list {
			if strings.HasSuffix(d.DeviceKey, ":"+did) {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pending request of %s", did)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// abandon makes device did (from addr) ask and give up after 300 ms, as a client with a short
// timeout does; its request stays pending with nobody waiting on it.
func abandon(t testing.TB, inst *cheftest.Instance, did, addr string) *store.ChefDevice {
	t.Helper()
	impatient := &http.Client{Timeout: 300 * time.Millisecond}
	req, _ := http.NewRequest(http.MethodPost, inst.URL+rpcPath, strings.NewReader(authBody("1", did, "")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "chef-test/1.0")
	req.Header.Set(cheftest.AddrHeader, addr)
	if resp, err := impatient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("%s: answered without a decision (HTTP %d)", did, resp.StatusCode)
	}
	d := pendingByDeviceID(t, inst, did)
	deadline := time.Now().Add(10 * time.Second)
	for inst.Module.Waiting(d.ID) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: call still held after the client left", did)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return d
}

// TestPendingCapPerAddress: one address gets 58 beyond max_pending_per_address waiting requests,
// at once and without a row, while a device from another address still pairs; a device already
// pending from that address still joins its own request; and requests whose window has ended stop
// counting.
func TestPendingCapPerAddress(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	inst := cheftest.Start(t, cheftest.Options{Clock: clk, Configure: func(c *config.Config) {
		c.Chef.MaxPending, c.Chef.MaxPendingPerAddress = 10, 2
	}})
	const attacker, other = "192.0.2.66", "198.51.100.7"
	a1 := async(t, inst, authBody("1", "A1", ""), cheftest.AddrHeader, attacker)
	inst.WaitPending(t, 1)
	a2 := async(t, inst, authBody("2", "A2", ""), cheftest.AddrHeader, attacker)
	inst.WaitPending(t, 2)

	start := time.Now()
	failureOf(t, post(t, inst, rpcPath, authBody("3", "A3", ""), cheftest.AddrHeader, attacker), 58, msgTooMany)
	if time.Since(start) > 5*time.Second {
		t.Fatal("58 was not answered at once")
	}
	if n := countPending(t, inst); n != 2 {
		t.Fatalf("%d pending after a refused request, want 2", n)
	}

	// Another address is not held back by the first one's requests.
	b := async(t, inst, authBody("4", "B1", "Till 1"), cheftest.AddrHeader, other)
	db := pendingByDeviceID(t, inst, "B1")
	if db.Address != other {
		t.Fatalf("B1 address %q", db.Address)
	}
	approve(t, inst, db.ID)
	if td := tokenOf(t, receive(t, b)); !td.NewDevice {
		t.Fatal("new_device false")
	}

	// A device already pending from the capped address joins its own request (no new one).
	d1 := pendingByDeviceID(t, inst, "A1")
	a1b := async(t, inst, authBody("5", "A1", ""), cheftest.AddrHeader, attacker)
	waitCalls(t, inst, d1.ID, 2)

	// Once the requests' window has ended they no longer hold the address's cap.
	clk.Advance(61 * time.Second)
	a3 := async(t, inst, authBody("6", "A3", ""), cheftest.AddrHeader, attacker)
	d3 := pendingByDeviceID(t, inst, "A3")
	if d3.Address != attacker {
		t.Fatalf("A3 address %q", d3.Address)
	}

	for _, d := range inst.WaitPending(t, 3) {
		decline(t, inst, d.ID)
	}
	for _, ch := range []<-chan answer{a1, a1b, a2, a3} {
		failureOf(t, receive(t, ch), 57, "Device authentication process is declined by user.")
	}
}

// TestPendingCapPerIPv6Prefix: the per-address cap counts an IPv6 address by its /64 (as the
// throttle does), so a host cannot pass it by using more of its own addresses; the next /64 is
// another address.
func TestPendingCapPerIPv6Prefix(t *testing.T) {
	inst := cheftest.Start(t, cheftest.Options{Configure: func(c *config.Config) { c.Chef.MaxPendingPerAddress = 2 }})
	held := []<-chan answer{
		async(t, inst, authBody("1", "V1", ""), cheftest.AddrHeader, "2001:db8:1:2::1"),
		async(t, inst, authBody("2", "V2", ""), cheftest.AddrHeader, "2001:db8:1:2:ffff::9"),
	}
	inst.WaitPending(t, 2)
	failureOf(t, post(t, inst, rpcPath, authBody("3", "V3", ""), cheftest.AddrHeader, "2001:db8:1:2:abcd::3"), 58, msgTooMany)
	held = append(held, async(t, inst, authBody("4", "V4", ""), cheftest.AddrHeader, "2001:db8:1:3::1"))
	if d := pendingByDeviceID(t, inst, "V4"); d.Address != "2001:db8:1:3::1" || d.AddressKey != "2001:db8:1:3::/64" {
		t.Fatalf("V4: address %q, key %q", d.Address, d.AddressKey)
	}
	for _, d := range inst.WaitPending(t, 3) {
		decline(t, inst, d.ID)
	}
	for _, ch := range held {
		failureOf(t, receive(t, ch), 57, "Device authentication process is declined by user.")
	}
}

// TestOneAddressCannotLockOutPairing reproduces the review's attack with the default caps: one
// address asks for new device ids 20 at a time, again after the window has passed; it gets 5
// requests per window, the rest 58 at once, and a legitimate device from elsewhere pairs at once.
// Its stale requests are then deleted by the sweeper, and their held calls end with 56. The
// refusals do not flood the log.
func TestOneAddressCannotLockOutPairing(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	var logs syncbuf.Buffer
	inst := cheftest.Start(t, cheftest.Options{Clock: clk, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	const attacker = "203.0.113.9"
	var held []<-chan answer
	for round := 0; round < 2; round++ {
		for i := 0; i < 20; i++ {
			ch := async(t, inst, authBody(itoa(i), "spam-"+itoa(round)+"-"+itoa(i), ""), cheftest.AddrHeader, attacker)
			if i < 5 {
				inst.WaitPending(t, round*5+i+1)
				held = append(held, ch)
				continue
			}
			failureOf(t, receive(t, ch), 58, msgTooMany)
		}
		if n := countPending(t, inst); n != (round+1)*5 {
			t.Fatalf("round %d: %d pending rows, want %d", round, n, (round+1)*5)
		}
		clk.Advance(62 * time.Second)
	}

	ch := async(t, inst, authBody("1", "till-7", "Till 7"), cheftest.AddrHeader, "198.51.100.20")
	d := pendingByDeviceID(t, inst, "till-7")
	approve(t, inst, d.ID)
	if td := tokenOf(t, receive(t, ch)); !td.NewDevice {
		t.Fatal("new_device false")
	}

	// One warning per round (the clock moved 62 s between them), the second counting the 14
	// refusals it did not log.
	warned := strings.Count(logs.String(), `msg="chef: pending device cap per address reached"`)
	if warned != 2 || !strings.Contains(logs.String(), "refused_unlogged=14") {
		t.Fatalf("%d cap warnings for 30 refusals:\n%s", warned, logs.String())
	}

	clk.Advance(time.Hour)
	n, err := inst.Module.SweepNow(context.Background())
	if err != nil || n != 10 {
		t.Fatalf("sweep deleted %d (%v), want the 10 spam requests", n, err)
	}
	if p := countPending(t, inst); p != 0 {
		t.Fatalf("%d pending after the sweep", p)
	}
	if dev, err := inst.Svc.Store.GetChefDevice(context.Background(), d.ID); err != nil || dev.State != store.DeviceApproved {
		t.Fatalf("the approved till after the sweep: %+v %v", dev, err)
	}
	// The held calls (this test's clock jumped past the retention under them) learn their request
	// is gone from the store re-read and end with 56, so the device asks again.
	for _, ch := range held {
		failureOf(t, receive(t, ch), 56, msgTimeout)
	}
}

// TestSweeperDeletesStalePending: the sweeper deletes, by the module's clock, the pending requests
// nobody has called about for chef.pending_retention, audits it, and leaves the others; the device
// of a deleted request asking again is a new request; Close stops the sweeper.
func TestSweeperDeletesStalePending(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	inst := cheftest.Start(t, cheftest.Options{Clock: clk, Configure: func(c *config.Config) {
		c.Chef.ApprovalTimeout, c.Chef.PendingRetention = 30, 600
	}})
	ctx := context.Background()
	old := abandon(t, inst, "old", "10.1.1.1")
	clk.Advance(300 * time.Second)
	recent := abandon(t, inst, "recent", "10.1.1.2")

	if n, err := inst.Module.SweepNow(ctx); err != nil || n != 0 {
		t.Fatalf("sweep within the retention: %d %v", n, err)
	}
	clk.Advance(301 * time.Second) // old: 601 s since its last call; recent: 301 s
	if n, err := inst.Module.SweepNow(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v, want 1", n, err)
	}
	if _, err := inst.Svc.Store.GetChefDevice(ctx, old.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("stale request still there: %v", err)
	}
	if _, err := inst.Svc.Store.GetChefDevice(ctx, recent.ID); err != nil {
		t.Fatalf("recent request: %v", err)
	}
	st, body := inst.Admin(t, http.MethodGet, "/chef/devices?state=pending")
	if list, _ := body["devices"].([]any); st != http.StatusOK || len(list) != 1 || list[0].(map[string]any)["id"] != recent.ID {
		t.Fatalf("admin pending list after the sweep: %d %v", st, body)
	}
	events, err := inst.Svc.Store.ListAudit(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range events {
		if e.Action == "chef.device.expire" && e.Actor == "posgate" && e.Detail == "stale pending requests deleted: 1 (no call for 10m0s)" {
			found = true
		}
	}
	if !found {
		t.Fatal("the sweep was not audited")
	}

	// The deleted request's device asks again: a new request (new id, first generation).
	ch := async(t, inst, authBody("2", "old", ""), cheftest.AddrHeader, "10.1.1.1")
	again := pendingByDeviceID(t, inst, "old")
	if again.ID == old.ID || again.Generation != 1 {
		t.Fatalf("asked again: %+v (was %+v)", again, old)
	}
	approve(t, inst, again.ID)
	if td := tokenOf(t, receive(t, ch)); !td.NewDevice {
		t.Fatal("new_device false")
	}

	if err := inst.Module.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Module.SweepNow(ctx); err == nil {
		t.Fatal("the sweeper still runs after Close")
	}
}

// TestLateJoinExtendsRequest: a call joining a request with at least half its window left is held
// on it as it is; one joining later refreshes it, so the request stays "waiting" (and counted) as
// long as a call is held on it.
func TestLateJoinExtendsRequest(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	inst := cheftest.Start(t, cheftest.Options{Clock: clk, Configure: func(c *config.Config) { c.Chef.ApprovalTimeout = 30 }})
	ctx := context.Background()
	first := async(t, inst, authBody("1", "J", ""))
	d := pendingByDeviceID(t, inst, "J")

	clk.Advance(10 * time.Second) // 20 s left: join as is
	second := async(t, inst, authBody("2", "J", ""))
	waitCalls(t, inst, d.ID, 2)
	if now, _ := inst.Svc.Store.GetChefDevice(ctx, d.ID); !now.UpdatedAt.Equal(d.UpdatedAt) {
		t.Fatalf("an early join refreshed the request: %v → %v", d.UpdatedAt, now.UpdatedAt)
	}

	clk.Advance(10 * time.Second) // 10 s left: refresh
	third := async(t, inst, authBody("3", "J", ""))
	waitCalls(t, inst, d.ID, 3)
	now, _ := inst.Svc.Store.GetChefDevice(ctx, d.ID)
	if !now.UpdatedAt.Equal(d.UpdatedAt.Add(20*time.Second)) || now.Generation != d.Generation || now.State != store.DevicePending {
		t.Fatalf("late join: before %+v after %+v", d, now)
	}
	events, err := inst.Svc.Store.ListAudit(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	asked := 0
	for _, e := range events {
		if e.Action == "chef.device.request" {
			asked++
		}
	}
	if asked != 1 {
		t.Fatalf("%d pairing requests audited for one request", asked)
	}
	clk.Advance(25 * time.Second) // past the first window, within the refreshed one
	st, body := inst.Admin(t, http.MethodGet, "/chef/devices/"+d.ID)
	if st != http.StatusOK || body["waiting"] != true {
		t.Fatalf("refreshed request: %d %v", st, body)
	}
	approve(t, inst, d.ID)
	for _, ch := range []<-chan answer{first, second, third} {
		if td := tokenOf(t, receive(t, ch)); !td.NewDevice {
			t.Fatal("new_device false")
		}
	}
}
