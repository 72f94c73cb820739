package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

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

// testSingleUseChain: UseOnceChain records keys in order and stops at the first used one,
// keeping the ones before it; expired records are taken over as by UseOnce.
func testSingleUseChain(t *testing.T, s store.Store) {
	exp := base.Add(time.Minute)
	chain := func(keys ...string) (int, error) { return s.UseOnceChain(ctx(t), keys, base, exp) }
	n, err := chain("jti:1", "nk:1")
	ok(t, err)
	eq(t, "recorded", n, 2)
	wantErr(t, s.UseOnce(ctx(t), "jti:1", base, exp), store.ErrAlreadyUsed)
	wantErr(t, s.UseOnce(ctx(t), "nk:1", base, exp), store.ErrAlreadyUsed)

	// The first key used: nothing is recorded, the second key stays free.
	n, err = chain("jti:1", "nk:2")
	wantErr(t, err, store.ErrAlreadyUsed)
	eq(t, "recorded", n, 0)
	ok(t, s.UseOnce(ctx(t), "nk:2", base, exp))

	// The second key used: the first one is recorded (burnt), the third is not tried.
	n, err = chain("jti:3", "nk:1", "x:3")
	wantErr(t, err, store.ErrAlreadyUsed)
	eq(t, "recorded", n, 1)
	wantErr(t, s.UseOnce(ctx(t), "jti:3", base, exp), store.ErrAlreadyUsed)
	ok(t, s.UseOnce(ctx(t), "x:3", base, exp))

	// A single key behaves as UseOnce; expired records are taken over.
	n, err = s.UseOnceChain(ctx(t), []string{"nk:1", "jti:1"}, exp, exp.Add(time.Minute))
	ok(t, err)
	eq(t, "recorded after expiry", n, 2)
	n, err = chain("solo")
	ok(t, err)
	eq(t, "recorded", n, 1)

	for name, keys := range map[string][]string{"no key": nil, "a key twice": {"d", "e", "d"}} {
		if _, err := chain(keys...); err == nil || errors.Is(err, store.ErrAlreadyUsed) {
			t.Errorf("UseOnceChain with %s: %v, want a plain error", name, err)
		}
	}
	if _, err := s.UseOnceChain(ctx(t), []string{"f"}, base, base); err == nil || errors.Is(err, store.ErrAlreadyUsed) {
		t.Errorf("UseOnceChain with expiry == use time: %v, want a plain error", err)
	}
	ok(t, s.UseOnce(ctx(t), "d", base, exp)) // the refused chain recorded nothing
}

// testSingleUseChainRace: of chains racing on the same second key (each with its own first
// key), exactly one records both; every loser burnt only its own first key.
func testSingleUseChainRace(t *testing.T, s store.Store) {
	const n = 40
	errs := race(n, func(i int) error {
		_, err := s.UseOnceChain(ctx(t), []string{fmt.Sprintf("jti:%d", i), "nk:shared"}, base, base.Add(time.Minute))
		return err
	})
	oneWinner(t, errs, store.ErrAlreadyUsed)
	for i := range n {
		wantErr(t, s.UseOnce(ctx(t), fmt.Sprintf("jti:%d", i), base, base.Add(time.Minute)), store.ErrAlreadyUsed)
	}
}

// testSingleUseAsClient: UseOnceAsClient records its chain only while the client exists, is
// enabled and is at the version given; every change of the client or of its keys changes the
// version, and a refused chain records nothing.
func testSingleUseAsClient(t *testing.T, s store.Store) {
	exp := base.Add(time.Minute)
	c := newClient(1)
	c.APIKey = true
	ok(t, s.CreateClient(ctx(t), c))
	version := func() int64 {
		t.Helper()
		got, err := s.GetClient(ctx(t), c.ID)
		ok(t, err)
		return got.Version
	}
	use := func(v int64, keys ...string) (int, error) { return s.UseOnceAsClient(ctx(t), c.ID, v, keys, base, exp) }
	v := version()
	n, err := use(v, "jti:1", "nk:1")
	ok(t, err)
	eq(t, "recorded", n, 2)
	n, err = use(v, "nk:1")
	wantErr(t, err, store.ErrAlreadyUsed)
	eq(t, "recorded", n, 0)

	// Another version, or another client: nothing recorded, and the client check wins over a
	// key already used.
	n, err = use(v+1, "nk:2")
	wantErr(t, err, store.ErrClientChanged)
	eq(t, "recorded", n, 0)
	_, err = use(v+1, "nk:1")
	wantErr(t, err, store.ErrClientChanged)
	_, err = s.UseOnceAsClient(ctx(t), "cl_missing", v, []string{"nk:2"}, base, exp)
	wantErr(t, err, store.ErrClientChanged)
	ok(t, s.UseOnce(ctx(t), "nk:2", base, exp))

	// Every change moves the version: the old one is refused, the new one accepted.
	upd := *c
	upd.Name = "renamed"
	upd.UpdatedAt = c.UpdatedAt // even when the caller's update time is unchanged
	changes := []struct {
		name string
		fn   func() error
	}{
		{"UpdateClient", func() error { return s.UpdateClient(ctx(t), &upd) }},
		{"SetClientCredentials", func() error {
			return s.SetClientCredentials(ctx(t), c.ID, []byte("new id hash"), "hint", nil, c.UpdatedAt)
		}},
		{"AddAssertionKey", func() error {
			return s.AddAssertionKey(ctx(t), c.ID, store.AssertionKey{ID: "ak_new", Sealed: []byte("k"), CreatedAt: base}, exp)
		}},
	}
	for i, ch := range changes {
		ok(t, ch.fn())
		nv := version()
		if nv == v {
			t.Fatalf("%s left the client's version at %d", ch.name, v)
		}
		_, err = use(v, fmt.Sprintf("after:%d", i))
		wantErr(t, err, store.ErrClientChanged)
		_, err = use(nv, fmt.Sprintf("after:%d", i))
		ok(t, err)
		v = nv
	}

	// A disabled client is refused at its current version.
	upd.Disabled = true
	ok(t, s.UpdateClient(ctx(t), &upd))
	_, err = use(version(), "disabled")
	wantErr(t, err, store.ErrClientChanged)
	ok(t, s.UseOnce(ctx(t), "disabled", base, exp))
}

// testSingleUseAsClientRace: the client check changes nothing about single use: of callers
// racing on one key at the client's current version, exactly one wins.
func testSingleUseAsClientRace(t *testing.T, s store.Store) {
	c := newClient(1)
	ok(t, s.CreateClient(ctx(t), c))
	got, err := s.GetClient(ctx(t), c.ID)
	ok(t, err)
	errs := race(40, func(int) error {
		_, err := s.UseOnceAsClient(ctx(t), c.ID, got.Version, []string{"nk:shared"}, base, base.Add(time.Minute))
		return err
	})
	oneWinner(t, errs, store.ErrAlreadyUsed)
}
