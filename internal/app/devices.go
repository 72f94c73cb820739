package app

import "time"

// DeviceAction is a person's decision about a paired device (chef's device pairing), taken in the
// admin API or the web console.
type DeviceAction string

const (
	DeviceApprove DeviceAction = "approve" // pending → approved: the held calls get a token
	DeviceDecline DeviceAction = "decline" // pending → declined: the held calls are refused
	DeviceRevoke  DeviceAction = "revoke"  // approved → revoked: every token of the pairing stops verifying
)

// DeviceView is a paired device as the admin API and the console show it.
type DeviceView struct {
	ID        string     `json:"id"`
	DeviceID  string     `json:"device_id"` // the id the device sent; "" when it sent none (fingerprint)
	Label     string     `json:"label"`
	Address   string     `json:"address"`
	UserAgent string     `json:"user_agent"`
	State     string     `json:"state"`
	FirstSeen time.Time  `json:"first_seen"`
	UpdatedAt time.Time  `json:"updated_at"`
	DecidedAt *time.Time `json:"decided_at"`
	DecidedBy string     `json:"decided_by"`
	// Waiting: a pending request younger than the approval window (its call may still be held).
	Waiting bool `json:"waiting"`
}

// LocationStatus is one websocket location's state as the console shows it (doshii's venues).
type LocationStatus struct {
	ID, Name, VendorID string
	Disabled, Online   bool
	Disconnected       *time.Time // nil while online
	// Sockets are the live sockets that carry the location, on any replica: its own POS socket
	// and its vendor's cloud socket.
	Sockets []SocketPresence
}

// SocketPresence is one live socket of a websocket tenant as the admin API and console show it.
type SocketPresence struct {
	Kind    string    `json:"kind"` // the dialect's word for the socket ("pos", "cloud")
	Replica string    `json:"replica"`
	Since   time.Time `json:"connected_since"`
}

// OutletStatus is one websocket outlet's state as the console shows it (orderpay's outlets).
type OutletStatus struct {
	ID, ProviderOutletID, POSRemoteID, ProviderName string
	ProviderID                                      int64
	Disabled, Online                                bool
	ConnectedSince                                  *time.Time // nil while offline
	Replica                                         string     // the replica holding its socket
}
