package gateway

import "net/http"

// SetTransportForTest replaces the transport of every upstream (benchmarks without a network).
func SetTransportForTest(f *Forwarder, rt http.RoundTripper) {
	for _, up := range f.upstreams {
		up.proxy.Transport = rt
	}
}

// CannedTransport answers every request at once with a small JSON document.
type CannedTransport = cannedTransport

// BufferPool is the forwarder's copy-buffer pool (for a baseline tuned the same way).
type BufferPool = bufferPool
