package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// testDoshiiOnlineAndDisabled covers what the doshii sockets need: listing locations per vendor,
// disabling vendors and locations, and the heartbeat deadline that only moves forward.
func testDoshiiOnlineAndDisabled(t *testing.T, s store.Store) {
	for _, v := range []string{"dv_1", "dv_2"} {
		ok(t, s.CreateDoshiiVendor(ctx(t), &store.DoshiiVendor{ID: v, APIName: v + "-name", CreatedAt: base}))
		ok(t, s.CreateDoshiiOrganisation(ctx(t), &store.DoshiiOrganisation{ID: "org_" + v, VendorID: v, Name: "Org", CreatedAt: base, UpdatedAt: base}))
	}
	loc := func(id, vendor string, created time.Duration) {
		ok(t, s.CreateDoshiiLocation(ctx(t), &store.DoshiiLocation{ID: id, VendorID: vendor, OrganisationID: "org_" + vendor,
			Name: id, TokenHash: []byte("hash " + id), CreatedAt: at(created), UpdatedAt: at(created)}))
	}
	loc("loc_b", "dv_1", 2*time.Second)
	loc("loc_a", "dv_1", time.Second)
	loc("loc_c", "dv_2", 0)

	ids := func(vendor string) []string {
		t.Helper()
		l, err := s.ListDoshiiLocations(ctx(t), vendor)
		ok(t, err)
		var out []string
		for _, x := range l {
			out = append(out, x.ID)
		}
		return out
	}
	eqList(t, "dv_1 locations", ids("dv_1"), []string{"loc_a", "loc_b"})
	eqList(t, "all locations", ids(""), []string{"loc_c", "loc_a", "loc_b"})
	eqList(t, "unknown vendor", ids("dv_missing"), nil)

	// Disabled flags.
	ok(t, s.SetDoshiiVendorDisabled(ctx(t), "dv_1", true))
	v, err := s.GetDoshiiVendorByName(ctx(t), "dv_1-name")
	ok(t, err)
	eq(t, "vendor disabled", v.Disabled, true)
	v, err = s.GetDoshiiVendor(ctx(t), "dv_2")
	ok(t, err)
	eq(t, "other vendor disabled", v.Disabled, false)
	ok(t, s.SetDoshiiVendorDisabled(ctx(t), "dv_1", false))
	v, err = s.GetDoshiiVendor(ctx(t), "dv_1")
	ok(t, err)
	eq(t, "vendor enabled again", v.Disabled, false)
	wantErr(t, s.SetDoshiiVendorDisabled(ctx(t), "dv_missing", true), store.ErrNotFound)

	ok(t, s.SetDoshiiLocationDisabled(ctx(t), "loc_a", true, at(time.Minute)))
	l, err := s.GetDoshiiLocationByTokenHash(ctx(t), []byte("hash loc_a"))
	ok(t, err)
	eq(t, "location disabled", l.Disabled, true)
	eqTime(t, "UpdatedAt", l.UpdatedAt, at(time.Minute))
	l, err = s.GetDoshiiLocation(ctx(t), "loc_b")
	ok(t, err)
	eq(t, "other location disabled", l.Disabled, false)
	wantErr(t, s.SetDoshiiLocationDisabled(ctx(t), "loc_missing", true, base), store.ErrNotFound)

	// The heartbeat deadline only moves forward.
	eqTimePtr(t, "never heartbeated", l.DisconnectedAt, nil)
	ok(t, s.ExtendDoshiiLocationOnline(ctx(t), "loc_b", at(90*time.Second)))
	ok(t, s.ExtendDoshiiLocationOnline(ctx(t), "loc_b", at(60*time.Second))) // an older heartbeat, from a slower clock
	l, err = s.GetDoshiiLocation(ctx(t), "loc_b")
	ok(t, err)
	eqTimePtr(t, "deadline kept", l.DisconnectedAt, ptr(at(90*time.Second)))
	ok(t, s.ExtendDoshiiLocationOnline(ctx(t), "loc_b", at(120*time.Second)))
	ok(t, s.ExtendDoshiiLocationOnline(ctx(t), "loc_b", at(120*time.Second))) // the same deadline again
	l, err = s.GetDoshiiLocation(ctx(t), "loc_b")
	ok(t, err)
	eqTimePtr(t, "deadline moved", l.DisconnectedAt, ptr(at(120*time.Second)))
	wantErr(t, s.ExtendDoshiiLocationOnline(ctx(t), "loc_missing", at(0)), store.ErrNotFound)

	// A cloud POS's heartbeat: every enabled location of its vendor, forward only.
	ok(t, s.ExtendDoshiiVendorOnline(ctx(t), "dv_1", at(100*time.Second)))
	ok(t, s.ExtendDoshiiVendorOnline(ctx(t), "dv_missing", at(100*time.Second)))
	for id, want := range map[string]*time.Time{"loc_a": nil, "loc_b": ptr(at(120 * time.Second)), "loc_c": nil} {
		l, err := s.GetDoshiiLocation(ctx(t), id)
		ok(t, err)
		eqTimePtr(t, id+" after the vendor heartbeat", l.DisconnectedAt, want)
	}
	ok(t, s.SetDoshiiLocationDisabled(ctx(t), "loc_a", false, at(time.Minute)))
	ok(t, s.ExtendDoshiiVendorOnline(ctx(t), "dv_1", at(150*time.Second)))
	for _, id := range []string{"loc_a", "loc_b"} {
		l, err := s.GetDoshiiLocation(ctx(t), id)
		ok(t, err)
		eqTimePtr(t, id+" after the second vendor heartbeat", l.DisconnectedAt, ptr(at(150*time.Second)))
	}
}

// testDoshiiOnlineBatch: ExtendDoshiiOnline is ExtendDoshiiLocationOnline and
// ExtendDoshiiVendorOnline for many ids in one call: forward only, a vendor's enabled locations
// only, the later deadline when a location is named twice, unknown ids ignored.
func testDoshiiOnlineBatch(t *testing.T, s store.Store) {
	for _, v := range []string{"dv_1", "dv_2"} {
		ok(t, s.CreateDoshiiVendor(ctx(t), &store.DoshiiVendor{ID: v, APIName: v + "-name", CreatedAt: base}))
		ok(t, s.CreateDoshiiOrganisation(ctx(t), &store.DoshiiOrganisation{ID: "org_" + v, VendorID: v, Name: "Org", CreatedAt: base, UpdatedAt: base}))
	}

	loc := func(id, vendor string) {
		ok(t, s.CreateDoshiiLocation(ctx(t), &store.DoshiiLocation{ID: id, VendorID: vendor, OrganisationID: "org_" + vendor,
			Name: id, TokenHash: []byte("hash " + id), CreatedAt: base, UpdatedAt: base}))

	}
	for i := range 300 {
		loc(fmt.Sprintf("loc_%03d", i), "dv_1")
	}
	loc("loc_v2a", "dv_2")
	loc("loc_v2b", "dv_2")
	loc("loc_v2off", "dv_2")
	ok(t, s.SetDoshiiLocationDisabled(ctx(t), "loc_v2off", true, base))
	deadline := func(id string) *time.Time {
		t.Helper()
		l, err := s.GetDoshiiLocation(ctx(t), id)
		ok(t, err)
		return l.DisconnectedAt
	}

	ok(t, s.ExtendDoshiiOnline(ctx(t), nil, nil)) // nothing to do
	ok(t, s.ExtendDoshiiLocationOnline(ctx(t), "loc_001", at(200*time.Second)))
	locs := map[string]time.Time{"loc_missing": at(time.Second)}
	for i := range 300 {
		locs[fmt.Sprintf("loc_%03d", i)] = at(time.Duration(100+i) * time.Second)
	}
	locs["loc_v2a"] = at(50 * time.Second)
	ok(t, s.ExtendDoshiiOnline(ctx(t), locs, map[string]time.Time{"dv_2": at(70 * time.Second), "dv_missing": at(time.Second)}))
	for i := range 300 {
		id := fmt.Sprintf("loc_%03d", i)
		want := at(time.Duration(100+i) * time.Second)
		if id == "loc_001" {
			want = at(200 * time.Second) // later already: kept
		}
		eqTimePtr(t, id, deadline(id), &want)
	}
	eqTimePtr(t, "loc_v2a: the vendor's later deadline", deadline("loc_v2a"), ptr(at(70*time.Second)))
	eqTimePtr(t, "loc_v2b: the vendor's deadline", deadline("loc_v2b"), ptr(at(70*time.Second)))
	eqTimePtr(t, "a disabled location of the vendor", deadline("loc_v2off"), nil)

	// Named itself with a later deadline than its vendor's; an earlier batch moves nothing back.
	ok(t, s.ExtendDoshiiOnline(ctx(t), map[string]time.Time{"loc_v2a": at(90 * time.Second), "loc_000": at(time.Second)},
		map[string]time.Time{"dv_2": at(80 * time.Second)}))
	eqTimePtr(t, "loc_v2a: its own later deadline", deadline("loc_v2a"), ptr(at(90*time.Second)))
	eqTimePtr(t, "loc_v2b: the vendor's new deadline", deadline("loc_v2b"), ptr(at(80*time.Second)))
	eqTimePtr(t, "loc_000: not moved back", deadline("loc_000"), ptr(at(100*time.Second)))

}

// testDoshiiDelete: deleting a location removes it, its token and the outbox messages for it
// (its queue, and its ids on its vendor's queue), nothing of another location; deleting a vendor
// removes everything it owns.
func testDoshiiDelete(t *testing.T, s store.Store) {
	for _, v := range []string{"dv_1", "dv_2"} {
		ok(t, s.CreateDoshiiVendor(ctx(t), &store.DoshiiVendor{ID: v, APIName: v + "-name", CreatedAt: base,
			Keys: []store.VendorKey{{ID: "vk_" + v, Sealed: []byte("sealed"), Hash: []byte("hash " + v), CreatedAt: base}}}))
		ok(t, s.CreateDoshiiOrganisation(ctx(t), &store.DoshiiOrganisation{ID: "org_" + v, VendorID: v, Name: "Org", CreatedAt: base, UpdatedAt: base}))
	}
	for _, l := range [][2]string{{"dl_a", "dv_1"}, {"dl_ab", "dv_1"}, {"dl_c", "dv_2"}} {
		ok(t, s.CreateDoshiiLocation(ctx(t), &store.DoshiiLocation{ID: l[0], VendorID: l[1], OrganisationID: "org_" + l[1],
			Name: l[0], TokenHash: []byte("token " + l[0]), CreatedAt: base, UpdatedAt: base}))
		enqueue(t, s, newMsg("doshii:"+l[0], "e1", time.Minute))
		enqueue(t, s, newMsg("doshii-vendor:"+l[1], l[0]+"/e1", time.Minute))
	}
	gone := func(queue, id string) bool {
		_, err := s.GetOutbox(ctx(t), queue, id)
		return errors.Is(err, store.ErrNotFound)
	}
	wantErr(t, s.DeleteDoshiiLocation(ctx(t), "dl_missing"), store.ErrNotFound)
	ok(t, s.DeleteDoshiiLocation(ctx(t), "dl_a"))
	_, err := s.GetDoshiiLocation(ctx(t), "dl_a")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetDoshiiLocationByTokenHash(ctx(t), []byte("token dl_a"))
	wantErr(t, err, store.ErrNotFound)
	if !gone("doshii:dl_a", "e1") || !gone("doshii-vendor:dv_1", "dl_a/e1") {
		t.Fatal("the deleted location's outbox messages are left")
	}
	// "dl_ab" starts like "dl_a" but is another location: its messages stay.
	if gone("doshii:dl_ab", "e1") || gone("doshii-vendor:dv_1", "dl_ab/e1") {
		t.Fatal("another location's outbox messages were deleted")
	}
	wantErr(t, s.DeleteDoshiiLocation(ctx(t), "dl_a"), store.ErrNotFound)

	wantErr(t, s.DeleteDoshiiVendor(ctx(t), "dv_missing"), store.ErrNotFound)
	ok(t, s.DeleteDoshiiVendor(ctx(t), "dv_1"))
	_, err = s.GetDoshiiVendor(ctx(t), "dv_1")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetDoshiiVendorByName(ctx(t), "dv_1-name")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetDoshiiOrganisation(ctx(t), "org_dv_1")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetDoshiiLocation(ctx(t), "dl_ab")
	wantErr(t, err, store.ErrNotFound)
	if !gone("doshii:dl_ab", "e1") || !gone("doshii-vendor:dv_1", "dl_ab/e1") {
		t.Fatal("the deleted vendor's outbox messages are left")
	}
	// The other vendor is untouched; the api name is free again.
	if _, err := s.GetDoshiiLocation(ctx(t), "dl_c"); err != nil || gone("doshii:dl_c", "e1") || gone("doshii-vendor:dv_2", "dl_c/e1") {
		t.Fatalf("the other vendor's location: %v", err)
	}
	ok(t, s.CreateDoshiiVendor(ctx(t), &store.DoshiiVendor{ID: "dv_3", APIName: "dv_1-name", CreatedAt: base}))
}
