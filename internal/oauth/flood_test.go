package oauth_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/oauth"
)

// These tests change the package-wide argon2id slot wait, so they do not run in parallel (Go
// runs the parallel tests only after every sequential one has finished). They assert statuses,
// never durations.

// floodEnv is an instance that believes X-Forwarded-For from loopback (so a test can speak from
// many addresses) and whose failure throttle never trips (so any 429 comes from the bound on
// checks in progress), with a password client and two users.
func floodEnv(t *testing.T) (*env, func(addr, user, pw string) answer) {
	t.Helper()
	e := newEnv(t, envOptions{realClock: true, configure: func(c *config.Config) {
		noThrottle(c)
		c.Server.TrustedProxies = []string{"127.0.0.1/32", "::1/128"}
	}})
	c := e.createClient(t, []string{"password"}, []string{"rentals"}, []string{apiAudience})
	e.createUser(t, "ann", "correct horse battery")
	e.createUser(t, "bob", "correct horse battery")
	from := func(addr, user, pw string) answer {
		h := http.Header{"Content-Type": {"application/json"}, "X-Forwarded-For": {addr}}
		body := `{"grant_type":"password","client_id":"` + c.ID + `","client_secret":"` + c.Secret +
			`","username":"` + user + `","password":"` + pw + `"}`
		return e.do(t, "POST", "/oauth/token", h, []byte(body))
	}
	return e, from
}

// burst sends n requests at once (f(i) sends the i-th) and returns the answers.
func burst(n int, f func(i int) answer) []answer {
	out := make([]answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// tally counts answers by status, failing the test on a status outside want; every answer of a
// wanted error status must have its code, and 429/503 a Retry-After.
func tally(t *testing.T, as []answer, want map[int]string) map[int]int {
	t.Helper()
	n := map[int]int{}
	for _, a := range as {
		code, ok := want[a.Status]
		if !ok {
			t.Fatalf("unexpected answer %d %s", a.Status, a.Raw)
		}
		if code != "" && a.str("error") != code {
			t.Fatalf("%d with code %q, want %q: %s", a.Status, a.str("error"), code, a.Raw)
		}
		if (a.Status == http.StatusTooManyRequests || a.Status == http.StatusServiceUnavailable) && a.Header.Get("Retry-After") == "" {
			t.Fatalf("%d without Retry-After", a.Status)
		}
		n[a.Status]++
	}
	t.Logf("answers by status: %v", n)
	return n
}

// TestPasswordChecksInProgressBounded: a burst of concurrent wrong-password requests from one
// address (all passing the failure throttle, which counts only checked guesses) is cut to a few
// checks in progress — the rest are 429 too_many_attempts at once, not queued — and a sign-in from
// another address meanwhile succeeds. The same holds for a burst against one user from many
// addresses. Every checked guess is still counted and audited.
func TestPasswordChecksInProgressBounded(t *testing.T) {
	defer oauth.SetPasswordSlotWait(time.Minute)() // the bound under test is the in-progress one, not the wait
	e, from := floodEnv(t)

	const n = 40
	var legit answer
	as := burst(n+1, func(i int) answer {
		if i == n { // the honest user, from elsewhere, during the burst
			legit = from("198.51.100.7", "ann", "correct horse battery")
			return answer{Status: http.StatusForbidden, JSON: map[string]any{"error": "invalid_grant"}}
		}
		return from("192.0.2.66", fmt.Sprintf("guess%d", i), "wrong")
	})
	if legit.Status != http.StatusOK {
		t.Fatalf("sign-in from another address during the burst: %d %s", legit.Status, legit.Raw)
	}
	got := tally(t, as[:n], map[int]string{http.StatusForbidden: "invalid_grant", http.StatusTooManyRequests: "too_many_attempts"})
	if got[http.StatusTooManyRequests] == 0 {
		t.Fatalf("%d concurrent guesses from one address: none refused (%v)", n, got)
	}
	if audited := len(e.audit(t, "login.failed")); audited != got[http.StatusForbidden] {
		t.Fatalf("%d guesses checked (403) but %d audited", got[http.StatusForbidden], audited)
	}

	// One user attacked from many addresses: bounded per user too; another user signs in.
	var other answer
	as = burst(n+1, func(i int) answer {
		if i == n {
			other = from("198.51.100.8", "bob", "correct horse battery")
			return answer{Status: http.StatusForbidden, JSON: map[string]any{"error": "invalid_grant"}}
		}
		return from(fmt.Sprintf("203.0.113.%d", i+1), "ann", "wrong")
	})
	if other.Status != http.StatusOK {
		t.Fatalf("another user's sign-in during the burst: %d %s", other.Status, other.Raw)
	}
	got = tally(t, as[:n], map[int]string{http.StatusForbidden: "invalid_grant", http.StatusTooManyRequests: "too_many_attempts"})
	if got[http.StatusTooManyRequests] == 0 {
		t.Fatalf("%d concurrent guesses against one user: none refused (%v)", n, got)
	}

	// The bounds count work in progress only: afterwards the attacked address and user sign in.
	if a := from("192.0.2.66", "ann", "correct horse battery"); a.Status != http.StatusOK {
		t.Fatalf("after the bursts: %d %s", a.Status, a.Raw)
	}
}

// TestPasswordSlotWaitBounded: when no argon2id slot comes free within the wait, the request is
// answered 503 temporarily_unavailable with Retry-After instead of queueing without end; such a
// guess was not checked, so it is neither counted nor audited. Here the wait is (nearly) zero and
// the burst comes from many addresses, each within its in-progress bound.
func TestPasswordSlotWaitBounded(t *testing.T) {
	restore := oauth.SetPasswordSlotWait(time.Nanosecond) // a check runs only if a slot is free at once
	defer restore()
	e, from := floodEnv(t)

	const n = 30
	as := burst(n, func(i int) answer { return from(fmt.Sprintf("203.0.113.%d", i+1), fmt.Sprintf("guess%d", i), "wrong") })
	got := tally(t, as, map[int]string{http.StatusForbidden: "invalid_grant", http.StatusServiceUnavailable: "temporarily_unavailable"})
	if got[http.StatusServiceUnavailable] == 0 {
		t.Fatalf("%d concurrent checks for few slots and no wait: none refused (%v)", n, got)
	}
	if got[http.StatusForbidden] == 0 {
		t.Fatalf("no check ran at all (%v)", got)
	}
	if audited := len(e.audit(t, "login.failed")); audited != got[http.StatusForbidden] {
		t.Fatalf("%d guesses checked (403) but %d audited: an unchecked guess was audited", got[http.StatusForbidden], audited)
	}

	restore()
	if a := from("198.51.100.7", "ann", "correct horse battery"); a.Status != http.StatusOK {
		t.Fatalf("after the burst: %d %s", a.Status, a.Raw)
	}
}
