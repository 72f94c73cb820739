package orderpay

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/posgate/posgate/internal/errs"
	"github.com/posgate/posgate/internal/store"
	"github.com/posgate/posgate/internal/ttlcache"
)

// The integrator API names an outlet on every call; its record is cached by ProviderOutletID,
// so a request costs no outlet read. An outlet disabled or enabled on any replica is dropped
// from every replica's cache through the event bus (TopicOutletChanged); the lifetime bounds
// what a missed notice can cost, as the revocation resync does for tokens.
const (
	outletCacheTTL = 5 * time.Second
	outletCacheMax = 10_000
	// TopicOutletChanged announces that an outlet was disabled or enabled: payload {"id"}.
	TopicOutletChanged = "orderpay_outlet"
)

type outletChange struct {
	ID string `json:"id"`
}

func newOutletCache(m *Module) *ttlcache.Cache[string, *store.OrderpayOutlet] {
	c := ttlcache.New[string, *store.OrderpayOutlet](m.svc.Clock, outletCacheTTL, outletCacheMax)
	if m.svc.Events != nil {
		m.svc.Events.Subscribe(TopicOutletChanged, func(p []byte) {
			var n outletChange
			if json.Unmarshal(p, &n) != nil || n.ID == "" {
				c.Clear() // unreadable: forget everything rather than keep a stale entry
				return
			}
			forgetOutlet(c, n.ID)
		})
	}
	return c
}

func forgetOutlet(c *ttlcache.Cache[string, *store.OrderpayOutlet], id string) {
	c.DeleteFunc(func(_ string, o *store.OrderpayOutlet) bool { return o.ID == id })
}

// outletChanged drops outlet id from this replica's cache at once and tells the others.
func (m *Module) outletChanged(ctx context.Context, id string) {
	forgetOutlet(m.outlets, id)
	if m.svc.Events == nil {
		return
	}
	p, _ := json.Marshal(outletChange{ID: id})
	if err := m.svc.Events.Publish(context.WithoutCancel(ctx), TopicOutletChanged, p); err != nil {
		m.svc.Log.LogAttrs(ctx, slog.LevelWarn, "orderpay: announcing an outlet change failed", slog.String("error", err.Error()))
	}
}

// outletByProviderID returns the outlet the path names (a read-only snapshot at most
// outletCacheTTL old, or fresher when a change was announced).
func (m *Module) outletByProviderID(ctx context.Context, id string) (*store.OrderpayOutlet, error) {
	if o, ok := m.outlets.Get(id); ok {
		return o, nil
	}
	o, err := m.store.GetOrderpayOutletByProviderID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "not_found", "no such outlet")
	}
	if err != nil {
		return nil, storeError(err)
	}
	m.outlets.Put(id, o)
	return o, nil
}
