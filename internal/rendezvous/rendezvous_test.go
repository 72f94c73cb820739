package rendezvous_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/events/pgbus"
	"github.com/posgate/posgate/internal/rendezvous"
	"github.com/posgate/posgate/internal/store/pgtest"
	"github.com/posgate/posgate/internal/testutil/goroutines"
)

// answers is the durable record the callers wait on (the store, for this package): one answer per
// key, shared by every replica of a test.
type answers struct {
	mu    sync.Mutex
	m     map[string]string
	fail  bool // the store is unavailable
	reads atomic.Int64
}

func newAnswers() *answers { return &answers{m: map[string]string{}} }

func (a *answers) set(k, v string) {
	a.mu.Lock()
	a.m[k] = v
	a.mu.Unlock()
}

func (a *answers) setFail(f bool) {
	a.mu.Lock()
	a.fail = f
	a.mu.Unlock()
}

func (a *answers) check(_ context.Context, k string) (string, bool, error) {
	a.reads.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return "", false, errors.New("store unavailable")
	}
	v, ok := a.m[k]
	return v, ok, nil
}

const topic = "answer"

// notice is what a replica publishes when it stores an answer.
type notice struct {
	Key string `json:"key"`
}

func keyOf(payload []byte) string {
	var n notice
	if json.Unmarshal(payload, &n) != nil {
		return ""
	}
	return n.Key
}

func publish(t *testing.T, bus events.Bus, key string) {
	t.Helper()
	b, _ := json.Marshal(notice{Key: key})
	if err := bus.Publish(context.Background(), topic, b); err != nil {
		t.Fatal(err)
	}
}

type result struct {
	v   string
	err error
}

// wait starts a caller on key and returns where its result arrives.
func wait(ctx context.Context, p *rendezvous.Point[string], key string, d time.Duration) <-chan result {
	ch := make(chan result, 1)
	go func() {
		v, err := p.Wait(ctx, key, d)
		ch <- result{v, err}
	}()
	return ch
}

// eventually polls cond; the deadline only bounds a hang, it is not a timing assertion.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func receive(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the caller was not answered")
		return result{}
	}
}

// answered checks that the caller of ch got want.
func answered(t *testing.T, ch <-chan result, want string) {
	t.Helper()
	if r := receive(t, ch); r.err != nil || r.v != want {
		t.Fatalf("got %+v, want %q", r, want)
	}
}

func quiet(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("answered early: %+v", r)
	default:
	}
}

// setup returns a Point on a fake clock whose recheck period is 2 s. Every caller of a test waits
// 10 s, so a fake timer count tells whether the watcher armed its recheck: callers' deadlines + 1.
func setup(t *testing.T) (*rendezvous.Point[string], *answers, *clock.Fake) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	a := newAnswers()
	p := rendezvous.New(a.check, rendezvous.Options{Recheck: 2 * time.Second, Timers: clk})
	t.Cleanup(func() { p.Stop(errors.New("test over")) })
	return p, a, clk
}

// held waits until n callers are held on key and its watcher sleeps until the next recheck.
func held(t *testing.T, p *rendezvous.Point[string], clk *clock.Fake, key string, n, timers int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d callers are held on %s", n, key), func() bool {
		return p.Waiting(key) == n && clk.PendingTimers() == timers
	})
}

func TestResolveAnswersEveryCallerWithoutReadingTheStore(t *testing.T) {
	p, a, clk := setup(t)
	ctx := context.Background()
	c1 := wait(ctx, p, "dev_1", 10*time.Second)
	c2 := wait(ctx, p, "dev_1", 10*time.Second)
	other := wait(ctx, p, "dev_2", 10*time.Second)
	held(t, p, clk, "dev_1", 2, 5)
	held(t, p, clk, "dev_2", 1, 5)
	reads := a.reads.Load()

	p.Resolve("dev_1", "approved")
	for _, c := range []<-chan result{c1, c2} {
		answered(t, c, "approved")
	}
	if got := a.reads.Load(); got != reads {
		t.Fatalf("Resolve read the store (%d reads, then %d)", reads, got)
	}
	if n := p.Waiting("dev_1"); n != 0 {
		t.Fatalf("Waiting(dev_1) = %d after the outcome", n)
	}
	quiet(t, other)
	if n := p.Waiting("dev_2"); n != 1 {
		t.Fatalf("Waiting(dev_2) = %d", n)
	}
}

func TestResolveWithNobodyWaitingIsNotRemembered(t *testing.T) {
	p, a, clk := setup(t)
	p.Resolve("dev_1", "approved") // nobody waits: dropped
	c := wait(context.Background(), p, "dev_1", 10*time.Second)
	held(t, p, clk, "dev_1", 1, 2)
	quiet(t, c)
	a.set("dev_1", "declined")
	p.Wake("dev_1")
	answered(t, c, "declined")
}

// Idle tells a notice's reader whether anybody waits here at all: from the first Hold until the
// last caller has its outcome or left.
func TestIdle(t *testing.T) {
	p, _, _ := setup(t)
	if !p.Idle() {
		t.Fatal("a new point is not idle")
	}
	t1, err := p.Hold("k1")
	if err != nil {
		t.Fatal(err)
	}
	t2, err := p.Hold("k2")
	if err != nil {
		t.Fatal(err)
	}
	if p.Idle() {
		t.Fatal("idle with two callers holding")
	}
	p.Resolve("k1", "v")
	if v, err := t1.Wait(context.Background(), time.Second); err != nil || v != "v" {
		t.Fatalf("got %q, %v", v, err)
	}
	if p.Idle() {
		t.Fatal("idle with one caller holding")
	}
	t2.Leave()
	if !p.Idle() {
		t.Fatal("not idle once every caller is done")
	}
}

func TestOutcomeAlreadyStoredAnswersAtOnce(t *testing.T) {
	p, a, _ := setup(t)
	a.set("req_1", "answer")
	if v, err := p.Wait(context.Background(), "req_1", 10*time.Second); err != nil || v != "answer" {
		t.Fatalf("got %q, %v", v, err)
	}
}

// A notice on the event bus wakes the watcher, which reads the store at once: the fake clock never
// moves, so no recheck can have answered.
func TestBusNoticeWakes(t *testing.T) {
	p, a, clk := setup(t)
	bus := events.NewLocal()
	defer p.Listen(bus, topic, keyOf)()
	c := wait(context.Background(), p, "req_1", 10*time.Second)
	held(t, p, clk, "req_1", 1, 2)

	publish(t, bus, "req_2") // another key: nothing
	publish(t, bus, "req_1") // not stored yet: the read finds nothing, the caller stays
	eventually(t, "the woken watcher re-armed its recheck", func() bool { return a.reads.Load() >= 2 && clk.PendingTimers() == 2 })
	quiet(t, c)

	a.set("req_1", "answer")
	publish(t, bus, "req_1")
	answered(t, c, "answer")
}

// A lost notice only delays: the watcher reads the store again every recheck period.
func TestLostNoticeOnlyDelays(t *testing.T) {
	p, a, clk := setup(t)
	c := wait(context.Background(), p, "req_1", 10*time.Second)
	held(t, p, clk, "req_1", 1, 2)
	a.set("req_1", "answer") // stored on another replica; its notice never arrives

	clk.Advance(time.Second)
	quiet(t, c)
	clk.Advance(time.Second) // the recheck period has passed
	answered(t, c, "answer")
}

// A store error keeps the callers waiting; the next recheck reads again.
func TestStoreErrorKeepsWaiting(t *testing.T) {
	p, a, clk := setup(t)
	a.setFail(true)
	c := wait(context.Background(), p, "req_1", 10*time.Second)
	held(t, p, clk, "req_1", 1, 2)
	a.set("req_1", "answer")
	clk.Advance(2 * time.Second)
	eventually(t, "the failed recheck happened", func() bool { return a.reads.Load() >= 2 && clk.PendingTimers() == 2 })
	quiet(t, c)

	a.setFail(false)
	clk.Advance(2 * time.Second)
	answered(t, c, "answer")
}

func TestTimeout(t *testing.T) {
	p, a, clk := setup(t)
	c := wait(context.Background(), p, "req_1", 3*time.Second)
	held(t, p, clk, "req_1", 1, 2)
	clk.Advance(2 * time.Second) // a recheck, no answer
	eventually(t, "the recheck happened", func() bool { return a.reads.Load() >= 2 && clk.PendingTimers() == 2 })
	quiet(t, c)

	clk.Advance(time.Second)
	if r := receive(t, c); !errors.Is(r.err, rendezvous.ErrTimeout) {
		t.Fatalf("got %+v, want ErrTimeout", r)
	}
	// The last caller left: the watcher stops and reads no more.
	eventually(t, "the watcher stopped", func() bool { return clk.PendingTimers() == 0 })
	if n := p.Waiting("req_1"); n != 0 {
		t.Fatalf("Waiting = %d after the timeout", n)
	}
	reads := a.reads.Load()
	clk.Advance(time.Minute)
	if got := a.reads.Load(); got != reads {
		t.Fatalf("the store was read after every caller left (%d → %d)", reads, got)
	}
}

func TestZeroDurationDoesNotWait(t *testing.T) {
	p, a, _ := setup(t)
	a.set("req_1", "answer")
	if _, err := p.Wait(context.Background(), "req_1", 0); !errors.Is(err, rendezvous.ErrTimeout) {
		t.Fatalf("Wait(0) = %v, want ErrTimeout", err)
	}
	if a.reads.Load() != 0 {
		t.Fatal("Wait(0) read the store")
	}
}

// One caller timing out leaves the others waiting on the same watcher.
func TestCallersLeaveIndependently(t *testing.T) {
	p, _, clk := setup(t)
	short := wait(context.Background(), p, "dev_1", 3*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	gone := wait(ctx, p, "dev_1", 10*time.Second)
	long := wait(context.Background(), p, "dev_1", 10*time.Second)
	held(t, p, clk, "dev_1", 3, 4)

	cancel()
	if r := receive(t, gone); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled caller got %+v", r)
	}
	clk.Advance(3 * time.Second)
	if r := receive(t, short); !errors.Is(r.err, rendezvous.ErrTimeout) {
		t.Fatalf("short caller got %+v", r)
	}
	if n := p.Waiting("dev_1"); n != 1 {
		t.Fatalf("Waiting = %d, want the long caller", n)
	}
	p.Resolve("dev_1", "approved")
	answered(t, long, "approved")
}

func TestStopAnswersEveryCallerAndRefusesNewOnes(t *testing.T) {
	p, _, clk := setup(t)
	errDown := errors.New("shutting down")
	c1 := wait(context.Background(), p, "dev_1", 10*time.Second)
	c2 := wait(context.Background(), p, "dev_2", 10*time.Second)
	held(t, p, clk, "dev_1", 1, 4)
	held(t, p, clk, "dev_2", 1, 4)
	p.Stop(errDown)
	for _, c := range []<-chan result{c1, c2} {
		if r := receive(t, c); !errors.Is(r.err, errDown) {
			t.Fatalf("got %+v, want the stop error", r)
		}
	}
	if _, err := p.Wait(context.Background(), "dev_3", 10*time.Second); !errors.Is(err, errDown) {
		t.Fatalf("Wait after Stop = %v", err)
	}
	eventually(t, "the watchers stopped", func() bool { return clk.PendingTimers() == 0 })
}

// Many callers, outcomes, wakes and timeouts at once (run with -race): every caller gets either
// the one outcome of its key or its own timeout, and nothing is left behind.
func TestConcurrentCallers(t *testing.T) {
	a := newAnswers()
	p := rendezvous.New(a.check, rendezvous.Options{Recheck: time.Millisecond})
	defer p.Stop(errors.New("test over"))
	var wg sync.WaitGroup
	for k := range 8 {
		key := fmt.Sprintf("k%d", k)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := time.Hour
				if i%4 == 0 {
					d = time.Millisecond
				}
				v, err := p.Wait(context.Background(), key, d)
				if err == nil && v != "v-"+key {
					t.Errorf("%s got %q", key, v)
				}
				if err != nil && !errors.Is(err, rendezvous.ErrTimeout) {
					t.Errorf("%s: %v", key, err)
				}
			}()
		}
		go func() {
			p.Wake(key)
			if k%2 == 0 {
				a.set(key, "v-"+key)
				p.Resolve(key, "v-"+key)
			} else {
				a.set(key, "v-"+key) // found by a recheck
			}
		}()
	}
	wg.Wait()
	for k := range 8 {
		if n := p.Waiting(fmt.Sprintf("k%d", k)); n != 0 {
			t.Fatalf("k%d: %d callers left behind", k, n)
		}
	}
}

// Two replicas on one PostgreSQL database: the answer is stored by one, and its notice wakes the
// caller held on the other.
func TestAcrossReplicasOnPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	busA, err := pgbus.New(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer busA.Close()
	busB, err := pgbus.New(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer busB.Close()

	shared := newAnswers()
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)) // never moves: no recheck answers
	pa := rendezvous.New(shared.check, rendezvous.Options{Timers: clk})
	defer pa.Stop(errors.New("test over"))
	defer pa.Listen(busA, topic, keyOf)()

	c := wait(ctx, pa, "req_1", time.Minute)
	held(t, pa, clk, "req_1", 1, 2)
	shared.set("req_1", "answer") // replica B stores the POS answer and announces it
	publish(t, busB, "req_1")
	answered(t, c, "answer")
}

// holdOn holds key and waits until its watcher sleeps until the next recheck (it read nothing).
func holdOn(t *testing.T, p *rendezvous.Point[string], clk *clock.Fake, key string) *rendezvous.Ticket[string] {
	t.Helper()
	tk, err := p.Hold(key)
	if err != nil {
		t.Fatal(err)
	}
	held(t, p, clk, key, 1, 0) // no watcher runs, so no recheck is armed
	return tk
}

// Hold registers the caller before its own write: it reads nothing at once, yet an outcome
// resolved right after (before Wait is even called) reaches it, and so does a Wake.
func TestHoldReadsNothingAndMissesNoOutcome(t *testing.T) {
	p, a, clk := setup(t)
	a.set("req_1", "stale")          // a Hold must not read it: the caller knows the outcome is undecided
	t1 := holdOn(t, p, clk, "req_1") // nothing watches the key yet
	if n := a.reads.Load(); n != 0 {
		t.Fatalf("Hold read the store %d times", n)
	}
	p.Resolve("req_1", "answer") // before Wait
	if v, err := t1.Wait(context.Background(), 10*time.Second); err != nil || v != "answer" {
		t.Fatalf("got %q, %v", v, err)
	}
	if n := a.reads.Load(); n != 0 {
		t.Fatalf("the resolved hold read the store %d times", n)
	}

	t2 := holdOn(t, p, clk, "req_2")
	a.set("req_2", "from another replica")
	p.Wake("req_2")
	if v, err := t2.Wait(context.Background(), 10*time.Second); err != nil || v != "from another replica" {
		t.Fatalf("got %q, %v", v, err)
	}
}

// A hold starts no goroutine: resolved before or during its Wait, nothing ran for it. A
// ticket's Wait arms the first recheck, so an answer whose notice is lost is still read.
func TestHoldStartsNoWatcher(t *testing.T) {
	p, a, clk := setup(t)
	goroutines.StartNone(t, "holds", 50, func(i int) {
		key := fmt.Sprint("req_", i)
		tk, err := p.Hold(key)
		if err != nil {
			t.Fatal(err)
		}
		p.Resolve(key, "answer")
		if v, err := tk.Wait(context.Background(), 10*time.Second); err != nil || v != "answer" {
			t.Fatalf("got %q, %v", v, err)
		}
	})

	tk := holdOn(t, p, clk, "lost")
	ch := make(chan result, 1)
	go func() {
		v, err := tk.Wait(context.Background(), 10*time.Second)
		ch <- result{v, err}
	}()
	held(t, p, clk, "lost", 1, 2) // the wait's deadline and its first recheck
	a.set("lost", "answer")       // stored on another replica; its notice never arrives
	clk.Advance(time.Second)
	quiet(t, ch)
	clk.Advance(time.Second) // the recheck period has passed
	answered(t, ch, "answer")
}

// A Wait that joins a Hold's watcher gets the read a Wait promises.
func TestWaitJoiningAHoldReadsTheStore(t *testing.T) {
	p, a, clk := setup(t)
	t1 := holdOn(t, p, clk, "req_1")
	a.set("req_1", "answer")
	c := wait(context.Background(), p, "req_1", 10*time.Second)
	answered(t, c, "answer")
	if v, err := t1.Wait(context.Background(), 10*time.Second); err != nil || v != "answer" {
		t.Fatalf("the holder got %q, %v", v, err)
	}
}

// Leave ends a hold: nobody waits, and a stopped Point refuses new holds.
func TestHoldLeaveAndStop(t *testing.T) {
	p, _, clk := setup(t)
	t1 := holdOn(t, p, clk, "req_1")
	t1.Leave()
	if n := p.Waiting("req_1"); n != 0 {
		t.Fatalf("Waiting = %d after Leave", n)
	}
	stop := errors.New("stopping")
	p.Stop(stop)
	if _, err := p.Hold("req_2"); !errors.Is(err, stop) {
		t.Fatalf("Hold after Stop: %v", err)
	}
}

// With MaxRecheck the period doubles after each recheck that finds nothing, up to the cap, and
// a lost notice is still read within the cap.
func TestRecheckBacksOffToTheCap(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC))
	a := newAnswers()
	p := rendezvous.New(a.check, rendezvous.Options{Recheck: time.Second, MaxRecheck: 4 * time.Second, Timers: clk})
	t.Cleanup(func() { p.Stop(errors.New("test over")) })
	c := wait(context.Background(), p, "req_1", time.Minute)
	held(t, p, clk, "req_1", 1, 2)
	reads := a.reads.Load() // the first read
	// Rechecks fall 1, 2, 4, 4 s apart: each gap less a tick reads nothing new.
	for i, gap := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		clk.Advance(gap - time.Millisecond)
		eventually(t, "the watcher sleeps", func() bool { return clk.PendingTimers() == 2 })
		if got := a.reads.Load(); got != reads {
			t.Fatalf("recheck %d: read %d times before its period of %s", i, got-reads, gap)
		}
		clk.Advance(time.Millisecond)
		reads++
		eventually(t, fmt.Sprintf("recheck %d", i), func() bool { return a.reads.Load() == reads && clk.PendingTimers() == 2 })
	}
	a.set("req_1", "answer") // its notice is lost
	clk.Advance(4 * time.Second)
	answered(t, c, "answer")
}

// Without MaxRecheck the period stays the same.
func TestRecheckWithoutCapKeepsItsPeriod(t *testing.T) {
	p, a, clk := setup(t)
	c := wait(context.Background(), p, "req_1", time.Minute)
	held(t, p, clk, "req_1", 1, 2)
	for i := range 3 {
		clk.Advance(2 * time.Second)
		eventually(t, fmt.Sprintf("recheck %d", i), func() bool { return a.reads.Load() == int64(i+2) && clk.PendingTimers() == 2 })
	}
	a.set("req_1", "answer")
	clk.Advance(2 * time.Second)
	answered(t, c, "answer")
}
