package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

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
	ok(t, s.RotateRefreshToken(ctx(t), []byte("h1"), base.Add(time.Minute), next, []byte("sealed h2"), false))
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
	wantErr(t, s.RotateRefreshToken(ctx(t), []byte("h1"), base.Add(2*time.Minute), newRefresh("h3", base), nil, false), store.ErrAlreadyUsed)
	_, _, err = s.GetRefreshToken(ctx(t), []byte("h3"))
	wantErr(t, err, store.ErrNotFound)
	tok, _, err = s.GetRefreshToken(ctx(t), []byte("h1"))
	ok(t, err)
	eqTimePtr(t, "RotatedAt after reuse", tok.RotatedAt, ptr(at(time.Minute)))
	eqBytes(t, "SuccessorHash after reuse", tok.SuccessorHash, []byte("h2"))

	wantErr(t, s.RotateRefreshToken(ctx(t), []byte("unknown"), base, newRefresh("h4", base), nil, false), store.ErrNotFound)
	// A successor that names another family is refused, and the old token stays unrotated.
	bad := newRefresh("h5", base)
	bad.FamilyID = "sid_other"
	if err := s.RotateRefreshToken(ctx(t), []byte("h2"), base, bad, nil, false); err == nil {
		t.Fatal("rotation into another family succeeded")
	}
	tok, _, err = s.GetRefreshToken(ctx(t), []byte("h2"))
	ok(t, err)
	eqTimePtr(t, "RotatedAt after refused rotation", tok.RotatedAt, nil)
	// Grace 0: no sealed successor is kept.
	ok(t, s.RotateRefreshToken(ctx(t), []byte("h2"), base.Add(3*time.Minute), newRefresh("h6", base.Add(3*time.Minute)), nil, false))
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
		return s.RotateRefreshToken(ctx(t), []byte("old"), base.Add(time.Second), newRefresh(fmt.Sprintf("next%02d", i), base.Add(time.Second)), nil, false)
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

// testRefreshUserCheck covers a rotation that requires the family's user to be current: it
// rotates for a current user only, refuses the others with ErrUserChanged (before ErrAlreadyUsed)
// without changing anything, and still lets exactly one of concurrent rotations win.
func testRefreshUserCheck(t *testing.T, s store.Store) {
	user := func(id string) *store.User {
		return &store.User{ID: id, Username: id, PasswordHash: "x", CreatedAt: base, UpdatedAt: base}
	}
	for _, id := range []string{"us_ok", "us_off", "us_pw", "us_race"} {
		ok(t, s.CreateUser(ctx(t), user(id)))
	}
	ok(t, s.SetUserDisabled(ctx(t), "us_off", true, base))
	ok(t, s.SetUserPassword(ctx(t), "us_pw", "y", base.Add(time.Millisecond)))
	later := base.Add(time.Minute)
	for _, c := range []struct{ user, hash string }{{"us_off", "off"}, {"us_pw", "pw"}, {"us_gone", "gone"}} {
		ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_"+c.hash, c.user, base), newRefresh(c.hash, base)))
		wantErr(t, s.RotateRefreshToken(ctx(t), []byte(c.hash), later, newRefresh(c.hash+"2", later), nil, true), store.ErrUserChanged)
		tok, _, err := s.GetRefreshToken(ctx(t), []byte(c.hash))
		ok(t, err)
		eqTimePtr(t, c.user+" RotatedAt", tok.RotatedAt, nil)
		_, _, err = s.GetRefreshToken(ctx(t), []byte(c.hash+"2"))
		wantErr(t, err, store.ErrNotFound)
	}
	// A family created at the user's last change is current.
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_pw2", "us_pw", base.Add(time.Millisecond)), newRefresh("pw_new", base)))
	ok(t, s.RotateRefreshToken(ctx(t), []byte("pw_new"), later, newRefresh("pw_next", later), nil, true))

	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_ok", "us_ok", base), newRefresh("ok", base)))
	ok(t, s.RotateRefreshToken(ctx(t), []byte("ok"), later, newRefresh("ok2", later), nil, true))
	wantErr(t, s.RotateRefreshToken(ctx(t), []byte("ok"), later, newRefresh("ok3", later), nil, true), store.ErrAlreadyUsed)
	ok(t, s.SetUserDisabled(ctx(t), "us_ok", true, later))
	wantErr(t, s.RotateRefreshToken(ctx(t), []byte("ok"), later, newRefresh("ok3", later), nil, true), store.ErrUserChanged)
	wantErr(t, s.RotateRefreshToken(ctx(t), []byte("ok2"), later, newRefresh("ok3", later), nil, true), store.ErrUserChanged)
	wantErr(t, s.RotateRefreshToken(ctx(t), []byte("unknown"), later, newRefresh("ok3", later), nil, true), store.ErrNotFound)

	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_race", "us_race", base), newRefresh("race", base)))
	const n = 30
	errs := race(n, func(i int) error {
		return s.RotateRefreshToken(ctx(t), []byte("race"), later, newRefresh(fmt.Sprintf("race%02d", i), later), nil, true)
	})
	w := oneWinner(t, errs, store.ErrAlreadyUsed)
	old, _, err := s.GetRefreshToken(ctx(t), []byte("race"))
	ok(t, err)
	eqBytes(t, "successor", old.SuccessorHash, []byte(fmt.Sprintf("race%02d", w)))
}

// testRefreshUse: UseRefreshToken returns the token and family as they were and rotates only
// when every condition of the use holds; a refused use changes nothing.
func testRefreshUse(t *testing.T, s store.Store) {
	ok(t, s.CreateUser(ctx(t), &store.User{ID: "us_1", Username: "u1", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}))
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_1", "us_1", base), newRefresh("h1", base)))
	later := base.Add(time.Minute)
	use := func(hash, next string, edit func(u *store.RefreshUse)) (*store.RefreshUsed, error) {
		u := &store.RefreshUse{Hash: []byte(hash), At: later, ClientID: "cl_1", NextHash: []byte(next),
			NextIdleExpiresAt: later.Add(time.Hour)}
		if edit != nil {
			edit(u)
		}
		return s.UseRefreshToken(ctx(t), u)
	}
	unchanged := func(name, hash, next string) {
		t.Helper()
		tok, _, err := s.GetRefreshToken(ctx(t), []byte(hash))
		ok(t, err)
		eqTimePtr(t, name+": RotatedAt", tok.RotatedAt, nil)
		_, _, err = s.GetRefreshToken(ctx(t), []byte(next))
		wantErr(t, err, store.ErrNotFound)
	}
	_, err := use("missing", "x", nil)
	wantErr(t, err, store.ErrNotFound)

	for name, edit := range map[string]func(u *store.RefreshUse){
		"another client":            func(u *store.RefreshUse) { u.ClientID = "cl_2" },
		"another audience":          func(u *store.RefreshUse) { u.Audience = "https://other.example" },
		"a refused audience":        func(u *store.RefreshUse) { u.NotAudiences = []string{"x", "https://api.example"} },
		"a scope not granted":       func(u *store.RefreshUse) { u.Scope = []string{"rentals", "admin"} },
		"a scope's prefix":          func(u *store.RefreshUse) { u.Scope = []string{"rent"} },
		"a pattern scope":           func(u *store.RefreshUse) { u.Scope = []string{"%"} },
		"past the idle expiry":      func(u *store.RefreshUse) { u.At = base.Add(time.Hour) },
		"past the absolute expiry":  func(u *store.RefreshUse) { u.At = base.Add(25 * time.Hour) },
		"two scopes, one not given": func(u *store.RefreshUse) { u.Scope = []string{"offline_access", "rentals offline_access"} },
	} {
		r, err := use("h1", "n1", edit)
		ok(t, err)
		if r.Rotated || !r.UserCurrent || r.Family.ID != "sid_1" || r.Token.RotatedAt != nil {
			t.Fatalf("%s: %+v", name, r)
		}
		unchanged(name, "h1", "n1")
	}

	// Every condition holds: rotated, with the successor capped at the family's absolute expiry.
	r, err := use("h1", "n1", func(u *store.RefreshUse) {
		u.Audience, u.NotAudiences, u.Scope = "https://api.example", []string{"x"}, []string{"offline_access", "rentals"}
		u.NextIdleExpiresAt, u.SuccessorSealed = base.Add(48*time.Hour), []byte("sealed n1")
	})
	ok(t, err)
	if !r.Rotated || !r.UserCurrent || r.Token.RotatedAt != nil || r.Family.Scope != "rentals offline_access" {
		t.Fatalf("usable token: %+v", r)
	}
	eqBytes(t, "Hash", r.Token.Hash, []byte("h1"))
	eqTime(t, "IdleExpiresAt", r.Token.IdleExpiresAt, at(time.Hour))
	old, _, err := s.GetRefreshToken(ctx(t), []byte("h1"))
	ok(t, err)
	eqTimePtr(t, "RotatedAt", old.RotatedAt, ptr(at(time.Minute)))
	eqBytes(t, "SuccessorHash", old.SuccessorHash, []byte("n1"))
	eqBytes(t, "SuccessorSealed", old.SuccessorSealed, []byte("sealed n1"))
	next, fam, err := s.GetRefreshToken(ctx(t), []byte("n1"))
	ok(t, err)
	eq(t, "family", fam.ID, "sid_1")
	eqTime(t, "CreatedAt", next.CreatedAt, at(time.Minute))
	eqTime(t, "IdleExpiresAt", next.IdleExpiresAt, at(24*time.Hour))
	eqTimePtr(t, "RotatedAt", next.RotatedAt, nil)

	// Used again: not rotated, and the answer shows it rotated.
	r, err = use("h1", "n2", nil)
	ok(t, err)
	if r.Rotated || r.Token.RotatedAt == nil || !r.UserCurrent {
		t.Fatalf("rotated token used again: %+v", r)
	}
	_, _, err = s.GetRefreshToken(ctx(t), []byte("n2"))
	wantErr(t, err, store.ErrNotFound)

	// A user disabled since the sign-in: not current, nothing rotated; a revoked family neither.
	ok(t, s.SetUserDisabled(ctx(t), "us_1", true, later))
	r, err = use("n1", "n3", nil)
	ok(t, err)
	if r.Rotated || r.UserCurrent {
		t.Fatalf("disabled user: %+v", r)
	}
	unchanged("disabled user", "n1", "n3")
	ok(t, s.CreateUser(ctx(t), &store.User{ID: "us_2", Username: "u2", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}))
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_2", "us_2", base), newRefresh("r1", base)))
	ok(t, s.RevokeRefreshFamily(ctx(t), "sid_2", base, "test"))
	r, err = use("r1", "r2", nil)
	ok(t, err)
	if r.Rotated || r.Family.RevokedAt == nil {
		t.Fatalf("revoked family: %+v", r)
	}
	unchanged("revoked family", "r1", "r2")
}

// testRefreshUseRace: of concurrent uses of one token, exactly one rotates it; the others see
// it unrotated or rotated, and their successors are not stored.
func testRefreshUseRace(t *testing.T, s store.Store) {
	ok(t, s.CreateUser(ctx(t), &store.User{ID: "us_1", Username: "u1", PasswordHash: "x", CreatedAt: base, UpdatedAt: base}))
	ok(t, s.CreateRefreshFamily(ctx(t), newFamily("sid_1", "us_1", base), newRefresh("old", base)))
	later := base.Add(time.Second)
	const n = 40
	errs := race(n, func(i int) error {
		r, err := s.UseRefreshToken(ctx(t), &store.RefreshUse{Hash: []byte("old"), At: later, ClientID: "cl_1",
			NextHash: []byte(fmt.Sprintf("next%02d", i)), NextIdleExpiresAt: later.Add(time.Hour)})
		if err == nil && !r.Rotated {
			err = store.ErrAlreadyUsed
		}
		return err
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
