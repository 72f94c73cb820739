package postgres

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// TestDoneMarksPlannedOnSmallTable: a batch of done marks reads the messages it names, a few
// buffers each, even through a plan made while the table was a few rows and kept as the table
// grew (a connection keeps a prepared statement's generic plan until the table is analyzed; a
// bench run never lasts until the first autovacuum). The one update of "id = ANY (the ids)"
// planned so read the unique (queue, id) index by queue alone and filtered on id, every message
// of the queue for each batch (≈ 230 buffers per id here). One connection, so the plan made
// while the table was small is the one used after. Fails on the single-statement batch.
func TestDoneMarksPlannedOnSmallTable(t *testing.T) {
	s := openCounted(t, "pool_max_conns=1&options=-c%20plan_cache_mode%3Dforce_generic_plan")
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	if err := s.PutPresence(ctx, &store.Presence{ConnID: "c1", Tenant: "q", Replica: "r1", Since: now, SeenAt: now}); err != nil {
		t.Fatal(err)
	}
	n := 0
	handOff := func(k int) []string {
		t.Helper()
		var ids []string
		for range k {
			id := fmt.Sprintf("m%05d", n)
			n++
			sum := sha256.Sum256([]byte(id))
			m := &store.OutboxMessage{Queue: "q", ID: id, BodyHash: sum[:], Payload: []byte(`{}`), CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			got, _, err := s.EnqueueOutboxHeld(ctx, []*store.OutboxMessage{m},
				[]*store.OutboxHold{{Present: true, SeenSince: now, LeaseUntil: now.Add(time.Minute)}})
			if err != nil || got[0].LeaseOwner == "" {
				t.Fatalf("hand-off: %+v, %v", got, err)
			}
			ids = append(ids, id)
		}
		return ids
	}
	complete := func(ids []string) {
		t.Helper()
		if got, err := s.CompleteOutboxBatch(ctx, "q", ids, now); err != nil || got != len(ids) {
			t.Fatalf("done marks: %d of %d, %v", got, len(ids), err)
		}
	}
	// The plans are made on a table of a few rows.
	for range 3 {
		complete(handOff(5))
	}
	// The queue as a run leaves it: thousands of events done, waiting for their cleanup.
	if _, err := s.pool.Exec(ctx, `INSERT INTO outbox (queue, id, body_hash, payload, state, created_at, expires_at, attempts, lease_owner, done_at)
		SELECT 'q', 'd' || i, '\x00', '\x00', 'done', $1, $2, 1, '', $1 FROM generate_series(1, 20000) AS i`,
		now.UnixMilli(), now.Add(time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	ids := handOff(100)
	_, h0 := statements(t, s, "UPDATE outbox SET state = $%")
	for i := 0; i < len(ids); i += 10 {
		complete(ids[i : i+10])
	}
	_, h1 := statements(t, s, "UPDATE outbox SET state = $%")
	per := float64(h1-h0) / float64(len(ids))
	t.Logf("%.1f buffer hits per done mark, the queue holding 20 000 done messages", per)
	if per > 20 {
		t.Errorf("a done mark reads %.1f buffers with 20 000 done messages in its queue: it walks the queue", per)
	}
}

// TestClaimableListCostFlat: the poll's list of claimable queues reads a few buffers per queue
// whatever the queues hold: here a vendor queue no socket takes, holding 20 000 events, and a
// socket's queue with 5 000 done since the last vacuum, under a generic plan made while the
// table was a few rows. "SELECT DISTINCT queue" over the open
// messages read and sorted all of them (≈ 800 buffers here) at each poll of each replica.
// Fails on the DISTINCT statement.
func TestClaimableListCostFlat(t *testing.T) {
	s := openCounted(t, "pool_max_conns=1&options=-c%20plan_cache_mode%3Dforce_generic_plan")
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	fill := func(queue string, from, to int) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, `INSERT INTO outbox (queue, id, body_hash, payload, state, created_at, expires_at, attempts, lease_owner)
			SELECT $3, 'e' || i, '\x00', convert_to(repeat('x', 150), 'UTF8'), 'queued', $1, $2, 0, '' FROM generate_series($4::int, $5::int) AS i`,
			now.UnixMilli(), now.Add(time.Hour).UnixMilli(), queue, from, to); err != nil {
			t.Fatal(err)
		}
	}
	list := func() []string {
		t.Helper()
		qs, err := s.ListOutboxClaimable(ctx, now)
		if err != nil {
			t.Fatal(err)
		}
		return qs
	}
	fill("vendor", 1, 3)
	list()
	fill("vendor", 4, 20000)
	fill("a", 1, 2)
	// A queue whose only open message is held on a live lease is not claimable.
	if _, err := s.pool.Exec(ctx, `UPDATE outbox SET lease_owner = 'r/c', lease_until = $1, attempts = 1 WHERE queue = 'a'`,
		now.Add(time.Minute).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	fill("b", 1, 1)
	// A socket's queue as a run leaves it: 5 000 events handed to its delivery and done since the
	// last vacuum (their entries still in the open indexes), one held awaiting its done mark.
	fill("l", 1, 5000)
	if _, err := s.pool.Exec(ctx, `UPDATE outbox SET lease_owner = 'r/c', lease_until = $1, attempts = 1 WHERE queue = 'l'`,
		now.Add(time.Minute).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE outbox SET state = 'done', done_at = $1, lease_owner = '', lease_until = NULL
		WHERE queue = 'l' AND id <> 'e5000'`, now.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	// The first poll after the done marks reads the rows of the entries they left behind once,
	// which marks those entries dead; the next polls pass over them.
	list()
	_, h0 := statements(t, s, "%FROM outbox%lease_until <= $1%")
	qs := list()
	_, h1 := statements(t, s, "%FROM outbox%lease_until <= $1%")
	if slices.Sort(qs); fmt.Sprint(qs) != "[b vendor]" {
		t.Fatalf("claimable %v, want [b vendor]", qs)
	}
	t.Logf("%d buffer hits for a list of 4 queues, one holding 20 000 messages", h1-h0)
	if h1-h0 > 60 {
		t.Errorf("listing claimable queues read %d buffers: it reads every open message", h1-h0)
	}
}
