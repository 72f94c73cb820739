package store

import (
	"context"
	"time"
)

// ---------------------------------------------------------------------------------------------
// Presence: which replica holds a live websocket for a tenant (an orderpay outlet, a doshii
// location or vendor), so the admin API can show it and every replica can tell "online".

// Presence is one live connection of a tenant ("orderpay:<outlet id>", "doshii:<location id>",
// "doshii-vendor:<vendor id>"). A connection serving several tenants has one per tenant.
type Presence struct {
	ConnID  string // unique per connection
	Tenant  string
	Replica string // the replica holding the socket
	Since   time.Time
	SeenAt  time.Time // refreshed while the connection lives (pongs, heartbeats)
}

// Presences stores presence rows. A replica that dies leaves its rows behind: readers ignore rows
// whose SeenAt is older than their staleness bound, and cleanup deletes them.
type Presences interface {
	// PutPresence inserts or replaces the row of (p.ConnID, p.Tenant); the connection's rows of
	// other tenants stay. ConnID, Tenant and Replica must not be empty (else an error that is none
	// of the sentinels, and nothing is stored).
	PutPresence(ctx context.Context, p *Presence) error
	// TouchPresence sets SeenAt of every row of connID (ErrNotFound when it has none left).
	TouchPresence(ctx context.Context, connID string, at time.Time) error
	// DeletePresence deletes connID's rows, of every tenant (deleting none is not an error).
	DeletePresence(ctx context.Context, connID string) error
	// ListPresence returns tenant's rows seen at or after seenSince, newest Since first (ties:
	// ConnID descending); none is an empty list, not an error.
	ListPresence(ctx context.Context, tenant string, seenSince time.Time) ([]*Presence, error)
	// DeletePresenceSeenBefore deletes rows whose SeenAt is before t (connections of dead
	// replicas) and returns how many.
	DeletePresenceSeenBefore(ctx context.Context, t time.Time) (int, error)
}
