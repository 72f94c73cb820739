package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

func testChefDevices(t *testing.T, s store.Store) {
	d, err := s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: "dev_1", DeviceKey: "device-abc", Label: "kitchen",
		Address: "10.0.0.5", UserAgent: "Chef/1.0", FirstSeen: base, UpdatedAt: base})
	ok(t, err)
	eq(t, "ID", d.ID, "dev_1")
	eq(t, "State", d.State, store.DevicePending)
	eq(t, "Generation", d.Generation, 1)
	eqTime(t, "FirstSeen", d.FirstSeen, at(0))
	eqTimePtr(t, "DecidedAt", d.DecidedAt, nil)

	d, err = s.DecideChefDevice(ctx(t), "dev_1", []store.DeviceState{store.DevicePending}, store.DeviceApproved, "admin", base.Add(time.Minute))
	ok(t, err)
	eq(t, "State", d.State, store.DeviceApproved)
	eq(t, "DecidedBy", d.DecidedBy, "admin")
	eqTimePtr(t, "DecidedAt", d.DecidedAt, ptr(at(time.Minute)))
	eqTime(t, "UpdatedAt", d.UpdatedAt, at(time.Minute))
	_, err = s.DecideChefDevice(ctx(t), "dev_1", []store.DeviceState{store.DevicePending}, store.DeviceDeclined, "admin", base.Add(2*time.Minute))
	wantErr(t, err, store.ErrConflict)
	_, err = s.DecideChefDevice(ctx(t), "dev_1", nil, store.DeviceDeclined, "admin", base)
	wantErr(t, err, store.ErrConflict)
	_, err = s.DecideChefDevice(ctx(t), "dev_missing", []store.DeviceState{store.DevicePending}, store.DeviceApproved, "admin", base)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.DecideChefDevice(ctx(t), "dev_missing", nil, store.DeviceApproved, "admin", base)
	wantErr(t, err, store.ErrNotFound)

	got, err := s.GetChefDevice(ctx(t), "dev_1")
	ok(t, err)
	eq(t, "State after conflicts", got.State, store.DeviceApproved)
	eq(t, "Label", got.Label, "kitchen")
	eq(t, "Address", got.Address, "10.0.0.5")
	eq(t, "UserAgent", got.UserAgent, "Chef/1.0")

	// A new pairing request for the same device key: back to pending, next generation, same id.
	d, err = s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: "dev_other", DeviceKey: "device-abc", Label: "bar",
		Address: "10.0.0.6", UserAgent: "Chef/2.0", FirstSeen: base.Add(time.Hour), UpdatedAt: base.Add(time.Hour)})
	ok(t, err)
	eq(t, "ID kept", d.ID, "dev_1")
	eq(t, "State", d.State, store.DevicePending)
	eq(t, "Generation", d.Generation, 2)
	eq(t, "Label", d.Label, "bar")
	eq(t, "Address", d.Address, "10.0.0.6")
	eq(t, "UserAgent", d.UserAgent, "Chef/2.0")
	eqTime(t, "FirstSeen kept", d.FirstSeen, at(0))
	eqTime(t, "UpdatedAt", d.UpdatedAt, at(time.Hour))
	eqTimePtr(t, "DecidedAt cleared", d.DecidedAt, nil)
	eq(t, "DecidedBy cleared", d.DecidedBy, "")
	got, err = s.GetChefDeviceByKey(ctx(t), "device-abc")
	ok(t, err)
	eq(t, "Generation via key", got.Generation, 2)
	_, err = s.GetChefDevice(ctx(t), "dev_other")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetChefDeviceByKey(ctx(t), "device-missing")
	wantErr(t, err, store.ErrNotFound)

	_, err = s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: "dev_2", DeviceKey: "device-def", FirstSeen: base.Add(-time.Hour), UpdatedAt: base.Add(-time.Hour)})
	ok(t, err)
	_, err = s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: "dev_3", DeviceKey: "device-ghi", FirstSeen: base.Add(time.Second), UpdatedAt: base.Add(time.Second)})
	ok(t, err)
	// A device id must be unique too.
	_, err = s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: "dev_3", DeviceKey: "device-jkl", FirstSeen: base, UpdatedAt: base})
	wantErr(t, err, store.ErrConflict)
	_, err = s.DecideChefDevice(ctx(t), "dev_3", []store.DeviceState{store.DeviceApproved, store.DevicePending}, store.DeviceDeclined, "admin", base.Add(time.Minute))
	ok(t, err)

	ids := func(l []*store.ChefDevice) []string {
		var out []string
		for _, d := range l {
			out = append(out, d.ID)
		}
		return out
	}
	for _, c := range []struct {
		state store.DeviceState
		want  []string
	}{
		{"", []string{"dev_2", "dev_1", "dev_3"}}, // by FirstSeen
		{store.DevicePending, []string{"dev_2", "dev_1"}},
		{store.DeviceDeclined, []string{"dev_3"}},
		{store.DeviceApproved, nil},
	} {
		l, err := s.ListChefDevices(ctx(t), c.state)
		ok(t, err)
		eqList(t, "ListChefDevices("+string(c.state)+")", ids(l), c.want)
		n, err := s.CountChefDevices(ctx(t), c.state)
		ok(t, err)
		eq(t, "CountChefDevices("+string(c.state)+")", n, len(c.want))
	}
}

func testChefDecisionRace(t *testing.T, s store.Store) {
	_, err := s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: "dev_1", DeviceKey: "k", FirstSeen: base, UpdatedAt: base})
	ok(t, err)
	const n = 20
	errs := race(n, func(i int) error {
		to := store.DeviceApproved
		if i%2 == 1 {
			to = store.DeviceDeclined
		}
		_, err := s.DecideChefDevice(ctx(t), "dev_1", []store.DeviceState{store.DevicePending}, to, fmt.Sprintf("admin%d", i), base.Add(time.Minute))
		return err
	})
	w := oneWinner(t, errs, store.ErrConflict)
	d, err := s.GetChefDevice(ctx(t), "dev_1")
	ok(t, err)
	eq(t, "DecidedBy", d.DecidedBy, fmt.Sprintf("admin%d", w))
}

// testChefPendingHousekeeping: the fresh-pending counts of the pairing caps, the console's
// most-recent list, and the deletion of stale pending requests (other states kept).
func testChefPendingHousekeeping(t *testing.T, s store.Store) {
	add := func(id, addr string, updated time.Duration) {
		t.Helper()
		_, err := s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: id, DeviceKey: "key-" + id, Label: id,
			Address: addr, UserAgent: "Chef/1.0", FirstSeen: base.Add(-time.Hour), UpdatedAt: base.Add(updated)})
		ok(t, err)
	}
	add("dev_a", "10.0.0.1", 0)
	add("dev_b", "10.0.0.1", time.Second)
	add("dev_c", "10.0.0.2", 2*time.Second)
	add("dev_d", "10.0.0.1", -time.Hour)                       // stale
	add("dev_e", "10.0.0.1", 3*time.Second)                    // decided below: not pending
	add("dev_f", "10.0.0.3", -2*time.Hour)                     // approved long ago: kept by the cleanup
	add("dev_g", "10.0.0.1", time.Second+500*time.Microsecond) // same millisecond as dev_b
	_, err := s.DecideChefDevice(ctx(t), "dev_e", []store.DeviceState{store.DevicePending}, store.DeviceDeclined, "admin", base.Add(3*time.Second))
	ok(t, err)
	_, err = s.DecideChefDevice(ctx(t), "dev_f", []store.DeviceState{store.DevicePending}, store.DeviceApproved, "admin", base.Add(-2*time.Hour))
	ok(t, err)

	for _, c := range []struct {
		since     time.Time
		addr      string
		all, atAd int
	}{
		{base.Add(-time.Minute), "10.0.0.1", 4, 3}, // a, b, g (10.0.0.1) and c
		{base.Add(-time.Minute), "10.0.0.2", 4, 1},
		{base.Add(-time.Minute), "10.0.0.9", 4, 0},
		{base.Add(-time.Minute), "", 4, 0},
		{base, "10.0.0.1", 3, 2},                  // strictly after since: dev_a (at base) not counted
		{base.Add(time.Second), "10.0.0.1", 1, 0}, // dev_b/dev_g are in that millisecond: not after it
		{base.Add(2 * time.Hour), "10.0.0.1", 0, 0},
		{base.Add(-3 * time.Hour), "10.0.0.1", 5, 4}, // dev_d too; never the decided ones
	} {
		all, atAd, err := s.CountPendingChefDevicesSince(ctx(t), c.since, c.addr)
		ok(t, err)
		eq(t, fmt.Sprintf("all since %s", c.since.Sub(base)), all, c.all)
		eq(t, fmt.Sprintf("at %s since %s", c.addr, c.since.Sub(base)), atAd, c.atAd)
	}

	ids := func(l []*store.ChefDevice) []string {
		var out []string
		for _, d := range l {
			out = append(out, d.ID)
		}
		return out
	}
	l, err := s.ListRecentChefDevices(ctx(t), store.DevicePending, 3)
	ok(t, err)
	eqList(t, "ListRecentChefDevices(pending, 3)", ids(l), []string{"dev_c", "dev_g", "dev_b"}) // ties: id descending
	l, err = s.ListRecentChefDevices(ctx(t), store.DevicePending, 0)
	ok(t, err)
	eqList(t, "ListRecentChefDevices(pending, 0)", ids(l), []string{"dev_c", "dev_g", "dev_b", "dev_a", "dev_d"})
	l, err = s.ListRecentChefDevices(ctx(t), "", 2)
	ok(t, err)
	eqList(t, "ListRecentChefDevices(all, 2)", ids(l), []string{"dev_e", "dev_c"})
	l, err = s.ListRecentChefDevices(ctx(t), store.DeviceRevoked, 10)
	ok(t, err)
	eqList(t, "ListRecentChefDevices(revoked)", ids(l), nil)

	n, err := s.DeletePendingChefDevicesBefore(ctx(t), base.Add(-time.Minute))
	ok(t, err)
	eq(t, "deleted stale", n, 1)
	_, err = s.GetChefDevice(ctx(t), "dev_d")
	wantErr(t, err, store.ErrNotFound)
	n, err = s.DeletePendingChefDevicesBefore(ctx(t), base.Add(-time.Minute))
	ok(t, err)
	eq(t, "deleted again", n, 0)
	// Strictly before t; decided devices are kept however old.
	n, err = s.DeletePendingChefDevicesBefore(ctx(t), base.Add(time.Second))
	ok(t, err)
	eq(t, "deleted before 1s", n, 1) // dev_a only: dev_b/dev_g are at 1 s
	l, err = s.ListChefDevices(ctx(t), "")
	ok(t, err)
	eqList(t, "left", ids(l), []string{"dev_b", "dev_c", "dev_e", "dev_f", "dev_g"})
	n, err = s.DeletePendingChefDevicesBefore(ctx(t), base.Add(time.Hour))
	ok(t, err)
	eq(t, "deleted all pending", n, 3)
	l, err = s.ListChefDevices(ctx(t), "")
	ok(t, err)
	eqList(t, "decided kept", ids(l), []string{"dev_e", "dev_f"})

	// The device key is free again: the same device asking later is a new request.
	d, err := s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: "dev_a2", DeviceKey: "key-dev_a", FirstSeen: base.Add(time.Hour)})
	ok(t, err)
	eq(t, "new id", d.ID, "dev_a2")
	eq(t, "Generation", d.Generation, 1)

	// AddressKey (what the per-address cap counts by): stored as given, Address when empty,
	// moved with the address by a new request.
	later := base.Add(2 * time.Hour)
	for _, v6 := range []struct{ id, key, addr string }{{"dev_v6a", "v6a", "2001:db8::1"}, {"dev_v6b", "v6b", "2001:db8::2"}} {
		d, err = s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: v6.id, DeviceKey: v6.key, Address: v6.addr,
			AddressKey: "2001:db8::/64", UpdatedAt: later})
		ok(t, err)
		eq(t, "AddressKey", d.AddressKey, "2001:db8::/64")
	}
	d, err = s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: "dev_v4", DeviceKey: "v4", Address: "10.9.9.9", UpdatedAt: later})
	ok(t, err)
	eq(t, "AddressKey defaults to Address", d.AddressKey, "10.9.9.9")
	got, err := s.GetChefDevice(ctx(t), "dev_v6b")
	ok(t, err)
	eq(t, "AddressKey read back", got.AddressKey, "2001:db8::/64")
	for _, c := range []struct {
		key       string
		all, atAd int
	}{{"2001:db8::/64", 3, 2}, {"2001:db8::1", 3, 0}, {"10.9.9.9", 3, 1}} {
		all, atAd, err := s.CountPendingChefDevicesSince(ctx(t), base.Add(time.Hour), c.key)
		ok(t, err)
		eq(t, "all, by key "+c.key, all, c.all)
		eq(t, "at key "+c.key, atAd, c.atAd)
	}
	d, err = s.UpsertPendingChefDevice(ctx(t), &store.ChefDevice{ID: "dev_x", DeviceKey: "v6a", Address: "10.9.9.9", UpdatedAt: later.Add(time.Hour)})
	ok(t, err)
	eq(t, "moved: id", d.ID, "dev_v6a")
	eq(t, "moved: AddressKey", d.AddressKey, "10.9.9.9")
	all, atAd, err := s.CountPendingChefDevicesSince(ctx(t), base.Add(time.Hour), "10.9.9.9")
	ok(t, err)
	eq(t, "all after the move", all, 3)
	eq(t, "at 10.9.9.9 after the move", atAd, 2)
}
