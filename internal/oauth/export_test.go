package oauth

import "time"

// SetClientCacheTTL changes the client cache lifetime of servers built afterwards (benchmarks
// compare with and without it).
func SetClientCacheTTL(d time.Duration) (restore func()) {
	old := clientCacheTTL
	clientCacheTTL = d
	return func() { clientCacheTTL = old }
}
