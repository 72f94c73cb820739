package orderpay_test

import (
	"testing"

	"github.com/posgate/posgate/internal/server/servertest"
)

// TestTwoReplicas: two posgate processes on one PostgreSQL database. The request arrives at A
// while the POS is connected to B: B is woken through the bus, delivers, stores the answer, and
// A's waiting call returns it. A sees B holding the socket; a newer connection on A replaces
// the one on B (4009), and a disable on B closes the one on A (4003).
func TestTwoReplicas(t *testing.T) {
	a := servertest.Start(t, servertest.Options{Driver: "postgres"})
	b := servertest.Start(t, servertest.Options{ReplicaOf: a})
	o := createOutlet(t, a, "outlet-1")
	s := newSender(t, a)
	p := dial(t, b, o)

	eventually(t, "A sees B holding the socket", func() bool {
		_, v := a.Admin(t, "GET", "/orderpay/outlets/"+o.ID, nil)
		return v["online"] == true && v["replica"] == b.Svc.Hub.Replica()
	})

	res := make(chan []byte, 1)
	go func() {
		st, _, body := s.send(t, o.ProviderOutletID, "20", `{"MessageType":1,"Payload":{"x":1},"RequestID":"across"}`)
		if st != 200 {
			t.Errorf("cross-replica request: %d %s", st, body)
		}
		res <- body
	}()
	f, _ := p.read()
	if f.RequestID != "across" {
		t.Fatalf("B delivered %q", f.RequestID)
	}
	sent := p.answer(f, 0)
	if got := <-res; string(got) != string(sent) {
		t.Fatalf("A returned %s, want %s", got, sent)
	}

	// Queued while offline, sent on A, delivered when the POS reconnects to B.
	p.ws.CloseNow()
	eventually(t, "offline", func() bool {
		_, v := a.Admin(t, "GET", "/orderpay/outlets/"+o.ID, nil)
		return v["online"] == false
	})
	if st, _, body := s.send(t, o.ProviderOutletID, "0", `{"MessageType":1,"Payload":{},"RequestID":"later"}`); st != 202 {
		t.Fatalf("offline: %d %s", st, body)
	}
	p = dial(t, b, o)
	if f, _ := p.read(); f.RequestID != "later" {
		t.Fatalf("redelivered %q", f.RequestID)
	}

	// A newer connection on A replaces the one on B.
	q := dial(t, a, o)
	if code := p.closed(); code != 4009 {
		t.Fatalf("B's connection closed with %d, want 4009", code)
	}
	// The unanswered request follows the POS to A, under its RequestID.
	f, _ = q.read()
	if f.RequestID != "later" {
		t.Fatalf("A redelivered %q", f.RequestID)
	}
	q.answer(f, 0)
	eventually(t, "answered", func() bool {
		_, g := newSenderOn(t, b, s).get(t, o.ProviderOutletID, "later")
		return g["State"] == "answered"
	})

	// Disable on B closes the socket on A.
	if st, _ := b.Admin(t, "POST", "/orderpay/outlets/"+o.ID+"/disable", nil); st != 200 {
		t.Fatal("disable")
	}
	if code := q.closed(); code != 4003 {
		t.Fatalf("A's connection closed with %d, want 4003", code)
	}
}

// newSenderOn is s calling through inst (the token verifies on every replica).
func newSenderOn(_ testing.TB, inst *servertest.Instance, s *sender) *sender {
	return &sender{inst: inst, tok: s.tok}
}
