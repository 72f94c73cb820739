package storetest

import (
	"errors"
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
