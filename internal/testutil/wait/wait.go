// Package wait lets tests wait, boundedly, for something another goroutine or process does: a
// store row written after a socket opened, a state changed by a background loop.
package wait

import (
	"testing"
	"time"
)

// Timeout bounds every wait; no test expects to come near it.
const Timeout = 10 * time.Second

// Until polls cond every 20 ms until it holds, failing the test after Timeout.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
