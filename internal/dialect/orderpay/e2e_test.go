package orderpay_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/server/servertest"
)

// drivers runs fn on SQLite and on PostgreSQL.
func drivers(t *testing.T, fn func(t *testing.T, o servertest.Options)) {
	for _, d := range []string{"sqlite", "postgres"} {
		t.Run(d, func(t *testing.T) { fn(t, servertest.Options{Driver: d}) })
	}
}

// TestRoundTrip: an integrator request reaches the POS with every field, and the POS answer comes
// back as the 200 body exactly as the POS sent it, whatever its ResultCode.
func TestRoundTrip(t *testing.T) {
	drivers(t, func(t *testing.T, so servertest.Options) {
		inst := servertest.Start(t, so)
		o := createOutlet(t, inst, "outlet-1")
		p := dial(t, inst, o)
		s := newSender(t, inst)

		type result struct {
			st   int
			body []byte
		}
		res := make(chan result, 1)
		go func() {
			st, _, body := s.send(t, o.ProviderOutletID, "10", `{"MessageType":1,"Payload":{"Table": 7},"RequestID":"r-1"}`)
			res <- result{st, body}
		}()
		f, raw := p.read()
		if f.RequestID != "r-1" || f.MessageType != 1 || f.ProviderID != 321 || f.ProviderName != "Provider of outlet-1" ||
			f.DeviceID != "" || f.UserIdentifier != "" || string(f.Payload) != `{"Table":7}` {
			t.Fatalf("frame: %s", raw)
		}
		for _, k := range []string{`"DeviceID":""`, `"UserIdentifier":""`} {
			if !strings.Contains(string(raw), k) {
				t.Errorf("frame %s lacks %s", raw, k)
			}
		}
		sent := p.answer(f, 4) // "no user found": still the POS's answer, not an error
		r := <-res
		if r.st != http.StatusOK || string(r.body) != string(sent) {
			t.Fatalf("answer: %d %s, want 200 %s", r.st, r.body, sent)
		}
		st, got := s.get(t, o.ProviderOutletID, "r-1")
		if st != 200 || got["State"] != "answered" || got["RequestID"] != "r-1" || got["Answer"].(map[string]any)["ResultCode"] != float64(4) {
			t.Fatalf("GET: %d %v", st, got)
		}

		// Every field is passed through; a generated RequestID when none is given.
		go func() {
			st, _, body := s.send(t, o.ProviderOutletID, "10", `{"DeviceID":"dev-1","UserIdentifier":"user-1","MessageType":99,"Payload":[1,2]}`)
			res <- result{st, body}
		}()
		f, _ = p.read()
		if f.DeviceID != "dev-1" || f.UserIdentifier != "user-1" || f.MessageType != 99 || string(f.Payload) != "[1,2]" || f.RequestID == "" {
			t.Fatalf("frame: %+v", f)
		}
		sent = p.answer(f, 0)
		if r := <-res; r.st != 200 || string(r.body) != string(sent) {
			t.Fatalf("answer: %d %s", r.st, r.body)
		}
	})
}
