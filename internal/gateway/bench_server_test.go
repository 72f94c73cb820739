package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/server/servertest"
)

// BenchmarkServerPath compares, in one process and without a network, the complete posgate
// request path (server middleware: request id, access log, metrics, panic recovery, canonical
// path, body limit — the access log is off here; then the gateway) with a bare
// httputil.ReverseProxy over the same canned transport and buffer pool. ns/op difference = CPU posgate adds per proxied request.
func BenchmarkServerPath(b *testing.B) {
	inst := servertest.Start(b, servertest.Options{Configure: func(c *config.Config) {
		c.Upstreams = map[string]string{"pos": "http://127.0.0.1:9"}
		c.Server.LogLevel = "warn" // servertest keeps every log line in memory; the loopback tool measures the access log
		c.Routes = []config.Route{{Path: "/bench/", Methods: []string{"GET"}, Auth: []string{"posgate"}, Scopes: []string{"bench"}, Upstream: "pos"}}
	}})
	tok, _ := clientToken(&testing.T{}, inst, "bench")
	gateway.SetTransportForTest(inst.Svc.Upstream.(*gateway.Forwarder), gateway.CannedTransport{})
	target, _ := url.Parse("http://127.0.0.1:9")
	run := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			req := httptest.NewRequest("GET", "/bench/orders/42?expand=lines", nil)
			req.RemoteAddr = "127.0.0.1:5555"
			req.Header.Set("Authorization", "Bearer "+tok)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("%d %s", w.Code, w.Body)
			}
		}
	}
	b.Run("bare", func(b *testing.B) {
		run(b, &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
			Transport: gateway.CannedTransport{}, BufferPool: gateway.BufferPool{}})
	})
	b.Run("posgate", func(b *testing.B) { run(b, inst.Server.Handler()) })
}
