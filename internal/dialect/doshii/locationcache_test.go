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
