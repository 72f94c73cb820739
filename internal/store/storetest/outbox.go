package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// Conformance cases of the Outbox and Presences roles, run by Run.

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// newMsg is a message of queue with id, created at base and expiring after ttl.
func newMsg(queue, id string, ttl time.Duration) *store.OutboxMessage {
	return &store.OutboxMessage{Queue: queue, ID: id, BodyHash: hashOf(queue + "/" + id), Payload: []byte("frame " + id),
		CreatedAt: base, ExpiresAt: base.Add(ttl)}
}

func enqueue(t *testing.T, s store.Store, m *store.OutboxMessage) *store.OutboxMessage {
	t.Helper()
	out, created, err := s.EnqueueOutbox(ctx(t), m)
	ok(t, err)
	if !created {
		t.Fatalf("enqueue %s/%s: created = false on a fresh id", m.Queue, m.ID)
	}
	return out
}

func claim(t *testing.T, s store.Store, queue, owner string, now time.Duration, lease time.Duration, limit int) []string {
	t.Helper()
	l, err := s.ClaimOutbox(ctx(t), queue, owner, base.Add(now), base.Add(now+lease), limit)
	ok(t, err)
	ids := []string{}
	for i, m := range l {
		if i > 0 && m.Seq <= l[i-1].Seq {
			t.Fatalf("claim returned seq %d after %d", m.Seq, l[i-1].Seq)
		}
		if m.LeaseOwner != owner || m.LeaseUntil == nil || !m.LeaseUntil.Equal(at(now+lease)) {
			t.Fatalf("claimed %s: lease %q until %v, want %q until %v", m.ID, m.LeaseOwner, m.LeaseUntil, owner, at(now+lease))
		}
		ids = append(ids, m.ID)
	}
	return ids
}

func getMsg(t *testing.T, s store.Store, queue, id string) *store.OutboxMessage {
	t.Helper()
	m, err := s.GetOutbox(ctx(t), queue, id)
	ok(t, err)
	return m
}

func count(t *testing.T, s store.Store, queue string) int {
	t.Helper()
	n, err := s.CountOutbox(ctx(t), queue)
	ok(t, err)
	return n
}

func testOutboxEnqueue(t *testing.T, s store.Store) {
	// Bad input is refused with an error that is none of the sentinels and stores nothing.
	for name, m := range map[string]*store.OutboxMessage{
		"empty queue":        {ID: "r1", BodyHash: hashOf("x"), Payload: []byte("x"), CreatedAt: base, ExpiresAt: base.Add(time.Minute)},
		"empty id":           {Queue: "q", BodyHash: hashOf("x"), Payload: []byte("x"), CreatedAt: base, ExpiresAt: base.Add(time.Minute)},
		"empty hash":         {Queue: "q", ID: "r1", Payload: []byte("x"), CreatedAt: base, ExpiresAt: base.Add(time.Minute)},
		"empty payload":      {Queue: "q", ID: "r1", BodyHash: hashOf("x"), CreatedAt: base, ExpiresAt: base.Add(time.Minute)},
		"expiry at creation": {Queue: "q", ID: "r1", BodyHash: hashOf("x"), Payload: []byte("x"), CreatedAt: base, ExpiresAt: base},
	} {
		_, created, err := s.EnqueueOutbox(ctx(t), m)
		if err == nil || created || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: created %v, error %v; want a plain error", name, created, err)
		}
	}
	eq(t, "count after refused enqueues", count(t, s, ""), 0)

	m1 := enqueue(t, s, newMsg("orderpay:o1", "r1", time.Minute))
	if m1.Seq <= 0 {
		t.Errorf("Seq = %d, want > 0", m1.Seq)
	}
	eq(t, "State", m1.State, store.OutboxQueued)
	eq(t, "Attempts", m1.Attempts, 0)
	eq(t, "LeaseOwner", m1.LeaseOwner, "")
	eqTimePtr(t, "LeaseUntil", m1.LeaseUntil, nil)
	eqTimePtr(t, "SentAt", m1.SentAt, nil)
	eqTimePtr(t, "DoneAt", m1.DoneAt, nil)
	eqBytes(t, "Answer", m1.Answer, nil)
	eqTime(t, "CreatedAt", m1.CreatedAt, at(0))
	eqTime(t, "ExpiresAt", m1.ExpiresAt, at(time.Minute))
	eqBytes(t, "Payload", m1.Payload, []byte("frame r1"))
	eqBytes(t, "BodyHash", m1.BodyHash, hashOf("orderpay:o1/r1"))
	if got := getMsg(t, s, "orderpay:o1", "r1"); fmt.Sprint(*got) != fmt.Sprint(*m1) {
		t.Errorf("GetOutbox = %+v, want %+v", got, m1)
	}

	// The same (queue, id) and body hash: nothing changes, the stored message comes back, even
	// when the caller's other fields differ.
	again := newMsg("orderpay:o1", "r1", time.Hour)
	again.Payload = []byte("another frame")
	got, created, err := s.EnqueueOutbox(ctx(t), again)
	ok(t, err)
	eq(t, "created on a repeat", created, false)
	eq(t, "Seq on a repeat", got.Seq, m1.Seq)
	eqBytes(t, "Payload on a repeat", got.Payload, []byte("frame r1"))
	eqTime(t, "ExpiresAt on a repeat", got.ExpiresAt, at(time.Minute))

	// Another body hash under the same id is a conflict; the stored message is returned.
	other := newMsg("orderpay:o1", "r1", time.Minute)
	other.BodyHash = hashOf("another body")
	got, created, err = s.EnqueueOutbox(ctx(t), other)
	wantErr(t, err, store.ErrConflict)
	eq(t, "created on a conflict", created, false)
	if got == nil || got.Seq != m1.Seq || string(got.BodyHash) != string(m1.BodyHash) {
		t.Errorf("conflict returned %+v, want the stored message", got)
	}
	eqBytes(t, "stored hash after a conflict", getMsg(t, s, "orderpay:o1", "r1").BodyHash, m1.BodyHash)

	// An id is unique within its queue only; Seq increases.
	m2 := enqueue(t, s, newMsg("orderpay:o2", "r1", time.Minute))
	m3 := enqueue(t, s, newMsg("orderpay:o1", "r2", time.Minute))
	if m2.Seq <= m1.Seq || m3.Seq <= m2.Seq {
		t.Errorf("Seq %d, %d, %d: want increasing", m1.Seq, m2.Seq, m3.Seq)
	}
	eq(t, "count o1", count(t, s, "orderpay:o1"), 2)
	eq(t, "count o2", count(t, s, "orderpay:o2"), 1)
	eq(t, "count all", count(t, s, ""), 3)
	eq(t, "count unknown queue", count(t, s, "orderpay:none"), 0)

	_, err = s.GetOutbox(ctx(t), "orderpay:o1", "none")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetOutbox(ctx(t), "orderpay:none", "r1")
	wantErr(t, err, store.ErrNotFound)
}

func testOutboxOrder(t *testing.T, s store.Store) {
	// Two queues interleaved: each is claimed in its own enqueue order, the lowest Seq first.
	for i := range 5 {
		enqueue(t, s, newMsg("a", fmt.Sprintf("a%d", i), time.Hour))
		enqueue(t, s, newMsg("b", fmt.Sprintf("b%d", i), time.Hour))
	}
	eqList(t, "first claim of a", claim(t, s, "a", "conn1", 0, time.Minute, 2), []string{"a0", "a1"})
	// The owner's live leases are neither returned nor renewed (nor rewritten): the claim
	// continues the queue after them.
	eqList(t, "second claim of a", claim(t, s, "a", "conn1", time.Second, time.Minute, 10), []string{"a2", "a3", "a4"})
	a0 := getMsg(t, s, "a", "a0")
	eq(t, "Attempts of a held message", a0.Attempts, 1)
	eqTimePtr(t, "LeaseUntil of a held message", a0.LeaseUntil, ptr(at(time.Minute)))
	eqList(t, "third claim of a", claim(t, s, "a", "conn1", 2*time.Second, time.Minute, 10), []string{})
	eqList(t, "claim of b", claim(t, s, "b", "conn2", 0, time.Minute, 0), []string{"b0", "b1", "b2", "b3", "b4"})
	eqList(t, "claim of an empty queue", claim(t, s, "c", "conn3", 0, time.Minute, 0), []string{})

	// A message enqueued later, after finished ones, still comes after them.
	for _, id := range []string{"a0", "a1"} {
		ok(t, s.CompleteOutbox(ctx(t), "a", id, nil, at(3*time.Second)))
	}
	enqueue(t, s, newMsg("a", "a5", time.Hour))
	eqList(t, "claim after new message", claim(t, s, "a", "conn1", 4*time.Second, time.Minute, 0), []string{"a5"})
	// When the leases run out, the whole open queue comes back in order.
	eqList(t, "claim after lease ends", claim(t, s, "a", "conn1", 2*time.Minute, time.Minute, 0), []string{"a2", "a3", "a4", "a5"})
	eq(t, "Attempts after two claims", getMsg(t, s, "a", "a2").Attempts, 2)
	eq(t, "Attempts after two claims", getMsg(t, s, "a", "a5").Attempts, 2)
}

func testOutboxLease(t *testing.T, s store.Store) {
	for i := range 3 {
		enqueue(t, s, newMsg("q", fmt.Sprintf("m%d", i), time.Hour))
	}
	_, err := s.ClaimOutbox(ctx(t), "q", "c1", base, base, 1)
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
		t.Errorf("claim with a lease ending now: %v, want a plain error", err)
	}
	_, err = s.ClaimOutbox(ctx(t), "q", "", base, base.Add(time.Minute), 1)
	if err == nil {
		t.Errorf("claim without an owner succeeded")
	}

	eqList(t, "c1 claims", claim(t, s, "q", "c1", 0, time.Minute, 1), []string{"m0"})
	// While c1 holds a live lease on the queue, another owner gets nothing — not even m1, which
	// nobody holds, because it must not overtake m0.
	eqList(t, "c2 claims during c1's lease", claim(t, s, "q", "c2", time.Second, time.Minute, 0), []string{})

	// Sent: only by the lease owner, only when open; unknown is ErrNotFound.
	wantErr(t, s.MarkOutboxSent(ctx(t), "q", "m0", "c2", at(time.Second)), store.ErrConflict)
	wantErr(t, s.MarkOutboxSent(ctx(t), "q", "m1", "c1", at(time.Second)), store.ErrConflict) // never claimed
	wantErr(t, s.MarkOutboxSent(ctx(t), "q", "none", "c1", at(time.Second)), store.ErrNotFound)
	ok(t, s.MarkOutboxSent(ctx(t), "q", "m0", "c1", at(time.Second)))
	m0 := getMsg(t, s, "q", "m0")
	eq(t, "state after sent", m0.State, store.OutboxSent)
	eqTimePtr(t, "SentAt", m0.SentAt, ptr(at(time.Second)))
	eq(t, "lease owner after sent", m0.LeaseOwner, "c1")
	eqTimePtr(t, "LeaseUntil after sent", m0.LeaseUntil, ptr(at(time.Minute)))
	eq(t, "Attempts", m0.Attempts, 1)

	// The lease runs out: another owner claims the open messages, sent ones included, in order.
	eqList(t, "c2 claims after c1's lease", claim(t, s, "q", "c2", time.Minute, time.Minute, 0), []string{"m0", "m1", "m2"})
	m0 = getMsg(t, s, "q", "m0")
	eq(t, "state after reclaim", m0.State, store.OutboxSent)
	eq(t, "Attempts after reclaim", m0.Attempts, 2)
	wantErr(t, s.MarkOutboxSent(ctx(t), "q", "m0", "c1", at(time.Minute)), store.ErrConflict)
	// A redelivered sent message is marked sent again with the new time.
	ok(t, s.MarkOutboxSent(ctx(t), "q", "m0", "c2", at(61*time.Second)))
	eqTimePtr(t, "SentAt after redelivery", getMsg(t, s, "q", "m0").SentAt, ptr(at(61*time.Second)))

	// Release gives every lease of c2 back at once; a release of an unknown owner does nothing.
	ok(t, s.ReleaseOutbox(ctx(t), "q", "nobody"))
	ok(t, s.ReleaseOutbox(ctx(t), "another queue", "c2"))
	eq(t, "lease kept by a release of another queue", getMsg(t, s, "q", "m0").LeaseOwner, "c2")
	ok(t, s.ReleaseOutbox(ctx(t), "q", "c2"))
	for _, id := range []string{"m0", "m1", "m2"} {
		m := getMsg(t, s, "q", id)
		if m.LeaseOwner != "" || m.LeaseUntil != nil {
			t.Errorf("%s after release: lease %q until %v", id, m.LeaseOwner, m.LeaseUntil)
		}
	}
	eq(t, "state kept by release", getMsg(t, s, "q", "m0").State, store.OutboxSent)
	wantErr(t, s.MarkOutboxSent(ctx(t), "q", "m1", "c2", at(62*time.Second)), store.ErrConflict)
	eqList(t, "c3 claims after release", claim(t, s, "q", "c3", 62*time.Second, time.Minute, 2), []string{"m0", "m1"})
	// c3's held messages are not taken again; the claim continues with m2.
	eqList(t, "c3 claims again", claim(t, s, "q", "c3", 63*time.Second, time.Minute, 2), []string{"m2"})
	eqList(t, "c3 claims once more", claim(t, s, "q", "c3", 64*time.Second, time.Minute, 0), []string{})

	// A lease that ran out on some messages while the owner still holds others live: another owner
	// still waits, so the queue is never split between two deliveries; the owner takes the
	// lapsed ones again.
	enqueue(t, s, newMsg("h", "h0", time.Hour))
	enqueue(t, s, newMsg("h", "h1", time.Hour))
	eqList(t, "c4 claims h0", claim(t, s, "h", "c4", 0, time.Minute, 1), []string{"h0"})
	eqList(t, "c4 claims h1", claim(t, s, "h", "c4", 30*time.Second, time.Minute, 1), []string{"h1"})
	eqList(t, "c5 while c4 holds h1", claim(t, s, "h", "c5", 70*time.Second, time.Minute, 0), []string{})
	eqList(t, "c4 keeps h1, takes h0 again", claim(t, s, "h", "c4", 70*time.Second, time.Minute, 0), []string{"h0"})
	eq(t, "Attempts of h0 taken again", getMsg(t, s, "h", "h0").Attempts, 2)
	eq(t, "Attempts of the held h1", getMsg(t, s, "h", "h1").Attempts, 1)
	eqTimePtr(t, "lease of the held h1", getMsg(t, s, "h", "h1").LeaseUntil, ptr(at(90*time.Second)))
}

func testOutboxComplete(t *testing.T, s store.Store) {
	enqueue(t, s, newMsg("q", "m0", time.Hour))
	enqueue(t, s, newMsg("q", "m1", time.Hour))
	enqueue(t, s, newMsg("q", "m2", time.Hour))
	wantErr(t, s.CompleteOutbox(ctx(t), "q", "none", nil, at(0)), store.ErrNotFound)
	wantErr(t, s.CompleteOutbox(ctx(t), "other", "m0", nil, at(0)), store.ErrNotFound)

	eqList(t, "claim", claim(t, s, "q", "c1", 0, time.Minute, 0), []string{"m0", "m1", "m2"})
	ok(t, s.MarkOutboxSent(ctx(t), "q", "m0", "c1", at(time.Second)))
	// Completion does not depend on who holds the message.
	ok(t, s.CompleteOutbox(ctx(t), "q", "m0", []byte(`{"answer":1}`), at(2*time.Second)))
	m0 := getMsg(t, s, "q", "m0")
	eq(t, "state", m0.State, store.OutboxDone)
	eqBytes(t, "Answer", m0.Answer, []byte(`{"answer":1}`))
	eqTimePtr(t, "DoneAt", m0.DoneAt, ptr(at(2*time.Second)))
	eqTimePtr(t, "SentAt kept", m0.SentAt, ptr(at(time.Second)))
	if m0.LeaseOwner != "" || m0.LeaseUntil != nil {
		t.Errorf("lease after done: %q until %v", m0.LeaseOwner, m0.LeaseUntil)
	}
	wantErr(t, s.CompleteOutbox(ctx(t), "q", "m0", []byte("again"), at(3*time.Second)), store.ErrAlreadyUsed)
	eqBytes(t, "Answer after a second completion", getMsg(t, s, "q", "m0").Answer, []byte(`{"answer":1}`))
	wantErr(t, s.MarkOutboxSent(ctx(t), "q", "m0", "c1", at(3*time.Second)), store.ErrConflict)

	// A queued message (doshii event written to a socket) completes without an answer.
	ok(t, s.CompleteOutbox(ctx(t), "q", "m1", nil, at(3*time.Second)))
	eqBytes(t, "Answer of an event", getMsg(t, s, "q", "m1").Answer, nil)
	eq(t, "count", count(t, s, "q"), 1)

	// Done messages are never claimed again, even after the leases end; an idempotent repeat of
	// the enqueue returns the finished message.
	ok(t, s.ReleaseOutbox(ctx(t), "q", "c1"))
	eqList(t, "claim after completion", claim(t, s, "q", "c2", 2*time.Minute, time.Minute, 0), []string{"m2"})
	got, created, err := s.EnqueueOutbox(ctx(t), newMsg("q", "m0", time.Hour))
	ok(t, err)
	eq(t, "created on a repeat of a done id", created, false)
	eq(t, "state on a repeat of a done id", got.State, store.OutboxDone)
}

func testOutboxExpiry(t *testing.T, s store.Store) {
	enqueue(t, s, newMsg("q", "short", time.Minute))
	enqueue(t, s, newMsg("q", "long", time.Hour))
	enqueue(t, s, newMsg("p", "short", 2*time.Minute))

	// An expired message is not claimed even before ExpireOutbox ran; the claim goes on after it.
	eqList(t, "claim at expiry", claim(t, s, "q", "c1", time.Minute, time.Minute, 0), []string{"long"})
	ok(t, s.ReleaseOutbox(ctx(t), "q", "c1"))

	n, err := s.ExpireOutbox(ctx(t), at(time.Minute-time.Millisecond))
	ok(t, err)
	eq(t, "expired before ExpiresAt", n, 0)
	n, err = s.ExpireOutbox(ctx(t), at(time.Minute))
	ok(t, err)
	eq(t, "expired at ExpiresAt", n, 1)
	m := getMsg(t, s, "q", "short")
	eq(t, "state", m.State, store.OutboxExpired)
	eqTimePtr(t, "DoneAt of expired", m.DoneAt, ptr(at(time.Minute)))
	wantErr(t, s.CompleteOutbox(ctx(t), "q", "short", []byte("late"), at(time.Minute)), store.ErrAlreadyUsed)
	eqBytes(t, "Answer of expired", getMsg(t, s, "q", "short").Answer, nil)
	n, err = s.ExpireOutbox(ctx(t), at(time.Minute))
	ok(t, err)
	eq(t, "expired again", n, 0)
	eq(t, "count q", count(t, s, "q"), 1)

	// A leased and sent message expires too, and its lease ends.
	eqList(t, "claim p", claim(t, s, "p", "c2", 0, time.Hour, 0), []string{"short"})
	ok(t, s.MarkOutboxSent(ctx(t), "p", "short", "c2", at(time.Second)))
	n, err = s.ExpireOutbox(ctx(t), at(3*time.Minute))
	ok(t, err)
	eq(t, "expired sent", n, 1)
	m = getMsg(t, s, "p", "short")
	if m.State != store.OutboxExpired || m.LeaseOwner != "" || m.LeaseUntil != nil {
		t.Errorf("expired sent message: %+v", m)
	}
	wantErr(t, s.MarkOutboxSent(ctx(t), "p", "short", "c2", at(3*time.Minute)), store.ErrConflict)
	eq(t, "count all", count(t, s, ""), 1)
}

func testOutboxCleanup(t *testing.T, s store.Store) {
	enqueue(t, s, newMsg("q", "done-early", time.Hour))
	enqueue(t, s, newMsg("q", "done-late", time.Hour))
	enqueue(t, s, newMsg("q", "expired", time.Minute))
	enqueue(t, s, newMsg("q", "open-old", time.Hour)) // created at base, never finished
	ok(t, s.CompleteOutbox(ctx(t), "q", "done-early", nil, at(time.Second)))
	ok(t, s.CompleteOutbox(ctx(t), "q", "done-late", nil, at(10*time.Minute)))
	n, err := s.ExpireOutbox(ctx(t), at(2*time.Minute))
	ok(t, err)
	eq(t, "expired", n, 1)

	n, err = s.DeleteOutboxFinishedBefore(ctx(t), at(2*time.Minute)) // DoneAt == t is kept
	ok(t, err)
	eq(t, "deleted", n, 1)
	_, err = s.GetOutbox(ctx(t), "q", "done-early")
	wantErr(t, err, store.ErrNotFound)
	getMsg(t, s, "q", "expired")
	n, err = s.DeleteOutboxFinishedBefore(ctx(t), at(2*time.Hour))
	ok(t, err)
	eq(t, "deleted later", n, 2)
	for _, id := range []string{"done-late", "expired"} {
		_, err = s.GetOutbox(ctx(t), "q", id)
		wantErr(t, err, store.ErrNotFound)
	}
	eq(t, "open message kept", getMsg(t, s, "q", "open-old").State, store.OutboxQueued)

	// Once deleted, the id is new again.
	_, created, err := s.EnqueueOutbox(ctx(t), newMsg("q", "done-early", time.Hour))
	ok(t, err)
	eq(t, "created after cleanup", created, true)

	// Cleanup works in batches: more rows than one batch all go.
	for i := range 1005 {
		m := newMsg("bulk", fmt.Sprintf("m%04d", i), time.Minute)
		enqueue(t, s, m)
	}
	n, err = s.ExpireOutbox(ctx(t), at(3*time.Minute))
	ok(t, err)
	eq(t, "bulk expired", n, 1005)
	n, err = s.DeleteOutboxFinishedBefore(ctx(t), at(4*time.Minute))
	ok(t, err)
	eq(t, "bulk deleted", n, 1005)
	eq(t, "count", count(t, s, ""), 2)
}

// testOutboxClaimRace: deliverers on several replicas claim one queue at once. Of one message
// exactly one claimer gets it; of a longer queue one owner gets the head, in order, and every
// message is held by at most one owner.
func testOutboxClaimRace(t *testing.T, s store.Store) {
	for round := range 10 {
		q := fmt.Sprintf("one-%d", round)
		enqueue(t, s, newMsg(q, "m", time.Hour))
		got := make([][]*store.OutboxMessage, 2)
		errs := race(2, func(i int) error {
			var err error
			got[i], err = s.ClaimOutbox(ctx(t), q, fmt.Sprintf("d%d", i), base, base.Add(time.Minute), 10)
			return err
		})
		for _, err := range errs {
			ok(t, err)
		}
		if len(got[0])+len(got[1]) != 1 {
			t.Fatalf("round %d: claims returned %d and %d messages, want exactly one in all", round, len(got[0]), len(got[1]))
		}
		winner := 0
		if len(got[1]) == 1 {
			winner = 1
		}
		eq(t, "stored lease owner", getMsg(t, s, q, "m").LeaseOwner, fmt.Sprintf("d%d", winner))
		eq(t, "Attempts", getMsg(t, s, q, "m").Attempts, 1)
	}

	for i := range 20 {
		enqueue(t, s, newMsg("long", fmt.Sprintf("m%02d", i), time.Hour))
	}
	const claimers = 8
	got := make([][]*store.OutboxMessage, claimers)
	errs := race(claimers, func(i int) error {
		var err error
		got[i], err = s.ClaimOutbox(ctx(t), "long", fmt.Sprintf("d%d", i), base, base.Add(time.Minute), 5)
		return err
	})
	holders := map[string]int{}
	owners := 0
	for i, err := range errs {
		ok(t, err)
		if len(got[i]) > 0 {
			owners++
		}
		for _, m := range got[i] {
			if prev, dup := holders[m.ID]; dup {
				t.Fatalf("%s claimed by d%d and d%d", m.ID, prev, i)
			}
			holders[m.ID] = i
		}
	}
	if owners != 1 {
		t.Fatalf("%d owners got messages of one queue, want 1", owners)
	}
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range holders {
			if !yield(id) {
				return
			}
		}
	})
	eqList(t, "claimed head", ids, []string{"m00", "m01", "m02", "m03", "m04"})
}

// testOutboxEnqueueRace: 50 concurrent enqueues of one id store one row; with two different
// bodies racing, the losers with the winner's body see it stored, the others get ErrConflict.
func testOutboxEnqueueRace(t *testing.T, s store.Store) {
	const n = 50
	created := make([]bool, n)
	seqs := make([]int64, n)
	errs := race(n, func(i int) error {
		m, c, err := s.EnqueueOutbox(ctx(t), newMsg("q", "same", time.Hour))
		if err == nil {
			created[i], seqs[i] = c, m.Seq
		}
		return err
	})
	wins := 0
	for i, err := range errs {
		ok(t, err)
		if created[i] {
			wins++
		}
		if seqs[i] != seqs[0] {
			t.Fatalf("enqueue %d got seq %d, enqueue 0 got %d", i, seqs[i], seqs[0])
		}
	}
	eq(t, "enqueues that created the row", wins, 1)
	eq(t, "rows", count(t, s, "q"), 1)

	errs = race(n, func(i int) error {
		m := newMsg("q", "mixed", time.Hour)
		m.BodyHash = hashOf(fmt.Sprint(i % 2))
		_, c, err := s.EnqueueOutbox(ctx(t), m)
		created[i] = c
		return err
	})
	winner := -1
	for i := range n {
		if created[i] {
			if winner >= 0 {
				t.Fatalf("enqueues %d and %d both created the row", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no enqueue created the row")
	}
	for i, err := range errs {
		switch {
		case i%2 == winner%2 && err != nil:
			t.Errorf("enqueue %d with the stored body: %v", i, err)
		case i%2 != winner%2 && !errors.Is(err, store.ErrConflict):
			t.Errorf("enqueue %d with another body: %v, want ErrConflict", i, err)
		}
	}
	eq(t, "rows", count(t, s, "q"), 2)
}

// testOutboxCompleteRace: concurrent completions of one message have one winner; a completion
// racing the expiry sweep either completes the message or finds it expired, never both.
func testOutboxCompleteRace(t *testing.T, s store.Store) {
	enqueue(t, s, newMsg("q", "m", time.Hour))
	errs := race(8, func(i int) error {
		return s.CompleteOutbox(ctx(t), "q", "m", []byte(fmt.Sprint(i)), at(time.Second))
	})
	w := oneWinner(t, errs, store.ErrAlreadyUsed)
	eqBytes(t, "winner's answer", getMsg(t, s, "q", "m").Answer, []byte(fmt.Sprint(w)))

	completed, expired := 0, 0
	for round := range 20 {
		id := fmt.Sprintf("r%d", round)
		enqueue(t, s, newMsg("race", id, time.Minute))
		var completeErr error
		var n int
		errs := race(2, func(i int) error {
			if i == 0 {
				completeErr = s.CompleteOutbox(ctx(t), "race", id, []byte("answer"), at(time.Minute))
				return nil
			}
			var err error
			n, err = s.ExpireOutbox(ctx(t), at(time.Minute))
			return err
		})
		ok(t, errs[1])
		m := getMsg(t, s, "race", id)
		switch {
		case completeErr == nil && n == 0:
			completed++
			eq(t, "state after completion won", m.State, store.OutboxDone)
		case errors.Is(completeErr, store.ErrAlreadyUsed) && n == 1:
			expired++
			eq(t, "state after expiry won", m.State, store.OutboxExpired)
			eqBytes(t, "answer after expiry won", m.Answer, nil)
		default:
			t.Fatalf("round %d: complete %v, expired %d: want exactly one to win", round, completeErr, n)
		}
	}
	t.Logf("complete vs expire: completion won %d, expiry won %d", completed, expired)
}

func testOutboxClosed(t *testing.T, s store.Store) {
	ok(t, s.Close())
	checks := map[string]error{}
	_, _, checks["EnqueueOutbox"] = s.EnqueueOutbox(ctx(t), newMsg("q", "m", time.Hour))
	_, _, checks["EnqueueOutboxAll"] = s.EnqueueOutboxAll(ctx(t), []*store.OutboxMessage{newMsg("q", "m", time.Hour)})
	_, checks["GetOutbox"] = s.GetOutbox(ctx(t), "q", "m")
	_, checks["ClaimOutbox"] = s.ClaimOutbox(ctx(t), "q", "c", base, base.Add(time.Minute), 1)
	checks["MarkOutboxSent"] = s.MarkOutboxSent(ctx(t), "q", "m", "c", base)
	checks["CompleteOutbox"] = s.CompleteOutbox(ctx(t), "q", "m", nil, base)
	_, checks["ClaimOutboxSent"] = s.ClaimOutboxSent(ctx(t), "q", "c", base, base.Add(time.Minute), 1)
	_, checks["CompleteOutboxBatch"] = s.CompleteOutboxBatch(ctx(t), "q", []string{"m"}, base)
	_, checks["AnswerOutbox"] = s.AnswerOutbox(ctx(t), "q", "m", nil, base)
	checks["ReleaseOutbox"] = s.ReleaseOutbox(ctx(t), "q", "c")
	_, checks["ExpireOutbox"] = s.ExpireOutbox(ctx(t), base)
	_, checks["CountOutbox"] = s.CountOutbox(ctx(t), "")
	_, checks["ListOutboxClaimable"] = s.ListOutboxClaimable(ctx(t), base)
	_, checks["DeleteOutboxFinishedBefore"] = s.DeleteOutboxFinishedBefore(ctx(t), base)
	checks["PutPresence"] = s.PutPresence(ctx(t), &store.Presence{ConnID: "c", Tenant: "t", Replica: "r", Since: base, SeenAt: base})
	checks["TouchPresence"] = s.TouchPresence(ctx(t), "c", base)
	checks["DeletePresence"] = s.DeletePresence(ctx(t), "c")
	_, checks["ListPresence"] = s.ListPresence(ctx(t), "t", base)
	_, checks["DeletePresenceSeenBefore"] = s.DeletePresenceSeenBefore(ctx(t), base)
	for name, err := range checks {
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s on a closed store: %v, want ErrUnavailable", name, err)
		}
	}
}

func testPresence(t *testing.T, s store.Store) {
	for name, p := range map[string]*store.Presence{
		"empty conn id": {Tenant: "t", Replica: "r", Since: base, SeenAt: base},
		"empty tenant":  {ConnID: "c", Replica: "r", Since: base, SeenAt: base},
		"empty replica": {ConnID: "c", Tenant: "t", Since: base, SeenAt: base},
	} {
		if err := s.PutPresence(ctx(t), p); err == nil || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: %v, want a plain error", name, err)
		}
	}
	list := func(tenant string, seenSince time.Duration) []string {
		t.Helper()
		l, err := s.ListPresence(ctx(t), tenant, base.Add(seenSince))
		ok(t, err)
		if l == nil {
			t.Fatalf("ListPresence returned nil, want an empty list")
		}
		out := []string{}
		for _, p := range l {
			out = append(out, p.ConnID+"@"+p.Replica)
		}
		return out
	}
	eqList(t, "empty", list("orderpay:o1", 0), []string{})

	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c1", Tenant: "orderpay:o1", Replica: "r1", Since: base, SeenAt: base}))
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c2", Tenant: "orderpay:o1", Replica: "r2", Since: base.Add(time.Second), SeenAt: base.Add(time.Second)}))
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c0", Tenant: "orderpay:o1", Replica: "r2", Since: base.Add(time.Second), SeenAt: base.Add(time.Second)}))
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c3", Tenant: "doshii:l1", Replica: "r1", Since: base, SeenAt: base}))
	eqList(t, "newest Since first, ties by ConnID descending", list("orderpay:o1", 0), []string{"c2@r2", "c0@r2", "c1@r1"})
	eqList(t, "seen since", list("orderpay:o1", time.Second), []string{"c2@r2", "c0@r2"})

	l, err := s.ListPresence(ctx(t), "doshii:l1", base)
	ok(t, err)
	if len(l) != 1 {
		t.Fatalf("doshii:l1 rows = %d", len(l))
	}
	eq(t, "Tenant", l[0].Tenant, "doshii:l1")
	eqTime(t, "Since", l[0].Since, at(0))
	eqTime(t, "SeenAt", l[0].SeenAt, at(0))

	// Touch refreshes SeenAt; a gone row is ErrNotFound.
	ok(t, s.TouchPresence(ctx(t), "c1", base.Add(time.Minute)))
	eqList(t, "after touch", list("orderpay:o1", time.Minute), []string{"c1@r1"})
	wantErr(t, s.TouchPresence(ctx(t), "none", base), store.ErrNotFound)

	// A connection of several tenants has a row for each: a Put of another tenant adds one, a Put
	// of the same (ConnID, Tenant) replaces it.
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c1", Tenant: "doshii:l1", Replica: "r3", Since: base.Add(2 * time.Minute), SeenAt: base.Add(2 * time.Minute)}))
	eqList(t, "first tenant after a second one", list("orderpay:o1", 0), []string{"c2@r2", "c0@r2", "c1@r1"})
	eqList(t, "second tenant", list("doshii:l1", 0), []string{"c1@r3", "c3@r1"})
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c1", Tenant: "orderpay:o1", Replica: "r3", Since: base.Add(2 * time.Minute), SeenAt: base.Add(2 * time.Minute)}))
	eqList(t, "first tenant replaced", list("orderpay:o1", 0), []string{"c1@r3", "c2@r2", "c0@r2"})
	// Touch refreshes every row of the connection.
	ok(t, s.TouchPresence(ctx(t), "c1", base.Add(3*time.Minute)))
	eqList(t, "touched, first tenant", list("orderpay:o1", 3*time.Minute), []string{"c1@r3"})
	eqList(t, "touched, second tenant", list("doshii:l1", 3*time.Minute), []string{"c1@r3"})
	// Delete removes every row of the connection.
	ok(t, s.DeletePresence(ctx(t), "c1"))
	eqList(t, "deleted, first tenant", list("orderpay:o1", 0), []string{"c2@r2", "c0@r2"})
	eqList(t, "deleted, second tenant", list("doshii:l1", 0), []string{"c3@r1"})
	wantErr(t, s.TouchPresence(ctx(t), "c1", base), store.ErrNotFound)
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c1", Tenant: "doshii:l1", Replica: "r3", Since: base.Add(2 * time.Minute), SeenAt: base.Add(2 * time.Minute)}))

	ok(t, s.DeletePresence(ctx(t), "c2"))
	ok(t, s.DeletePresence(ctx(t), "c2")) // missing is fine
	eqList(t, "after delete", list("orderpay:o1", 0), []string{"c0@r2"})
	wantErr(t, s.TouchPresence(ctx(t), "c2", base), store.ErrNotFound)

	// Rows of dead replicas: everything not seen since t goes; SeenAt == t stays.
	n, err := s.DeletePresenceSeenBefore(ctx(t), base.Add(time.Second))
	ok(t, err)
	eq(t, "stale rows deleted", n, 1) // c3
	eqList(t, "doshii after cleanup", list("doshii:l1", 0), []string{"c1@r3"})
	eqList(t, "orderpay after cleanup", list("orderpay:o1", 0), []string{"c0@r2"})
}

// testOutboxBatch: CompleteOutboxBatch changes, in one call, exactly the messages
// CompleteOutbox would, skips the others without an error and counts what it changed.
func testOutboxBatch(t *testing.T, s store.Store) {
	for i := range 6 {
		enqueue(t, s, newMsg("q", fmt.Sprintf("m%d", i), time.Hour))
	}
	enqueue(t, s, newMsg("other", "m1", time.Hour))
	eqList(t, "claim", claim(t, s, "q", "c1", 0, time.Minute, 4), []string{"m0", "m1", "m2", "m3"})
	ok(t, s.CompleteOutbox(ctx(t), "q", "m3", []byte("answer"), at(time.Second)))

	// Completion does not depend on the holder: m4 (never claimed) completes too; m3 is done
	// already, "none" unknown, other/m1 another queue's.
	n, err := s.CompleteOutboxBatch(ctx(t), "q", []string{"m1", "m3", "m4", "none"}, at(4*time.Second))
	ok(t, err)
	eq(t, "completed", n, 2)
	for _, id := range []string{"m1", "m4"} {
		m := getMsg(t, s, "q", id)
		eq(t, id+" state", m.State, store.OutboxDone)
		eqTimePtr(t, id+" DoneAt", m.DoneAt, ptr(at(4*time.Second)))
		eqBytes(t, id+" Answer", m.Answer, nil)
		if m.LeaseOwner != "" || m.LeaseUntil != nil {
			t.Errorf("%s lease after done: %q until %v", id, m.LeaseOwner, m.LeaseUntil)
		}
	}
	eqBytes(t, "m3 keeps its answer", getMsg(t, s, "q", "m3").Answer, []byte("answer"))
	eq(t, "other queue untouched", getMsg(t, s, "other", "m1").State, store.OutboxQueued)
	n, err = s.CompleteOutboxBatch(ctx(t), "q", []string{"m1", "m4"}, at(5*time.Second))
	ok(t, err)
	eq(t, "completed twice", n, 0)
	eq(t, "open", count(t, s, "q"), 3) // m0, m2 and m5

	// Nothing to record is no error; bad input is refused and changes nothing.
	n, err = s.CompleteOutboxBatch(ctx(t), "q", nil, at(6*time.Second))
	ok(t, err)
	eq(t, "completed of none", n, 0)
	for name, err := range map[string]error{
		"an empty id":  second(s.CompleteOutboxBatch(ctx(t), "q", []string{"", "m2"}, at(6*time.Second))),
		"too many ids": second(s.CompleteOutboxBatch(ctx(t), "q", append(make([]string, 1000), "m2"), at(6*time.Second))),
	} {
		if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s: %v, want a plain error", name, err)
		}
	}
	eq(t, "m2 after refused input", getMsg(t, s, "q", "m2").State, store.OutboxQueued)
}

// completingOutbox is the SQL stores' EnqueueOutboxCompleting.
type completingOutbox interface {
	EnqueueOutboxCompleting(ctx context.Context, msgs []*store.OutboxMessage, holds []*store.OutboxHold, done []store.OutboxCompletion, at time.Time) ([]*store.OutboxMessage, []bool, error)
}

// testOutboxEnqueueCompleting: an enqueue that carries completions stores its messages as
// EnqueueOutboxHeld would and completes what CompleteOutboxBatch would, in one transaction: a
// refused enqueue completes nothing.
func testOutboxEnqueueCompleting(t *testing.T, s store.Store) {
	c, isCompleting := s.(completingOutbox)
	if !isCompleting {
		t.Skip("the store does not complete in an enqueue's transaction")
	}
	for i := range 3 {
		enqueue(t, s, newMsg("q", fmt.Sprintf("m%d", i), time.Hour))
	}
	enqueue(t, s, newMsg("other", "m0", time.Hour))
	ok(t, s.CompleteOutbox(ctx(t), "q", "m2", []byte("answer"), at(time.Second)))

	// A conflict (another body under an existing id) refuses the whole call.
	clash := newMsg("q", "m1", time.Hour)
	clash.BodyHash = []byte("another body")
	_, _, err := c.EnqueueOutboxCompleting(ctx(t), []*store.OutboxMessage{clash},
		nil, []store.OutboxCompletion{{Queue: "q", IDs: []string{"m0"}}}, at(2*time.Second))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("conflicting enqueue with completions: %v, want ErrConflict", err)
	}
	eq(t, "m0 after the refused call", getMsg(t, s, "q", "m0").State, store.OutboxQueued)

	got, created, err := c.EnqueueOutboxCompleting(ctx(t), []*store.OutboxMessage{newMsg("q", "m3", time.Hour)}, nil,
		[]store.OutboxCompletion{{Queue: "q", IDs: []string{"m0", "m2", "none"}}, {Queue: "other", IDs: []string{"m1"}}}, at(3*time.Second))
	ok(t, err)
	if len(got) != 1 || len(created) != 1 || !created[0] || got[0].ID != "m3" || got[0].State != store.OutboxQueued {
		t.Fatalf("enqueued %v, %v", got, created)
	}
	m0 := getMsg(t, s, "q", "m0")
	eq(t, "m0 state", m0.State, store.OutboxDone)
	eqTimePtr(t, "m0 DoneAt", m0.DoneAt, ptr(at(3*time.Second)))
	eqBytes(t, "m2 keeps its answer", getMsg(t, s, "q", "m2").Answer, []byte("answer"))
	eq(t, "m1 untouched", getMsg(t, s, "q", "m1").State, store.OutboxQueued)
	eq(t, "other queue untouched", getMsg(t, s, "other", "m0").State, store.OutboxQueued)
	eq(t, "open", count(t, s, "q"), 2) // m1 and m3
}

// testOutboxClaimSent: ClaimOutboxSent claims exactly what ClaimOutbox would and marks what it
// takes sent; what the owner holds is left alone, and RenewOutbox keeps its state and SentAt.
func testOutboxClaimSent(t *testing.T, s store.Store) {
	for _, id := range []string{"m0", "m1", "m2"} {
		enqueue(t, s, newMsg("q", id, time.Hour))
	}
	claimSent := func(owner string, now time.Duration, want ...string) []*store.OutboxMessage {
		t.Helper()
		l, err := s.ClaimOutboxSent(ctx(t), "q", owner, at(now), at(now+time.Minute), 2)
		ok(t, err)
		var ids []string
		for _, m := range l {
			ids = append(ids, m.ID)
			if m.LeaseOwner != owner || m.LeaseUntil == nil || !m.LeaseUntil.Equal(at(now+time.Minute)) {
				t.Fatalf("claimed %s: lease %q until %v", m.ID, m.LeaseOwner, m.LeaseUntil)
			}
		}
		eqList(t, "claimed by "+owner, ids, want)
		return l
	}
	check := func(id string, state store.OutboxState, sent *time.Time, attempts int) {
		t.Helper()
		m := getMsg(t, s, "q", id)
		eq(t, id+" state", m.State, state)
		eqTimePtr(t, id+" SentAt", m.SentAt, sent)
		eq(t, id+" Attempts", m.Attempts, attempts)
	}
	for _, m := range claimSent("c1", 0, "m0", "m1") {
		eq(t, m.ID+" returned state", m.State, store.OutboxSent)
		eqTimePtr(t, m.ID+" returned SentAt", m.SentAt, ptr(at(0)))
	}
	check("m2", store.OutboxQueued, nil, 0)
	// A claim by the live delivery leaves what it holds alone and takes the next; a renewal
	// keeps what was sent as it was.
	claimSent("c1", 10*time.Second, "m2")
	check("m0", store.OutboxSent, ptr(at(0)), 1)
	renewed, err := s.RenewOutbox(ctx(t), "q", "c1", at(10*time.Second), at(70*time.Second))
	ok(t, err)
	slices.Sort(renewed)
	eqList(t, "renewed", renewed, []string{"m0", "m1", "m2"})
	check("m0", store.OutboxSent, ptr(at(0)), 1)
	eqTimePtr(t, "m0 lease after the renewal", getMsg(t, s, "q", "m0").LeaseUntil, ptr(at(70*time.Second)))
	// Another owner gets nothing while c1's leases live; after the release it takes them anew.
	claimSent("c2", 20*time.Second)
	ok(t, s.ReleaseOutbox(ctx(t), "q", "c1"))
	claimSent("c2", 30*time.Second, "m0", "m1")
	check("m0", store.OutboxSent, ptr(at(30*time.Second)), 2)
	// Answered messages are not claimed; the plain claim does not mark.
	_, err = s.AnswerOutbox(ctx(t), "q", "m0", []byte("a"), at(31*time.Second))
	ok(t, err)
	_, err = s.AnswerOutbox(ctx(t), "q", "m1", []byte("a"), at(31*time.Second))
	ok(t, err)
	eqList(t, "plain claim", claim(t, s, "q", "c2", 32*time.Second, time.Minute, 0), []string{"m2"})
	check("m2", store.OutboxSent, ptr(at(10*time.Second)), 2)
	check("m0", store.OutboxDone, ptr(at(30*time.Second)), 2)
}

func second[T any](_ T, err error) error { return err }

// testOutboxAnswer: AnswerOutbox completes a message a delivery took and returns it; a message
// never taken is unknown to the peer (ErrNotFound), a finished one ErrAlreadyUsed.
func testOutboxAnswer(t *testing.T, s store.Store) {
	enqueue(t, s, newMsg("q", "m0", time.Hour))
	enqueue(t, s, newMsg("q", "m1", time.Hour))
	enqueue(t, s, newMsg("q", "m2", time.Minute))
	_, err := s.AnswerOutbox(ctx(t), "q", "none", []byte("a"), at(0))
	wantErr(t, err, store.ErrNotFound)
	_, err = s.AnswerOutbox(ctx(t), "q", "m0", []byte("a"), at(0))
	wantErr(t, err, store.ErrNotFound) // queued, never delivered
	eq(t, "never delivered stays queued", getMsg(t, s, "q", "m0").State, store.OutboxQueued)

	eqList(t, "claim", claim(t, s, "q", "c1", 0, time.Minute, 0), []string{"m0", "m1", "m2"})
	ok(t, s.MarkOutboxSent(ctx(t), "q", "m0", "c1", at(time.Second)))
	got, err := s.AnswerOutbox(ctx(t), "q", "m0", []byte(`{"answer":0}`), at(2*time.Second))
	ok(t, err)
	stored := getMsg(t, s, "q", "m0")
	eq(t, "returned state", got.State, store.OutboxDone)
	eqBytes(t, "returned Answer", got.Answer, []byte(`{"answer":0}`))
	eqTimePtr(t, "returned DoneAt", got.DoneAt, ptr(at(2*time.Second)))
	eqTimePtr(t, "returned SentAt", got.SentAt, ptr(at(time.Second)))
	eq(t, "returned Seq", got.Seq, stored.Seq)
	eqBytes(t, "returned Payload", got.Payload, stored.Payload)
	eq(t, "stored state", stored.State, store.OutboxDone)
	eqBytes(t, "stored Answer", stored.Answer, []byte(`{"answer":0}`))
	if stored.LeaseOwner != "" || stored.LeaseUntil != nil || got.LeaseOwner != "" || got.LeaseUntil != nil {
		t.Errorf("lease after the answer: %q until %v", stored.LeaseOwner, stored.LeaseUntil)
	}
	_, err = s.AnswerOutbox(ctx(t), "q", "m0", []byte("again"), at(3*time.Second))
	wantErr(t, err, store.ErrAlreadyUsed)
	eqBytes(t, "first answer stands", getMsg(t, s, "q", "m0").Answer, []byte(`{"answer":0}`))

	// Claimed (written) but its mark not recorded, then its lease given back: the peer may have
	// it, so its answer counts.
	ok(t, s.ReleaseOutbox(ctx(t), "q", "c1"))
	got, err = s.AnswerOutbox(ctx(t), "q", "m1", []byte("a1"), at(3*time.Second))
	ok(t, err)
	eq(t, "released then answered", got.State, store.OutboxDone)

	n, err := s.ExpireOutbox(ctx(t), at(2*time.Minute))
	ok(t, err)
	eq(t, "expired", n, 1)
	_, err = s.AnswerOutbox(ctx(t), "q", "m2", []byte("late"), at(2*time.Minute))
	wantErr(t, err, store.ErrAlreadyUsed)
	eqBytes(t, "expired keeps no answer", getMsg(t, s, "q", "m2").Answer, nil)
}

// testOutboxBatchRace: batch completions racing each other and single completions complete each
// message once; a claim that marks sent, racing an answer, never reopens it.
func testOutboxBatchRace(t *testing.T, s store.Store) {
	const msgs = 20
	ids := make([]string, msgs)
	for i := range ids {
		ids[i] = fmt.Sprintf("m%02d", i)
		enqueue(t, s, newMsg("q", ids[i], time.Hour))
	}
	const racers = 6
	counts := make([]int, racers)
	errs := race(racers, func(i int) error {
		if i%2 == 0 {
			n, err := s.CompleteOutboxBatch(ctx(t), "q", ids, at(time.Second))
			counts[i] = n
			return err
		}
		for _, id := range ids[i:] {
			err := s.CompleteOutbox(ctx(t), "q", id, []byte(fmt.Sprint(i)), at(time.Second))
			if err == nil {
				counts[i]++
			} else if !errors.Is(err, store.ErrAlreadyUsed) {
				return err
			}
		}
		return nil
	})
	total := 0
	for i, err := range errs {
		ok(t, err)
		total += counts[i]
	}
	eq(t, "completions in all", total, msgs)
	eq(t, "open", count(t, s, "q"), 0)

	for round := range 10 {
		q := fmt.Sprintf("mark-%d", round)
		enqueue(t, s, newMsg(q, "m", time.Hour))
		eqList(t, "claim", claim(t, s, q, "c", 0, time.Minute, 0), []string{"m"})
		var answerErr error
		errs := race(2, func(i int) error {
			if i == 0 {
				_, answerErr = s.AnswerOutbox(ctx(t), q, "m", []byte("answer"), at(time.Second))
				return nil
			}
			_, err := s.ClaimOutboxSent(ctx(t), q, "c", at(time.Second), at(time.Minute), 10)
			return err
		})
		ok(t, errs[1])
		ok(t, answerErr)
		m := getMsg(t, s, q, "m")
		eq(t, "state after mark and answer", m.State, store.OutboxDone)
		eqBytes(t, "answer", m.Answer, []byte("answer"))
	}
}

// testOutboxEnqueueAll: messages enqueued together are stored together or not at all, also when
// callers race with the same messages.
func testOutboxEnqueueAll(t *testing.T, s store.Store) {
	a, b := newMsg("doshii:l1", "e1", time.Minute), newMsg("doshii-vendor:v1", "l1/e1", time.Minute)
	got, created, err := s.EnqueueOutboxAll(ctx(t), []*store.OutboxMessage{a, b})
	ok(t, err)
	if len(got) != 2 || len(created) != 2 || !created[0] || !created[1] || got[0].Seq >= got[1].Seq {
		t.Fatalf("first enqueue: %+v %v", got, created)
	}
	eq(t, "first queue", got[0].Queue, "doshii:l1")
	eq(t, "second state", got[1].State, store.OutboxQueued)
	// Again: nothing changes, the stored messages come back.
	again, created, err := s.EnqueueOutboxAll(ctx(t), []*store.OutboxMessage{newMsg("doshii:l1", "e1", time.Hour), newMsg("doshii-vendor:v1", "l1/e1", time.Hour)})
	ok(t, err)
	if created[0] || created[1] || again[0].Seq != got[0].Seq || again[1].Seq != got[1].Seq {
		t.Fatalf("repeat: %+v %v", again, created)
	}
	// One stored already (a caller that got half-way with EnqueueOutbox), one new: both stored.
	enqueue(t, s, newMsg("doshii:l1", "e2", time.Minute))
	_, created, err = s.EnqueueOutboxAll(ctx(t), []*store.OutboxMessage{newMsg("doshii:l1", "e2", time.Minute), newMsg("doshii-vendor:v1", "l1/e2", time.Minute)})
	ok(t, err)
	if created[0] || !created[1] {
		t.Fatalf("half-stored: created %v", created)
	}
	// A conflict in the second message: the first, new, is not stored either.
	clash := newMsg("doshii-vendor:v1", "l1/e1", time.Minute)
	clash.BodyHash = hashOf("another body")
	got, _, err = s.EnqueueOutboxAll(ctx(t), []*store.OutboxMessage{newMsg("doshii:l1", "e3", time.Minute), clash})
	wantErr(t, err, store.ErrConflict)
	if len(got) != 1 || got[0].ID != "l1/e1" {
		t.Fatalf("conflict returned %+v, want the stored message", got)
	}
	_, err = s.GetOutbox(ctx(t), "doshii:l1", "e3")
	wantErr(t, err, store.ErrNotFound)
	// A message EnqueueOutbox would refuse: a plain error, nothing stored.
	bad := newMsg("doshii-vendor:v1", "l1/e4", time.Minute)
	bad.Payload = nil
	_, _, err = s.EnqueueOutboxAll(ctx(t), []*store.OutboxMessage{newMsg("doshii:l1", "e4", time.Minute), bad})
	if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("invalid message: %v, want a plain error", err)
	}
	_, err = s.GetOutbox(ctx(t), "doshii:l1", "e4")
	wantErr(t, err, store.ErrNotFound)
	_, _, err = s.EnqueueOutboxAll(ctx(t), nil)
	if err == nil {
		t.Fatal("no message: no error")
	}
	// Concurrent callers with the same pair: one row each, every caller gets them.
	var wg sync.WaitGroup
	seqs := make([][2]int64, 20)
	for i := range seqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, _, err := s.EnqueueOutboxAll(ctx(t), []*store.OutboxMessage{newMsg("doshii:l2", "race", time.Minute), newMsg("doshii-vendor:v1", "l2/race", time.Minute)})
			if err != nil {
				t.Errorf("racing enqueue: %v", err)
				return
			}
			seqs[i] = [2]int64{got[0].Seq, got[1].Seq}
		}()
	}
	wg.Wait()
	for _, sq := range seqs {
		if sq != seqs[0] {
			t.Fatalf("racing enqueues saw different rows: %v", seqs)
		}
	}
	eq(t, "rows of the raced queue", count(t, s, "doshii:l2"), 1)
}

// testOutboxRenew: RenewOutbox extends the live leases of one owner, only those, and keeps
// another owner out of the queue meanwhile; a lapsed lease is not renewed.
func testOutboxRenew(t *testing.T, s store.Store) {
	for _, id := range []string{"m0", "m1", "m2"} {
		enqueue(t, s, newMsg("q", id, time.Hour))
	}
	if _, err := s.RenewOutbox(ctx(t), "q", "", at(0), at(time.Minute)); err == nil {
		t.Errorf("renewal without an owner succeeded")
	}
	if _, err := s.RenewOutbox(ctx(t), "q", "c1", at(time.Minute), at(time.Minute)); err == nil {
		t.Errorf("renewal to a lease ending now succeeded")
	}
	eqList(t, "c1 claims", claim(t, s, "q", "c1", 0, time.Minute, 2), []string{"m0", "m1"})
	renew := func(owner string, now, until time.Duration, want ...string) {
		t.Helper()
		ids, err := s.RenewOutbox(ctx(t), "q", owner, at(now), at(until))
		ok(t, err)
		slices.Sort(ids)
		if want == nil {
			want = []string{}
		}
		eqList(t, "renewed by "+owner, ids, want)
	}
	renew("c1", 30*time.Second, 90*time.Second, "m0", "m1")
	renew("c2", 30*time.Second, 90*time.Second)
	m0 := getMsg(t, s, "q", "m0")
	eqTimePtr(t, "renewed lease", m0.LeaseUntil, ptr(at(90*time.Second)))
	eq(t, "Attempts kept", m0.Attempts, 1)
	eq(t, "state kept", m0.State, store.OutboxQueued)
	eqTimePtr(t, "m2 not leased", getMsg(t, s, "q", "m2").LeaseUntil, nil)
	// Past the first lease, within the renewed one: nobody else may take the queue.
	eqList(t, "c2 during the renewed lease", claim(t, s, "q", "c2", 70*time.Second, time.Minute, 0), []string{})
	// Lapsed: not renewed.
	renew("c1", 100*time.Second, 160*time.Second)
	eqTimePtr(t, "lapsed lease", getMsg(t, s, "q", "m0").LeaseUntil, ptr(at(90*time.Second)))
	// Finished messages are not renewed.
	eqList(t, "c1 claims again", claim(t, s, "q", "c1", 100*time.Second, time.Minute, 0), []string{"m0", "m1", "m2"})
	_, err := s.AnswerOutbox(ctx(t), "q", "m0", []byte("a"), at(101*time.Second))
	ok(t, err)
	renew("c1", 101*time.Second, 200*time.Second, "m1", "m2")
	m := getMsg(t, s, "q", "m0")
	if m.LeaseOwner != "" || m.LeaseUntil != nil {
		t.Errorf("answered message leased: %q until %v", m.LeaseOwner, m.LeaseUntil)
	}
}

// testOutboxClaimable: the queues listed are those with an open, unexpired message on a free or
// lapsed lease — never a queue whose messages are all leased live, finished or expired.
func testOutboxClaimable(t *testing.T, s store.Store) {
	list := func(now time.Duration, want ...string) {
		t.Helper()
		qs, err := s.ListOutboxClaimable(ctx(t), at(now))
		ok(t, err)
		qs = append([]string{}, qs...)
		slices.Sort(qs)
		if want == nil {
			want = []string{}
		}
		eqList(t, fmt.Sprintf("claimable at %s", now), qs, want)
	}
	list(0)
	enqueue(t, s, newMsg("free", "m0", time.Hour))
	enqueue(t, s, newMsg("free", "m1", time.Hour)) // listed once
	enqueue(t, s, newMsg("leased", "m0", time.Hour))
	enqueue(t, s, newMsg("short", "m0", time.Minute))
	enqueue(t, s, newMsg("done", "m0", time.Hour))
	list(0, "done", "free", "leased", "short")
	eqList(t, "claim leased", claim(t, s, "leased", "c1", 0, 2*time.Minute, 0), []string{"m0"})
	ok(t, s.CompleteOutbox(ctx(t), "done", "m0", nil, at(time.Second)))
	list(time.Second, "free", "short")
	// "short" expires at one minute, the lease of "leased" runs out at two.
	list(time.Minute, "free")
	list(2*time.Minute, "free", "leased")
	ok(t, s.ReleaseOutbox(ctx(t), "leased", "c1"))
	list(time.Second, "free", "leased", "short")
}

// testOutboxEnqueueHeld: a held enqueue stores the message taken by the delivery only while the
// queue has nothing open but what that delivery holds live, so it never overtakes an older
// message; otherwise, and on a repeat, it behaves as EnqueueOutboxAll.
func testOutboxEnqueueHeld(t *testing.T, s store.Store) {
	msgAt := func(queue, id string, created time.Duration) *store.OutboxMessage {
		m := newMsg(queue, id, time.Hour)
		m.CreatedAt, m.ExpiresAt = at(created), at(created+time.Hour)
		return m
	}
	hold := func(owner string, until time.Duration, sent bool) *store.OutboxHold {
		return &store.OutboxHold{Owner: owner, LeaseUntil: at(until), Sent: sent}
	}
	held := func(m *store.OutboxMessage, h *store.OutboxHold) *store.OutboxMessage {
		t.Helper()
		got, created, err := s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{m}, []*store.OutboxHold{h})
		ok(t, err)
		eqList(t, "created", []string{fmt.Sprint(created)}, []string{"[true]"})
		return got[0]
	}
	for name, h := range map[string]*store.OutboxHold{
		"no owner":       {LeaseUntil: at(time.Minute)},
		"lease at start": hold("c1", 0, true),
	} {
		if _, _, err := s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("h", "bad", 0)}, []*store.OutboxHold{h}); err == nil || errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: %v, want a plain error", name, err)
		}
	}
	if _, _, err := s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("h", "bad", 0)}, []*store.OutboxHold{nil, nil}); err == nil {
		t.Errorf("two holds for one message accepted")
	}
	eq(t, "count after refused input", count(t, s, ""), 0)

	// An empty queue: taken and sent at once.
	m0 := held(msgAt("h", "m0", 0), hold("c1", time.Minute, true))
	eq(t, "m0 owner", m0.LeaseOwner, "c1")
	eqTimePtr(t, "m0 lease", m0.LeaseUntil, ptr(at(time.Minute)))
	eq(t, "m0 state", m0.State, store.OutboxSent)
	eqTimePtr(t, "m0 SentAt", m0.SentAt, ptr(at(0)))
	eq(t, "m0 Attempts", m0.Attempts, 1)
	if got := getMsg(t, s, "h", "m0"); fmt.Sprint(*got) != fmt.Sprint(*m0) {
		t.Errorf("stored %+v, returned %+v", got, m0)
	}
	// What the owner holds live does not stop it: m1 is taken too, and answerable.
	m1 := held(msgAt("h", "m1", time.Second), hold("c1", time.Minute, true))
	eq(t, "m1 owner", m1.LeaseOwner, "c1")
	eqList(t, "claim by the holder", claim(t, s, "h", "c1", 2*time.Second, time.Minute, 0), []string{})
	_, err := s.AnswerOutbox(ctx(t), "h", "m1", []byte("a1"), at(2*time.Second))
	ok(t, err)
	// Another owner's live lease: stored queued, for the deliverer.
	m2 := held(msgAt("h", "m2", 3*time.Second), hold("c2", time.Minute, true))
	if m2.LeaseOwner != "" || m2.State != store.OutboxQueued || m2.Attempts != 0 || m2.SentAt != nil || m2.LeaseUntil != nil {
		t.Errorf("m2 behind another owner's lease: %+v", m2)
	}
	// An older queued message: c1 must not overtake it either.
	m3 := held(msgAt("h", "m3", 4*time.Second), hold("c1", time.Minute, true))
	eq(t, "m3 behind a queued message", m3.LeaseOwner, "")
	ok(t, s.ReleaseOutbox(ctx(t), "h", "c1"))
	eqList(t, "the queue in order", claim(t, s, "h", "c3", 5*time.Second, time.Minute, 0), []string{"m0", "m2", "m3"})

	// A repeat returns the stored message unchanged, a new body is a conflict.
	again, created, err := s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("h", "m0", 6*time.Second)}, []*store.OutboxHold{hold("c9", time.Hour, true)})
	ok(t, err)
	if created[0] || again[0].Seq != m0.Seq || again[0].LeaseOwner != "c3" {
		t.Errorf("repeat: created %v, %+v", created[0], again[0])
	}
	other := msgAt("h", "m0", 6*time.Second)
	other.BodyHash = hashOf("another body")
	got, _, err := s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{other}, []*store.OutboxHold{hold("c9", time.Hour, true)})
	wantErr(t, err, store.ErrConflict)
	if len(got) != 1 || got[0].Seq != m0.Seq {
		t.Errorf("conflict returned %+v, want the stored message", got)
	}

	// Not sent: taken, leased, still queued. A lapsed lease of the owner is no longer its own: the
	// next message waits behind it. An expired message does not stop anything.
	d0 := held(msgAt("d", "d0", 0), hold("c1", time.Minute, false))
	if d0.LeaseOwner != "c1" || d0.State != store.OutboxQueued || d0.SentAt != nil || d0.Attempts != 1 {
		t.Errorf("held, not sent: %+v", d0)
	}
	d1 := held(msgAt("d", "d1", 2*time.Minute), hold("c1", 3*time.Minute, false))
	eq(t, "behind a lapsed lease", d1.LeaseOwner, "")
	e0 := newMsg("e", "e0", time.Second)
	enqueue(t, s, e0)
	e1 := held(msgAt("e", "e1", 2*time.Second), hold("c1", time.Minute, false))
	eq(t, "behind an expired message", e1.LeaseOwner, "c1")

	// Several queues in one transaction, held or not; a conflict stores none of them.
	got, created, err = s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("x", "x0", 0), msgAt("y", "y0", 0)},
		[]*store.OutboxHold{hold("c1", time.Minute, false), nil})
	ok(t, err)
	if !created[0] || !created[1] || got[0].LeaseOwner != "c1" || got[1].LeaseOwner != "" {
		t.Errorf("two queues: created %v, owners %q %q", created, got[0].LeaseOwner, got[1].LeaseOwner)
	}
	_, _, err = s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("x", "x1", 0), other}, []*store.OutboxHold{hold("c1", time.Minute, false), nil})
	wantErr(t, err, store.ErrConflict)
	_, err = s.GetOutbox(ctx(t), "x", "x1")
	wantErr(t, err, store.ErrNotFound)

	// Concurrent held enqueues of one id store one row.
	const n = 20
	createdN := make([]bool, n)
	errs := race(n, func(i int) error {
		_, c, err := s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("r", "same", 0)}, []*store.OutboxHold{hold(fmt.Sprintf("c%d", i), time.Minute, true)})
		if err == nil {
			createdN[i] = c[0]
		}
		return err
	})
	wins := 0
	for i, err := range errs {
		ok(t, err)
		if createdN[i] {
			wins++
		}
	}
	eq(t, "created of concurrent enqueues", wins, 1)
	eq(t, "rows of the raced id", count(t, s, "r"), 1)
}

// testOutboxEnqueueByPresence: a hold by presence stores the message taken by the delivery of
// the queue's newest live presence row (PresenceOwner of its replica and connection), under the
// same condition as a hold by owner; with no live row, or behind an older message that owner
// does not hold, it is stored queued. The owner is decided by the insert itself.
func testOutboxEnqueueByPresence(t *testing.T, s store.Store) {
	msgAt := func(queue, id string, created time.Duration) *store.OutboxMessage {
		m := newMsg(queue, id, time.Hour)
		m.CreatedAt, m.ExpiresAt = at(created), at(created+time.Hour)
		return m
	}
	present := func(sent bool) *store.OutboxHold {
		return &store.OutboxHold{Present: true, SeenSince: at(time.Minute), LeaseUntil: at(3 * time.Minute), Sent: sent}
	}
	held := func(m *store.OutboxMessage, h *store.OutboxHold) *store.OutboxMessage {
		t.Helper()
		got, created, err := s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{m}, []*store.OutboxHold{h})
		ok(t, err)
		eqList(t, "created", []string{fmt.Sprint(created)}, []string{"[true]"})
		return got[0]
	}
	queued := func(what string, m *store.OutboxMessage) {
		t.Helper()
		if m.LeaseOwner != "" || m.State != store.OutboxQueued || m.Attempts != 0 || m.SentAt != nil || m.LeaseUntil != nil {
			t.Errorf("%s: %+v, want it queued", what, m)
		}
	}
	both := present(true)
	both.Owner = "c1"
	if _, _, err := s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("p", "bad", 2*time.Minute)}, []*store.OutboxHold{both}); err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("owner and presence: %v, want a plain error", err)
	}

	// Nobody holds the queue: queued.
	queued("no presence", held(msgAt("p", "m0", 2*time.Minute), present(true)))
	ok(t, s.CompleteOutbox(ctx(t), "p", "m0", nil, at(2*time.Minute)))
	// A stale row (not seen since SeenSince) and another tenant's row do not count.
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "old", Tenant: "p", Replica: "r0", Since: at(0), SeenAt: at(0)}))
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "other", Tenant: "o", Replica: "r9", Since: at(time.Minute), SeenAt: at(time.Minute)}))
	queued("stale presence", held(msgAt("p", "m1", 2*time.Minute), present(true)))
	ok(t, s.CompleteOutbox(ctx(t), "p", "m1", nil, at(2*time.Minute)))

	// A live row: taken by its delivery and sent, answerable; the next is taken too.
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c1", Tenant: "p", Replica: "r1", Since: at(time.Minute), SeenAt: at(time.Minute)}))
	owner := store.PresenceOwner("r1", "c1")
	m2 := held(msgAt("p", "m2", 2*time.Minute), present(true))
	if m2.LeaseOwner != owner || m2.State != store.OutboxSent || m2.Attempts != 1 {
		t.Errorf("m2: %+v, want it sent, held by %s", m2, owner)
	}
	eqTimePtr(t, "m2 lease", m2.LeaseUntil, ptr(at(3*time.Minute)))
	eqTimePtr(t, "m2 SentAt", m2.SentAt, ptr(at(2*time.Minute)))
	if got := getMsg(t, s, "p", "m2"); fmt.Sprint(*got) != fmt.Sprint(*m2) {
		t.Errorf("stored %+v, returned %+v", got, m2)
	}
	eq(t, "m3 owner", held(msgAt("p", "m3", 2*time.Minute+time.Second), present(true)).LeaseOwner, owner)
	eqList(t, "claim by the holder", claim(t, s, "p", owner, 2*time.Minute+2*time.Second, 3*time.Minute, 0), []string{})
	_, err := s.AnswerOutbox(ctx(t), "p", "m2", []byte("a2"), at(2*time.Minute+2*time.Second))
	ok(t, err)

	// A newer connection on another replica: its delivery is named, and it must not overtake
	// what the older one still holds.
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c2", Tenant: "p", Replica: "r2", Since: at(90 * time.Second), SeenAt: at(90 * time.Second)}))
	queued("behind another delivery's lease", held(msgAt("p", "m4", 2*time.Minute+3*time.Second), present(true)))
	ok(t, s.ReleaseOutbox(ctx(t), "p", owner))
	eqList(t, "the queue in order", claim(t, s, "p", "c3", 2*time.Minute+4*time.Second, 3*time.Minute, 0), []string{"m3", "m4"})
	ok(t, s.ReleaseOutbox(ctx(t), "p", "c3"))

	// Not sent: taken and leased, still queued; on a free queue the newest row names the owner.
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c2", Tenant: "d", Replica: "r2", Since: at(90 * time.Second), SeenAt: at(90 * time.Second)}))
	ok(t, s.PutPresence(ctx(t), &store.Presence{ConnID: "c1", Tenant: "d", Replica: "r1", Since: at(time.Minute), SeenAt: at(2 * time.Minute)}))
	d0 := held(msgAt("d", "d0", 2*time.Minute), present(false))
	if d0.LeaseOwner != store.PresenceOwner("r2", "c2") || d0.State != store.OutboxQueued || d0.SentAt != nil || d0.Attempts != 1 {
		t.Errorf("held, not sent: %+v", d0)
	}

	// A repeat returns the stored message unchanged; a new body is a conflict.
	again, created, err := s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("d", "d0", 2*time.Minute)}, []*store.OutboxHold{present(true)})
	ok(t, err)
	if created[0] || again[0].Seq != d0.Seq || fmt.Sprint(*again[0]) != fmt.Sprint(*d0) {
		t.Errorf("repeat: created %v, %+v", created[0], again[0])
	}
	other := msgAt("d", "d0", 2*time.Minute)
	other.BodyHash = hashOf("another body")
	_, _, err = s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{other}, []*store.OutboxHold{present(true)})
	wantErr(t, err, store.ErrConflict)

	// Two queues in one transaction: one held by presence, one not.
	got, created, err := s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("d", "d1", 2*time.Minute), msgAt("y", "y0", 2*time.Minute)},
		[]*store.OutboxHold{present(false), present(false)})
	ok(t, err)
	if !created[0] || !created[1] || got[0].LeaseOwner != d0.LeaseOwner || got[1].LeaseOwner != "" {
		t.Errorf("two queues: created %v, owners %q %q", created, got[0].LeaseOwner, got[1].LeaseOwner)
	}
	// Two queues, the second an id stored with another body: a conflict, and the first is not
	// stored either (nor taken by the delivery).
	other = msgAt("y", "y0", 2*time.Minute)
	other.BodyHash = hashOf("another body")
	got, _, err = s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("d", "d2", 2*time.Minute), other},
		[]*store.OutboxHold{present(false), present(false)})
	wantErr(t, err, store.ErrConflict)
	if len(got) != 1 || got[0].ID != "y0" {
		t.Errorf("conflict returned %+v, want the stored y0", got)
	}
	_, err = s.GetOutbox(ctx(t), "d", "d2")
	wantErr(t, err, store.ErrNotFound)
	// The same two again, both stored already with these bodies: returned as stored, not created.
	got, created, err = s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("d", "d1", 2*time.Minute), msgAt("y", "y0", 2*time.Minute)},
		[]*store.OutboxHold{present(false), present(false)})
	ok(t, err)
	if created[0] || created[1] || got[0].LeaseOwner != d0.LeaseOwner || got[1].ID != "y0" {
		t.Errorf("repeat of two: created %v, %+v %+v", created, got[0], got[1])
	}
	// One new and one stored: the new one is stored, taken as before.
	got, created, err = s.EnqueueOutboxHeld(ctx(t), []*store.OutboxMessage{msgAt("d", "d3", 2*time.Minute), msgAt("y", "y0", 2*time.Minute)},
		[]*store.OutboxHold{present(false), present(false)})
	ok(t, err)
	if !created[0] || created[1] || got[0].LeaseOwner != d0.LeaseOwner {
		t.Errorf("one new of two: created %v, %+v", created, got[0])
	}
}

// testOutboxSeqAfterCleanup: a message enqueued after the newest messages were finished and
// deleted comes after every message still stored (SQLite may give it a deleted row's seq; it is
// still above every live one), so the queue keeps its order.
func testOutboxSeqAfterCleanup(t *testing.T, s store.Store) {
	var seqs []int64
	for _, id := range []string{"a0", "a1", "a2"} {
		seqs = append(seqs, enqueue(t, s, newMsg("q", id, time.Hour)).Seq)
	}
	ok(t, s.CompleteOutbox(ctx(t), "q", "a1", nil, at(time.Second)))
	ok(t, s.CompleteOutbox(ctx(t), "q", "a2", nil, at(time.Second)))
	n, err := s.DeleteOutboxFinishedBefore(ctx(t), at(2*time.Second))
	ok(t, err)
	eq(t, "deleted", n, 2)
	a3 := enqueue(t, s, newMsg("q", "a3", time.Hour))
	if a3.Seq <= seqs[0] {
		t.Fatalf("seq %d after the cleanup, not above the live a0's %d", a3.Seq, seqs[0])
	}
	b0 := enqueue(t, s, newMsg("other", "b0", time.Hour))
	if b0.Seq <= a3.Seq {
		t.Fatalf("seq %d of a later message, not above %d", b0.Seq, a3.Seq)
	}
	eqList(t, "the queue in order", claim(t, s, "q", "c1", 3*time.Second, time.Minute, 0), []string{"a0", "a3"})
}
