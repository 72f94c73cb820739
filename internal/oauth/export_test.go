package oauth

import "time"

// SetClientCacheTTL changes the client cache lifetime of servers built afterwards (benchmarks
// compare with and without it).
func SetClientCacheTTL(d time.Duration) (restore func()) {
	old := clientCacheTTL
	clientCacheTTL = d
	return func() { clientCacheTTL = old }
}

// SetPasswordSlotWait changes how long a password check waits for an argon2id slot (default
// passwordSlotWait). Tests that change it must not run in parallel with other tests.
func SetPasswordSlotWait(d time.Duration) (restore func()) {
	old := slotWait.Swap(int64(d))
	return func() { slotWait.Store(old) }
}
