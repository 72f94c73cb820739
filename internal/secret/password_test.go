package secret

import (
	"context"
	"errors"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHashPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=2,p=2$") {
		t.Fatalf("hash %q does not record the current parameters", h)
	}
	if !CheckPassword(h, "correct horse battery staple") {
		t.Fatal("the right password was refused")
	}
	for _, wrong := range []string{"correct horse battery stapl", "Correct horse battery staple", "", "correct horse battery staple "} {
		if CheckPassword(h, wrong) {
			t.Fatalf("wrong password %q accepted", wrong)
		}
	}
	if NeedsRehash(h) {
		t.Fatal("a fresh hash needs a rehash")
	}
	h2, _ := HashPassword("correct horse battery staple")
	if h2 == h {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
}

func TestHashPasswordRefuses(t *testing.T) {
	if _, err := HashPassword(""); !errors.Is(err, ErrEmptyPassword) {
		t.Fatalf("empty password: err = %v", err)
	}
	if _, err := HashPassword(strings.Repeat("a", MaxPasswordBytes+1)); !errors.Is(err, ErrPasswordTooLong) {
		t.Fatalf("long password: err = %v", err)
	}
	long := strings.Repeat("a", MaxPasswordBytes)
	h, err := HashPassword(long)
	if err != nil || !CheckPassword(h, long) {
		t.Fatalf("password of exactly MaxPasswordBytes: err=%v", err)
	}
	if CheckPassword(h, long+"a") {
		t.Fatal("over-long password accepted")
	}
}

// A hash made by the reference implementation (PHP's password_hash, libargon2) verifies here, so
// stored hashes are portable PHC strings and our encoding is the standard one.
func TestCheckPasswordInterop(t *testing.T) {
	const php = "$argon2id$v=19$m=65536,t=2,p=1$Z2FHR0tQNVR3UmZ3ZEJ6cA$/crj1Ih3YvbqXT2jkeceWHM5nFIZcqVPUl9G6ldMwEw"
	if !CheckPassword(php, "correct horse battery staple") {
		t.Fatal("reference argon2id hash refused")
	}
	if CheckPassword(php, "correct horse battery stapler") {
		t.Fatal("wrong password accepted against the reference hash")
	}
	if !NeedsRehash(php) {
		t.Fatal("a p=1 hash should need a rehash to the current parameters")
	}
}

func TestCheckPasswordMalformed(t *testing.T) {
	good, err := HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	for _, h := range []string{
		"",
		"pw",
		"$argon2i$v=19$m=65536,t=2,p=2$" + salt + "$" + key,
		"$argon2id$v=16$m=65536,t=2,p=2$" + salt + "$" + key,
		"$argon2id$v=19$t=2,m=65536,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=65536,t=2$" + salt + "$" + key,
		"$argon2id$v=19$m=65536,t=2,p=2,x=1$" + salt + "$" + key,
		"$argon2id$v=19$m=4294967295,t=2,p=2$" + salt + "$" + key, // 4 TiB: refused, not allocated
		"$argon2id$v=19$m=65536,t=1000000,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=65536,t=0,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=65536,t=2,p=0$" + salt + "$" + key,
		"$argon2id$v=19$m=65536,t=02,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=65536,t=+2,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=8,t=2,p=2$" + salt + "$" + key,
		"$argon2id$v=19$m=65536,t=2,p=2$" + salt + "=$" + key,
		"$argon2id$v=19$m=65536,t=2,p=2$" + salt + "$" + key + "=",
		"$argon2id$v=19$m=65536,t=2,p=2$$" + key,
		"$argon2id$v=19$m=65536,t=2,p=2$" + salt + "$",
		"$argon2id$v=19$m=65536,t=2,p=2$" + salt + "$" + key + "$",
		good + "x",
	} {
		if CheckPassword(h, "pw") {
			t.Errorf("malformed hash %q accepted", h)
		}
		if !NeedsRehash(h) {
			t.Errorf("malformed hash %q does not need a rehash", h)
		}
	}
}

// The dummy hash must be made with the current parameters, or DummyCheck would cost a different
// time than a real check and unknown users would be distinguishable.
func TestDummyHashMatchesCurrentParameters(t *testing.T) {
	if NeedsRehash(dummyHash) {
		t.Fatalf("dummyHash %q does not use the current parameters; regenerate it with HashPassword", dummyHash)
	}
	DummyCheck() // must not panic
}

func BenchmarkCheckPassword(b *testing.B) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		CheckPassword(h, "correct horse battery staple")
	}
}

func BenchmarkDummyCheck(b *testing.B) {
	for b.Loop() {
		DummyCheck()
	}
}

// fillSlots takes every argon2id slot, as a burst of concurrent checks would, and returns a
// function that frees them.
func fillSlots(t *testing.T) (free func()) {
	t.Helper()
	for range cap(slots) {
		slots <- struct{}{}
	}
	var once sync.Once
	free = func() {
		once.Do(func() {
			for range cap(slots) {
				<-slots
			}
		})
	}
	t.Cleanup(free)
	return free
}

// With every slot busy, the context-bounded checks give up when their context ends (ErrBusy,
// nothing checked) instead of joining an unbounded queue; the unbounded ones are untouched.
func TestCheckPasswordContextGivesUpWhenBusy(t *testing.T) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	free := fillSlots(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if ok, err := CheckPasswordContext(ctx, h, "correct horse battery staple"); ok || !errors.Is(err, ErrBusy) {
		t.Fatalf("CheckPasswordContext with every slot busy: ok=%v err=%v, want ErrBusy", ok, err)
	}
	if err := DummyCheckContext(ctx); !errors.Is(err, ErrBusy) {
		t.Fatalf("DummyCheckContext with every slot busy: %v, want ErrBusy", err)
	}
	// A malformed hash takes the dummy path, and gives up the same way.
	if ok, err := CheckPasswordContext(ctx, "not a hash", "pw"); ok || !errors.Is(err, ErrBusy) {
		t.Fatalf("malformed hash with every slot busy: ok=%v err=%v", ok, err)
	}

	// A waiter whose context is still live gets the slot when one frees up.
	done := make(chan error, 1)
	go func() {
		ok, err := CheckPasswordContext(t.Context(), h, "correct horse battery staple")
		if err == nil && !ok {
			err = errors.New("right password refused")
		}
		done <- err
	}()
	free()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A free slot is taken even when the context has already ended: a check that costs no one any
// waiting runs (and so is counted) whatever its caller did.
func TestCheckPasswordContextRunsWhenFree(t *testing.T) {
	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if ok, err := CheckPasswordContext(ctx, h, "correct horse battery staple"); !ok || err != nil {
		t.Fatalf("free slot, ended context: ok=%v err=%v", ok, err)
	}
	if ok, err := CheckPasswordContext(ctx, h, "wrong"); ok || err != nil {
		t.Fatalf("wrong password: ok=%v err=%v", ok, err)
	}
	if err := DummyCheckContext(ctx); err != nil {
		t.Fatal(err)
	}
}

// An argon2id buffer counted live by a collection that ran during the hash must not leave the
// heap goal at (1 + GOGC/100) times a heap that includes it: posgate's gc_percent of 400 made it
// ~365 MiB, and the heap then grew through that much never-touched memory (a page fault per
// page) before collecting again. Fails without collectAfterArgon: the goal stays above the buffer.
func TestArgonBufferDoesNotSetHeapGoal(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	runtime.GC()
	n := collected.Load()
	if _, err := HashPassword("correct horse"); err != nil {
		t.Fatal(err)
	}
	// The collection runs after the hash has returned, off the caller's goroutine.
	for deadline := time.Now().Add(10 * time.Second); collected.Load() == n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	if goal := s[0].Value.Uint64(); goal >= argonMemoryKiB*1024 {
		t.Fatalf("heap goal after a hash is %d MiB, at least the argon2id buffer's %d MiB", goal>>20, argonMemoryKiB>>10)
	}
}
