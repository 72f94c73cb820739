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

// The cached series must be the ones the collectors expose: each call counts exactly once, per
// status, and the route's histogram sees every observation.
func TestObserveRequestCountsEveryCallOnItsSeries(t *testing.T) {
	route := "POST /cache-test/{id}"
	before200, before503 := counterValue(t, route, "POST", "200"), counterValue(t, route, "POST", "503")
	for range 5 {
		ObserveRequest(route, "POST", 200, 2*time.Millisecond)
	}
	ObserveRequest(route, "POST", 503, time.Second)
	if got := counterValue(t, route, "POST", "200") - before200; got != 5 {
		t.Errorf("200 series grew by %v, want 5", got)
	}
	if got := counterValue(t, route, "POST", "503") - before503; got != 1 {
		t.Errorf("503 series grew by %v, want 1", got)
	}
	var m dto.Metric
	if err := RequestDuration.WithLabelValues(route).(interface{ Write(*dto.Metric) error }).Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetHistogram().GetSampleCount(); got != 6 {
		t.Errorf("histogram count %d, want 6", got)
	}
	if got := m.GetHistogram().GetSampleSum(); got < 1.01 || got > 1.011 {
		t.Errorf("histogram sum %v, want 1.010", got)
	}
}
