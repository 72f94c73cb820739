package chimpy_test

import (
	"context"
	"testing"
	"time"
)

// BenchmarkCachedToken is the cost of Token when the source holds a valid token: it must not
// touch the network (checked) and is compared with BenchmarkBaselineClock, one read of the clock.
func BenchmarkCachedToken(b *testing.B) {
	e := newEnvTB(b)
	e.cfg.Options.Now = nil // the real clock, as in production
	src := e.cfg.TokenSource(context.Background())
	if _, err := src.Token(); err != nil {
		b.Fatal(err)
	}
	before := e.net.total()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := src.Token(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := e.net.total() - before; n != 0 {
		b.Fatalf("%d token requests for cached tokens", n)
	}
}

// BenchmarkCachedTokenParallel is the same from every core at once (the fast path takes no lock).
func BenchmarkCachedTokenParallel(b *testing.B) {
	e := newEnvTB(b)
	e.cfg.Options.Now = nil // the real clock, as in production
	src := e.cfg.TokenSource(context.Background())
	if _, err := src.Token(); err != nil {
		b.Fatal(err)
	}
	before := e.net.total()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := src.Token(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if n := e.net.total() - before; n != 0 {
		b.Fatalf("%d token requests for cached tokens", n)
	}
}

var sink time.Time

// BenchmarkBaselineClock is one time.Now, the floor of any expiry check.
func BenchmarkBaselineClock(b *testing.B) {
	for b.Loop() {
		sink = time.Now()
	}
}
