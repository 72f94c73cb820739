package storetest

import (
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

func testDoshiiVendors(t *testing.T, s store.Store) {
	v1 := &store.DoshiiVendor{ID: "dv_1", APIName: "acme-pos", CreatedAt: base.Add(time.Second), Keys: []store.VendorKey{
		{ID: "vk_2", Sealed: []byte("sealed 2"), Hash: []byte("hash 2"), CreatedAt: base.Add(time.Minute)},
		{ID: "vk_1", Sealed: []byte("sealed 1"), Hash: []byte("hash 1"), CreatedAt: base, NotAfter: ptr(base.Add(time.Hour))},
	}}
	v2 := &store.DoshiiVendor{ID: "dv_2", APIName: "other-pos", CreatedAt: base}
	ok(t, s.CreateDoshiiVendor(ctx(t), v1))
	ok(t, s.CreateDoshiiVendor(ctx(t), v2))
	wantErr(t, s.CreateDoshiiVendor(ctx(t), &store.DoshiiVendor{ID: "dv_3", APIName: "acme-pos", CreatedAt: base}), store.ErrConflict)
	wantErr(t, s.CreateDoshiiVendor(ctx(t), &store.DoshiiVendor{ID: "dv_1", APIName: "new", CreatedAt: base}), store.ErrConflict)

	check := func(got, want *store.DoshiiVendor) {
		t.Helper()
		eq(t, "ID", got.ID, want.ID)
		eq(t, "APIName", got.APIName, want.APIName)
		eqTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt.Truncate(time.Millisecond))
		if len(got.Keys) != len(want.Keys) {
			t.Fatalf("%s: %d keys, want %d", want.ID, len(got.Keys), len(want.Keys))
		}
		for i := range want.Keys {
			g, w := got.Keys[i], want.Keys[i]
			eq(t, "key ID", g.ID, w.ID)
			eqBytes(t, "key Sealed", g.Sealed, w.Sealed)
			eqBytes(t, "key Hash", g.Hash, w.Hash)
			eqTime(t, "key CreatedAt", g.CreatedAt, w.CreatedAt.Truncate(time.Millisecond))
			var na *time.Time
			if w.NotAfter != nil {
				na = ptr(w.NotAfter.Truncate(time.Millisecond))
			}
			eqTimePtr(t, "key NotAfter", g.NotAfter, na)
		}
	}
	got, err := s.GetDoshiiVendor(ctx(t), "dv_1")
	ok(t, err)
	check(got, v1)
	got, err = s.GetDoshiiVendorByName(ctx(t), "other-pos")
	ok(t, err)
	check(got, v2)
	_, err = s.GetDoshiiVendor(ctx(t), "dv_missing")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetDoshiiVendorByName(ctx(t), "ACME-POS")
	wantErr(t, err, store.ErrNotFound)
	list, err := s.ListDoshiiVendors(ctx(t))
	ok(t, err)
	if len(list) != 2 {
		t.Fatalf("ListDoshiiVendors: %d, want 2", len(list))
	}
	check(list[0], v2) // oldest first
	check(list[1], v1)

	overlap := base.Add(30 * time.Minute)
	k3 := store.VendorKey{ID: "vk_3", Sealed: []byte("sealed 3"), Hash: []byte("hash 3"), CreatedAt: base.Add(2 * time.Minute)}
	ok(t, s.AddVendorKey(ctx(t), "dv_1", k3, overlap))
	v1.Keys = []store.VendorKey{k3, v1.Keys[0], v1.Keys[1]}
	v1.Keys[1].NotAfter = ptr(overlap) // had none
	v1.Keys[2].NotAfter = ptr(overlap) // ended later
	got, err = s.GetDoshiiVendorByName(ctx(t), "acme-pos")
	ok(t, err)
	check(got, v1)
	k4 := store.VendorKey{ID: "vk_4", Sealed: []byte("sealed 4"), Hash: []byte("hash 4"), CreatedAt: base.Add(3 * time.Minute)}
	ok(t, s.AddVendorKey(ctx(t), "dv_2", k4, overlap)) // a first key
	v2.Keys = []store.VendorKey{k4}
	got, err = s.GetDoshiiVendor(ctx(t), "dv_2")
	ok(t, err)
	check(got, v2)
	wantErr(t, s.AddVendorKey(ctx(t), "dv_missing", store.VendorKey{ID: "vk_9", Sealed: []byte("x"), Hash: []byte("x"), CreatedAt: base}, overlap), store.ErrNotFound)
	wantErr(t, s.AddVendorKey(ctx(t), "dv_2", store.VendorKey{ID: "vk_3", Sealed: []byte("x"), Hash: []byte("x"), CreatedAt: base}, base), store.ErrConflict)
	got, err = s.GetDoshiiVendor(ctx(t), "dv_1") // the failed addition to dv_2 did not touch dv_1's keys
	ok(t, err)
	check(got, v1)
}

func testDoshiiOrganisationsAndLocations(t *testing.T, s store.Store) {
	for _, v := range []string{"dv_1", "dv_2"} {
		ok(t, s.CreateDoshiiVendor(ctx(t), &store.DoshiiVendor{ID: v, APIName: v + "-name", CreatedAt: base}))
	}
	o1 := &store.DoshiiOrganisation{ID: "org_1", VendorID: "dv_1", Name: "Pizza Co", Body: []byte(`{"email":"a@example.com"}`), CreatedAt: base, UpdatedAt: base.Add(time.Second)}
	ok(t, s.CreateDoshiiOrganisation(ctx(t), o1))
	wantErr(t, s.CreateDoshiiOrganisation(ctx(t), &store.DoshiiOrganisation{ID: "org_2", VendorID: "dv_1", Name: "Pizza Co", CreatedAt: base, UpdatedAt: base}), store.ErrConflict)
	ok(t, s.CreateDoshiiOrganisation(ctx(t), &store.DoshiiOrganisation{ID: "org_3", VendorID: "dv_2", Name: "Pizza Co", CreatedAt: base, UpdatedAt: base})) // same name, other vendor
	wantErr(t, s.CreateDoshiiOrganisation(ctx(t), &store.DoshiiOrganisation{ID: "org_4", VendorID: "dv_missing", Name: "X", CreatedAt: base, UpdatedAt: base}), store.ErrNotFound)

	go1, err := s.GetDoshiiOrganisation(ctx(t), "org_1")
	ok(t, err)
	eq(t, "VendorID", go1.VendorID, "dv_1")
	eq(t, "Name", go1.Name, "Pizza Co")
	eqBytes(t, "Body", go1.Body, o1.Body)
	eqTime(t, "CreatedAt", go1.CreatedAt, at(0))
	eqTime(t, "UpdatedAt", go1.UpdatedAt, at(time.Second))
	go3, err := s.GetDoshiiOrganisation(ctx(t), "org_3")
	ok(t, err)
	eqBytes(t, "empty Body", go3.Body, nil)
	_, err = s.GetDoshiiOrganisation(ctx(t), "org_missing")
	wantErr(t, err, store.ErrNotFound)

	l1 := &store.DoshiiLocation{ID: "loc_1", VendorID: "dv_1", OrganisationID: "org_1", Name: "Main St", TokenHash: []byte("token hash 1"),
		Body: []byte(`{"address":"1 Main St"}`), CreatedAt: base, UpdatedAt: base, DisconnectedAt: ptr(base.Add(time.Hour))}
	ok(t, s.CreateDoshiiLocation(ctx(t), l1))
	loc := func(id, org, vendor, name, hash string) *store.DoshiiLocation {
		return &store.DoshiiLocation{ID: id, VendorID: vendor, OrganisationID: org, Name: name, TokenHash: []byte(hash), CreatedAt: base, UpdatedAt: base}
	}
	wantErr(t, s.CreateDoshiiLocation(ctx(t), loc("loc_2", "org_1", "dv_1", "Main St", "token hash 2")), store.ErrConflict)       // (organisation, name)
	wantErr(t, s.CreateDoshiiLocation(ctx(t), loc("loc_2", "org_1", "dv_1", "Side St", "token hash 1")), store.ErrConflict)       // token hash
	wantErr(t, s.CreateDoshiiLocation(ctx(t), loc("loc_1", "org_1", "dv_1", "Side St", "token hash 2")), store.ErrConflict)       // id
	wantErr(t, s.CreateDoshiiLocation(ctx(t), loc("loc_2", "org_missing", "dv_1", "Side St", "token hash 2")), store.ErrNotFound) // no organisation
	wantErr(t, s.CreateDoshiiLocation(ctx(t), loc("loc_2", "org_1", "dv_2", "Side St", "token hash 2")), store.ErrNotFound)       // organisation of another vendor
	ok(t, s.CreateDoshiiLocation(ctx(t), loc("loc_3", "org_3", "dv_2", "Main St", "token hash 3")))                               // same name, other organisation

	check := func(got, want *store.DoshiiLocation) {
		t.Helper()
		eq(t, "ID", got.ID, want.ID)
		eq(t, "VendorID", got.VendorID, want.VendorID)
		eq(t, "OrganisationID", got.OrganisationID, want.OrganisationID)
		eq(t, "Name", got.Name, want.Name)
		eqBytes(t, "TokenHash", got.TokenHash, want.TokenHash)
		eqBytes(t, "Body", got.Body, want.Body)
		eqTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt.Truncate(time.Millisecond))
		eqTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt.Truncate(time.Millisecond))
		var dc *time.Time
		if want.DisconnectedAt != nil {
			dc = ptr(want.DisconnectedAt.Truncate(time.Millisecond))
		}
		eqTimePtr(t, "DisconnectedAt", got.DisconnectedAt, dc)
	}
	got, err := s.GetDoshiiLocation(ctx(t), "loc_1")
	ok(t, err)
	check(got, l1)
	got, err = s.GetDoshiiLocationByTokenHash(ctx(t), []byte("token hash 1"))
	ok(t, err)
	check(got, l1)
	_, err = s.GetDoshiiLocation(ctx(t), "loc_missing")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetDoshiiLocationByTokenHash(ctx(t), []byte("token hash 2"))
	wantErr(t, err, store.ErrNotFound)

	ok(t, s.SetDoshiiLocationToken(ctx(t), "loc_1", []byte("rotated hash"), base.Add(time.Minute)))
	_, err = s.GetDoshiiLocationByTokenHash(ctx(t), []byte("token hash 1"))
	wantErr(t, err, store.ErrNotFound)
	got, err = s.GetDoshiiLocationByTokenHash(ctx(t), []byte("rotated hash"))
	ok(t, err)
	l1.TokenHash, l1.UpdatedAt = []byte("rotated hash"), base.Add(time.Minute)
	check(got, l1)
	wantErr(t, s.SetDoshiiLocationToken(ctx(t), "loc_1", []byte("token hash 3"), base), store.ErrConflict)
	wantErr(t, s.SetDoshiiLocationToken(ctx(t), "loc_missing", []byte("x"), base), store.ErrNotFound)

	// Inline creation is all or nothing.
	o5 := &store.DoshiiOrganisation{ID: "org_5", VendorID: "dv_1", Name: "Burger Co", CreatedAt: base, UpdatedAt: base}
	wantErr(t, s.CreateDoshiiOrganisationWithLocation(ctx(t), o5, loc("loc_5", "org_5", "dv_1", "Corner", "token hash 3")), store.ErrConflict)
	_, err = s.GetDoshiiOrganisation(ctx(t), "org_5")
	wantErr(t, err, store.ErrNotFound)
	l5 := loc("loc_5", "org_5", "dv_1", "Corner", "token hash 5")
	ok(t, s.CreateDoshiiOrganisationWithLocation(ctx(t), o5, l5))
	_, err = s.GetDoshiiOrganisation(ctx(t), "org_5")
	ok(t, err)
	got, err = s.GetDoshiiLocationByTokenHash(ctx(t), []byte("token hash 5"))
	ok(t, err)
	check(got, l5)
}
