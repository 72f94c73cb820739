// Package clock is the one source of time in posgate. Production code takes a Clock so tests can
// move time instead of sleeping (a house rule: no time.Sleep in tests to wait for expiry).
package clock

import (
	"sync"
	"time"
)

// Clock tells the current time.
type Clock interface {
	Now() time.Time
}

// Timers is a Clock that also makes timers. Code that waits for a duration (a held call, a
// periodic recheck) takes one, so a test moves a Fake instead of sleeping.
type Timers interface {
	Clock
	// After returns a channel that receives the time once d has passed on this clock, and a
	// function that stops the timer when the wait ends another way.
	After(d time.Duration) (<-chan time.Time, func())
}

// System is the real wall clock.
type System struct{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// After starts a real timer.
func (System) After(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// Fake is a settable clock for tests. The zero value starts at the Unix epoch; use NewFake. Its
// timers fire when Advance or Set moves the time to or past their deadline.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]struct{}
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

// NewFake returns a fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake's current time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the fake clock forward by d and fires the timers that are due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.fireLocked()
	f.mu.Unlock()
}

// Set moves the fake clock to t and fires the timers that are due.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	f.now = t
	f.fireLocked()
	f.mu.Unlock()
}

// After returns a timer that fires when the fake's time reaches now+d (at once when d <= 0).
func (f *Fake) After(d time.Duration) (<-chan time.Time, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{at: f.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- f.now
		return t.c, func() {}
	}
	if f.timers == nil {
		f.timers = map[*fakeTimer]struct{}{}
	}
	f.timers[t] = struct{}{}
	return t.c, func() {
		f.mu.Lock()
		delete(f.timers, t)
		f.mu.Unlock()
	}
}

// PendingTimers reports how many timers are waiting to fire, so a test can move the clock only once the
// code under test has started waiting.
func (f *Fake) PendingTimers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

func (f *Fake) fireLocked() {
	for t := range f.timers {
		if !f.now.Before(t.at) {
			t.c <- f.now
			delete(f.timers, t)
		}
	}
}
