// Package storetest is the conformance suite every store.Store backend runs: every method, every
// sentinel error, ordering, time round trips, and the races that single use, refresh rotation,
// counters and key rotation must win exactly once. A backend's test calls
//
//	storetest.Run(t, func(t *testing.T) store.Store { … a fresh, empty store … })
//
// and passes only if it behaves exactly like the others.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// Run runs the conformance suite. open returns a fresh, empty, migrated store for each subtest;
// the suite closes it when the subtest ends (Close must be idempotent).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Clients", testClients},
		{"ClientAssertionKeys", testClientAssertionKeys},
		{"Users", testUsers},
		{"SigningKeys", testSigningKeys},
		{"SigningKeyRotationRace", testSigningKeyRotationRace},
		{"RefreshTokens", testRefreshTokens},
		{"RefreshRevocation", testRefreshRevocation},
		{"RefreshRotationRace", testRefreshRotationRace},
		{"Revocations", testRevocations},
		{"SingleUse", testSingleUse},
		{"SingleUseRace", testSingleUseRace},
		{"DoshiiVendors", testDoshiiVendors},
		{"DoshiiOrganisationsAndLocations", testDoshiiOrganisationsAndLocations},
		{"DoshiiOnlineAndDisabled", testDoshiiOnlineAndDisabled},
		{"DoshiiDelete", testDoshiiDelete},
		{"ChefDevices", testChefDevices},
		{"ChefDecisionRace", testChefDecisionRace},
		{"ChefPendingHousekeeping", testChefPendingHousekeeping},
		{"OrderpayOutlets", testOrderpayOutlets},
		{"OrderpayTickets", testOrderpayTickets},
		{"OrderpayTicketRace", testOrderpayTicketRace},
		{"Audit", testAudit},
		{"AuditRetention", testAuditRetention},
		{"Counters", testCounters},
		{"CounterRace", testCounterRace},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"Closed", testClosed},
		{"OutboxEnqueue", testOutboxEnqueue},
		{"OutboxOrder", testOutboxOrder},
		{"OutboxLease", testOutboxLease},
		{"OutboxComplete", testOutboxComplete},
		{"OutboxExpiry", testOutboxExpiry},
		{"OutboxCleanup", testOutboxCleanup},
		{"OutboxClaimRace", testOutboxClaimRace},
		{"OutboxEnqueueRace", testOutboxEnqueueRace},
		{"OutboxEnqueueAll", testOutboxEnqueueAll},
		{"OutboxCompleteRace", testOutboxCompleteRace},
		{"OutboxClosed", testOutboxClosed},
		{"Presence", testPresence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

// base has sub-millisecond digits on purpose: the store keeps milliseconds, and every comparison
// below goes through at() so the truncation is part of the contract being tested.
var base = time.Date(2031, 3, 4, 5, 6, 7, 891_234_567, time.UTC)

// at returns base+d as the store gives it back: UTC, truncated to the millisecond.
func at(d time.Duration) time.Time { return base.Add(d).Truncate(time.Millisecond) }

func ptr[T any](v T) *T { return &v }

func ctx(t *testing.T) context.Context { return t.Context() }

func ok(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func wantErr(t *testing.T, err, sentinel error) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %v", err, sentinel)
	}
}

func eqTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("%s = %v, want %v (UTC)", what, got, want)
	}
}

func eqTimePtr(t *testing.T, what string, got, want *time.Time) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		t.Errorf("%s = %v, want %v", what, got, want)
	default:
		eqTime(t, what, *got, *want)
	}
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func eqBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if string(got) != string(want) || (got == nil) != (want == nil) {
		t.Errorf("%s = %x (nil %v), want %x (nil %v)", what, got, got == nil, want, want == nil)
	}
}

func eqList(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) || (got == nil) != (want == nil) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

// race runs fn(i) on n goroutines released at once and returns their errors by i.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			errs[i] = fn(i)
		}()
	}
	start.Done()
	done.Wait()
	return errs
}

// oneWinner checks exactly one error is nil and every other one wraps loser; it returns the winner.
func oneWinner(t *testing.T, errs []error, loser error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("goroutines %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, loser):
			t.Fatalf("goroutine %d: error %v, want %v", i, err, loser)
		}
	}
	if winner < 0 {
		t.Fatalf("no goroutine won")
	}
	return winner
}

// ---------------------------------------------------------------------------------------------

func newClient(n int) *store.Client {
	return &store.Client{
		ID:           fmt.Sprintf("cl_%03d", n),
		Name:         fmt.Sprintf("client %d", n),
		ClientIDHash: []byte(fmt.Sprintf("hash-of-client-id-%03d", n)),
		ClientIDHint: fmt.Sprintf("pg_ck_…%03d", n),
		SecretHash:   []byte(fmt.Sprintf("hash-of-secret-%03d", n)),
		GrantTypes:   []string{"client_credentials", "refresh_token"},
		Scopes:       []string{"orders:read", "orders:write"},
		Audiences:    []string{"https://pos.example"},
		CreatedAt:    base.Add(time.Duration(n) * time.Second),
		UpdatedAt:    base.Add(time.Duration(n) * time.Second),
	}
}

func checkClient(t *testing.T, got, want *store.Client) {
	t.Helper()
	eq(t, "ID", got.ID, want.ID)
	eq(t, "Name", got.Name, want.Name)
	eqBytes(t, "ClientIDHash", got.ClientIDHash, want.ClientIDHash)
	eq(t, "ClientIDHint", got.ClientIDHint, want.ClientIDHint)
	eqBytes(t, "SecretHash", got.SecretHash, want.SecretHash)
	eqList(t, "GrantTypes", got.GrantTypes, want.GrantTypes)
	eqList(t, "Scopes", got.Scopes, want.Scopes)
	eqList(t, "Audiences", got.Audiences, want.Audiences)
	eq(t, "APIKey", got.APIKey, want.APIKey)
	eq(t, "Disabled", got.Disabled, want.Disabled)
	eqTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt.Truncate(time.Millisecond))
	eqTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt.Truncate(time.Millisecond))
	if len(got.AssertionKeys) != len(want.AssertionKeys) {
		t.Fatalf("AssertionKeys: %d, want %d", len(got.AssertionKeys), len(want.AssertionKeys))
	}
	for i := range want.AssertionKeys {
		g, w := got.AssertionKeys[i], want.AssertionKeys[i]
		eq(t, "AssertionKeys.ID", g.ID, w.ID)
		eqBytes(t, "AssertionKeys.Sealed", g.Sealed, w.Sealed)
		eqTime(t, "AssertionKeys.CreatedAt", g.CreatedAt, w.CreatedAt.Truncate(time.Millisecond))
		var wantNA *time.Time
		if w.NotAfter != nil {
			wantNA = ptr(w.NotAfter.Truncate(time.Millisecond))
		}
		eqTimePtr(t, "AssertionKeys.NotAfter", g.NotAfter, wantNA)
	}
}

func testClients(t *testing.T, s store.Store) {
	c1, c2, c3 := newClient(1), newClient(2), newClient(3)
	c2.SecretHash = nil // a public client
	c2.APIKey = true
	c2.Scopes, c2.Audiences = nil, nil
	c3.Disabled = true
	// Created out of order: ListClients orders by creation time, not insertion.
	for _, c := range []*store.Client{c3, c1, c2} {
		ok(t, s.CreateClient(ctx(t), c))
	}

	for _, c := range []*store.Client{c1, c2, c3} {
		got, err := s.GetClient(ctx(t), c.ID)
		ok(t, err)
		checkClient(t, got, c)
		got, err = s.GetClientByIDHash(ctx(t), c.ClientIDHash)
		ok(t, err)
		checkClient(t, got, c)
	}

	list, err := s.ListClients(ctx(t))
	ok(t, err)
	if len(list) != 3 {
		t.Fatalf("ListClients: %d clients, want 3", len(list))
	}
	for i, want := range []*store.Client{c1, c2, c3} {
		checkClient(t, list[i], want)
	}

	dupID := newClient(4)
	dupID.ID = c1.ID
	wantErr(t, s.CreateClient(ctx(t), dupID), store.ErrConflict)
	dupHash := newClient(5)
	dupHash.ClientIDHash = c2.ClientIDHash
	wantErr(t, s.CreateClient(ctx(t), dupHash), store.ErrConflict)

	_, err = s.GetClient(ctx(t), "cl_missing")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetClientByIDHash(ctx(t), []byte("no such hash"))
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetClientByIDHash(ctx(t), nil)
	wantErr(t, err, store.ErrNotFound)

	// UpdateClient replaces exactly the documented fields.
	upd := *c1
	upd.Name = "renamed"
	upd.SecretHash = []byte("new secret hash")
	upd.GrantTypes = []string{"password"}
	upd.Scopes = nil
	upd.Audiences = []string{"a", "b"}
	upd.Disabled = true
	upd.UpdatedAt = base.Add(time.Hour)
	upd.ClientIDHint = "ignored"         // not an updatable field
	upd.APIKey = true                    // not an updatable field
	upd.CreatedAt = base.Add(-time.Hour) // not an updatable field
	ok(t, s.UpdateClient(ctx(t), &upd))
	got, err := s.GetClient(ctx(t), c1.ID)
	ok(t, err)
	want := upd
	want.ClientIDHint, want.APIKey, want.CreatedAt = c1.ClientIDHint, c1.APIKey, c1.CreatedAt
	checkClient(t, got, &want)

	missing := newClient(9)
	wantErr(t, s.UpdateClient(ctx(t), missing), store.ErrNotFound)
}

func testClientAssertionKeys(t *testing.T, s store.Store) {
	c := newClient(1)
	c.APIKey = true
	c.AssertionKeys = []store.AssertionKey{ // newest first
		{ID: "ak_b", Sealed: []byte("sealed b"), CreatedAt: base.Add(2 * time.Minute)},
		{ID: "ak_a", Sealed: []byte("sealed a"), CreatedAt: base.Add(time.Minute), NotAfter: ptr(base.Add(time.Hour))},
	}
	ok(t, s.CreateClient(ctx(t), c))
	got, err := s.GetClient(ctx(t), c.ID)
	ok(t, err)
	checkClient(t, got, c)

	// A new key: older keys without an end, or ending later than the overlap, end at the overlap;
	// keys already ending sooner keep their end.
	overlap := base.Add(30 * time.Minute)
	k := store.AssertionKey{ID: "ak_c", Sealed: []byte("sealed c"), CreatedAt: base.Add(3 * time.Minute)}
	ok(t, s.AddAssertionKey(ctx(t), c.ID, k, overlap))
	c.AssertionKeys = []store.AssertionKey{k,
		{ID: "ak_b", Sealed: []byte("sealed b"), CreatedAt: base.Add(2 * time.Minute), NotAfter: ptr(overlap)},
		{ID: "ak_a", Sealed: []byte("sealed a"), CreatedAt: base.Add(time.Minute), NotAfter: ptr(overlap)},
	}
	got, err = s.GetClientByIDHash(ctx(t), c.ClientIDHash)
	ok(t, err)
	checkClient(t, got, c)

	later := base.Add(2 * time.Hour)
	k2 := store.AssertionKey{ID: "ak_d", Sealed: []byte("sealed d"), CreatedAt: base.Add(4 * time.Minute)}
	ok(t, s.AddAssertionKey(ctx(t), c.ID, k2, later))
	c.AssertionKeys = append([]store.AssertionKey{k2}, c.AssertionKeys...)
	c.AssertionKeys[1].NotAfter = ptr(later) // ak_c had none
	list, err := s.ListClients(ctx(t))
	ok(t, err)
	if len(list) != 1 {
		t.Fatalf("ListClients: %d, want 1", len(list))
	}
	checkClient(t, list[0], c)

	wantErr(t, s.AddAssertionKey(ctx(t), "cl_missing", store.AssertionKey{ID: "ak_x", Sealed: []byte("x"), CreatedAt: base}, later), store.ErrNotFound)
	wantErr(t, s.AddAssertionKey(ctx(t), c.ID, store.AssertionKey{ID: "ak_d", Sealed: []byte("x"), CreatedAt: base}, later), store.ErrConflict)
	// The failed addition changed nothing (it ran in one transaction).
	got, err = s.GetClient(ctx(t), c.ID)
	ok(t, err)
	checkClient(t, got, c)
}

// ---------------------------------------------------------------------------------------------

func testUsers(t *testing.T, s store.Store) {
	u1 := &store.User{ID: "us_1", Username: "alice", PasswordHash: "$argon2id$v=19$m=65536,t=1,p=4$c2FsdA$aGFzaA", CreatedAt: base.Add(2 * time.Second), UpdatedAt: base.Add(2 * time.Second)}
	u2 := &store.User{ID: "us_2", Username: "bob", PasswordHash: "$argon2id$bob", Disabled: true, CreatedAt: base.Add(time.Second), UpdatedAt: base.Add(3 * time.Second)}
	ok(t, s.CreateUser(ctx(t), u1))
	ok(t, s.CreateUser(ctx(t), u2))
	wantErr(t, s.CreateUser(ctx(t), &store.User{ID: "us_3", Username: "alice", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}), store.ErrConflict)
	wantErr(t, s.CreateUser(ctx(t), &store.User{ID: "us_1", Username: "carol", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}), store.ErrConflict)

	check := func(got, want *store.User) {
		t.Helper()
		eq(t, "ID", got.ID, want.ID)
		eq(t, "Username", got.Username, want.Username)
		eq(t, "PasswordHash", got.PasswordHash, want.PasswordHash)
		eq(t, "Disabled", got.Disabled, want.Disabled)
		eqTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt.Truncate(time.Millisecond))
		eqTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt.Truncate(time.Millisecond))
	}
	got, err := s.GetUser(ctx(t), "us_1")
	ok(t, err)
	check(got, u1)
	got, err = s.GetUserByUsername(ctx(t), "bob")
	ok(t, err)
	check(got, u2)
	_, err = s.GetUserByUsername(ctx(t), "Alice") // compared exactly: callers normalise
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetUser(ctx(t), "us_missing")
	wantErr(t, err, store.ErrNotFound)

	list, err := s.ListUsers(ctx(t))
	ok(t, err)
	if len(list) != 2 {
		t.Fatalf("ListUsers: %d, want 2", len(list))
	}
	check(list[0], u2) // oldest first
	check(list[1], u1)

	ok(t, s.SetUserPassword(ctx(t), "us_1", "$argon2id$new", base.Add(time.Hour)))
	ok(t, s.SetUserDisabled(ctx(t), "us_2", false, base.Add(2*time.Hour)))
	ok(t, s.SetUserDisabled(ctx(t), "us_1", true, base.Add(3*time.Hour)))
	u1.PasswordHash, u1.Disabled, u1.UpdatedAt = "$argon2id$new", true, base.Add(3*time.Hour)
	u2.Disabled, u2.UpdatedAt = false, base.Add(2*time.Hour)
	got, err = s.GetUser(ctx(t), "us_1")
	ok(t, err)
	check(got, u1)
	got, err = s.GetUser(ctx(t), "us_2")
	ok(t, err)
	check(got, u2)
	wantErr(t, s.SetUserPassword(ctx(t), "us_missing", "x", base), store.ErrNotFound)
	wantErr(t, s.SetUserDisabled(ctx(t), "us_missing", true, base), store.ErrNotFound)
}

// ---------------------------------------------------------------------------------------------

func newKey(kid string, state store.KeyState, created time.Time) *store.SigningKey {
	return &store.SigningKey{KID: kid, Alg: "EdDSA", State: state, Private: []byte("sealed " + kid),
		Public: []byte("public " + kid), CreatedAt: created}
}

func keysByKID(t *testing.T, s store.Store) map[string]*store.SigningKey {
	t.Helper()
	l, err := s.ListSigningKeys(ctx(t))
	ok(t, err)
	m := map[string]*store.SigningKey{}
	for _, k := range l {
		m[k.KID] = k
	}
	return m
}

func testSigningKeys(t *testing.T, s store.Store) {
	active := newKey("k1", store.KeyActive, base)
	active.ActivateAt = ptr(base)
	next := newKey("k2", store.KeyNext, base.Add(time.Second))
	next.Alg = "ES256"
	next.ActivateAt = ptr(base.Add(24 * time.Hour))
	ok(t, s.CreateSigningKey(ctx(t), next)) // insertion order differs from creation order
	ok(t, s.CreateSigningKey(ctx(t), active))
	wantErr(t, s.CreateSigningKey(ctx(t), newKey("k1", store.KeyNext, base)), store.ErrConflict)
	// At most one active key.
	wantErr(t, s.CreateSigningKey(ctx(t), newKey("k9", store.KeyActive, base)), store.ErrConflict)
	// At most one next key, so replicas loading an empty keyring at once converge.
	wantErr(t, s.CreateSigningKey(ctx(t), newKey("k8", store.KeyNext, base)), store.ErrConflict)
	retired := newKey("k0", store.KeyRetired, base.Add(-time.Hour)) // retired keys: any number
	retired.RetiredAt, retired.ExpiresAt = ptr(base), ptr(base.Add(10*time.Hour))
	ok(t, s.CreateSigningKey(ctx(t), retired))

	l, err := s.ListSigningKeys(ctx(t))
	ok(t, err)
	var kids []string
	for _, k := range l {
		kids = append(kids, k.KID)
	}
	eqList(t, "ListSigningKeys (oldest first)", kids, []string{"k0", "k1", "k2"})
	eqTimePtr(t, "k0 RetiredAt", l[0].RetiredAt, ptr(at(0)))
	eqTimePtr(t, "k0 ExpiresAt", l[0].ExpiresAt, ptr(at(10*time.Hour)))
	g := l[2]
	eq(t, "Alg", g.Alg, "ES256")
	eq(t, "State", g.State, store.KeyNext)
	eqBytes(t, "Private", g.Private, []byte("sealed k2"))
	eqBytes(t, "Public", g.Public, []byte("public k2"))
	eqTime(t, "CreatedAt", g.CreatedAt, at(time.Second))
	eqTimePtr(t, "ActivateAt", g.ActivateAt, ptr(at(24*time.Hour)))
	eqTimePtr(t, "RetiredAt", g.RetiredAt, nil)
	eqTimePtr(t, "ExpiresAt", g.ExpiresAt, nil)

	// A rotation that expects the wrong active key changes nothing.
	rot := base.Add(24 * time.Hour)
	wantErr(t, s.RotateSigningKeys(ctx(t), "k2", "k1", rot, rot.Add(time.Hour), nil), store.ErrConflict)
	// One whose next key is not "next" changes nothing either (the whole transaction rolls back).
	wantErr(t, s.RotateSigningKeys(ctx(t), "k1", "k_missing", rot, rot.Add(time.Hour), newKey("k3", store.KeyNext, rot)), store.ErrConflict)
	m := keysByKID(t, s)
	if len(m) != 3 || m["k1"].State != store.KeyActive || m["k2"].State != store.KeyNext {
		t.Fatalf("failed rotations changed the keyring: %v", m)
	}

	ok(t, s.RotateSigningKeys(ctx(t), "k1", "k2", rot, rot.Add(time.Hour), newKey("k3", store.KeyNext, rot)))
	m = keysByKID(t, s)
	eq(t, "k1 state", m["k1"].State, store.KeyRetired)
	eqTimePtr(t, "k1 RetiredAt", m["k1"].RetiredAt, ptr(at(24*time.Hour)))
	eqTimePtr(t, "k1 ExpiresAt", m["k1"].ExpiresAt, ptr(at(25*time.Hour)))
	eq(t, "k2 state", m["k2"].State, store.KeyActive)
	eqTimePtr(t, "k2 ActivateAt", m["k2"].ActivateAt, ptr(at(24*time.Hour)))
	eq(t, "k3 state", m["k3"].State, store.KeyNext)
	// Rotating again with the old expectation loses.
	wantErr(t, s.RotateSigningKeys(ctx(t), "k1", "k3", rot, rot.Add(time.Hour), nil), store.ErrConflict)
	// A rotation without a new next key.
	rot2 := base.Add(48 * time.Hour)
	ok(t, s.RotateSigningKeys(ctx(t), "k2", "k3", rot2, rot2.Add(time.Hour), nil))
	m = keysByKID(t, s)
	eq(t, "k2 state", m["k2"].State, store.KeyRetired)
	eq(t, "k3 state", m["k3"].State, store.KeyActive)
	eq(t, "keys", len(m), 4)

	// Deletion drops retired keys expired before t, never the active one.
	ok(t, s.DeleteSigningKeysExpiredBefore(ctx(t), base.Add(25*time.Hour))) // k1 expires exactly then: kept
	eq(t, "keys after delete at k1's expiry", len(keysByKID(t, s)), 3)      // k0 (expired at 10h) went
	ok(t, s.DeleteSigningKeysExpiredBefore(ctx(t), base.Add(30*time.Hour)))
	m = keysByKID(t, s)
	if _, found := m["k1"]; found || len(m) != 2 || m["k0"] != nil {
		t.Fatalf("after delete: %v, want k2 and k3", m)
	}
	ok(t, s.DeleteSigningKeysExpiredBefore(ctx(t), base.Add(1000*time.Hour)))
	m = keysByKID(t, s)
	if len(m) != 1 || m["k3"] == nil || m["k3"].State != store.KeyActive {
		t.Fatalf("after delete: %v, want only the active k3", m)
	}
}

func testSigningKeyRotationRace(t *testing.T, s store.Store) {
	ok(t, s.CreateSigningKey(ctx(t), newKey("active", store.KeyActive, base)))
	ok(t, s.CreateSigningKey(ctx(t), newKey("next", store.KeyNext, base)))
	const n = 20
	rot := base.Add(time.Hour)
	errs := race(n, func(i int) error {
		return s.RotateSigningKeys(ctx(t), "active", "next", rot, rot.Add(time.Hour), newKey(fmt.Sprintf("new%02d", i), store.KeyNext, rot))
	})
	w := oneWinner(t, errs, store.ErrConflict)
	m := keysByKID(t, s)
	if len(m) != 3 {
		t.Fatalf("after the race %d keys, want 3 (only the winner's new key)", len(m))
	}
	eq(t, "old active", m["active"].State, store.KeyRetired)
	eq(t, "new active", m["next"].State, store.KeyActive)
	eq(t, "winner's next", m[fmt.Sprintf("new%02d", w)].State, store.KeyNext)
}

// ---------------------------------------------------------------------------------------------

func newFamily(id, user string, created time.Time) *store.RefreshFamily {
	return &store.RefreshFamily{ID: id, ClientID: "cl_1", UserID: user, Audience: "https://api.example",
		Scope: "rentals offline_access", CreatedAt: created, AbsoluteExpiresAt: created.Add(24 * time.Hour)}
}

func newRefresh(hash string, created time.Time) *store.RefreshToken {
	return &store.RefreshToken{Hash: []byte(hash), CreatedAt: created, IdleExpiresAt: created.Add(time.Hour)}
}

func testRefreshTokens(t *testing.T, s store.Store) {
	f := newFamily("sid_1", "us_1", base)
	first := newRefresh("h1", base)
	ok(t, s.CreateRefreshFamily(ctx(t), f, first))
	wantErr(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_1", "us_2", base), newRefresh("other", base)), store.ErrConflict)
	_, _, err := s.GetRefreshToken(ctx(t), []byte("other")) // the failed creation left nothing behind
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_2", "us_1", base), newRefresh("h1", base)), store.ErrConflict)
	_, err = s.GetRefreshFamily(ctx(t), "sid_2")
	wantErr(t, err, store.ErrNotFound)

	gf, err := s.GetRefreshFamily(ctx(t), "sid_1")
	ok(t, err)
	eq(t, "ClientID", gf.ClientID, "cl_1")
	eq(t, "UserID", gf.UserID, "us_1")
	eq(t, "Audience", gf.Audience, "https://api.example")
	eq(t, "Scope", gf.Scope, "rentals offline_access")
	eqTime(t, "CreatedAt", gf.CreatedAt, at(0))
	eqTime(t, "AbsoluteExpiresAt", gf.AbsoluteExpiresAt, at(24*time.Hour))
	eqTimePtr(t, "RevokedAt", gf.RevokedAt, nil)
	_, err = s.GetRefreshFamily(ctx(t), "sid_missing")
	wantErr(t, err, store.ErrNotFound)

	tok, fam, err := s.GetRefreshToken(ctx(t), []byte("h1"))
	ok(t, err)
	eq(t, "family", fam.ID, "sid_1")
	eq(t, "FamilyID", tok.FamilyID, "sid_1")
	eqBytes(t, "Hash", tok.Hash, []byte("h1"))
	eqTime(t, "CreatedAt", tok.CreatedAt, at(0))
	eqTime(t, "IdleExpiresAt", tok.IdleExpiresAt, at(time.Hour))
	eqTimePtr(t, "RotatedAt", tok.RotatedAt, nil)
	eqBytes(t, "SuccessorHash", tok.SuccessorHash, nil)
	eqBytes(t, "SuccessorSealed", tok.SuccessorSealed, nil)

	// Rotation: the old token records its successor, the successor joins the family.
	next := newRefresh("h2", base.Add(time.Minute))
	ok(t, s.RotateRefreshToken(ctx(t), []byte("h1"), base.Add(time.Minute), next, []byte("sealed h2")))
	tok, _, err = s.GetRefreshToken(ctx(t), []byte("h1"))
	ok(t, err)
	eqTimePtr(t, "RotatedAt", tok.RotatedAt, ptr(at(time.Minute)))
	eqBytes(t, "SuccessorHash", tok.SuccessorHash, []byte("h2"))
	eqBytes(t, "SuccessorSealed", tok.SuccessorSealed, []byte("sealed h2"))
	tok, fam, err = s.GetRefreshToken(ctx(t), []byte("h2"))
	ok(t, err)
	eq(t, "successor family", fam.ID, "sid_1")
	eq(t, "successor FamilyID", tok.FamilyID, "sid_1")
	eqTimePtr(t, "successor RotatedAt", tok.RotatedAt, nil)
	eqTime(t, "successor IdleExpiresAt", tok.IdleExpiresAt, at(time.Minute+time.Hour))

	// Reuse of a rotated token loses and changes nothing.
	wantErr(t, s.RotateRefreshToken(ctx(t), []byte("h1"), base.Add(2*time.Minute), newRefresh("h3", base), nil), store.ErrAlreadyUsed)
	_, _, err = s.GetRefreshToken(ctx(t), []byte("h3"))
	wantErr(t, err, store.ErrNotFound)
	tok, _, err = s.GetRefreshToken(ctx(t), []byte("h1"))
	ok(t, err)
	eqTimePtr(t, "RotatedAt after reuse", tok.RotatedAt, ptr(at(time.Minute)))
	eqBytes(t, "SuccessorHash after reuse", tok.SuccessorHash, []byte("h2"))

	wantErr(t, s.RotateRefreshToken(ctx(t), []byte("unknown"), base, newRefresh("h4", base), nil), store.ErrNotFound)
	// A successor that names another family is refused, and the old token stays unrotated.
	bad := newRefresh("h5", base)
	bad.FamilyID = "sid_other"
	if err := s.RotateRefreshToken(ctx(t), []byte("h2"), base, bad, nil); err == nil {
		t.Fatal("rotation into another family succeeded")
	}
	tok, _, err = s.GetRefreshToken(ctx(t), []byte("h2"))
	ok(t, err)
	eqTimePtr(t, "RotatedAt after refused rotation", tok.RotatedAt, nil)
	// Grace 0: no sealed successor is kept.
	ok(t, s.RotateRefreshToken(ctx(t), []byte("h2"), base.Add(3*time.Minute), newRefresh("h6", base.Add(3*time.Minute)), nil))
	tok, _, err = s.GetRefreshToken(ctx(t), []byte("h2"))
	ok(t, err)
	eqBytes(t, "SuccessorSealed (grace 0)", tok.SuccessorSealed, nil)

	// Expiry: whole families go, with their tokens.
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_late", "us_1", base.Add(time.Hour)), newRefresh("late", base.Add(time.Hour))))
	ok(t, s.DeleteRefreshExpiredBefore(ctx(t), base.Add(24*time.Hour))) // sid_1 expires exactly then: kept
	_, err = s.GetRefreshFamily(ctx(t), "sid_1")
	ok(t, err)
	ok(t, s.DeleteRefreshExpiredBefore(ctx(t), base.Add(24*time.Hour+time.Minute)))
	_, err = s.GetRefreshFamily(ctx(t), "sid_1")
	wantErr(t, err, store.ErrNotFound)
	for _, h := range []string{"h1", "h2", "h6"} {
		_, _, err = s.GetRefreshToken(ctx(t), []byte(h))
		wantErr(t, err, store.ErrNotFound)
	}
	_, _, err = s.GetRefreshToken(ctx(t), []byte("late"))
	ok(t, err)
}

func testRefreshRevocation(t *testing.T, s store.Store) {
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_a", "us_1", base), newRefresh("a", base)))
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_b", "us_1", base), newRefresh("b", base)))
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_c", "us_1", base.Add(-48*time.Hour)), newRefresh("c", base))) // expired
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_d", "us_2", base), newRefresh("d", base)))
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_e", "us_1", base), newRefresh("e", base)))

	ok(t, s.RevokeRefreshFamily(ctx(t), "sid_e", base.Add(time.Minute), "logout"))
	ok(t, s.RevokeRefreshFamily(ctx(t), "sid_e", base.Add(2*time.Minute), "again")) // idempotent, keeps the first
	f, err := s.GetRefreshFamily(ctx(t), "sid_e")
	ok(t, err)
	eqTimePtr(t, "RevokedAt", f.RevokedAt, ptr(at(time.Minute)))
	eq(t, "RevokeReason", f.RevokeReason, "logout")
	_, f, err = s.GetRefreshToken(ctx(t), []byte("e"))
	ok(t, err)
	eqTimePtr(t, "RevokedAt via token", f.RevokedAt, ptr(at(time.Minute)))
	wantErr(t, s.RevokeRefreshFamily(ctx(t), "sid_missing", base, "x"), store.ErrNotFound)

	ids, err := s.RevokeUserRefreshFamilies(ctx(t), "us_1", base.Add(time.Hour), "password changed")
	ok(t, err)
	eqList(t, "revoked families", ids, []string{"sid_a", "sid_b"}) // not the expired c, the revoked e, or us_2's d
	for _, id := range []string{"sid_a", "sid_b"} {
		f, err := s.GetRefreshFamily(ctx(t), id)
		ok(t, err)
		eqTimePtr(t, id+" RevokedAt", f.RevokedAt, ptr(at(time.Hour)))
		eq(t, id+" RevokeReason", f.RevokeReason, "password changed")
	}
	for id, want := range map[string]*time.Time{"sid_c": nil, "sid_d": nil, "sid_e": ptr(at(time.Minute))} {
		f, err := s.GetRefreshFamily(ctx(t), id)
		ok(t, err)
		eqTimePtr(t, id+" RevokedAt", f.RevokedAt, want)
	}
	ids, err = s.RevokeUserRefreshFamilies(ctx(t), "us_1", base.Add(2*time.Hour), "again")
	ok(t, err)
	eqList(t, "second revocation", ids, nil)
	ids, err = s.RevokeUserRefreshFamilies(ctx(t), "us_nobody", base, "x")
	ok(t, err)
	eqList(t, "unknown user", ids, nil)
}

func testRefreshRotationRace(t *testing.T, s store.Store) {
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_1", "us_1", base), newRefresh("old", base)))
	const n = 50
	errs := race(n, func(i int) error {
		return s.RotateRefreshToken(ctx(t), []byte("old"), base.Add(time.Second), newRefresh(fmt.Sprintf("next%02d", i), base.Add(time.Second)), nil)
	})
	w := oneWinner(t, errs, store.ErrAlreadyUsed)
	old, _, err := s.GetRefreshToken(ctx(t), []byte("old"))
	ok(t, err)
	eqBytes(t, "successor", old.SuccessorHash, []byte(fmt.Sprintf("next%02d", w)))
	for i := range n {
		_, _, err := s.GetRefreshToken(ctx(t), []byte(fmt.Sprintf("next%02d", i)))
		if i == w {
			ok(t, err)
		} else {
			wantErr(t, err, store.ErrNotFound)
		}
	}
}

// ---------------------------------------------------------------------------------------------

func testRevocations(t *testing.T, s store.Store) {
	r1 := store.Revocation{Kind: "jti", Value: "j1", RevokedAt: base.Add(2 * time.Second), ExpiresAt: base.Add(time.Hour), Reason: "admin"}
	r2 := store.Revocation{Kind: "sid", Value: "s1", RevokedAt: base.Add(time.Second), ExpiresAt: base.Add(2 * time.Hour), Reason: "logout"}
	r3 := store.Revocation{Kind: "jti", Value: "j2", RevokedAt: base.Add(3 * time.Second), ExpiresAt: base.Add(time.Minute), Reason: "short"}
	for _, r := range []store.Revocation{r1, r2, r3} {
		ok(t, s.AddRevocation(ctx(t), r))
	}
	// Revoking again keeps the first entry.
	ok(t, s.AddRevocation(ctx(t), store.Revocation{Kind: "jti", Value: "j1", RevokedAt: base.Add(time.Hour), ExpiresAt: base.Add(9 * time.Hour), Reason: "again"}))
	if err := s.AddRevocation(ctx(t), store.Revocation{Kind: "token", Value: "x", RevokedAt: base, ExpiresAt: base.Add(time.Hour)}); err == nil {
		t.Error("AddRevocation accepted kind \"token\"")
	}

	for _, c := range []struct {
		kind, value string
		want        bool
	}{{"jti", "j1", true}, {"sid", "s1", true}, {"jti", "j2", true}, {"sid", "j1", false}, {"jti", "s1", false}, {"jti", "nope", false}} {
		got, err := s.IsRevoked(ctx(t), c.kind, c.value)
		ok(t, err)
		eq(t, "IsRevoked("+c.kind+","+c.value+")", got, c.want)
	}

	check := func(since, now time.Time, want ...store.Revocation) {
		t.Helper()
		got, err := s.ListRevocationsSince(ctx(t), since, now)
		ok(t, err)
		if len(got) != len(want) {
			t.Fatalf("ListRevocationsSince(%v, %v) = %d entries %v, want %d", since, now, len(got), got, len(want))
		}
		for i := range want {
			eq(t, "Kind", got[i].Kind, want[i].Kind)
			eq(t, "Value", got[i].Value, want[i].Value)
			eq(t, "Reason", got[i].Reason, want[i].Reason)
			eqTime(t, "RevokedAt", got[i].RevokedAt, want[i].RevokedAt.Truncate(time.Millisecond))
			eqTime(t, "ExpiresAt", got[i].ExpiresAt, want[i].ExpiresAt.Truncate(time.Millisecond))
		}
	}
	check(base, base, r2, r1, r3)              // in revocation order; r1 kept its first entry
	check(at(2*time.Second), base, r1, r3)     // since is inclusive
	check(base, base.Add(time.Minute), r2, r1) // r3 expired exactly at now: excluded
	check(base, base.Add(90*time.Minute), r2)
	check(base.Add(time.Hour), base)

	ok(t, s.DeleteRevocationsExpiredBefore(ctx(t), base.Add(time.Hour))) // r1 expires exactly then: kept
	got, err := s.IsRevoked(ctx(t), "jti", "j1")
	ok(t, err)
	eq(t, "j1 kept at its expiry", got, true)
	got, err = s.IsRevoked(ctx(t), "jti", "j2")
	ok(t, err)
	eq(t, "j2 deleted", got, false)
	ok(t, s.DeleteRevocationsExpiredBefore(ctx(t), base.Add(3*time.Hour)))
	check(time.Time{}, time.Time{})
}

// ---------------------------------------------------------------------------------------------

func testSingleUse(t *testing.T, s store.Store) {
	exp := base.Add(time.Minute)
	ok(t, s.UseOnce(ctx(t), "jackpot:jti:1", base, exp))
	wantErr(t, s.UseOnce(ctx(t), "jackpot:jti:1", base, exp), store.ErrAlreadyUsed)
	wantErr(t, s.UseOnce(ctx(t), "jackpot:jti:1", base.Add(59*time.Second), exp.Add(time.Hour)), store.ErrAlreadyUsed)
	ok(t, s.UseOnce(ctx(t), "jackpot:jti:2", base, exp)) // other keys are independent
	ok(t, s.UseOnce(ctx(t), "JACKPOT:JTI:1", base, exp)) // keys are case-sensitive

	// At its expiry the record is taken over, and the new record holds until its own expiry.
	ok(t, s.UseOnce(ctx(t), "jackpot:jti:1", exp, exp.Add(time.Minute)))
	wantErr(t, s.UseOnce(ctx(t), "jackpot:jti:1", exp.Add(30*time.Second), exp.Add(2*time.Minute)), store.ErrAlreadyUsed)

	if err := s.UseOnce(ctx(t), "bad", base, base); err == nil || errors.Is(err, store.ErrAlreadyUsed) {
		t.Errorf("UseOnce with expiry == use time: %v, want a plain error", err)
	}

	// Deleting expired records frees their keys; live ones stay used.
	ok(t, s.UseOnce(ctx(t), "long", base, base.Add(time.Hour)))
	ok(t, s.DeleteSingleUseExpiredBefore(ctx(t), exp.Add(time.Minute+time.Second)))
	ok(t, s.UseOnce(ctx(t), "jackpot:jti:2", base, exp)) // deleted, so new again
	wantErr(t, s.UseOnce(ctx(t), "long", base, base.Add(time.Hour)), store.ErrAlreadyUsed)

	// A released claim can be taken again (once); releasing touches no other key, and releasing
	// an unknown or already released key is not an error.
	ok(t, s.UseOnce(ctx(t), "consume:j1", base, base.Add(time.Hour)))
	ok(t, s.UseOnce(ctx(t), "consume:j2", base, base.Add(time.Hour)))
	ok(t, s.ReleaseOnce(ctx(t), "consume:j1"))
	ok(t, s.ReleaseOnce(ctx(t), "consume:j1"))
	ok(t, s.ReleaseOnce(ctx(t), "consume:unknown"))
	ok(t, s.UseOnce(ctx(t), "consume:j1", base.Add(time.Second), base.Add(time.Hour)))
	wantErr(t, s.UseOnce(ctx(t), "consume:j1", base.Add(time.Second), base.Add(time.Hour)), store.ErrAlreadyUsed)
	wantErr(t, s.UseOnce(ctx(t), "consume:j2", base, base.Add(time.Hour)), store.ErrAlreadyUsed)
	ok(t, s.UseOnce(ctx(t), "CONSUME:J2", base, base.Add(time.Hour))) // case-sensitive here too
}

func testSingleUseRace(t *testing.T, s store.Store) {
	const n = 50
	for round, key := range []string{"fresh", "expired", "released"} {
		switch key {
		case "expired": // the takeover of an expired record is raced too
			ok(t, s.UseOnce(ctx(t), key, base.Add(-time.Hour), base.Add(-time.Minute)))
		case "released": // and the new claim of a released one
			ok(t, s.UseOnce(ctx(t), key, base, base.Add(time.Hour)))
			ok(t, s.ReleaseOnce(ctx(t), key))
		}
		errs := race(n, func(int) error { return s.UseOnce(ctx(t), key, base, base.Add(time.Minute)) })
		oneWinner(t, errs, store.ErrAlreadyUsed)
		_ = round
	}
}

// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------

func testAudit(t *testing.T, s store.Store) {
	l, err := s.ListAudit(ctx(t), 10)
	ok(t, err)
	eq(t, "empty audit", len(l), 0)
	var events []*store.AuditEvent
	for i := range 5 {
		e := &store.AuditEvent{At: base.Add(time.Duration(i) * time.Second), Actor: "admin", Action: fmt.Sprintf("client.create.%d", i),
			Target: "cl_1", Address: "192.0.2.1", Outcome: "ok", Detail: "name=x"}
		ok(t, s.AppendAudit(ctx(t), e))
		if i > 0 && e.ID <= events[i-1].ID {
			t.Fatalf("audit id %d not after %d", e.ID, events[i-1].ID)
		}
		events = append(events, e)
	}
	// Same timestamp as the last one: newest is still the one appended last.
	tie := &store.AuditEvent{At: base.Add(4 * time.Second), Actor: "anonymous", Action: "login.failed", Outcome: "denied"}
	ok(t, s.AppendAudit(ctx(t), tie))
	events = append(events, tie)

	l, err = s.ListAudit(ctx(t), 3)
	ok(t, err)
	if len(l) != 3 {
		t.Fatalf("ListAudit(3): %d events", len(l))
	}
	for i, g := range l {
		w := events[len(events)-1-i]
		eq(t, "ID", g.ID, w.ID)
		eqTime(t, "At", g.At, w.At.Truncate(time.Millisecond))
		eq(t, "Actor", g.Actor, w.Actor)
		eq(t, "Action", g.Action, w.Action)
		eq(t, "Target", g.Target, w.Target)
		eq(t, "Address", g.Address, w.Address)
		eq(t, "Outcome", g.Outcome, w.Outcome)
		eq(t, "Detail", g.Detail, w.Detail)
	}
	l, err = s.ListAudit(ctx(t), 0) // default limit
	ok(t, err)
	eq(t, "ListAudit(0)", len(l), len(events))
	l, err = s.ListAudit(ctx(t), 100)
	ok(t, err)
	eq(t, "ListAudit(100)", len(l), len(events))
	eq(t, "oldest last", l[len(l)-1].Action, "client.create.0")
}

// testAuditRetention: DeleteAuditBefore drops exactly the events that occurred before t (at t is
// kept), however many there are (more than one delete batch), and leaves the rest intact.
func testAuditRetention(t *testing.T, s store.Store) {
	ok(t, s.DeleteAuditBefore(ctx(t), base)) // nothing to delete
	const old = 1200                         // more than the SQL stores' delete batch (1000)
	for i := range old {
		ok(t, s.AppendAudit(ctx(t), &store.AuditEvent{At: base.Add(time.Duration(i%100) * time.Millisecond),
			Actor: "anonymous", Action: "admin.auth", Outcome: "denied"}))
	}
	cut := base.Add(time.Hour)
	var kept []*store.AuditEvent
	for i, at := range []time.Time{cut, cut.Add(time.Second), cut.Add(time.Hour)} {
		e := &store.AuditEvent{At: at, Actor: "admin", Action: fmt.Sprintf("kept.%d", i), Outcome: "ok"}
		ok(t, s.AppendAudit(ctx(t), e))
		kept = append(kept, e)
	}
	// An old event appended after newer ones (a replica's clock behind) goes too.
	ok(t, s.AppendAudit(ctx(t), &store.AuditEvent{At: cut.Add(-time.Millisecond), Actor: "anonymous", Action: "late", Outcome: "denied"}))

	ok(t, s.DeleteAuditBefore(ctx(t), cut))
	l, err := s.ListAudit(ctx(t), 10000)
	ok(t, err)
	if len(l) != len(kept) {
		t.Fatalf("after DeleteAuditBefore: %d events, want %d", len(l), len(kept))
	}
	for i, g := range l {
		w := kept[len(kept)-1-i]
		eq(t, "ID", g.ID, w.ID)
		eq(t, "Action", g.Action, w.Action)
	}
	ok(t, s.DeleteAuditBefore(ctx(t), cut)) // idempotent
	l, err = s.ListAudit(ctx(t), 10000)
	ok(t, err)
	eq(t, "events after a second delete", len(l), len(kept))
	ok(t, s.DeleteAuditBefore(ctx(t), cut.Add(2*time.Hour)))
	l, err = s.ListAudit(ctx(t), 10000)
	ok(t, err)
	eq(t, "events after deleting all", len(l), 0)
}

// ---------------------------------------------------------------------------------------------

func testCounters(t *testing.T, s store.Store) {
	w1, w2 := base, base.Add(time.Minute)
	for want := 1; want <= 3; want++ {
		n, err := s.IncrCounter(ctx(t), "login:192.0.2.1", w1, w1.Add(2*time.Minute))
		ok(t, err)
		eq(t, "count", n, want)
	}
	n, err := s.GetCounter(ctx(t), "login:192.0.2.1", w1)
	ok(t, err)
	eq(t, "GetCounter", n, 3)
	n, err = s.GetCounter(ctx(t), "login:other", w1)
	ok(t, err)
	eq(t, "GetCounter(unknown)", n, 0)

	// A new window restarts at 1; the old window then reads 0 for the new one.
	n, err = s.GetCounter(ctx(t), "login:192.0.2.1", w2)
	ok(t, err)
	eq(t, "GetCounter(next window) before any hit", n, 0)
	n, err = s.IncrCounter(ctx(t), "login:192.0.2.1", w2, w2.Add(2*time.Minute))
	ok(t, err)
	eq(t, "count in new window", n, 1)
	// A replica whose clock lags (older window) keeps counting in the newer window.
	n, err = s.IncrCounter(ctx(t), "login:192.0.2.1", w1, w1.Add(2*time.Minute))
	ok(t, err)
	eq(t, "count from a lagging replica", n, 2)
	n, err = s.GetCounter(ctx(t), "login:192.0.2.1", w2)
	ok(t, err)
	eq(t, "GetCounter(new window)", n, 2)

	// Expiry: a counter whose expiry is before t goes; the lagging increment did not shorten it.
	_, err = s.IncrCounter(ctx(t), "short", w1, w1.Add(time.Second))
	ok(t, err)
	ok(t, s.DeleteCountersExpiredBefore(ctx(t), w2.Add(time.Minute)))
	n, err = s.GetCounter(ctx(t), "short", w1)
	ok(t, err)
	eq(t, "deleted counter", n, 0)
	n, err = s.GetCounter(ctx(t), "login:192.0.2.1", w2)
	ok(t, err)
	eq(t, "kept counter", n, 2)
	ok(t, s.DeleteCountersExpiredBefore(ctx(t), w2.Add(3*time.Minute)))
	n, err = s.GetCounter(ctx(t), "login:192.0.2.1", w2)
	ok(t, err)
	eq(t, "deleted counter", n, 0)
}

func testCounterRace(t *testing.T, s store.Store) {
	const goroutines, each = 50, 4
	var mu sync.Mutex
	var seen []int
	errs := race(goroutines, func(int) error {
		for range each {
			n, err := s.IncrCounter(ctx(t), "hot", base, base.Add(time.Minute))
			if err != nil {
				return err
			}
			mu.Lock()
			seen = append(seen, n)
			mu.Unlock()
		}
		return nil
	})
	for _, err := range errs {
		ok(t, err)
	}
	slices.Sort(seen)
	for i, n := range seen { // every count from 1 to 200 returned exactly once
		if n != i+1 {
			t.Fatalf("counts returned %v, want 1..%d each once", seen, goroutines*each)
		}
	}
	n, err := s.GetCounter(ctx(t), "hot", base)
	ok(t, err)
	eq(t, "final count", n, goroutines*each)
}

// ---------------------------------------------------------------------------------------------

func testTimeRoundTrip(t *testing.T, s store.Store) {
	zone := time.FixedZone("UTC+10:30", 10*3600+1800)
	for i, tm := range []time.Time{
		time.Date(2031, 3, 4, 5, 6, 7, 999_999_999, zone), // sub-ms digits are dropped, zone becomes UTC
		time.Date(1970, 1, 1, 0, 0, 0, 1_000_000, time.UTC),
		time.Date(2999, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
		time.Unix(0, 0).UTC(),
	} {
		id := fmt.Sprintf("us_%d", i)
		ok(t, s.CreateUser(ctx(t), &store.User{ID: id, Username: id, PasswordHash: "x", CreatedAt: tm, UpdatedAt: tm}))
		u, err := s.GetUser(ctx(t), id)
		ok(t, err)
		eqTime(t, "CreatedAt", u.CreatedAt, tm.Truncate(time.Millisecond).UTC())
		if u.CreatedAt.Nanosecond()%int(time.Millisecond) != 0 {
			t.Errorf("sub-millisecond digits survived: %v", u.CreatedAt)
		}
	}
	// The ordering of stored times is the ordering of instants, whatever zone they were given in.
	a := time.Date(2031, 1, 1, 10, 0, 0, 0, zone)        // 23:30 the day before, UTC
	b := time.Date(2030, 12, 31, 23, 45, 0, 0, time.UTC) // later instant, earlier wall clock
	ok(t, s.AddRevocation(ctx(t), store.Revocation{Kind: "jti", Value: "a", RevokedAt: a, ExpiresAt: a.Add(time.Hour)}))
	ok(t, s.AddRevocation(ctx(t), store.Revocation{Kind: "jti", Value: "b", RevokedAt: b, ExpiresAt: b.Add(time.Hour)}))
	l, err := s.ListRevocationsSince(ctx(t), time.Date(2030, 12, 31, 23, 40, 0, 0, time.UTC), a)
	ok(t, err)
	if len(l) != 1 || l[0].Value != "b" {
		t.Fatalf("ListRevocationsSince across zones = %v, want only b", l)
	}
}

// ---------------------------------------------------------------------------------------------

func testClosed(t *testing.T, s store.Store) {
	ok(t, s.Ping(ctx(t)))
	ok(t, s.CreateUser(ctx(t), &store.User{ID: "us_1", Username: "a", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}))
	ok(t, s.Close())
	ok(t, s.Close()) // idempotent

	checks := map[string]error{
		"Ping":               s.Ping(ctx(t)),
		"UseOnce":            s.UseOnce(ctx(t), "k", base, base.Add(time.Minute)),
		"ReleaseOnce":        s.ReleaseOnce(ctx(t), "k"),
		"CreateUser":         s.CreateUser(ctx(t), &store.User{ID: "us_2", Username: "b", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}),
		"AddRevocation":      s.AddRevocation(ctx(t), store.Revocation{Kind: "jti", Value: "x", RevokedAt: base, ExpiresAt: base.Add(time.Hour)}),
		"RotateRefreshToken": s.RotateRefreshToken(ctx(t), []byte("x"), base, newRefresh("y", base), nil),
	}
	_, checks["GetUser"] = s.GetUser(ctx(t), "us_1")
	_, checks["GetClientByIDHash"] = s.GetClientByIDHash(ctx(t), []byte("x"))
	_, checks["GetDoshiiLocationByTokenHash"] = s.GetDoshiiLocationByTokenHash(ctx(t), []byte("x"))
	_, checks["IsRevoked"] = s.IsRevoked(ctx(t), "jti", "x")
	_, checks["IncrCounter"] = s.IncrCounter(ctx(t), "c", base, base.Add(time.Minute))
	_, checks["ListAudit"] = s.ListAudit(ctx(t), 1)
	checks["DeleteAuditBefore"] = s.DeleteAuditBefore(ctx(t), base)
	_, checks["ListSigningKeys"] = s.ListSigningKeys(ctx(t))
	for name, err := range checks {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s on a closed store: %v, want ErrUnavailable", name, err)
		}
	}
}
