package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

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

// testRevocationRace: concurrent revocations, of one entry and of many, all succeed; each entry
// is recorded once, and for the one revoked many times it is one of the requests whole.
func testRevocationRace(t *testing.T, s store.Store) {
	const n = 40
	errs := race(n, func(i int) error {
		value := "shared"
		if i%2 == 1 {
			value = fmt.Sprintf("own-%d", i)
		}
		return s.AddRevocation(ctx(t), store.Revocation{Kind: "jti", Value: value, RevokedAt: base.Add(time.Duration(i) * time.Second),
			ExpiresAt: base.Add(time.Hour), Reason: fmt.Sprintf("r%d", i)})
	})
	for _, err := range errs {
		ok(t, err)
	}
	got, err := s.ListRevocationsSince(ctx(t), base, base)
	ok(t, err)
	eq(t, "entries", len(got), 1+n/2)
	for _, r := range got {
		if r.Value == "shared" && r.Reason != fmt.Sprintf("r%d", int(r.RevokedAt.Sub(base).Round(time.Second)/time.Second)) {
			t.Fatalf("shared entry mixes requests: %+v", r)
		}
	}
}

// testSingleUseRaceMany: concurrent uses of many keys, each key raced by a few callers: every
// key has exactly one winner.
func testSingleUseRaceMany(t *testing.T, s store.Store) {
	const keys, per = 16, 4
	errs := race(keys*per, func(i int) error {
		return s.UseOnce(ctx(t), fmt.Sprintf("many-%d", i%keys), base, base.Add(time.Minute))
	})
	for k := range keys {
		var mine []error
		for i := k; i < len(errs); i += keys {
			mine = append(mine, errs[i])
		}
		oneWinner(t, mine, store.ErrAlreadyUsed)
	}
}
