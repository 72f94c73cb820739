// Package store defines every durable fact posgate keeps, behind one interface with two backends
// (embedded SQLite in store/sqlite, PostgreSQL in store/postgres) that one conformance suite
// (store/storetest) proves equal.
//
// Rules every backend follows:
//   - Secrets never arrive here in clear: callers pass SHA-256 or argon2id hashes, or blobs sealed
//     with the master key (keys.Sealer). The store cannot leak what it never sees.
//   - Single use and rotation are decided by the database (a uniqueness constraint or a conditional
//     UPDATE that must change exactly one row), never by memory, so replicas racing cannot both win.
//   - Times are passed in by the caller (from its injected clock) and stored as UTC with at least
//     millisecond precision; backends never call time.Now for a decision.
//   - Errors are the sentinels below (wrapped); a backend that cannot reach its database returns an
//     error wrapping ErrUnavailable.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Backends wrap them; callers test with errors.Is.
var (
	ErrNotFound    = errors.New("store: not found")
	ErrConflict    = errors.New("store: already exists")
	ErrAlreadyUsed = errors.New("store: already used") // single-use value seen before, or a rotated refresh token
	ErrUserChanged = errors.New("store: user changed") // a refresh family's user is gone, disabled or updated since sign-in
	// ErrClientChanged: a write conditional on a client's version found the client gone, disabled
	// or at another version.
	ErrClientChanged = errors.New("store: client changed")
	ErrUnavailable   = errors.New("store: unavailable")
)

// Store is the whole durable state of one posgate deployment.
type Store interface {
	Clients
	Users
	SigningKeys
	RefreshTokens
	Revocations
	SingleUse
	Doshii
	Chef
	Orderpay
	Audit
	Counters
	Outbox
	Presences
	Settings
	ConsoleSessions

	// Ping checks the database is reachable (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the database.
	Close() error
}

// ---------------------------------------------------------------------------------------------
// OAuth clients (chimpy, jackpot, posgate's own /oauth/token).

// Client is an OAuth client. A client is found by the SHA-256 of its public identifier
// (client_id, which for jackpot is the API key and therefore a credential), so a lookup is one
// indexed read and never needs the identifier in clear.
type Client struct {
	ID            string   // internal id ("cl_…"), the name posgate uses in principals and logs
	Name          string   // human label
	ClientIDHash  []byte   // SHA-256 of the public client_id / API key; unique
	ClientIDHint  string   // safe to display: the client_id itself, or for an API key its prefix and last 4 chars
	SecretHash    []byte   // SHA-256 of the generated client secret; nil for a public client
	GrantTypes    []string // e.g. "client_credentials", "password", "refresh_token", "urn:ietf:params:oauth:grant-type:jwt-bearer"
	Scopes        []string // scopes the client may be granted
	Audiences     []string // audiences the client may request
	APIKey        bool     // the client_id is a jackpot API key (apikey header accepted)
	Disabled      bool
	CreatedAt     time.Time
	UpdatedAt     time.Time
	AssertionKeys []AssertionKey // jackpot API signatures, newest first
	// Version is set by the store and changes with every change of the client or of its
	// assertion keys (CreateClient stores 0), so a cached copy can be checked inside a write.
	Version int64
}

// AssertionKey is a sealed HMAC secret a client signs jwt-bearer assertions with (jackpot's "API
// signature"). During rotation the previous key keeps verifying until NotAfter.
type AssertionKey struct {
	ID        string
	Sealed    []byte // sealed with the master key
	CreatedAt time.Time
	NotAfter  *time.Time // nil: no end
}

// Clients stores OAuth clients.
type Clients interface {
	CreateClient(ctx context.Context, c *Client) error // ErrConflict on a duplicate ID or ClientIDHash
	GetClient(ctx context.Context, id string) (*Client, error)
	GetClientByIDHash(ctx context.Context, clientIDHash []byte) (*Client, error)
	ListClients(ctx context.Context) ([]*Client, error)
	// UpdateClient replaces Name, SecretHash, GrantTypes, Scopes, Audiences, Disabled, UpdatedAt.
	UpdateClient(ctx context.Context, c *Client) error
	// SetClientCredentials gives client id a new client_id (its hash and hint) and secret hash:
	// a client whose identifier is a credential (an API key) can only be re-issued this way.
	// ErrConflict when the new hash is another client's, ErrNotFound when id is unknown.
	SetClientCredentials(ctx context.Context, id string, clientIDHash []byte, clientIDHint string, secretHash []byte, at time.Time) error
	// AddAssertionKey adds k as the newest key of client id and sets NotAfter = overlapEnd on every
	// older key that has none (or a later one), in one transaction.
	AddAssertionKey(ctx context.Context, clientID string, k AssertionKey, overlapEnd time.Time) error
}

// ---------------------------------------------------------------------------------------------
// Users (chimpy password grant).

// User is a person who signs in with a password.
type User struct {
	ID           string // "us_…"
	Username     string // unique, compared as given (callers normalise)
	PasswordHash string // argon2id PHC string
	Disabled     bool
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Users stores users.
type Users interface {
	CreateUser(ctx context.Context, u *User) error // ErrConflict on duplicate username
	GetUser(ctx context.Context, id string) (*User, error)
	GetUserByUsername(ctx context.Context, username string) (*User, error)
	ListUsers(ctx context.Context) ([]*User, error)
	SetUserPassword(ctx context.Context, id, passwordHash string, at time.Time) error
	SetUserDisabled(ctx context.Context, id string, disabled bool, at time.Time) error
}

// ---------------------------------------------------------------------------------------------
// Signing keys (the keyring).

// KeyState is where a signing key is in its life.
type KeyState string

const (
	KeyNext    KeyState = "next"    // published in JWKS, not yet signing
	KeyActive  KeyState = "active"  // signing (exactly one)
	KeyRetired KeyState = "retired" // published until RetireAt + the longest token lifetime, then dropped
)

// SigningKey is one of posgate's own token-signing keys.
type SigningKey struct {
	KID        string
	Alg        string // "EdDSA", "ES256", "RS256"
	State      KeyState
	Private    []byte // sealed PKCS#8
	Public     []byte // PKIX DER
	CreatedAt  time.Time
	ActivateAt *time.Time // when it became (or becomes) active
	RetiredAt  *time.Time
	ExpiresAt  *time.Time // after this it is neither published nor accepted
}

// SigningKeys stores the keyring.
type SigningKeys interface {
	ListSigningKeys(ctx context.Context) ([]*SigningKey, error)
	CreateSigningKey(ctx context.Context, k *SigningKey) error
	// RotateSigningKeys makes next the active key and the current active key retired (retiredAt,
	// expiresAt), in one transaction; newNext (may be nil) is inserted as the next key. It fails with
	// ErrConflict if the active key is no longer expectActive (another replica rotated first).
	RotateSigningKeys(ctx context.Context, expectActive, next string, retiredAt, expiresAt time.Time, newNext *SigningKey) error
	DeleteSigningKeysExpiredBefore(ctx context.Context, t time.Time) error
}

// ---------------------------------------------------------------------------------------------
// Refresh tokens (chimpy) and their families.

// RefreshFamily is one sign-in session: every refresh token rotated from one grant. Its ID is the
// `sid` claim of every access token minted from it.
type RefreshFamily struct {
	ID                string // sid
	ClientID          string // internal client id
	UserID            string
	Audience          string
	Scope             string
	CreatedAt         time.Time
	AbsoluteExpiresAt time.Time
	RevokedAt         *time.Time
	RevokeReason      string
}

// RefreshToken is one member of a family, stored by the SHA-256 of its opaque value.
type RefreshToken struct {
	Hash          []byte
	FamilyID      string
	CreatedAt     time.Time
	IdleExpiresAt time.Time
	RotatedAt     *time.Time // set when it was used (and so replaced)
	SuccessorHash []byte
	// SuccessorSealed is the successor's value sealed with the master key, kept only so a retry within
	// the grace period can be answered with the same successor; nil when grace is 0.
	SuccessorSealed []byte
}

// RefreshUse asks UseRefreshToken to rotate the token hashing to Hash at At, storing a successor
// with hash NextHash, only if: the token is not rotated and its idle expiry is after At; its
// family belongs to ClientID, is not revoked and its absolute expiry is after At; the family's
// audience is Audience (when not empty) and none of NotAudiences; every one of Scope is in the
// family's scope; and the family's user is current (exists, enabled, not updated since the family
// was created). The successor is created at At and idles out at NextIdleExpiresAt or at the
// family's absolute expiry, whichever is first.
type RefreshUse struct {
	Hash              []byte
	At                time.Time
	ClientID          string
	Audience          string
	NotAudiences      []string
	Scope             []string
	NextHash          []byte
	NextIdleExpiresAt time.Time
	SuccessorSealed   []byte // kept on the rotated row (RefreshToken.SuccessorSealed)
}

// RefreshUsed is what UseRefreshToken found and did.
type RefreshUsed struct {
	Token       *RefreshToken // as it was before the call
	Family      *RefreshFamily
	UserCurrent bool // the family's user exists, is enabled and was not updated since the family was created
	Rotated     bool // every condition held and the token was rotated by this call
}

// RefreshTokens stores refresh families and tokens.
type RefreshTokens interface {
	// CreateRefreshFamily stores a new family with its first token.
	CreateRefreshFamily(ctx context.Context, f *RefreshFamily, first *RefreshToken) error
	GetRefreshFamily(ctx context.Context, id string) (*RefreshFamily, error)
	// GetRefreshToken returns the token with that hash and its family.
	GetRefreshToken(ctx context.Context, hash []byte) (*RefreshToken, *RefreshFamily, error)
	// RotateRefreshToken marks old as rotated at `at` and stores next, only if old is not rotated yet
	// (a conditional update changing exactly one row); otherwise ErrAlreadyUsed and nothing changes.
	// With checkUser, it also rotates only if the family's user exists, is enabled and was not
	// updated after the family was created, in the same statement; otherwise ErrUserChanged (which
	// wins over ErrAlreadyUsed) and nothing changes.
	RotateRefreshToken(ctx context.Context, oldHash []byte, at time.Time, next *RefreshToken, successorSealed []byte, checkUser bool) error
	// UseRefreshToken is a refresh grant's use of a token, in one write (one round trip to a
	// server): it returns the token and its family as they were before, and rotates the token as
	// RotateRefreshToken(checkUser=true) does only when every condition of u holds. ErrNotFound
	// when no token has the hash.
	UseRefreshToken(ctx context.Context, u *RefreshUse) (*RefreshUsed, error)
	// RevokeRefreshFamily marks the family revoked (idempotent; keeps the first RevokedAt).
	RevokeRefreshFamily(ctx context.Context, id string, at time.Time, reason string) error
	// RevokeUserRefreshFamilies revokes every live family of a user and returns their ids.
	RevokeUserRefreshFamilies(ctx context.Context, userID string, at time.Time, reason string) ([]string, error)
	// DeleteRefreshExpiredBefore removes families whose absolute expiry is before t, with their tokens.
	DeleteRefreshExpiredBefore(ctx context.Context, t time.Time) error
}

// ---------------------------------------------------------------------------------------------
// Revocations of posgate-issued JWTs.

// Revocation names revoked tokens: by token id (jti) or by family (sid; every token carrying it).
type Revocation struct {
	Kind      string // "jti" or "sid"
	Value     string
	RevokedAt time.Time
	ExpiresAt time.Time // after this every token it could match has expired anyway
	Reason    string
}

// Revocations is the durable revocation set. Verifiers load it at start, resync it periodically
// with ListRevocationsSince, and hear of new entries on the event bus.
type Revocations interface {
	// AddRevocation is idempotent: revoking the same kind+value again keeps the first entry.
	AddRevocation(ctx context.Context, r Revocation) error
	// ListRevocationsSince returns unexpired entries (ExpiresAt > now) revoked at or after since.
	ListRevocationsSince(ctx context.Context, since, now time.Time) ([]Revocation, error)
	IsRevoked(ctx context.Context, kind, value string) (bool, error)
	DeleteRevocationsExpiredBefore(ctx context.Context, t time.Time) error
}

// ---------------------------------------------------------------------------------------------
// Single-use values (jackpot assertions and notification keys, orderpay tickets).

// SingleUse remembers values that may be accepted only once.
type SingleUse interface {
	// UseOnce records key as used until expiresAt. It returns ErrAlreadyUsed if key was recorded
	// before and has not expired (an expired record is taken over). Exactly one of any number of
	// concurrent callers, on any replica, succeeds.
	UseOnce(ctx context.Context, key string, at, expiresAt time.Time) error
	// UseOnceChain records distinct keys in order, each as UseOnce does, in one write, and stops
	// at the first one already used: the keys before it stay recorded, it and the ones after it
	// are not. It returns how many keys it recorded, with ErrAlreadyUsed when that is fewer than
	// all of them.
	UseOnceChain(ctx context.Context, keys []string, at, expiresAt time.Time) (int, error)
	// UseOnceAsClient is UseOnceChain done only while client clientID exists, is enabled and is
	// at version (Client.Version). Otherwise it records nothing and returns ErrClientChanged, which
	// wins over ErrAlreadyUsed. The client is checked in the same write, so a caller holding a
	// cached copy of the client needs no read of its own to act on it.
	UseOnceAsClient(ctx context.Context, clientID string, version int64, keys []string, at, expiresAt time.Time) (int, error)
	// ReleaseOnce forgets key, so the next UseOnce of it succeeds. It is for a claim taken
	// before an outcome is known (the gateway claims a consumable token before forwarding and
	// releases it when the upstream refused the call). Releasing an unknown key is not an error.
	ReleaseOnce(ctx context.Context, key string) error
	DeleteSingleUseExpiredBefore(ctx context.Context, t time.Time) error
}

// ---------------------------------------------------------------------------------------------
// Audit events.

// AuditEvent records who did what, from where, with what outcome. Never a secret.
type AuditEvent struct {
	ID      int64
	At      time.Time
	Actor   string // "admin", "client:cl_…", "user:us_…", "vendor:dv_…", "device:dev_…", "anonymous"
	Action  string // e.g. "client.create", "token.refresh_reuse", "login.failed"
	Target  string
	Address string
	Outcome string // "ok", "denied", "error"
	Detail  string // short, secret-free
}

// Audit stores audit events.
type Audit interface {
	AppendAudit(ctx context.Context, e *AuditEvent) error
	ListAudit(ctx context.Context, limit int) ([]*AuditEvent, error) // newest first
	// DeleteAuditBefore deletes the events that occurred before t (audit retention).
	DeleteAuditBefore(ctx context.Context, t time.Time) error
}

// ---------------------------------------------------------------------------------------------
// Failure counters (throttling of failed credential checks, shared by replicas).

// Counters counts events in fixed windows.
type Counters interface {
	// IncrCounter adds 1 to key's count in the window that started at windowStart (a counter whose
	// stored window is older restarts at 1) and returns the new count. Atomic across replicas.
	IncrCounter(ctx context.Context, key string, windowStart, expiresAt time.Time) (int, error)
	// GetCounter returns key's count in the window that started at windowStart (0 if older/none).
	GetCounter(ctx context.Context, key string, windowStart time.Time) (int, error)
	// CountFailure records one failed attempt in one write: it adds 1 to each counter as
	// IncrCounter does and, when event is not nil, appends it as AppendAudit does (setting its
	// ID). Either every count and the event are stored or, with an error, none is. It returns the
	// new counts in the order of incs, each with the count of its PrevKey read in the same
	// statement (for a sliding window: the previous window's count).
	CountFailure(ctx context.Context, incs []CounterIncrement, event *AuditEvent) ([]FailureCount, error)
	DeleteCountersExpiredBefore(ctx context.Context, t time.Time) error
}

// CounterIncrement is one counter of a CountFailure: its key, the window it counts in and when
// it may be deleted.
type CounterIncrement struct {
	Key         string
	WindowStart time.Time
	ExpiresAt   time.Time
	// PrevKey, when not "", names a counter that CountFailure reads but does not change: its
	// count in the window starting at PrevStart exactly (0 when its stored window is another one
	// or there is none) comes back as FailureCount.Prev.
	PrevKey   string
	PrevStart time.Time
}

// FailureCount is one counter's result of a CountFailure: its new count, and the count of its
// PrevKey in PrevStart's window.
type FailureCount struct {
	Hits, Prev int
}
