package storetest

import (
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

func newOutlet(n string, created time.Time) *store.OrderpayOutlet {
	return &store.OrderpayOutlet{
		ID: "op_" + n, ProviderOutletID: "outlet-" + n, POSRemoteID: "pos-" + n, ProviderID: 321,
		ProviderName: "Provider " + n, AuthSecretHash: "$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA",
		CreatedAt: created, UpdatedAt: created,
	}
}

func checkOutlet(t *testing.T, got, want *store.OrderpayOutlet) {
	t.Helper()
	eq(t, "ID", got.ID, want.ID)
	eq(t, "ProviderOutletID", got.ProviderOutletID, want.ProviderOutletID)
	eq(t, "POSRemoteID", got.POSRemoteID, want.POSRemoteID)
	eq(t, "ProviderID", got.ProviderID, want.ProviderID)
	eq(t, "ProviderName", got.ProviderName, want.ProviderName)
	eq(t, "AuthSecretHash", got.AuthSecretHash, want.AuthSecretHash)
	eq(t, "Disabled", got.Disabled, want.Disabled)
	eqTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt.Truncate(time.Millisecond))
	eqTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt.Truncate(time.Millisecond))
}

func testOrderpayOutlets(t *testing.T, s store.Store) {
	a, b := newOutlet("a", base), newOutlet("b", base.Add(time.Second))
	b.ProviderID = 1<<40 + 7 // beyond 32 bits
	ok(t, s.CreateOrderpayOutlet(ctx(t), a))
	ok(t, s.CreateOrderpayOutlet(ctx(t), b))

	dupID := newOutlet("c", base)
	dupID.ID = a.ID
	wantErr(t, s.CreateOrderpayOutlet(ctx(t), dupID), store.ErrConflict)
	dupProvider := newOutlet("d", base)
	dupProvider.ProviderOutletID = a.ProviderOutletID
	wantErr(t, s.CreateOrderpayOutlet(ctx(t), dupProvider), store.ErrConflict)

	got, err := s.GetOrderpayOutlet(ctx(t), a.ID)
	ok(t, err)
	checkOutlet(t, got, a)
	got, err = s.GetOrderpayOutletByProviderID(ctx(t), b.ProviderOutletID)
	ok(t, err)
	checkOutlet(t, got, b)
	_, err = s.GetOrderpayOutlet(ctx(t), "op_none")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetOrderpayOutletByProviderID(ctx(t), "OUTLET-A") // compared exactly
	wantErr(t, err, store.ErrNotFound)

	l, err := s.ListOrderpayOutlets(ctx(t))
	ok(t, err)
	if len(l) != 2 || l[0].ID != a.ID || l[1].ID != b.ID {
		t.Fatalf("ListOrderpayOutlets = %v, want a then b", l)
	}

	ok(t, s.SetOrderpayOutletSecret(ctx(t), a.ID, "$argon2id$new", base.Add(time.Minute)))
	ok(t, s.SetOrderpayOutletDisabled(ctx(t), a.ID, true, base.Add(2*time.Minute)))
	a.AuthSecretHash, a.Disabled, a.UpdatedAt = "$argon2id$new", true, base.Add(2*time.Minute)
	got, err = s.GetOrderpayOutlet(ctx(t), a.ID)
	ok(t, err)
	checkOutlet(t, got, a)
	ok(t, s.SetOrderpayOutletDisabled(ctx(t), a.ID, false, base.Add(3*time.Minute)))
	got, err = s.GetOrderpayOutlet(ctx(t), a.ID)
	ok(t, err)
	eq(t, "Disabled after enable", got.Disabled, false)
	wantErr(t, s.SetOrderpayOutletSecret(ctx(t), "op_none", "x", base), store.ErrNotFound)
	wantErr(t, s.SetOrderpayOutletDisabled(ctx(t), "op_none", true, base), store.ErrNotFound)
	got, err = s.GetOrderpayOutlet(ctx(t), b.ID) // untouched
	ok(t, err)
	checkOutlet(t, got, b)
}

func testOrderpayTickets(t *testing.T, s store.Store) {
	a, b := newOutlet("a", base), newOutlet("b", base)
	ok(t, s.CreateOrderpayOutlet(ctx(t), a))
	ok(t, s.CreateOrderpayOutlet(ctx(t), b))
	exp := base.Add(5 * time.Minute)
	tk := &store.OrderpayTicket{Hash: []byte("hash-1"), OutletID: a.ID, CreatedAt: base, ExpiresAt: exp}
	ok(t, s.CreateOrderpayTicket(ctx(t), tk))
	wantErr(t, s.CreateOrderpayTicket(ctx(t), &store.OrderpayTicket{Hash: []byte("hash-1"), OutletID: b.ID,
		CreatedAt: base, ExpiresAt: exp}), store.ErrConflict)
	wantErr(t, s.CreateOrderpayTicket(ctx(t), &store.OrderpayTicket{Hash: []byte("hash-x"), OutletID: "op_none",
		CreatedAt: base, ExpiresAt: exp}), store.ErrNotFound)

	// Unknown hash: not found, and nothing is created by asking.
	_, err := s.ConsumeOrderpayTicket(ctx(t), []byte("hash-unknown"), base)
	wantErr(t, err, store.ErrNotFound)

	got, err := s.ConsumeOrderpayTicket(ctx(t), []byte("hash-1"), base.Add(time.Minute))
	ok(t, err)
	eq(t, "OutletID", got.OutletID, a.ID)
	eqBytes(t, "Hash", got.Hash, []byte("hash-1"))
	eqTime(t, "CreatedAt", got.CreatedAt, at(0))
	eqTime(t, "ExpiresAt", got.ExpiresAt, exp.Truncate(time.Millisecond))
	eqTimePtr(t, "UsedAt", got.UsedAt, ptr(at(time.Minute)))

	// Used once: every later consume fails, before and after expiry is irrelevant to "used".
	_, err = s.ConsumeOrderpayTicket(ctx(t), []byte("hash-1"), base.Add(2*time.Minute))
	wantErr(t, err, store.ErrAlreadyUsed)

	// Expiry is exclusive: at ExpiresAt the ticket no longer opens anything, and the failed
	// attempt does not use it up (one millisecond earlier it still works).
	ok(t, s.CreateOrderpayTicket(ctx(t), &store.OrderpayTicket{Hash: []byte("hash-2"), OutletID: b.ID,
		CreatedAt: base, ExpiresAt: exp}))
	_, err = s.ConsumeOrderpayTicket(ctx(t), []byte("hash-2"), exp)
	wantErr(t, err, store.ErrNotFound)
	got, err = s.ConsumeOrderpayTicket(ctx(t), []byte("hash-2"), exp.Add(-time.Millisecond))
	ok(t, err)
	eq(t, "OutletID", got.OutletID, b.ID)

	// Housekeeping deletes expired tickets only.
	ok(t, s.CreateOrderpayTicket(ctx(t), &store.OrderpayTicket{Hash: []byte("hash-3"), OutletID: a.ID,
		CreatedAt: base, ExpiresAt: base.Add(time.Hour)}))
	ok(t, s.DeleteOrderpayTicketsExpiredBefore(ctx(t), exp.Add(time.Second)))
	_, err = s.ConsumeOrderpayTicket(ctx(t), []byte("hash-1"), base)
	wantErr(t, err, store.ErrNotFound) // deleted: unknown now
	got, err = s.ConsumeOrderpayTicket(ctx(t), []byte("hash-3"), base.Add(time.Minute))
	ok(t, err)
	eq(t, "OutletID", got.OutletID, a.ID)
}

func testOrderpayTicketRace(t *testing.T, s store.Store) {
	o := newOutlet("a", base)
	ok(t, s.CreateOrderpayOutlet(ctx(t), o))
	ok(t, s.CreateOrderpayTicket(ctx(t), &store.OrderpayTicket{Hash: []byte("race"), OutletID: o.ID,
		CreatedAt: base, ExpiresAt: base.Add(time.Minute)}))
	errs := race(50, func(int) error {
		_, err := s.ConsumeOrderpayTicket(ctx(t), []byte("race"), base.Add(time.Second))
		return err
	})
	oneWinner(t, errs, store.ErrAlreadyUsed)
}
