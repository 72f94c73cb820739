// Package metrics holds posgate's Prometheus collectors. They are package-level so any package can
// count without plumbing; all are registered on Registry (not the global default registry, so tests
// and embedders control exactly what /metrics exposes).
//
// Labels are bounded by construction: route is the ServeMux pattern that matched (never the raw
// path, which an attacker controls), dialect/grant/outcome are short fixed vocabularies.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is the registry /metrics serves: posgate's collectors plus the Go runtime and process
// collectors.
var Registry = prometheus.NewRegistry()

var (
	// TokensIssued counts tokens minted, by dialect ("posgate", "chimpy", "jackpot", "chef", …) and
	// grant ("client_credentials", "password", "refresh_token", "jwt-bearer", "device", …).
	TokensIssued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "posgate", Name: "tokens_issued_total",
		Help: "Tokens issued, by dialect and grant.",
	}, []string{"dialect", "grant"})

	// TokenVerifications counts credential verifications by dialect and outcome ("ok", "expired",
	// "revoked", "signature", "malformed", …).
	TokenVerifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "posgate", Name: "token_verifications_total",
		Help: "Credential verifications, by dialect and outcome.",
	}, []string{"dialect", "outcome"})

	// Requests counts HTTP requests by route pattern, method and status.
	Requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "posgate", Name: "http_requests_total",
		Help: "HTTP requests, by route pattern, method and status code.",
	}, []string{"route", "method", "status"})

	// RequestDuration is the latency of HTTP requests by route pattern.
	RequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "posgate", Name: "http_request_duration_seconds",
		Help:    "HTTP request latency, by route pattern.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route"})

	// UpstreamDuration is the latency of calls the gateway forwards upstream, by route pattern.
	UpstreamDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "posgate", Name: "upstream_duration_seconds",
		Help:    "Latency of forwarded upstream calls, by route pattern.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route"})

	// HubSockets is the number of live websocket connections of this replica, by dialect.
	HubSockets = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "posgate", Name: "hub_sockets",
		Help: "Live websocket connections on this replica, by dialect.",
	}, []string{"dialect"})

	// HubMessages counts websocket messages by dialect and direction ("in": received from a peer
	// and handed to the dialect, "out": written to a peer).
	HubMessages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "posgate", Name: "hub_messages_total",
		Help: "Websocket messages, by dialect and direction (in, out).",
	}, []string{"dialect", "direction"})

	// HubCloses counts closed websocket connections by dialect and close code (a code outside
	// posgate's list is counted as "other").
	HubCloses = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "posgate", Name: "hub_closes_total",
		Help: "Closed websocket connections, by dialect and close code.",
	}, []string{"dialect", "code"})

	// OutboxDepth is the number of outbox messages not yet finished (queued or sent), all queues,
	// as last counted by this replica's deliverer.
	OutboxDepth = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "posgate", Name: "outbox_depth",
		Help: "Outbox messages queued or sent and not yet finished, all queues.",
	})

	// OutboxDeliveryLatency is the time from a message's acceptance into the outbox to its write
	// on a peer's socket, by dialect.
	OutboxDeliveryLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "posgate", Name: "outbox_delivery_latency_seconds",
		Help:    "Time from outbox acceptance to the write on the peer's socket, by dialect.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"dialect"})
)

func init() {
	Registry.MustRegister(TokensIssued, TokenVerifications, Requests, RequestDuration, UpstreamDuration,
		HubSockets, HubMessages, HubCloses, OutboxDepth, OutboxDeliveryLatency,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Handler serves Registry in the Prometheus exposition format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}

// Unmatched is the route label of requests no pattern matched (404s, refused paths): one label
// value for all of them, so scanning random paths cannot blow up the series count.
const Unmatched = "unmatched"

// ObserveRequest records one finished request. route is the matched pattern (r.Pattern) or "".
//
// The series of each (route, method, status) are looked up once and kept in requestSeries: a
// WithLabelValues call hashes its labels and takes a lock, twice per request otherwise. The cache
// holds no more entries than Requests has series (route and method are bounded, see above), and
// the collectors are never reset, so a cached series stays the one /metrics exposes.
func ObserveRequest(route, method string, status int, elapsed time.Duration) {
	if route == "" {
		route = Unmatched
	}
	k := seriesKey{route: route, method: normaliseMethod(method), status: status}
	s, ok := requestSeries.Load(k)
	if !ok {
		s, _ = requestSeries.LoadOrStore(k, &requestSeriesEntry{
			count:    Requests.WithLabelValues(k.route, k.method, strconv.Itoa(status)),
			duration: RequestDuration.WithLabelValues(route),
		})
	}
	e := s.(*requestSeriesEntry)
	e.count.Inc()
	e.duration.Observe(elapsed.Seconds())
}

type seriesKey struct {
	route, method string
	status        int
}

type requestSeriesEntry struct {
	count    prometheus.Counter
	duration prometheus.Observer
}

var requestSeries sync.Map // seriesKey → *requestSeriesEntry

// normaliseMethod keeps the method label bounded: unknown methods are counted as "other".
func normaliseMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
