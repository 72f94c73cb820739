package doshii

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posgate/posgate/internal/store"
)

// locationReads counts location reads by id.
type locationReads struct {
	store.Store
	reads atomic.Int64
}

func (c *locationReads) GetDoshiiLocation(ctx context.Context, id string) (*store.DoshiiLocation, error) {
	c.reads.Add(1)
	return c.Store.GetDoshiiLocation(ctx, id)
}

// TestEventsLocationCached: the platform events API reads a location once per cache lifetime, not
// once per publish; a change announced (here a disable, through the admin API, which announces
// it) is seen at the next publish, and an unknown id is read again every time.
func TestEventsLocationCached(t *testing.T) {
	e := newEnv(t)
	l := e.onboard(e.createVendor("acme"), "Org", "Loc")
	cs := &locationReads{Store: e.st}
	e.mod.verifier.st = cs
	v := e.mod.verifier
	ctx := t.Context()
	get := func(want int64) *store.DoshiiLocation {
		t.Helper()
		got, err := v.locationByID(ctx, l.id)
		if err != nil {
			t.Fatal(err)
		}
		if n := cs.reads.Load(); n != want {
			t.Fatalf("%d location reads, want %d", n, want)
		}
		return got
	}
	if get(1).Disabled || get(1).ID != l.id {
		t.Fatal("a fresh location read as disabled or under another id")
	}
	if r := e.do("POST", "/admin/api/v1/doshii/locations/"+l.id+"/disable", nil); r.status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.status, r.raw)
	}
	n := cs.reads.Load() // the admin handler's own reads go through the module's store too
	if !get(n + 1).Disabled {
		t.Fatal("the disable announced is not seen")
	}
	get(n + 1)
	e.clk.Advance(locationCacheTTL + time.Second)
	get(n + 2)
	for i := range 2 {
		if _, err := v.locationByID(ctx, "dl_unknown"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
		if got := cs.reads.Load(); got != n+3+int64(i) {
			t.Fatalf("unknown id read %d times in all, want %d", got, n+3+int64(i))
		}
	}
}

// heldLocationRead reads a location by id, then, once armed, holds the copy it read until
// release is closed (reached is closed when it has read).
type heldLocationRead struct {
	store.Store
	armed            atomic.Bool
	reached, release chan struct{}
}

func (h *heldLocationRead) GetDoshiiLocation(ctx context.Context, id string) (*store.DoshiiLocation, error) {
	l, err := h.Store.GetDoshiiLocation(ctx, id)
	if h.armed.CompareAndSwap(true, false) {
		close(h.reached)
		<-h.release
	}
	return l, err
}

// TestLocationReadRacingADisableIsNotCached: a read that began before a disable and ends after
// its announcement returns what it read, but does not cache it: the next publish sees the
// disable at once, not after the cache lifetime.
func TestLocationReadRacingADisableIsNotCached(t *testing.T) {
	e := newEnv(t)
	l := e.onboard(e.createVendor("acme"), "Org", "Loc")
	hs := &heldLocationRead{Store: e.st, reached: make(chan struct{}), release: make(chan struct{})}
	e.mod.verifier.st = hs
	v := e.mod.verifier
	ctx := t.Context()
	hs.armed.Store(true)
	raced := make(chan *store.DoshiiLocation, 1)
	go func() {
		got, err := v.locationByID(ctx, l.id)
		if err != nil {
			t.Error(err)
		}
		raced <- got
	}()
	<-hs.reached // it has read the location enabled
	if r := e.do("POST", "/admin/api/v1/doshii/locations/"+l.id+"/disable", nil); r.status != http.StatusOK {
		t.Fatalf("disable: %d %s", r.status, r.raw)
	}
	close(hs.release)
	if got := <-raced; got == nil || got.Disabled {
		t.Fatalf("the raced read returned %+v, want the copy it read before the disable", got)
	}
	got, err := v.locationByID(ctx, l.id)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Disabled {
		t.Fatal("the copy read before the disable was cached after its announcement")
	}
}
