// Package config is posgate's configuration: a YAML file, POSGATE_<SECTION>_<KEY> environment
// overrides, then command-line flags. Every duration is a whole number of seconds. Unknown keys are
// an error: a typo must never fall back silently to a default.
package config

import "time"

// Config is the whole configuration. Field tags are the key names operators write: stable, never
// renamed.
type Config struct {
	Server    Server            `yaml:"server"`
	Store     Store             `yaml:"store"`
	Keys      Keys              `yaml:"keys"`
	OAuth     OAuth             `yaml:"oauth"`
	Gateway   Gateway           `yaml:"gateway"`
	Upstreams map[string]string `yaml:"upstreams"`
	Routes    []Route           `yaml:"routes"`
	Chef      Chef              `yaml:"chef"`
	Chimpy    Chimpy            `yaml:"chimpy"`
	Jackpot   Jackpot           `yaml:"jackpot"`
	Doshii    Doshii            `yaml:"doshii"`
	Orderpay  Orderpay          `yaml:"orderpay"`
	Hub       Hub               `yaml:"hub"`
	Throttle  Throttle          `yaml:"throttle"`
}

// Server is the listener and its limits.
type Server struct {
	DataDir           string   `yaml:"data_dir"`            // default "./posgate-data"
	Addr              string   `yaml:"addr"`                // HTTPS, default ":8443"
	HTTPAddr          string   `yaml:"http_addr"`           // plain HTTP, default "" (off)
	TLSCert           string   `yaml:"tls_cert"`            // PEM file; default: generated self-signed in data dir
	TLSKey            string   `yaml:"tls_key"`             //
	Issuer            string   `yaml:"issuer"`              // `iss` of posgate tokens and RFC 8414 issuer; default derived from addr (SQLite only: required with PostgreSQL)
	PreviousIssuer    string   `yaml:"previous_issuer"`     // the issuer a PostgreSQL deployment recorded, to move it to Issuer on purpose
	ReadHeaderTimeout int      `yaml:"read_header_timeout"` // seconds, default 5
	ReadTimeout       int      `yaml:"read_timeout"`        // seconds, default 30
	WriteTimeout      int      `yaml:"write_timeout"`       // seconds, default 90 (above chef's 60 s held call)
	IdleTimeout       int      `yaml:"idle_timeout"`        // seconds, default 120
	ShutdownTimeout   int      `yaml:"shutdown_timeout"`    // seconds, default 30
	MaxBodyBytes      int64    `yaml:"max_body_bytes"`      // default 1 MiB
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`    // default 16 KiB
	LogLevel          string   `yaml:"log_level"`           // debug|info|warn|error, default info
	TrustedProxies    []string `yaml:"trusted_proxies"`     // CIDRs whose X-Forwarded-For is believed; default none
	AuditRetention    int      `yaml:"audit_retention"`     // seconds audit events are kept, default 7776000 (90 d)
	GCPercent         int      `yaml:"gc_percent"`          // Go's GOGC for `posgate serve`, default 400; the GOGC environment variable wins
	MemoryLimit       int64    `yaml:"memory_limit"`        // bytes, Go's GOMEMLIMIT for `posgate serve`, default 0 (none); the GOMEMLIMIT environment variable wins
}

// Store selects the backend.
type Store struct {
	Driver string `yaml:"driver"` // sqlite (default) | postgres
	Path   string `yaml:"path"`   // sqlite file, default <data-dir>/posgate.db
	DSN    string `yaml:"dsn"`    // postgres://…
	// Timeout: seconds any one store statement (or transaction) may take before the caller gets
	// 503 + Retry-After as for an unreachable store; default 5.
	Timeout int `yaml:"timeout"`
}

// Keys is the signing keyring.
type Keys struct {
	Algorithm        string `yaml:"algorithm"`         // EdDSA (default) | ES256 | RS256
	RotationInterval int    `yaml:"rotation_interval"` // seconds between automatic rotations, default 7776000 (90 d); 0 = manual only
	RevocationResync int    `yaml:"revocation_resync"` // seconds, default 5
}

// OAuth is posgate's own token endpoint.
type OAuth struct {
	AccessLifetime int `yaml:"access_lifetime"` // client_credentials tokens, seconds, default 3600
}

// Gateway is the reverse proxy.
type Gateway struct {
	UpstreamTimeout int    `yaml:"upstream_timeout"` // seconds, default 30
	SigningSecret   string `yaml:"signing_secret"`   // base64; HMAC key for X-Posgate-Signature; default derived from the master key
}

// Route is one gateway route.
type Route struct {
	Path           string   `yaml:"path"`
	Methods        []string `yaml:"methods"`
	Auth           []string `yaml:"auth"`
	Scopes         []string `yaml:"scopes"`
	Audience       string   `yaml:"audience"`
	Upstream       string   `yaml:"upstream"`
	Consume        bool     `yaml:"consume"`
	MaxAmountField string   `yaml:"max_amount_field"`
	RateLimit      float64  `yaml:"rate_limit"` // requests per second per principal; 0 = none
	RateBurst      int      `yaml:"rate_burst"`
	TenantHeader   string   `yaml:"tenant_header"` // extra header naming a tenant (doshii-location-id is always checked)
}

// Chef dialect.
type Chef struct {
	Prefix               string `yaml:"prefix"`                  // extra mount prefix, default "" (paths of the spec are always mounted)
	ApprovalTimeout      int    `yaml:"approval_timeout"`        // seconds, default 60
	Cooldown             int    `yaml:"cooldown"`                // seconds, default 10
	TokenLifetime        int    `yaml:"token_lifetime"`          // seconds, default 3600
	Leeway               int    `yaml:"leeway"`                  // seconds, 0..120, default 0
	MaxPending           int    `yaml:"max_pending"`             // requests waiting at once, default 100
	MaxPendingPerAddress int    `yaml:"max_pending_per_address"` // of them from one client address, default 5 (one address cannot fill max_pending)
	PendingRetention     int    `yaml:"pending_retention"`       // seconds before a stale pending request is deleted, default 3600, ≥ 2×approval_timeout
	MaxBatch             int    `yaml:"max_batch"`               // default 20
	RenewWindow          int    `yaml:"renew_window"`            // seconds an expired token still renews, default 2592000 (30 d)
	Upstream             string `yaml:"upstream"`                // upstream name for data calls, default "pos"
}

// Chimpy dialect.
type Chimpy struct {
	AccessLifetime    int            `yaml:"access_lifetime"`    // seconds, default 3600
	AudienceLifetimes map[string]int `yaml:"audience_lifetimes"` // per-audience override, seconds
	RefreshIdle       int            `yaml:"refresh_idle"`       // seconds, default 2592000
	RefreshAbsolute   int            `yaml:"refresh_absolute"`   // seconds, default 31536000
	RefreshGrace      int            `yaml:"refresh_grace"`      // seconds, default 0
}

// Jackpot dialect.
type Jackpot struct {
	SessionLifetime int `yaml:"session_lifetime"` // seconds, default 3600
	M2MLifetime     int `yaml:"m2m_lifetime"`     // seconds, default 3600
	IatPast         int `yaml:"iat_past"`         // seconds, default 300
	IatFuture       int `yaml:"iat_future"`       // seconds, default 60
	KeyOverlap      int `yaml:"key_overlap"`      // seconds an old API signature keeps verifying, default 86400
}

// Doshii dialect.
type Doshii struct {
	Prefix       string `yaml:"prefix"`        // default "/pos/v3"
	PastWindow   int    `yaml:"past_window"`   // seconds, default 600
	FutureWindow int    `yaml:"future_window"` // seconds, default 60
	KeyOverlap   int    `yaml:"key_overlap"`   // seconds, default 86400
	OfflineAfter int    `yaml:"offline_after"` // seconds without a heartbeat before a location is offline, default 90
	EventTTL     int    `yaml:"event_ttl"`     // seconds a platform event waits for a socket, default 600
}

// Orderpay dialect (websocket hub: next phase).
type Orderpay struct {
	TicketLifetime int `yaml:"ticket_lifetime"` // seconds, default 300
	RequestWait    int `yaml:"request_wait"`    // seconds, default 30
	RequestTTL     int `yaml:"request_ttl"`     // seconds, default 600
}

// Hub is the websocket hub shared by the dialects whose POS keeps a socket open (orderpay, doshii).
type Hub struct {
	PingInterval int   `yaml:"ping_interval"` // seconds between server pings, default 30; two unanswered pings close the socket
	WriteTimeout int   `yaml:"write_timeout"` // seconds one frame may take to write, default 10
	MaxMessage   int64 `yaml:"max_message"`   // bytes, default 1048576; a larger message closes the socket (1009)
	SendQueue    int   `yaml:"send_queue"`    // frames waiting per socket, default 64; a socket that falls further behind is closed
	// Lease is how long a message written to a socket stays with that socket's replica before
	// another may deliver it again (the holder died without giving it back), seconds, default 60.
	Lease int `yaml:"lease"`
	// OutboxRetention is how long a finished (answered, delivered or expired) outbox message is
	// kept for GET and for idempotent retries of its id before it is deleted, seconds, default 86400.
	OutboxRetention int `yaml:"outbox_retention"`
}

// Throttle limits failed credential checks. Per address first; identity-wide only much higher.
type Throttle struct {
	Window          int `yaml:"window"`            // seconds, default 300
	PerAddress      int `yaml:"per_address"`       // failures per address per window, default 20
	PerAddressIdent int `yaml:"per_address_ident"` // failures per (address, identity), default 5
	PerIdentity     int `yaml:"per_identity"`      // failures per identity from all addresses, default 100
	IdentityBackoff int `yaml:"identity_backoff"`  // seconds an identity-wide block lasts, default 60
}

// Seconds converts a seconds field to a Duration.
func Seconds(n int) time.Duration { return time.Duration(n) * time.Second }
