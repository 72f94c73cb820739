package store

import (
	"context"
	"time"
)

// ---------------------------------------------------------------------------------------------
// Settings: facts of the deployment every replica must agree on, one value per name.

// SettingIssuer names the deployment's token issuer (`iss`, the RFC 8414 issuer). Replicas
// sharing a store compare their configured issuer with it at start.
const SettingIssuer = "issuer"

// Settings stores deployment-wide values. A value, once there, changes only by SwapSetting.
type Settings interface {
	// Setting returns name's value, ErrNotFound when it has none. It writes nothing: a replica
	// checks its configuration with it before its start can fail, and records only once it can
	// no longer fail.
	Setting(ctx context.Context, name string) (string, error)
	// InitSetting stores value under name unless name has a value already, and returns the value
	// stored afterwards: value, or the one stored before (whichever replica's came first when
	// several race). name and value must not be empty (else an error that is none of the
	// sentinels, and nothing is stored).
	InitSetting(ctx context.Context, name, value string, at time.Time) (string, error)
	// SwapSetting replaces name's value with value only if it is old: ErrNotFound when name has
	// no value, ErrConflict when it has another one; in both cases nothing changes.
	SwapSetting(ctx context.Context, name, old, value string, at time.Time) error
}
