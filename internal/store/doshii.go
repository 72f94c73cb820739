package store

import (
	"context"
	"time"
)

// DoshiiVendor is a POS vendor known by its API name.
type DoshiiVendor struct {
	ID        string // "dv_…"
	APIName   string // unique; the `vendor` header
	Keys      []VendorKey
	CreatedAt time.Time
	Disabled  bool // its credentials are refused and its sockets closed
}

// VendorKey is a sealed vendor key (HS256 secret and onboarding bearer). The newest is first;
// older ones verify until NotAfter.
type VendorKey struct {
	ID        string
	Sealed    []byte
	Hash      []byte // SHA-256 of the key, for constant-time bearer checks without unsealing
	CreatedAt time.Time
	NotAfter  *time.Time
}

// DoshiiOrganisation is an organisation a vendor onboarded. Body holds the spec's fields as JSON.
type DoshiiOrganisation struct {
	ID        string
	VendorID  string
	Name      string
	Body      []byte // JSON object of the descriptive fields
	CreatedAt time.Time
	UpdatedAt time.Time
}

// DoshiiLocation is a venue. Its token (the location token) is stored as a SHA-256 hash for lookup
// and sealed so it can be shown again only through an explicit admin rotation.
type DoshiiLocation struct {
	ID             string
	VendorID       string
	OrganisationID string
	Name           string
	TokenHash      []byte // unique
	Body           []byte // JSON object of the descriptive fields
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// DisconnectedAt is when the location is (or was) offline: its last heartbeat plus the
	// offline delay. A time still ahead means online; nil means it never sent a heartbeat.
	DisconnectedAt *time.Time
	Disabled       bool // its credentials are refused and its sockets closed
}

// Doshii stores vendors, organisations and locations.
type Doshii interface {
	CreateDoshiiVendor(ctx context.Context, v *DoshiiVendor) error // ErrConflict on duplicate APIName
	GetDoshiiVendor(ctx context.Context, id string) (*DoshiiVendor, error)
	GetDoshiiVendorByName(ctx context.Context, apiName string) (*DoshiiVendor, error)
	ListDoshiiVendors(ctx context.Context) ([]*DoshiiVendor, error)
	// AddVendorKey adds k as newest and sets NotAfter = overlapEnd on older keys, in one transaction.
	AddVendorKey(ctx context.Context, vendorID string, k VendorKey, overlapEnd time.Time) error

	CreateDoshiiOrganisation(ctx context.Context, o *DoshiiOrganisation) error // ErrConflict on duplicate (vendor, name)
	GetDoshiiOrganisation(ctx context.Context, id string) (*DoshiiOrganisation, error)
	CreateDoshiiLocation(ctx context.Context, l *DoshiiLocation) error // ErrConflict on duplicate (organisation, name)
	// CreateDoshiiOrganisationWithLocation creates both in one transaction (inline location).
	CreateDoshiiOrganisationWithLocation(ctx context.Context, o *DoshiiOrganisation, l *DoshiiLocation) error
	GetDoshiiLocation(ctx context.Context, id string) (*DoshiiLocation, error)
	GetDoshiiLocationByTokenHash(ctx context.Context, hash []byte) (*DoshiiLocation, error)
	SetDoshiiLocationToken(ctx context.Context, id string, tokenHash []byte, at time.Time) error
	// ListDoshiiLocations returns vendorID's locations ("" = every vendor's), oldest first.
	ListDoshiiLocations(ctx context.Context, vendorID string) ([]*DoshiiLocation, error)
	// SetDoshiiVendorDisabled and SetDoshiiLocationDisabled set the flag (ErrNotFound when unknown).
	SetDoshiiVendorDisabled(ctx context.Context, id string, disabled bool) error
	SetDoshiiLocationDisabled(ctx context.Context, id string, disabled bool, at time.Time) error
	// ExtendDoshiiLocationOnline records a heartbeat: DisconnectedAt becomes offlineAt unless it is
	// later already (a replica with a slower clock never moves it back). ErrNotFound when unknown.
	ExtendDoshiiLocationOnline(ctx context.Context, id string, offlineAt time.Time) error
	// ExtendDoshiiVendorOnline does the same for every enabled location of vendorID (a cloud POS's
	// heartbeat speaks for all of them). Unknown vendors change nothing.
	ExtendDoshiiVendorOnline(ctx context.Context, vendorID string, offlineAt time.Time) error
	// ExtendDoshiiOnline records many heartbeats in one statement: each location of locations
	// (id → offline deadline) as ExtendDoshiiLocationOnline, and every enabled location of each
	// vendor of vendors as ExtendDoshiiVendorOnline; a location named in both gets the later
	// deadline. Unknown ids change nothing.
	ExtendDoshiiOnline(ctx context.Context, locations, vendors map[string]time.Time) error
	// DeleteDoshiiLocation deletes the location and, in the same transaction, the outbox messages
	// for it: its own queue "doshii:<id>" and, on its vendor's queue "doshii-vendor:<vendor id>",
	// the ids "<id>/…" (so its vendor's cloud socket is not sent them). ErrNotFound when unknown.
	DeleteDoshiiLocation(ctx context.Context, id string) error
	// DeleteDoshiiVendor deletes the vendor with its keys, organisations and locations, and the
	// outbox messages for them (as DeleteDoshiiLocation, and the vendor's whole queue), in one
	// transaction. ErrNotFound when unknown.
	DeleteDoshiiVendor(ctx context.Context, id string) error
}
