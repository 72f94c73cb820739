// Package tokensource is the mechanism the dialect clients (chimpy, jackpot, chef) share: an
// oauth2.TokenSource that caches a token, renews it before it expires with one network call in
// flight however many goroutines ask, and backs off after a failure instead of retrying on every
// call; a Transport that renews once and retries once when the server refuses a token; a JSON
// token-endpoint call (x/oauth2 sends only forms); and a file store for tokens that must survive
// a restart.
//
// The rules, for every Source:
//
//   - A cached token is returned without a network call until its renewal time: Early before its
//     expiry, and at most half of its lifetime after it was fetched.
//   - One fetch runs at a time. Every caller waiting for it gets its result; a caller whose
//     context ends stops waiting, and the fetch is cancelled when nobody waits any more.
//   - A failed renewal while the cached token is still valid is not an error: the cached token is
//     returned and the renewal is tried again after a back-off.
//   - A failed fetch without a valid token is returned to every caller until the back-off ends
//     (doubling from MinBackoff up to MaxBackoff; a longer Retry-After from the server wins, up to
//     an hour), so revoked credentials cost one request per back-off period, not one per call.
package tokensource

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// FetchFunc gets a new token from the network. current is the token the Source holds (nil when
// it has none); a fetch that renews with a refresh token or a device token reads it from there.
type FetchFunc func(ctx context.Context, current *oauth2.Token) (*oauth2.Token, error)

// Default timings.
const (
	DefaultEarly      = time.Minute
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = time.Minute
	maxRetryAfter     = time.Hour
)

// Options tune a Source; the zero value uses the defaults.
type Options struct {
	// Early is how long before its expiry a token is renewed (DefaultEarly). It is capped at half
	// of the token's lifetime, so a short-lived token is not renewed on every call.
	Early time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed fetch (DefaultMinBackoff,
	// DefaultMaxBackoff); the wait doubles with each failure in a row.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock (time.Now); tests move it instead of sleeping.
	Now func() time.Time
	// Context is used by Token, which has no context parameter (context.Background). Its values
	// reach the fetch (oauth2.HTTPClient, for instance); its cancellation does too.
	Context context.Context
}

// Source is a caching, early-renewing oauth2.TokenSource. It is safe for concurrent use.
type Source struct {
	fetch FetchFunc
	o     Options

	cur atomic.Pointer[entry] // read without a lock on the fast path

	mu       sync.Mutex
	inflight *flight
	failures int
	retryAt  time.Time // no fetch before this time after a failure
	lastErr  error
}

type entry struct {
	tok     *oauth2.Token
	renewAt time.Time // zero: never renew (the token does not expire)
}

type flight struct {
	done    chan struct{}
	tok     *oauth2.Token
	err     error
	waiters int
	cancel  context.CancelFunc
}

// New returns a Source that fetches with fetch. initial, when not nil, is served until its
// renewal time (a token restored from a store after a restart).
func New(fetch FetchFunc, initial *oauth2.Token, o Options) *Source {
	if o.Early <= 0 {
		o.Early = DefaultEarly
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	s := &Source{fetch: fetch, o: o}
	if initial != nil {
		s.cur.Store(s.entryFor(initial, time.Time{}))
	}
	return s
}

// entryFor computes when tok is renewed; fetched is when it arrived (zero: unknown, as for a
// restored token, whose lifetime is then not known).
func (s *Source) entryFor(tok *oauth2.Token, fetched time.Time) *entry {
	e := &entry{tok: tok}
	if tok.Expiry.IsZero() {
		return e
	}
	early := s.o.Early
	if !fetched.IsZero() {
		if half := tok.Expiry.Sub(fetched) / 2; half < early {
			early = max(half, 0)
		}
	}
	e.renewAt = tok.Expiry.Add(-early)
	return e
}

// Token returns a valid token, fetching one when needed. The token is shared: do not modify it.
func (s *Source) Token() (*oauth2.Token, error) { return s.TokenContext(s.o.Context) }

// TokenContext is Token with a context bounding the wait for a fetch.
func (s *Source) TokenContext(ctx context.Context) (*oauth2.Token, error) {
	if e := s.cur.Load(); e != nil && (e.renewAt.IsZero() || s.o.Now().Before(e.renewAt)) {
		return e.tok, nil
	}
	return s.slow(ctx)
}

// Cached returns the token held, valid or not, without fetching (nil when there is none).
func (s *Source) Cached() *oauth2.Token {
	if e := s.cur.Load(); e != nil {
		return e.tok
	}
	return nil
}

// Invalidate tells the Source that the server refused tok (a 401): if it is still the cached
// token, the next call fetches a new one at once, whatever its expiry says and whatever back-off
// is running. Its refresh token, if any, is kept for that fetch.
func (s *Source) Invalidate(tok *oauth2.Token) {
	if tok == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.cur.Load()
	if e == nil || e.tok.AccessToken != tok.AccessToken {
		return
	}
	stale := *e.tok
	stale.Expiry = s.o.Now().Add(-time.Second) // invalid: never served again
	s.cur.Store(&entry{tok: &stale, renewAt: stale.Expiry})
	s.retryAt = time.Time{}
}

func (s *Source) slow(ctx context.Context) (*oauth2.Token, error) {
	s.mu.Lock()
	now := s.o.Now()
	e := s.cur.Load()
	if e != nil && (e.renewAt.IsZero() || now.Before(e.renewAt)) {
		s.mu.Unlock()
		return e.tok, nil
	}
	valid := e != nil && now.Before(e.tok.Expiry)
	f := s.inflight
	if f == nil {
		if now.Before(s.retryAt) {
			// Backing off after a failure: no network call.
			err := s.lastErr
			s.mu.Unlock()
			if valid {
				return e.tok, nil
			}
			return nil, err
		}
		f = s.start(ctx, e)
	}
	f.waiters++
	s.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		s.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel()
		}
		s.mu.Unlock()
		if valid {
			return e.tok, nil
		}
		return nil, ctx.Err()
	}
	if f.err != nil && valid {
		return e.tok, nil // renewal failed early; the token still works
	}
	return f.tok, f.err
}

// start launches a fetch; s.mu is held. The fetch runs on a context that keeps ctx's values but
// ends only when every waiter has gone, so one impatient caller does not fail the others.
func (s *Source) start(ctx context.Context, e *entry) *flight {
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &flight{done: make(chan struct{}), cancel: cancel}
	s.inflight = f
	var cur *oauth2.Token
	if e != nil {
		cur = e.tok
	}
	go func() {
		defer cancel()
		tok, err := s.fetch(fctx, cur)
		if err == nil && tok == nil {
			err = errors.New("tokensource: the fetch returned no token")
		}
		s.mu.Lock()
		now := s.o.Now()
		if err != nil {
			if fctx.Err() == nil { // a real failure, not every waiter giving up
				s.failures++
				s.retryAt = now.Add(s.backoff(err))
				s.lastErr = err
			}
		} else {
			s.failures, s.retryAt, s.lastErr = 0, time.Time{}, nil
			s.cur.Store(s.entryFor(tok, now))
		}
		s.inflight = nil
		f.tok, f.err = tok, err
		s.mu.Unlock()
		close(f.done)
	}()
	return f
}

func (s *Source) backoff(err error) time.Duration {
	d := s.o.MinBackoff
	for i := 1; i < s.failures && d < s.o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.o.MaxBackoff)
	if ra := RetryAfter(err); ra > d {
		d = min(ra, maxRetryAfter)
	}
	return d
}
