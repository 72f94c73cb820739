package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

func testAudit(t *testing.T, s store.Store) {
	l, err := s.ListAudit(ctx(t), 10)
	ok(t, err)
	eq(t, "empty audit", len(l), 0)
	var events []*store.AuditEvent
	for i := range 5 {
		e := &store.AuditEvent{At: base.Add(time.Duration(i) * time.Second), Actor: "admin", Action: fmt.Sprintf("client.create.%d", i),
			Target: "cl_1", Address: "192.0.2.1", Outcome: "ok", Detail: "name=x"}
		ok(t, s.AppendAudit(ctx(t), e))
		if i > 0 && e.ID <= events[i-1].ID {
			t.Fatalf("audit id %d not after %d", e.ID, events[i-1].ID)
		}
		events = append(events, e)
	}
	// Same timestamp as the last one: newest is still the one appended last.
	tie := &store.AuditEvent{At: base.Add(4 * time.Second), Actor: "anonymous", Action: "login.failed", Outcome: "denied"}
	ok(t, s.AppendAudit(ctx(t), tie))
	events = append(events, tie)

	l, err = s.ListAudit(ctx(t), 3)
	ok(t, err)
	if len(l) != 3 {
		t.Fatalf("ListAudit(3): %d events", len(l))
	}
	for i, g := range l {
		w := events[len(events)-1-i]
		eq(t, "ID", g.ID, w.ID)
		eqTime(t, "At", g.At, w.At.Truncate(time.Millisecond))
		eq(t, "Actor", g.Actor, w.Actor)
		eq(t, "Action", g.Action, w.Action)
		eq(t, "Target", g.Target, w.Target)
		eq(t, "Address", g.Address, w.Address)
		eq(t, "Outcome", g.Outcome, w.Outcome)
		eq(t, "Detail", g.Detail, w.Detail)
	}
	l, err = s.ListAudit(ctx(t), 0) // default limit
	ok(t, err)
	eq(t, "ListAudit(0)", len(l), len(events))
	l, err = s.ListAudit(ctx(t), 100)
	ok(t, err)
	eq(t, "ListAudit(100)", len(l), len(events))
	eq(t, "oldest last", l[len(l)-1].Action, "client.create.0")
}

// testAuditRetention: DeleteAuditBefore drops exactly the events that occurred before t (at t is
// kept), however many there are (more than one delete batch), and leaves the rest intact.
func testAuditRetention(t *testing.T, s store.Store) {
	ok(t, s.DeleteAuditBefore(ctx(t), base)) // nothing to delete
	const old = 1200                         // more than the SQL stores' delete batch (1000)
	for i := range old {
		ok(t, s.AppendAudit(ctx(t), &store.AuditEvent{At: base.Add(time.Duration(i%100) * time.Millisecond),
			Actor: "anonymous", Action: "admin.auth", Outcome: "denied"}))
	}
	cut := base.Add(time.Hour)
	var kept []*store.AuditEvent
	for i, at := range []time.Time{cut, cut.Add(time.Second), cut.Add(time.Hour)} {
		e := &store.AuditEvent{At: at, Actor: "admin", Action: fmt.Sprintf("kept.%d", i), Outcome: "ok"}
		ok(t, s.AppendAudit(ctx(t), e))
		kept = append(kept, e)
	}
	// An old event appended after newer ones (a replica's clock behind) goes too.
	ok(t, s.AppendAudit(ctx(t), &store.AuditEvent{At: cut.Add(-time.Millisecond), Actor: "anonymous", Action: "late", Outcome: "denied"}))

	ok(t, s.DeleteAuditBefore(ctx(t), cut))
	l, err := s.ListAudit(ctx(t), 10000)
	ok(t, err)
	if len(l) != len(kept) {
		t.Fatalf("after DeleteAuditBefore: %d events, want %d", len(l), len(kept))
	}
	for i, g := range l {
		w := kept[len(kept)-1-i]
		eq(t, "ID", g.ID, w.ID)
		eq(t, "Action", g.Action, w.Action)
	}
	ok(t, s.DeleteAuditBefore(ctx(t), cut)) // idempotent
	l, err = s.ListAudit(ctx(t), 10000)
	ok(t, err)
	eq(t, "events after a second delete", len(l), len(kept))
	ok(t, s.DeleteAuditBefore(ctx(t), cut.Add(2*time.Hour)))
	l, err = s.ListAudit(ctx(t), 10000)
	ok(t, err)
	eq(t, "events after deleting all", len(l), 0)
}
