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
