package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

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
