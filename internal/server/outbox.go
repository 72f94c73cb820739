package server

import (
	"context"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/store"
)

// outboxHousekeeping keeps the hub's outbox small: open messages past their lifetime become
// expired, and finished ones (answered, delivered, expired) are deleted once hub.outbox_retention
// has passed. It is a module only for its Maintenance: the outbox belongs to the hub, which every
// websocket dialect shares, so no dialect owns its cleanup.
type outboxHousekeeping struct {
	ob        outboxCleaner // nil when the store keeps no outbox
	clock     clock.Clock
	retention time.Duration
}

// outboxCleaner is the part of store.Outbox the housekeeping uses.
type outboxCleaner interface {
	ExpireOutbox(ctx context.Context, now time.Time) (int, error)
	DeleteOutboxFinishedBefore(ctx context.Context, t time.Time) (int, error)
}

// outboxExpiryEvery is how often open messages past their lifetime are marked expired. Expiry is
// enforced on read (a claim skips them, the APIs report them expired), so this only bounds how
// long they count in the outbox depth gauge and keep their state in the store.
const outboxExpiryEvery = 5 * time.Second

func newOutboxHousekeeping(svc *app.Services) (app.Module, error) {
	h := &outboxHousekeeping{clock: svc.Clock}
	var hc config.Hub
	if svc.Config != nil {
		hc = svc.Config.Hub
	}
	h.retention = config.Seconds(hc.OutboxRetention)
	if h.retention <= 0 {
		// A hand-built config without the key means the default, never "delete at once".
		h.retention = config.Seconds(config.Default().Hub.OutboxRetention)
	}
	if ob, ok := svc.Store.(store.Outbox); ok {
		h.ob = ob
	}
	return h, nil
}

// Mount mounts nothing.
func (*outboxHousekeeping) Mount(public, admin app.Mux) error { return nil }

// Maintenance expires and deletes outbox messages (none without an outbox).
func (h *outboxHousekeeping) Maintenance() []app.Task {
	if h.ob == nil {
		return nil
	}
	return []app.Task{
		{Name: "outbox expiry", Every: outboxExpiryEvery, Run: func(ctx context.Context) error {
			_, err := h.ob.ExpireOutbox(ctx, h.clock.Now())
			return err
		}},
		{Name: "outbox finished messages", Every: app.CleanupEvery, Run: func(ctx context.Context) error {
			_, err := h.ob.DeleteOutboxFinishedBefore(ctx, h.clock.Now().Add(-h.retention))
			return err
		}},
	}
}
