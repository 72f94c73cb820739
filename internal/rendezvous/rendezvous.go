// Package rendezvous holds callers until the outcome of a key is decided, in this process or on
// another replica: a device's pairing decision, a POS's answer to a request.
//
// Callers waiting on one key share one watcher, which reads the outcome from the store (the
// Check) when it starts, when woken, and every recheck period. An outcome reaches the callers in
// one of three ways:
//   - Resolve: the decision was made in this process and is handed over as is, with no store read;
//   - Wake (or a notice on an event bus, see Listen): the watcher reads the store again now;
//   - the periodic recheck, so a lost notice (the bus is best effort) delays an answer by at most
//     one period and never loses it. The period may double after each recheck that finds nothing,
//     up to a cap (Options.MaxRecheck): a wait that lasts, which is a slow answer under load,
//     then costs the store fewer reads, and a lost notice is still read within the cap.
//
// The store stays the truth: a Point only remembers who is waiting, never an outcome once its
// callers have been answered.
package rendezvous

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/events"
)

// Check reads the outcome of key from the store. done false means not decided yet. An error
// (the store unavailable) keeps the callers waiting: the next wake or recheck reads again.
type Check[T any] func(ctx context.Context, key string) (v T, done bool, err error)

// ErrTimeout is what Wait returns when its duration passed before an outcome.
var ErrTimeout = errors.New("rendezvous: no outcome within the wait")

// DefaultRecheck is the recheck period when Options leaves it zero.
const DefaultRecheck = 2 * time.Second

// Options tune a Point. The zero value is ready to use.
type Options struct {
	// Recheck is how often a waited key is read again with no wake (DefaultRecheck when zero).
	Recheck time.Duration
	// MaxRecheck, when above Recheck, lets the period double after each recheck that found no
	// outcome, up to MaxRecheck. Otherwise the period stays Recheck.
	MaxRecheck time.Duration
	// Timers runs the waits and rechecks (the wall clock when nil); tests pass a clock.Fake.
	Timers clock.Timers
}

// Point is where callers wait for the outcomes of keys. Its methods are safe for concurrent use.
type Point[T any] struct {
	check   Check[T]
	recheck time.Duration
	maxRe   time.Duration
	timers  clock.Timers
	ctx     context.Context // the watchers' reads; cancelled by Stop
	cancel  context.CancelFunc

	mu      sync.Mutex
	waits   map[string]*wait[T]
	stopped error
}

// wait is the callers of one key and their watcher.
type wait[T any] struct {
	key  string
	refs int           // callers holding it
	wake chan struct{} // capacity 1: a pending wake is enough
	stop chan struct{} // closed when the last caller leaves without an outcome
	done chan struct{} // closed once v, err are set
	lazy bool          // held (Hold): no read of the store when it started
	// started: its watcher runs. A held key's watcher starts only when needed: with a Wake, when
	// a Wait joins it, or at the first recheck of a Ticket's Wait (guarded by Point.mu).
	started bool
	once    sync.Once
	v       T
	err     error
}

// New returns a Point whose watchers read outcomes with check.
func New[T any](check Check[T], opt Options) *Point[T] {
	if opt.Recheck <= 0 {
		opt.Recheck = DefaultRecheck
	}
	if opt.Timers == nil {
		opt.Timers = clock.System{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	opt.MaxRecheck = max(opt.MaxRecheck, opt.Recheck)
	return &Point[T]{check: check, recheck: opt.Recheck, maxRe: opt.MaxRecheck, timers: opt.Timers, ctx: ctx, cancel: cancel, waits: map[string]*wait[T]{}}
}

// Wait holds the caller until the outcome of key is known, and returns it. It returns ErrTimeout
// when d passes first (at once when d <= 0), ctx.Err() when ctx ends first, and Stop's error when
// the Point is stopped. An outcome that arrives together with the deadline wins.
func (p *Point[T]) Wait(ctx context.Context, key string, d time.Duration) (T, error) {
	if d <= 0 {
		var zero T
		return zero, ErrTimeout
	}
	w, err := p.hold(key, true)
	if err != nil {
		var zero T
		return zero, err
	}
	return (&Ticket[T]{p: p, w: w}).Wait(ctx, d)
}

// Ticket is a caller registered on a key by Hold. It ends with one call of Wait or Leave.
type Ticket[T any] struct {
	p *Point[T]
	w *wait[T]
}

// Hold registers a caller on key before it does what may decide the outcome (stores a request
// for a POS, say): from now on a Resolve or Wake of key reaches it. Unlike Wait, Hold does not
// read the store at once — the caller knows the outcome was undecided when it held (and reads
// the state itself after its own write) — the first read comes with a Wake or the recheck
// period after the ticket's Wait began; until then no goroutine watches the key. It returns Stop's error when the Point is stopped.
func (p *Point[T]) Hold(key string) (*Ticket[T], error) {
	w, err := p.hold(key, false)
	if err != nil {
		return nil, err
	}
	return &Ticket[T]{p: p, w: w}, nil
}

// Leave gives up the ticket without waiting.
func (t *Ticket[T]) Leave() { t.p.leave(t.w) }

// Wait is Point.Wait for the ticket's key, and ends the ticket. A held key's first recheck is
// armed here, not by Hold: no goroutine watches a key before a caller waits on it (most
// outcomes are resolved or announced before the first recheck is due).
func (t *Ticket[T]) Wait(ctx context.Context, d time.Duration) (T, error) {
	p, w := t.p, t.w
	var zero T
	if d <= 0 {
		p.leave(w)
		return zero, ErrTimeout
	}
	timer, stopTimer := p.timers.After(d)
	defer stopTimer()
	var recheck <-chan time.Time
	p.mu.Lock()
	started := w.started
	p.mu.Unlock()
	if !started {
		tick, stopTick := p.timers.After(p.recheck)
		defer stopTick()
		recheck = tick
	}
	for {
		select {
		case <-w.done:
		case <-recheck:
			recheck = nil
			p.mu.Lock()
			if !w.started {
				p.startLocked(w, min(2*p.recheck, p.maxRe))
			}
			p.mu.Unlock()
			continue
		case <-timer:
			select {
			case <-w.done:
			default:
				p.leave(w)
				return zero, ErrTimeout
			}
		case <-ctx.Done():
			p.leave(w)
			return zero, ctx.Err()
		}
		p.leave(w)
		return w.v, w.err
	}
}

// Wake makes the watcher of key read the store again now (a notice said the outcome may be
// there). It does nothing when nobody waits on key.
func (p *Point[T]) Wake(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.waits[key]; w != nil {
		p.wakeLocked(w)
	}
}

// Resolve answers every caller waiting on key with v, without reading the store: the caller
// decided it here and wrote it to the store already. It does nothing when nobody waits on key.
func (p *Point[T]) Resolve(key string, v T) {
	p.mu.Lock()
	w := p.waits[key]
	p.mu.Unlock()
	if w != nil {
		p.resolve(w, v, nil)
	}
}

// Listen subscribes to topic on bus and wakes the key that keyOf reads from each notice ("" for
// a notice that concerns no waiter). It returns the function that ends the subscription.
func (p *Point[T]) Listen(bus events.Bus, topic string, keyOf func(payload []byte) string) (cancel func()) {
	return bus.Subscribe(topic, func(payload []byte) {
		if k := keyOf(payload); k != "" {
			p.Wake(k)
		}
	})
}

// Stop answers every waiting caller with err at once and makes every later Wait return err
// (a graceful shutdown must not wait out the callers' durations). err must not be nil.
func (p *Point[T]) Stop(err error) {
	p.mu.Lock()
	if p.stopped == nil {
		p.stopped = err
	}
	ws := make([]*wait[T], 0, len(p.waits))
	for _, w := range p.waits {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	var zero T
	for _, w := range ws {
		p.resolve(w, zero, err)
	}
	p.cancel()
}

// Waiting reports how many callers wait on key in this process.
func (p *Point[T]) Waiting(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.waits[key]; w != nil {
		return w.refs
	}
	return 0
}

// Idle reports whether nobody waits on any key in this process: a notice then concerns no
// caller here and need not be read.
func (p *Point[T]) Idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waits) == 0
}

// hold adds a caller to the wait of key, starting one (and its watcher) when there is none or the
// current one has its outcome already: a newcomer reads the store instead of sharing a past one.
// read says whether a new watcher reads the store at once.
func (p *Point[T]) hold(key string, read bool) (*wait[T], error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped != nil {
		return nil, p.stopped
	}
	if w := p.waits[key]; w != nil {
		select {
		case <-w.done:
		default:
			w.refs++
			if read && w.lazy {
				// A Wait expects the store read after it arrived.
				p.wakeLocked(w)
			}
			return w, nil
		}
	}
	w := &wait[T]{key: key, refs: 1, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), lazy: !read}
	p.waits[key] = w
	if read {
		p.startLocked(w, p.recheck)
	}
	return w, nil
}

// startLocked starts w's watcher, which reads the store at once and then every period (doubling
// as Options say); p.mu is held.
func (p *Point[T]) startLocked(w *wait[T], period time.Duration) {
	w.started = true
	go p.watch(w, period)
}

// wakeLocked makes w's watcher read the store now, starting it if it does not run yet; p.mu is
// held.
func (p *Point[T]) wakeLocked(w *wait[T]) {
	if !w.started {
		p.startLocked(w, p.recheck)
		return
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// leave drops one caller from w; the last to leave without an outcome stops the watcher.
func (p *Point[T]) leave(w *wait[T]) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.refs--
	if w.refs > 0 {
		return
	}
	if p.waits[w.key] == w {
		delete(p.waits, w.key)
	}
	select {
	case <-w.done:
	default:
		close(w.stop)
	}
}

// resolve sets the outcome of w, once, and releases its callers.
func (p *Point[T]) resolve(w *wait[T], v T, err error) {
	w.once.Do(func() {
		w.v, w.err = v, err
		p.mu.Lock()
		if p.waits[w.key] == w {
			delete(p.waits, w.key)
		}
		p.mu.Unlock()
		close(w.done)
	})
}

// watch reads the outcome of w's key at once, when woken and every recheck period (starting at
// period, doubling up to the cap after each periodic read that found nothing), until it is known
// or every caller has left.
func (p *Point[T]) watch(w *wait[T], period time.Duration) {
	check := func() bool {
		v, done, err := p.check(p.ctx, w.key)
		if err != nil || !done {
			return false
		}
		p.resolve(w, v, nil)
		return true
	}
	if check() {
		return
	}
	for {
		tick, stopTick := p.timers.After(period)
		select {
		case <-w.stop:
			stopTick()
			return
		case <-w.done:
			stopTick()
			return
		case <-w.wake:
			stopTick()
		case <-tick:
			period = min(2*period, p.maxRe)
		}
		if check() {
			return
		}
	}
}
