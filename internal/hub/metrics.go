package hub

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/posgate/posgate/internal/metrics"
)

// dialectMetrics are the series of one dialect, looked up once rather than per message.
type dialectMetrics struct {
	sockets prometheus.Gauge
	in, out prometheus.Counter
	latency prometheus.Observer
}

func (h *Hub) dialectMetrics(dialect string) *dialectMetrics {
	if v, ok := h.metrics.Load(dialect); ok {
		return v.(*dialectMetrics)
	}
	m := &dialectMetrics{
		sockets: metrics.HubSockets.WithLabelValues(dialect),
		in:      metrics.HubMessages.WithLabelValues(dialect, "in"),
		out:     metrics.HubMessages.WithLabelValues(dialect, "out"),
		latency: metrics.OutboxDeliveryLatency.WithLabelValues(dialect),
	}
	v, _ := h.metrics.LoadOrStore(dialect, m)
	return v.(*dialectMetrics)
}

// closeLabel keeps the code label bounded: a peer may send any code from 3000 to 4999.
func closeLabel(c Code) string {
	switch c {
	case CodeNormal, CodeGoingAway, 1006, CodeInvalidText, CodePolicy, CodeTooBig, CodeServerError,
		CodeRevoked, CodeDisabled, CodeReplaced:
		return strconv.Itoa(int(c))
	}
	return "other"
}
