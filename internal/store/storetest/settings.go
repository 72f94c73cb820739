package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

func testSettings(t *testing.T, s store.Store) {
	for name, args := range map[string][2]string{"empty name": {"", "v"}, "empty value": {"n", ""}} {
		if _, err := s.InitSetting(ctx(t), args[0], args[1], base); err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("InitSetting %s: %v, want a plain error", name, err)
		}
	}
	wantErr(t, s.SwapSetting(ctx(t), store.SettingIssuer, "https://a.example", "https://b.example", base), store.ErrNotFound)
	_, err := s.Setting(ctx(t), store.SettingIssuer)
	wantErr(t, err, store.ErrNotFound) // and reading did not record anything
	_, err = s.Setting(ctx(t), store.SettingIssuer)
	wantErr(t, err, store.ErrNotFound)

	// The first value stays; a later InitSetting gets it back and changes nothing.
	v, err := s.InitSetting(ctx(t), store.SettingIssuer, "https://a.example", base)
	ok(t, err)
	eq(t, "first init", v, "https://a.example")
	v, err = s.Setting(ctx(t), store.SettingIssuer)
	ok(t, err)
	eq(t, "read after init", v, "https://a.example")
	v, err = s.InitSetting(ctx(t), store.SettingIssuer, "https://b.example", base.Add(time.Second))
	ok(t, err)
	eq(t, "second init", v, "https://a.example")
	v, err = s.InitSetting(ctx(t), "other", "x", base)
	ok(t, err)
	eq(t, "other name", v, "x")

	// A swap from a value that is not the stored one changes nothing.
	wantErr(t, s.SwapSetting(ctx(t), store.SettingIssuer, "https://b.example", "https://c.example", base), store.ErrConflict)
	if _, err := s.InitSetting(ctx(t), store.SettingIssuer, "https://z.example", base); err != nil {
		t.Fatal(err)
	}
	if err := s.SwapSetting(ctx(t), store.SettingIssuer, "https://a.example", "", base); err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("swap to empty: %v, want a plain error", err)
	}
	v, _ = s.InitSetting(ctx(t), store.SettingIssuer, "https://z.example", base)
	eq(t, "after refused swaps", v, "https://a.example")

	ok(t, s.SwapSetting(ctx(t), store.SettingIssuer, "https://a.example", "https://b.example", base.Add(time.Minute)))
	v, _ = s.InitSetting(ctx(t), store.SettingIssuer, "https://z.example", base)
	eq(t, "after swap", v, "https://b.example")
	v, _ = s.Setting(ctx(t), store.SettingIssuer)
	eq(t, "read after swap", v, "https://b.example")
	v, _ = s.InitSetting(ctx(t), "other", "y", base)
	eq(t, "other name untouched", v, "x")
}

// testSettingsRace: replicas starting at once each offer their value; all of them get the same
// one back.
func testSettingsRace(t *testing.T, s store.Store) {
	const n = 8
	got := make([]string, n)
	errs := race(n, func(i int) error {
		var err error
		got[i], err = s.InitSetting(ctx(t), store.SettingIssuer, "https://r"+string(rune('a'+i))+".example", base)
		return err
	})
	for i := range n {
		ok(t, errs[i])
		if got[i] != got[0] {
			t.Fatalf("replica %d got %q, replica 0 got %q", i, got[i], got[0])
		}
	}
	// Of racing swaps from the stored value, exactly one wins.
	oneWinner(t, race(n, func(i int) error {
		return s.SwapSetting(ctx(t), store.SettingIssuer, got[0], "https://s"+string(rune('a'+i))+".example", base)
	}), store.ErrConflict)
}
