package store

import (
	"context"
	"time"
)

// DeviceState is where a chef device is in pairing.
type DeviceState string

const (
	DevicePending  DeviceState = "pending"
	DeviceApproved DeviceState = "approved"
	DeviceDeclined DeviceState = "declined"
	DeviceRevoked  DeviceState = "revoked"
)

// ChefDevice is a device asking to (or allowed to) use the chef API. An approval is bound to the
// device id and to the address and User-Agent it was approved from.
type ChefDevice struct {
	ID         string // internal id "dev_…"
	DeviceKey  string // the device_id the device sent, or a fingerprint of address+User-Agent; unique
	Label      string
	Address    string
	AddressKey string // what the per-address pairing cap counts by (auth.AddrKey: IPv6 by /64); "" stores Address
	UserAgent  string
	State      DeviceState
	FirstSeen  time.Time
	UpdatedAt  time.Time
	DecidedAt  *time.Time
	DecidedBy  string
	Generation int // bumped on every new pairing request; tokens carry it as part of their sid
}

// Chef stores chef devices.
type Chef interface {
	// UpsertPendingChefDevice creates the device as pending, or moves an existing one to pending with
	// the new address/User-Agent/label and Generation+1. It returns the stored device.
	UpsertPendingChefDevice(ctx context.Context, d *ChefDevice) (*ChefDevice, error)
	GetChefDevice(ctx context.Context, id string) (*ChefDevice, error)
	GetChefDeviceByKey(ctx context.Context, deviceKey string) (*ChefDevice, error)
	ListChefDevices(ctx context.Context, state DeviceState) ([]*ChefDevice, error) // "" lists all
	CountChefDevices(ctx context.Context, state DeviceState) (int, error)
	// DecideChefDevice moves the device from one of `from` to `to` (conditional update); ErrConflict
	// when its state is not in `from`, ErrNotFound when it does not exist. Returns the stored device.
	DecideChefDevice(ctx context.Context, id string, from []DeviceState, to DeviceState, by string, at time.Time) (*ChefDevice, error)
	// CountPendingChefDevicesSince counts, in one query, the pending devices with UpdatedAt after
	// since (all) and those of them whose AddressKey is addressKey (atAddress): the pairing caps.
	CountPendingChefDevicesSince(ctx context.Context, since time.Time, addressKey string) (all, atAddress int, err error)
	// ListRecentChefDevices returns at most limit devices in state ("" = all), the most recently
	// updated first (ties: id descending). limit <= 0 means 100; at most 10000.
	ListRecentChefDevices(ctx context.Context, state DeviceState, limit int) ([]*ChefDevice, error)
	// DeletePendingChefDevicesBefore deletes the pending devices last updated before t (requests
	// nobody waits for any more) and returns how many it deleted. Other states are kept.
	DeletePendingChefDevicesBefore(ctx context.Context, t time.Time) (int, error)
}
