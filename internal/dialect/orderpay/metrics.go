package orderpay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/posgate/posgate/internal/metrics"
)

var (
	// answersStored counts POS answers matched to a request and stored.
	answersStored = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "posgate", Subsystem: "orderpay", Name: "answers_total",
		Help: "POS answers matched to a request and stored.",
	})
	// messagesDropped counts POS messages dropped, by reason: "unknown" (an answer for a
	// request the outlet was never sent), "duplicate", "malformed", "flood".
	messagesDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "posgate", Subsystem: "orderpay", Name: "messages_dropped_total",
		Help: "POS messages dropped, by reason.",
	}, []string{"reason"})
)

func init() { metrics.Registry.MustRegister(answersStored, messagesDropped) }
