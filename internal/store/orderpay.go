package store

import (
	"context"
	"time"
)

// ---------------------------------------------------------------------------------------------
// Orderpay outlets and their single-use websocket tickets.

// OrderpayOutlet is a venue whose POS connects out to posgate's websocket. The POS proves itself
// with ProviderOutletID, POSRemoteID and AuthSecret; the secret may be chosen by a person, so it is
// kept only as an argon2id PHC string.
type OrderpayOutlet struct {
	ID               string // internal id ("op_…"), what the admin API names it by
	ProviderOutletID string // the integrator's id for the outlet; unique
	POSRemoteID      string // PowerEPOS's id for the outlet
	ProviderID       int64  // sent to the POS in every request
	ProviderName     string // sent to the POS in every request (at most 64 characters)
	AuthSecretHash   string // argon2id PHC string
	Disabled         bool
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// OrderpayTicket is an AccessToken handed out by the auth endpoint, stored by the SHA-256 of its
// value: it opens one websocket for its outlet, once, before ExpiresAt.
type OrderpayTicket struct {
	Hash      []byte // SHA-256 of the AccessToken; unique
	OutletID  string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    *time.Time
}

// Orderpay stores orderpay outlets and tickets.
type Orderpay interface {
	// CreateOrderpayOutlet stores o; ErrConflict on a duplicate ID or ProviderOutletID.
	CreateOrderpayOutlet(ctx context.Context, o *OrderpayOutlet) error
	GetOrderpayOutlet(ctx context.Context, id string) (*OrderpayOutlet, error)
	// GetOrderpayOutletByProviderID finds an outlet by its ProviderOutletID (compared exactly).
	GetOrderpayOutletByProviderID(ctx context.Context, providerOutletID string) (*OrderpayOutlet, error)
	// ListOrderpayOutlets returns every outlet, oldest first.
	ListOrderpayOutlets(ctx context.Context) ([]*OrderpayOutlet, error)
	// SetOrderpayOutletSecret replaces the AuthSecret hash; ErrNotFound when unknown.
	SetOrderpayOutletSecret(ctx context.Context, id, secretHash string, at time.Time) error
	// SetOrderpayOutletDisabled disables or enables the outlet; ErrNotFound when unknown.
	SetOrderpayOutletDisabled(ctx context.Context, id string, disabled bool, at time.Time) error

	// CreateOrderpayTicket stores an unused ticket; ErrConflict on a duplicate Hash, ErrNotFound
	// when its outlet does not exist.
	CreateOrderpayTicket(ctx context.Context, t *OrderpayTicket) error
	// ConsumeOrderpayTicket marks the ticket with that hash used at `at` and returns it, if it is
	// unused and ExpiresAt is after at — one conditional update, so exactly one of any number of
	// concurrent callers, on any replica, gets it. ErrNotFound when no ticket has that hash or it
	// has expired; ErrAlreadyUsed when it was consumed before. A failed call changes nothing.
	ConsumeOrderpayTicket(ctx context.Context, hash []byte, at time.Time) (*OrderpayTicket, error)
	// DeleteOrderpayTicketsExpiredBefore deletes tickets (used or not) that expired before t.
	DeleteOrderpayTicketsExpiredBefore(ctx context.Context, t time.Time) error
}
