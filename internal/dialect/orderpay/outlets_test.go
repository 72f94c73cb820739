package orderpay

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/store"
)

// outletCountingStore serves one outlet and counts the reads by provider id.
type outletCountingStore struct {
	Store
	outlet store.OrderpayOutlet
	reads  atomic.Int64
}

func (s *outletCountingStore) GetOrderpayOutletByProviderID(_ context.Context, id string) (*store.OrderpayOutlet, error) {
	s.reads.Add(1)
	if id != s.outlet.ProviderOutletID {
		return nil, store.ErrNotFound
	}
	o := s.outlet
	return &o, nil
}

// The integrator API reads an outlet once, not on every call; a change announced by another
// replica, or the cache lifetime passing, makes the next call read it again. An unknown outlet
// is read every time (a new outlet is found at once).
func TestOutletLookupCached(t *testing.T) {
	bus := events.NewLocal()
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	st := &outletCountingStore{outlet: store.OrderpayOutlet{ID: "op_1", ProviderOutletID: "p1"}}
	m := &Module{svc: &app.Services{Clock: clk, Log: slog.New(slog.DiscardHandler), Events: bus}, store: st}
	m.outlets = newOutletCache(m)
	lookup := func(want int64) *store.OrderpayOutlet {
		t.Helper()
		o, err := m.outletByProviderID(context.Background(), "p1")
		if err != nil {
			t.Fatal(err)
		}
		if n := st.reads.Load(); n != want {
			t.Fatalf("%d outlet reads, want %d", n, want)
		}
		return o
	}
	lookup(1)
	lookup(1)
	// Disabled on another replica: its notice drops the cached record.
	st.outlet.Disabled = true
	p, _ := json.Marshal(outletChange{ID: "op_1"})
	bus.Deliver(TopicOutletChanged, p)
	if o := lookup(2); !o.Disabled {
		t.Fatal("the record read after the notice is not the disabled one")
	}
	// A missed notice costs at most the lifetime.
	st.outlet.Disabled = false
	lookup(2)
	clk.Advance(outletCacheTTL + time.Millisecond)
	if o := lookup(3); o.Disabled {
		t.Fatal("the record read after the lifetime is still the disabled one")
	}
	for range 2 {
		if _, err := m.outletByProviderID(context.Background(), "unknown"); err == nil {
			t.Fatal("unknown outlet found")
		}
	}
	if n := st.reads.Load(); n != 5 {
		t.Fatalf("%d outlet reads, want 5 (an unknown outlet is never cached)", n)
	}
}
