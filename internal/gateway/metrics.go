package gateway

import (
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

func observeOutcome(route, outcome string) {
	gatewayOutcomes.WithLabelValues(route, outcome).Inc()
}

func observeUpstream(route string, d time.Duration) {
	metrics.UpstreamDuration.WithLabelValues(route).Observe(d.Seconds())
}
