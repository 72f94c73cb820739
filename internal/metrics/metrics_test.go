package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := Requests.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestObserveRequestBoundsLabels(t *testing.T) {
	ObserveRequest("", "FROB", 404, time.Millisecond)
	if got := counterValue(t, Unmatched, "other", "404"); got < 1 {
		t.Fatalf("unmatched/other/404 = %v, want ≥ 1", got)
	}
	ObserveRequest("GET /healthz", "GET", 200, time.Millisecond)
	if got := counterValue(t, "GET /healthz", "GET", "200"); got < 1 {
		t.Fatalf("GET /healthz = %v", got)
	}
}

func TestHandlerExposesCollectors(t *testing.T) {
	TokensIssued.WithLabelValues("posgate", "client_credentials").Inc()
	TokenVerifications.WithLabelValues("posgate", "ok").Inc()
	UpstreamDuration.WithLabelValues("/api/").Observe(0.01)
	ObserveRequest("GET /x", "GET", 200, time.Millisecond)
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`posgate_tokens_issued_total{dialect="posgate",grant="client_credentials"}`,
		`posgate_token_verifications_total{dialect="posgate",outcome="ok"}`,
		`posgate_http_requests_total{method="GET",route="GET /x",status="200"}`,
		`posgate_http_request_duration_seconds_bucket`,
		`posgate_upstream_duration_seconds_bucket`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics output lacks %s", want)
		}
	}
}
