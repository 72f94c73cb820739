package storetest

import (
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

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
