package clock

import (
	"testing"
	"time"
)

func TestFakeTimers(t *testing.T) {
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	f := NewFake(start)
	a, _ := f.After(2 * time.Second)
	b, stopB := f.After(5 * time.Second)
	now, _ := f.After(0)
	select {
	case got := <-now:
		if !got.Equal(start) {
			t.Fatalf("After(0) fired with %v", got)
		}
	default:
		t.Fatal("After(0) did not fire at once")
	}
	if n := f.PendingTimers(); n != 2 {
		t.Fatalf("PendingTimers = %d, want 2", n)
	}
	f.Advance(time.Second)
	select {
	case <-a:
		t.Fatal("fired before its deadline")
	default:
	}
	f.Advance(time.Second)
	select {
	case got := <-a:
		if want := start.Add(2 * time.Second); !got.Equal(want) {
			t.Fatalf("fired with %v, want %v", got, want)
		}
	default:
		t.Fatal("did not fire at its deadline")
	}
	stopB()
	if n := f.PendingTimers(); n != 0 {
		t.Fatalf("PendingTimers = %d after stop, want 0", n)
	}
	f.Set(start.Add(time.Hour))
	select {
	case <-b:
		t.Fatal("a stopped timer fired")
	default:
	}
}
