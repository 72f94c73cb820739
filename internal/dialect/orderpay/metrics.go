package orderpay

import (
	"time"

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
	// stageSeconds times the stages of a round trip this replica takes part in, so that a slow
	// round trip can be taken apart: on the caller's replica "store_request" (the request
	// stored and announced, Hub.EnqueueFor) and "await_answer" (from then until the answer, or
	// the end of the wait, is there); on the POS's replica "answer_queue" (the answer read,
	// until its store write starts), "store_answer" (AnswerOutbox) and "announce_answer" (the
	// answered notice published). posgate_outbox_delivery_latency_seconds is the stage between:
	// acceptance until the write on the POS's socket.
	stageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "posgate", Subsystem: "orderpay", Name: "stage_seconds",
		Help: "Time spent in each stage of a request's round trip on this replica, by stage.",
		Buckets: []float64{.00025, .0005, .00075, .001, .0015, .002, .003, .004, .005, .0075, .01, .015, .02,
			.03, .05, .075, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"stage"})
	stageStoreRequest   = stageSeconds.WithLabelValues("store_request")
	stageAwaitAnswer    = stageSeconds.WithLabelValues("await_answer")
	stageAnswerQueue    = stageSeconds.WithLabelValues("answer_queue")
	stageStoreAnswer    = stageSeconds.WithLabelValues("store_answer")
	stageAnnounceAnswer = stageSeconds.WithLabelValues("announce_answer")
)

func init() { metrics.Registry.MustRegister(answersStored, messagesDropped, stageSeconds) }

// since is the seconds from t to now on the module's clock.
func (m *Module) since(t time.Time) float64 { return m.svc.Clock.Now().Sub(t).Seconds() }
