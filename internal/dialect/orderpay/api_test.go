package orderpay_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server/servertest"
)

// TestIntegratorBadInput: token, scope, body and outlet refusals in the {"error",
// "error_description"} shape; none of them stores a request.
func TestIntegratorBadInput(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	o := createOutlet(t, inst, "outlet-1")
	s := newSender(t, inst)
	wrongScope := newSender(t, inst, "other:scope")
	path := "/v1/orderpay/outlets/outlet-1/requests"

	check := func(name string, st int, h http.Header, body []byte, status int, code string) {
		t.Helper()
		m := jsonMap(t, body)
		if st != status || m["error"] != code || m["error_description"] == nil {
			t.Errorf("%s: %d %s, want %d %s", name, st, body, status, code)
		}
		if status == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", name, h.Get("WWW-Authenticate"))
		}
	}
	st, h, body := do(t, inst, "POST", path, map[string]string{"Content-Type": "application/json"}, `{"MessageType":1,"Payload":{}}`)
	check("no token", st, h, body, 401, "unauthorized")
	st, h, body = do(t, inst, "POST", path, map[string]string{"Content-Type": "application/json", "Authorization": "Bearer nope"}, `{"MessageType":1,"Payload":{}}`)
	check("bad token", st, h, body, 401, "invalid_token")
	st, h, body = wrongScope.send(t, "outlet-1", "0", `{"MessageType":1,"Payload":{}}`)
	check("wrong scope", st, h, body, 403, "insufficient_scope")
	if !strings.Contains(h.Get("WWW-Authenticate"), `scope="orderpay:send"`) {
		t.Errorf("scope challenge: %q", h.Get("WWW-Authenticate"))
	}

	for _, tc := range []struct{ name, wait, body string }{
		{"not JSON", "0", `{"MessageType":`},
		{"array", "0", `[1]`},
		{"duplicate key", "0", `{"MessageType":1,"messagetype":2,"Payload":{}}`},
		{"unknown field", "0", `{"MessageType":1,"Payload":{},"ProviderID":5}`},
		{"missing MessageType", "0", `{"Payload":{}}`},
		{"MessageType not an integer", "0", `{"MessageType":1.5,"Payload":{}}`},
		{"MessageType a string", "0", `{"MessageType":"1","Payload":{}}`},
		{"missing Payload", "0", `{"MessageType":1}`},
		{"null Payload", "0", `{"MessageType":1,"Payload":null}`},
		{"DeviceID too long", "0", `{"MessageType":1,"Payload":{},"DeviceID":"` + strings.Repeat("d", 65) + `"}`},
		{"UserIdentifier too long", "0", `{"MessageType":1,"Payload":{},"UserIdentifier":"` + strings.Repeat("u", 37) + `"}`},
		{"RequestID too long", "0", `{"MessageType":1,"Payload":{},"RequestID":"` + strings.Repeat("r", 257) + `"}`},
		{"RequestID empty", "0", `{"MessageType":1,"Payload":{},"RequestID":""}`},
		{"RequestID control character", "0", `{"MessageType":1,"Payload":{},"RequestID":"a\u0000b"}`},
		{"wait negative", "-1", `{"MessageType":1,"Payload":{}}`},
		{"wait not a number", "soon", `{"MessageType":1,"Payload":{}}`},
	} {
		st, h, body := s.send(t, "outlet-1", tc.wait, tc.body)
		check(tc.name, st, h, body, 400, "invalid_request")
	}
	// Limits are in characters: 64 multi-byte characters are a valid DeviceID.
	if st, _, body := s.send(t, "outlet-1", "0", `{"MessageType":1,"Payload":{},"DeviceID":"`+strings.Repeat("é", 64)+`","RequestID":"ok-1"}`); st != 202 {
		t.Errorf("64-character DeviceID: %d %s", st, body)
	}
	st, h, body = s.send(t, "outlet-1", "0", `{"MessageType":1,"Payload":"`+strings.Repeat("x", 1<<20)+`"}`)
	check("oversized", st, h, body, 413, "invalid_request")
	st, h, body = do(t, inst, "POST", path, map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer " + s.tok}, `{"MessageType":1,"Payload":{}}`)
	check("wrong content type", st, h, body, 415, "invalid_request")
	st, h, body = s.send(t, "nope", "0", `{"MessageType":1,"Payload":{}}`)
	check("unknown outlet", st, h, body, 404, "not_found")
	if st, _ := s.get(t, "outlet-1", "never-sent"); st != 404 {
		t.Errorf("GET unknown request: %d", st)
	}
	inst.Admin(t, "POST", "/orderpay/outlets/"+o.ID+"/disable", nil)
	st, h, body = s.send(t, "outlet-1", "0", `{"MessageType":1,"Payload":{}}`)
	check("disabled outlet", st, h, body, 403, "outlet_disabled")
	inst.Admin(t, "POST", "/orderpay/outlets/"+o.ID+"/enable", nil)

	// Only the one valid request was stored: a POS connecting now receives exactly it.
	p := dial(t, inst, o)
	f, _ := p.read()
	if f.RequestID != "ok-1" {
		t.Fatalf("delivered %q", f.RequestID)
	}
	// The frame is written before the store records it as sent.
	eventually(t, "state sent", func() bool {
		st, got := s.get(t, "outlet-1", "ok-1")
		return st == 200 && got["State"] == "sent"
	})
}

// TestOfflineQueueAndRedelivery: with the POS offline a request is 202 queued; requests keep their
// order and RequestIDs; a request sent to a POS that went away before answering is sent again,
// with the same RequestID, on its next connection; the same RequestID with the same body gives the
// stored state, with another body 409.
func TestOfflineQueueAndRedelivery(t *testing.T) {
	drivers(t, func(t *testing.T, so servertest.Options) {
		inst := servertest.Start(t, so)
		o := createOutlet(t, inst, "outlet-1")
		s := newSender(t, inst)
		var ids []string
		for i := range 5 {
			id := fmt.Sprintf("order-%d", i)
			st, _, body := s.send(t, o.ProviderOutletID, "0", fmt.Sprintf(`{"MessageType":12,"Payload":{"n":%d},"RequestID":%q}`, i, id))
			if m := jsonMap(t, body); st != 202 || m["RequestID"] != id || m["State"] != "queued" {
				t.Fatalf("offline send: %d %s", st, body)
			}
			ids = append(ids, id)
		}
		// Same id, same body (white space aside): the stored state. Another body: 409.
		if st, _, body := s.send(t, o.ProviderOutletID, "0", `{ "MessageType": 12, "Payload": { "n": 0 }, "RequestID": "order-0" }`); st != 202 {
			t.Fatalf("repeat: %d %s", st, body)
		}
		if st, _, body := s.send(t, o.ProviderOutletID, "0", `{"MessageType":12,"Payload":{"n":99},"RequestID":"order-0"}`); st != 409 || jsonMap(t, body)["error"] != "conflict" {
			t.Fatalf("conflicting repeat: %d %s", st, body)
		}

		// First connection: all five arrive in order; it answers two and goes away.
		p := dial(t, inst, o)
		for i, id := range ids {
			f, _ := p.read()
			if f.RequestID != id {
				t.Fatalf("delivery %d: %q, want %q", i, f.RequestID, id)
			}
			if i < 2 {
				p.answer(f, 0)
			}
		}
		eventually(t, "two answers stored", func() bool {
			_, g := s.get(t, o.ProviderOutletID, ids[1])
			return g["State"] == "answered"
		})
		p.ws.Close(websocket.StatusNormalClosure, "bye")

		// Second connection: the three unanswered ones again, same ids, same order.
		p = dial(t, inst, o)
		for _, id := range ids[2:] {
			f, _ := p.read()
			if f.RequestID != id {
				t.Fatalf("redelivery: %q, want %q", f.RequestID, id)
			}
			p.answer(f, 0)
		}
		for _, id := range ids {
			eventually(t, id+" answered", func() bool {
				_, g := s.get(t, o.ProviderOutletID, id)
				return g["State"] == "answered"
			})
		}
		// An answered request posted again: 200 with the stored answer, nothing sent again.
		st, _, body := s.send(t, o.ProviderOutletID, "0", `{"MessageType":12,"Payload":{"n":0},"RequestID":"order-0"}`)
		if st != 200 || jsonMap(t, body)["RequestID"] != "order-0" {
			t.Fatalf("answered repeat: %d %s", st, body)
		}
	})
}

// TestPOSAnswers: what a POS sends that is not a good answer. An answer for a RequestID it was
// never sent is dropped (logged without its payload), a duplicate answer does not replace the
// first, and malformed, binary, non-UTF-8 and oversized messages close the socket with 1008,
// 1008, 1007 and 1009.
func TestPOSAnswers(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) { c.Hub.MaxMessage = 4096 }})
	o := createOutlet(t, inst, "outlet-1")
	s := newSender(t, inst)
	p := dial(t, inst, o)
	stages := []string{"store_request", "await_answer", "answer_queue", "store_answer", "announce_answer"}
	before := stageCounts(t, inst)

	// Stray answers: for an unknown id, and for a request queued for another outlet.
	other := createOutlet(t, inst, "outlet-2")
	if st, _, _ := s.send(t, other.ProviderOutletID, "0", `{"MessageType":1,"Payload":{},"RequestID":"theirs"}`); st != 202 {
		t.Fatal("queue for outlet-2")
	}
	p.write(websocket.MessageText, []byte(`{"RequestID":"never-sent","ResultCode":0,"Payload":{"secretPayload":"do-not-log"}}`))
	p.write(websocket.MessageText, []byte(`{"RequestID":"theirs","ResultCode":0,"Payload":{"secretPayload":"do-not-log"}}`))
	if _, g := s.get(t, other.ProviderOutletID, "theirs"); g["State"] != "queued" {
		t.Fatalf("another outlet's request was answered: %v", g)
	}

	// The socket still works: a real request and its answer, then a duplicate answer.
	res := make(chan []byte, 1)
	go func() {
		_, _, b := s.send(t, o.ProviderOutletID, "10", `{"MessageType":1,"Payload":{},"RequestID":"r-1"}`)
		res <- b
	}()
	f, _ := p.read()
	first := p.answer(f, 0)
	if got := <-res; string(got) != string(first) {
		t.Fatalf("answer: %s", got)
	}
	p.write(websocket.MessageText, []byte(`{"RequestID":"r-1","ResultCode":9,"Payload":{}}`))
	if _, g := s.get(t, o.ProviderOutletID, "r-1"); compactJSON(t, mustJSON(g["Answer"])) != compactJSON(t, first) {
		t.Fatalf("duplicate answer replaced the first: %v", g)
	}
	eventually(t, "stray answers logged", func() bool {
		return strings.Count(inst.Logs(), "answer for a request this outlet was not sent") >= 2
	})
	if strings.Contains(inst.Logs(), "do-not-log") {
		t.Fatal("a stray answer's payload was logged")
	}
	// The duplicate answer is read by the socket's reader after the GET above may have been
	// answered: wait for its count rather than assume it is there.
	eventually(t, "dropped answers counted in /metrics", func() bool {
		_, _, m := do(t, inst, "GET", "/metrics", nil, "")
		return strings.Contains(string(m), `posgate_orderpay_messages_dropped_total{reason="unknown"}`) &&
			strings.Contains(string(m), `posgate_orderpay_messages_dropped_total{reason="duplicate"}`)
	})
	// The answered round trip was timed stage by stage (the series exist from the start: their
	// counts must have grown).
	after := stageCounts(t, inst)
	for _, stage := range stages {
		if n, ok := after[stage]; !ok || n <= before[stage] {
			t.Errorf("stage %s observed %d times before the round trip and %d after (in /metrics: %v)", stage, before[stage], n, ok)
		}
	}

	for _, tc := range []struct {
		name string
		typ  websocket.MessageType
		data []byte
		code websocket.StatusCode
	}{
		{"not JSON", websocket.MessageText, []byte(`{"RequestID":`), 1008},
		{"no RequestID", websocket.MessageText, []byte(`{"ResultCode":0}`), 1008},
		{"RequestID a number", websocket.MessageText, []byte(`{"RequestID":5}`), 1008},
		{"duplicate key", websocket.MessageText, []byte(`{"RequestID":"a","requestid":"b"}`), 1008},
		{"binary", websocket.MessageBinary, []byte(`{"RequestID":"a"}`), 1008},
		{"invalid UTF-8", websocket.MessageText, []byte("{\"RequestID\":\"\xff\"}"), 1007},
		{"oversized", websocket.MessageText, []byte(`{"RequestID":"` + strings.Repeat("a", 5000) + `"}`), 1009},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dial(t, inst, o)
			p.write(tc.typ, tc.data)
			if code := p.closed(); code != tc.code {
				t.Fatalf("closed with %d, want %d", code, tc.code)
			}
		})
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestPOSFlood: a POS that floods answers for requests it was never sent is closed with 1008
// after a bounded number; another outlet's socket is unaffected.
func TestPOSFlood(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	o, calm := createOutlet(t, inst, "outlet-1"), createOutlet(t, inst, "outlet-2")
	p, q := dial(t, inst, o), dial(t, inst, calm)
	s := newSender(t, inst)
	go func() {
		for i := range 5000 {
			if p.ws.Write(t.Context(), websocket.MessageText, fmt.Appendf(nil, `{"RequestID":"junk-%d"}`, i)) != nil {
				return
			}
		}
	}()
	if code := p.closed(); code != 1008 {
		t.Fatalf("flooding POS closed with %d, want 1008", code)
	}
	res := make(chan int, 1)
	go func() {
		st, _, _ := s.send(t, calm.ProviderOutletID, "10", `{"MessageType":1,"Payload":{}}`)
		res <- st
	}()
	f, _ := q.read()
	q.answer(f, 0)
	if st := <-res; st != 200 {
		t.Fatalf("calm outlet: %d", st)
	}
}

// TestBusyOutletIsNotFlooding: a POS answering every request it was sent is never closed as a
// flood, however fast it answers — only messages beyond the frames it was sent count against
// the rate. The old bound closed any socket sending over answerBurst messages at once.
func TestBusyOutletIsNotFlooding(t *testing.T) {
	// The call after the burst may wait for all of its answers to be stored: slow under -race.
	inst := servertest.Start(t, servertest.Options{Configure: func(c *config.Config) { c.Orderpay.RequestWait = 120 }})
	o := createOutlet(t, inst, "outlet-1")
	p := dial(t, inst, o)
	s := newSender(t, inst)
	n := 1100 // above the rate's burst (answerBurst, 1 000)
	var posted sync.WaitGroup
	for w := range 8 {
		posted.Add(1)
		go func() {
			defer posted.Done()
			for i := w; i < n; i += 8 {
				if st, _, b := s.send(t, o.ProviderOutletID, "0", fmt.Sprintf(`{"MessageType":1,"Payload":{},"RequestID":"busy-%d"}`, i)); st != 202 {
					t.Errorf("request %d: %d %s", i, st, b)
					return
				}
			}
		}()
	}
	// The POS takes every request first, then answers them all at once: well over answerRate
	// messages in the same second.
	frames := make([]frame, 0, n)
	for range n {
		f, _ := p.read()
		frames = append(frames, f)
	}
	posted.Wait()
	for _, f := range frames {
		p.answer(f, 0)
	}
	// Still connected: the next request is delivered on the same socket, and its answer, read
	// after the whole burst, is taken (the old bound closed the socket within the burst).
	res := make(chan int, 1)
	go func() {
		st, _, _ := s.send(t, o.ProviderOutletID, "120", `{"MessageType":1,"Payload":{},"RequestID":"after"}`)
		res <- st
	}()
	f, _ := p.read()
	p.answer(f, 0)
	if st := <-res; st != 200 {
		t.Fatalf("after the burst: %d", st)
	}
	last := frames[len(frames)-1].RequestID
	eventually(t, "every answer of the burst stored", func() bool {
		_, g := s.get(t, o.ProviderOutletID, last)
		return g["State"] == "answered"
	})
}

// TestSilentPOSAndExpiry: a POS that never answers leaves the call with 202 "sent" after the
// wait; after orderpay.request_ttl the request is expired and is not delivered again.
func TestSilentPOSAndExpiry(t *testing.T) {
	clk := clock.NewFake(time.Now())
	inst := servertest.Start(t, servertest.Options{Clock: clk, Configure: func(c *config.Config) { c.Orderpay.RequestWait = 1 }})
	o := createOutlet(t, inst, "outlet-1")
	s := newSender(t, inst)
	p := dial(t, inst, o)
	res := make(chan []byte, 1)
	go func() {
		// wait=30 is capped at orderpay.request_wait (1 s).
		st, _, b := s.send(t, o.ProviderOutletID, "30", `{"MessageType":1,"Payload":{},"RequestID":"silent"}`)
		if st != 202 {
			t.Errorf("silent POS: %d %s", st, b)
		}
		res <- b
	}()
	p.read()
	if m := jsonMap(t, <-res); m["State"] != "sent" || m["RequestID"] != "silent" {
		t.Fatalf("202 body: %v", m)
	}
	clk.Advance(600 * time.Second) // orderpay.request_ttl
	if _, g := s.get(t, o.ProviderOutletID, "silent"); g["State"] != "expired" {
		t.Fatalf("after request_ttl: %v", g)
	}
	// A late answer does not revive it.
	p.answer(frame{RequestID: "silent", MessageType: 1}, 0)
	p.ws.Close(websocket.StatusNormalClosure, "")
	p2 := dial(t, inst, o)
	go func() { s.send(t, o.ProviderOutletID, "0", `{"MessageType":1,"Payload":{},"RequestID":"next"}`) }()
	if f, _ := p2.read(); f.RequestID != "next" {
		t.Fatalf("after expiry the POS received %q", f.RequestID)
	}
}

// TestShutdownEndsWaits: a graceful shutdown answers a waiting integrator call at once with 202
// and the request's state, instead of waiting out its wait.
func TestShutdownEndsWaits(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	o := createOutlet(t, inst, "outlet-1")
	s := newSender(t, inst)
	type result struct {
		st   int
		body []byte
	}
	res := make(chan result, 1)
	go func() {
		st, _, b := s.send(t, o.ProviderOutletID, "30", `{"MessageType":1,"Payload":{},"RequestID":"waiting"}`)
		res <- result{st, b}
	}()
	eventually(t, "the request stored", func() bool {
		n, _ := inst.Svc.Store.CountOutbox(t.Context(), "")
		return n == 1
	})
	start := time.Now()
	go inst.Stop()
	select {
	case r := <-res:
		if m := jsonMap(t, r.body); r.st != 202 || m["RequestID"] != "waiting" || m["State"] != "queued" {
			t.Fatalf("%d %s", r.st, r.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the waiting call was not answered within 20 s of the shutdown (began %v ago)", time.Since(start))
	}
}

// stageCounts reads, from /metrics, how many durations each stage's histogram has observed.
func stageCounts(t *testing.T, inst *servertest.Instance) map[string]uint64 {
	t.Helper()
	_, _, m := do(t, inst, "GET", "/metrics", nil, "")
	out := map[string]uint64{}
	for _, line := range strings.Split(string(m), "\n") {
		rest, ok := strings.CutPrefix(line, `posgate_orderpay_stage_seconds_count{stage="`)
		if !ok {
			continue
		}
		stage, count, _ := strings.Cut(rest, `"} `)
		n, err := strconv.ParseUint(count, 10, 64)
		if err != nil {
			t.Fatalf("stage count %q: %v", line, err)
		}
		out[stage] = n
	}
	return out
}
