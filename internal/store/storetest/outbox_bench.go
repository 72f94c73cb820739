package storetest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// BenchOutbox measures one message's whole life in the outbox — EnqueueOutbox, ClaimOutbox,
// MarkOutboxSent, CompleteOutbox: four writes — per op, on a store that open returns fresh.
// "Serial" is one caller (the latency of a delivery); "Parallel" runs b.RunParallel callers, each
// on its own queue, as the hub does with many peers. "OneWrite" is the baseline measured in the
// same run: one UseOnce, a single-row write, so Serial/OneWrite says what a message costs in
// writes on this machine, whatever its disk.
func BenchOutbox(b *testing.B, open func(b *testing.B) store.Store) {
	s := open(b)
	b.Cleanup(func() { _ = s.Close() })
	ctx := b.Context()
	var ids atomic.Int64
	life := func(queue, owner string) error {
		n := ids.Add(1)
		m := &store.OutboxMessage{Queue: queue, ID: fmt.Sprintf("m%d", n), BodyHash: hashOf(fmt.Sprint(n)),
			Payload: []byte(`{"Type":1,"RequestID":"x"}`), CreatedAt: base, ExpiresAt: base.Add(time.Hour)}
		if _, _, err := s.EnqueueOutbox(ctx, m); err != nil {
			return err
		}
		got, err := s.ClaimOutbox(ctx, queue, owner, base, base.Add(time.Minute), 10)
		if err != nil {
			return err
		}
		if len(got) != 1 || got[0].ID != m.ID {
			return fmt.Errorf("claimed %d messages, want %s", len(got), m.ID)
		}
		if err := s.MarkOutboxSent(ctx, queue, m.ID, owner, base); err != nil {
			return err
		}
		return s.CompleteOutbox(ctx, queue, m.ID, []byte(`{"ok":true}`), base)
	}
	b.Run("OneWrite", func(b *testing.B) {
		for b.Loop() {
			if err := s.UseOnce(ctx, fmt.Sprintf("bench-%d", ids.Add(1)), base, base.Add(time.Minute)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Serial", func(b *testing.B) {
		for b.Loop() {
			if err := life("serial", "conn-serial"); err != nil {
				b.Fatal(err)
			}
		}
	})
	var queues atomic.Int64
	b.Run("Parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			q := queues.Add(1)
			queue, owner := fmt.Sprintf("parallel-%d", q), fmt.Sprintf("conn-%d", q)
			for pb.Next() {
				if err := life(queue, owner); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
