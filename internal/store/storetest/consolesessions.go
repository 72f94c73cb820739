package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

func newConsoleSession(hash string, created time.Time, idle, absolute time.Duration) *store.ConsoleSession {
	return &store.ConsoleSession{Hash: []byte(hash), Binding: []byte("binding-" + hash), CreatedAt: created, SeenAt: created,
		IdleExpiresAt: created.Add(idle), ExpiresAt: created.Add(absolute)}
}

func testConsoleSessions(t *testing.T, s store.Store) {
	for name, cs := range map[string]*store.ConsoleSession{
		"empty hash":    {Binding: []byte("b"), CreatedAt: base, SeenAt: base, IdleExpiresAt: base.Add(time.Hour), ExpiresAt: base.Add(time.Hour)},
		"empty binding": {Hash: []byte("h"), CreatedAt: base, SeenAt: base, IdleExpiresAt: base.Add(time.Hour), ExpiresAt: base.Add(time.Hour)},
	} {
		if err := s.CreateConsoleSession(ctx(t), cs); err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: %v, want a plain error", name, err)
		}
	}
	_, err := s.GetConsoleSession(ctx(t), []byte("h1"), base)
	wantErr(t, err, store.ErrNotFound)

	ok(t, s.CreateConsoleSession(ctx(t), newConsoleSession("h1", base, time.Hour, 12*time.Hour)))
	wantErr(t, s.CreateConsoleSession(ctx(t), newConsoleSession("h1", base, time.Hour, 12*time.Hour)), store.ErrConflict)
	got, err := s.GetConsoleSession(ctx(t), []byte("h1"), base)
	ok(t, err)
	eqBytes(t, "Hash", got.Hash, []byte("h1"))
	eqBytes(t, "Binding", got.Binding, []byte("binding-h1"))
	eqTime(t, "CreatedAt", got.CreatedAt, at(0))
	eqTime(t, "SeenAt", got.SeenAt, at(0))
	eqTime(t, "IdleExpiresAt", got.IdleExpiresAt, at(time.Hour))
	eqTime(t, "ExpiresAt", got.ExpiresAt, at(12*time.Hour))
	eq(t, "Flash", got.Flash, "")

	// Idle expiry: live until the idle limit, absent from it on.
	_, err = s.GetConsoleSession(ctx(t), []byte("h1"), base.Add(time.Hour-time.Millisecond))
	ok(t, err)
	_, err = s.GetConsoleSession(ctx(t), []byte("h1"), base.Add(time.Hour))
	wantErr(t, err, store.ErrNotFound)

	// A touch extends the idle expiry, never past the absolute one.
	ok(t, s.TouchConsoleSession(ctx(t), []byte("h1"), base.Add(50*time.Minute), base.Add(110*time.Minute)))
	got, err = s.GetConsoleSession(ctx(t), []byte("h1"), base.Add(100*time.Minute))
	ok(t, err)
	eqTime(t, "SeenAt after touch", got.SeenAt, at(50*time.Minute))
	eqTime(t, "IdleExpiresAt after touch", got.IdleExpiresAt, at(110*time.Minute))
	ok(t, s.TouchConsoleSession(ctx(t), []byte("h1"), base.Add(100*time.Minute), base.Add(13*time.Hour)))
	got, err = s.GetConsoleSession(ctx(t), []byte("h1"), base.Add(100*time.Minute))
	ok(t, err)
	eqTime(t, "IdleExpiresAt capped", got.IdleExpiresAt, at(12*time.Hour))
	// A session past its idle expiry cannot be revived by a touch.
	wantErr(t, s.TouchConsoleSession(ctx(t), []byte("h1"), base.Add(12*time.Hour), base.Add(13*time.Hour)), store.ErrNotFound)
	wantErr(t, s.TouchConsoleSession(ctx(t), []byte("nope"), base, base.Add(time.Hour)), store.ErrNotFound)

	// Absolute expiry wins over a fresh idle expiry.
	ok(t, s.CreateConsoleSession(ctx(t), newConsoleSession("h2", base, 2*time.Hour, time.Hour)))
	_, err = s.GetConsoleSession(ctx(t), []byte("h2"), base.Add(time.Hour))
	wantErr(t, err, store.ErrNotFound)

	// Flash: set, read once.
	ok(t, s.CreateConsoleSession(ctx(t), newConsoleSession("h3", base, time.Hour, 12*time.Hour)))
	ok(t, s.SetConsoleFlash(ctx(t), []byte("h3"), "dev_1: approved"))
	wantErr(t, s.SetConsoleFlash(ctx(t), []byte("nope"), "x"), store.ErrNotFound)
	got, err = s.GetConsoleSession(ctx(t), []byte("h3"), base)
	ok(t, err)
	eq(t, "Flash", got.Flash, "dev_1: approved")
	cleared, err := s.ClearConsoleFlash(ctx(t), []byte("h3"), "another notice")
	ok(t, err)
	eq(t, "clear of another notice", cleared, false)
	cleared, err = s.ClearConsoleFlash(ctx(t), []byte("h3"), "dev_1: approved")
	ok(t, err)
	eq(t, "first clear", cleared, true)
	cleared, err = s.ClearConsoleFlash(ctx(t), []byte("h3"), "dev_1: approved")
	ok(t, err)
	eq(t, "second clear", cleared, false)
	got, _ = s.GetConsoleSession(ctx(t), []byte("h3"), base)
	eq(t, "Flash after clear", got.Flash, "")

	// Sign-out deletes; deleting again is not an error.
	ok(t, s.DeleteConsoleSession(ctx(t), []byte("h3")))
	ok(t, s.DeleteConsoleSession(ctx(t), []byte("h3")))
	_, err = s.GetConsoleSession(ctx(t), []byte("h3"), base)
	wantErr(t, err, store.ErrNotFound)

	// Cleanup deletes what is not live at t (idle or absolute), and only that.
	ok(t, s.CreateConsoleSession(ctx(t), newConsoleSession("h4", base, 30*time.Minute, 12*time.Hour)))
	ok(t, s.CreateConsoleSession(ctx(t), newConsoleSession("h5", base, 3*time.Hour, 12*time.Hour)))
	n, err := s.DeleteConsoleSessionsExpiredBefore(ctx(t), base.Add(time.Hour))
	ok(t, err)
	eq(t, "deleted (h2 absolute, h4 idle)", n, 2)
	// h1's idle expiry was 12h after the capped touch; h5's is 3h.
	_, err = s.GetConsoleSession(ctx(t), []byte("h5"), base.Add(time.Hour))
	ok(t, err)
	_, err = s.GetConsoleSession(ctx(t), []byte("h1"), base.Add(time.Hour))
	ok(t, err)
	n, err = s.DeleteConsoleSessionsExpiredBefore(ctx(t), base.Add(12*time.Hour))
	ok(t, err)
	eq(t, "deleted at 12h", n, 2)
	// Gone for good: an earlier time no longer finds them.
	_, err = s.GetConsoleSession(ctx(t), []byte("h5"), base)
	wantErr(t, err, store.ErrNotFound)
}

// testConsoleSessionFlashRace: of several replicas showing one notice, exactly one clears it.
func testConsoleSessionFlashRace(t *testing.T, s store.Store) {
	ok(t, s.CreateConsoleSession(ctx(t), newConsoleSession("h", base, time.Hour, 12*time.Hour)))
	ok(t, s.SetConsoleFlash(ctx(t), []byte("h"), "notice"))
	errNotMine := errors.New("cleared by another")
	oneWinner(t, race(8, func(int) error {
		cleared, err := s.ClearConsoleFlash(ctx(t), []byte("h"), "notice")
		if err == nil && !cleared {
			return errNotMine
		}
		return err
	}), errNotMine)
}
