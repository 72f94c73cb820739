package oauth

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/posgate/posgate/internal/errs"
)

// Bounds on password checks in progress at once (the password grant's argon2id, tens of milliseconds of
// one core and 64 MiB each). The failure throttle cannot bound them: it counts a guess only once it has been
// checked, so a burst of concurrent guesses from one address all pass it and queue for the few
// argon2id slots, delaying every other sign-in. These counters are checked before anything is
// queued. They are per replica and in memory: they count work in progress here, not history.
const (
	// maxChecksPerAddress: one address (IPv6: its /64, as the throttle counts it) rarely has more
	// than a few people signing in at the same instant, even behind a shop's NAT.
	maxChecksPerAddress = 4
	// maxChecksPerUser: one person signs in once at a time (a double-click makes two).
	maxChecksPerUser = 2
	// busyRetryAfter is the Retry-After of an answer refused for work in progress: it ends quickly.
	busyRetryAfter = time.Second
)

// passwordSlotWait bounds how long a password check waits for a free argon2id slot before the
// request is answered 503 temporarily_unavailable (nothing checked, nothing counted). With the
// per-address and per-user bounds above, a queue this long means many addresses at once: a flood,
// or more sign-ins than the machine can hash.
const passwordSlotWait = 2 * time.Second

// slotWait is passwordSlotWait, changeable by tests (atomic: servers of earlier tests may still be
// answering while a test sets it).
var slotWait atomic.Int64

func init() { slotWait.Store(int64(passwordSlotWait)) }

// inflight counts work in progress by key.
type inflight struct {
	mu sync.Mutex
	n  map[string]int
}

func newInflight() *inflight { return &inflight{n: map[string]int{}} }

// limitKey is a key and the most entries it may have in progress.
type limitKey struct {
	key string
	max int
}

// acquire takes one entry under every key, or none if any key is at its limit. release must be
// called exactly once when the work ends.
func (f *inflight) acquire(keys ...limitKey) (release func(), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		if f.n[k.key] >= k.max {
			return nil, false
		}
	}
	for _, k := range keys {
		f.n[k.key]++
	}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, k := range keys {
			if f.n[k.key]--; f.n[k.key] <= 0 {
				delete(f.n, k.key) // the map holds only work in progress
			}
		}
	}, true
}

// errChecksInProgress answers a sign-in refused because its address or user already has the most
// password checks in progress.
var errChecksInProgress = &errs.Error{Kind: errs.Throttled, Code: CodeTooManyAttempts,
	Message: "too many sign-ins in progress from this address or for this user; try again shortly", RetryAfter: busyRetryAfter}

// errPasswordBusy answers a sign-in whose password could not be checked in time: every argon2id
// slot stayed busy for passwordSlotWait.
var errPasswordBusy = &errs.Error{Kind: errs.Unavailable, Code: CodeTemporarilyUnavailable,
	Message: "too many sign-ins at once; try again shortly", RetryAfter: 2 * time.Second}
