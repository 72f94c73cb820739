package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

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
