package gateway

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/posgate/posgate/internal/metrics"
)

// Requests by route, method and status are counted by the server's middleware for every request
// (metrics.Requests, labelled with the matched pattern, which for a gateway route is the route's
// pattern). The gateway adds what only it knows: why a request was refused or how forwarding
// ended, and how long the upstream took.

// gatewayOutcomes counts gateway decisions by route pattern and outcome. Outcomes are a fixed
// vocabulary (see the outcome* constants and the forwarder's "forwarded", "upstream_timeout",
// "upstream_unreachable", "client_closed").
var gatewayOutcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "posgate", Name: "gateway_outcomes_total",
	Help: "Gateway decisions and forwarding results, by route pattern and outcome.",
}, []string{"route", "outcome"})

func init() { metrics.Registry.MustRegister(gatewayOutcomes) }

// Label lookups hash every label value on each call; the series of a route are few and fixed, so
// they are looked up once and kept (the maps only ever hold route patterns, a bounded set).
var (
	outcomeSeries  sync.Map // outcomeKey → prometheus.Counter
	upstreamSeries sync.Map // route → prometheus.Observer
)

type outcomeKey struct{ route, outcome string }

func observeOutcome(route, outcome string) {
	k := outcomeKey{route, outcome}
	c, ok := outcomeSeries.Load(k)
	if !ok {
		c, _ = outcomeSeries.LoadOrStore(k, gatewayOutcomes.WithLabelValues(route, outcome))
	}
	c.(prometheus.Counter).Inc()
}

func observeUpstream(route string, d time.Duration) {
	o, ok := upstreamSeries.Load(route)
	if !ok {
		o, _ = upstreamSeries.LoadOrStore(route, metrics.UpstreamDuration.WithLabelValues(route))
	}
	o.(prometheus.Observer).Observe(d.Seconds())
}
