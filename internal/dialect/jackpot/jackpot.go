// Package jackpot speaks Jackpot API v2's three authentication means (see
// docs/dialects/jackpot.md):
//
//   - the API key: header `apikey: <key>`; the key is the client's client_id, stored as SHA-256
//     (authenticator "jackpot.apikey");
//   - the client session: POST /v2/token with a jwt-bearer assertion (HS256 with the client's API
//     signature, single use) → a posgate JWT carrying amount and notificationKey
//     (authenticator "jackpot.session");
//   - machine-to-machine: POST /v2/token with client_credentials → a posgate JWT naming the client
//     only (authenticator "jackpot.m2m").
//
// This package holds the wire shapes only; the mechanisms (HS256 front door, issuer, verifier,
// single-use records, throttle) are the shared ones.
package jackpot

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
)

// Names other packages and configuration files use.
const (
	// Audience of every jackpot token; gty tells session and m2m tokens apart.
	Audience = "jackpot"

	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantClientCredentials = "client_credentials"

	// gty claim values.
	GtySession = "jwt-bearer"
	GtyM2M     = "client_credentials"

	AuthAPIKey  = "jackpot.apikey"
	AuthSession = "jackpot.session"
	AuthM2M     = "jackpot.m2m"

	// ThrottleScope counts failed jackpot credential checks (per address first).
	ThrottleScope = "jackpot.client"

	// TokenPath is the token endpoint of the spec.
	TokenPath = "/v2/token"
)

// Tunables that are not configuration keys (the spec fixes them or they are safe defaults).
const (
	maxTokenBody   = 16 << 10 // a token request: an 8 KiB assertion and a few short fields
	maxAPIKeyBytes = 256      // posgate API keys are 49 bytes; anything much longer is not one
	clientCacheTTL = 3 * time.Second
	keyCacheTTL    = 60 * time.Second
	cacheMax       = 10_000
)

// Module is the jackpot dialect.
type Module struct {
	svc     *app.Services
	cfg     settings
	clients *clientCache
	keys    *keyCache
}

// settings are config.Jackpot as durations, defaults applied.
type settings struct {
	sessionLifetime time.Duration
	m2mLifetime     time.Duration
	window          AssertionWindow
	keyOverlap      time.Duration
}

// New builds the jackpot module from the shared services.
func New(svc *app.Services) (app.Module, error) {
	return newModule(svc)
}

func newModule(svc *app.Services) (*Module, error) {
	if svc == nil || svc.Store == nil || svc.Clock == nil || svc.Sealer == nil || svc.Issuer == nil ||
		svc.Verifier == nil || svc.Auth == nil || svc.Log == nil || svc.Throttle == nil {
		return nil, fmt.Errorf("jackpot: incomplete services (store, clock, sealer, issuer, verifier, throttle, auth registry and log are required)")
	}
	jc := config.Default().Jackpot
	if svc.Config != nil {
		jc = svc.Config.Jackpot
	}
	cfg, err := settingsFrom(jc)
	if err != nil {
		return nil, err
	}
	m := &Module{
		svc:     svc,
		cfg:     cfg,
		clients: newClientCache(svc.Clock, clientCacheTTL, cacheMax),
		keys:    newKeyCache(svc.Clock, svc.Sealer, keyCacheTTL, cacheMax),
	}
	if svc.Events != nil {
		// A client disabled or changed through the admin API on any replica is dropped from the
		// cache at once; the TTL only bounds what a missed notice can cost.
		svc.Events.Subscribe(events.TopicClientChanged, func(payload []byte) {
			var ev struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(payload, &ev) // unreadable: ev.ID == "" drops everything
			m.clients.forgetByID(ev.ID)
		})
	}
	return m, nil
}

// settingsFrom converts config.Jackpot (defaults already applied by the config loader) to
// durations, refusing values no loader would have let through.
func settingsFrom(jc config.Jackpot) (settings, error) {
	for _, c := range []struct {
		key      string
		v, lower int
	}{
		{"session_lifetime", jc.SessionLifetime, 1},
		{"m2m_lifetime", jc.M2MLifetime, 1},
		{"iat_past", jc.IatPast, 0},
		{"iat_future", jc.IatFuture, 0},
		{"key_overlap", jc.KeyOverlap, 0},
	} {
		if c.v < c.lower {
			return settings{}, fmt.Errorf("jackpot.%s: %d is not allowed (whole seconds, at least %d)", c.key, c.v, c.lower)
		}
	}
	return settings{
		sessionLifetime: config.Seconds(jc.SessionLifetime),
		m2mLifetime:     config.Seconds(jc.M2MLifetime),
		window:          AssertionWindow{Past: config.Seconds(jc.IatPast), Future: config.Seconds(jc.IatFuture)},
		keyOverlap:      config.Seconds(jc.KeyOverlap),
	}, nil
}

// ReservedAudiences reserves Audience: jackpot tokens come from POST /v2/token only
// (app.AudienceReserver).
func (m *Module) ReservedAudiences() []string { return []string{Audience} }

// MaxTokenLifetime is the longer of the session and m2m lifetimes (app.TokenLifetimer).
func (m *Module) MaxTokenLifetime() time.Duration {
	return max(m.cfg.sessionLifetime, m.cfg.m2mLifetime)
}

var (
	_ app.AudienceReserver = (*Module)(nil)
	_ app.TokenLifetimer   = (*Module)(nil)
)

// Mount registers POST /v2/token, the three authenticators, and the admin route rotating a
// client's API signature.
func (m *Module) Mount(public, admin app.Mux) error {
	public.Handle("POST "+TokenPath, m.tokenHandler())
	m.svc.Auth.Register(AuthAPIKey, &apiKeyAuth{m: m})
	m.svc.Auth.Register(AuthSession, &bearerAuth{m: m, name: AuthSession, gty: GtySession})
	m.svc.Auth.Register(AuthM2M, &bearerAuth{m: m, name: AuthM2M, gty: GtyM2M})
	if admin != nil {
		admin.Handle("POST /clients/{id}/rotate-assertion-secret", http.HandlerFunc(m.rotateAssertionSecret))
	}
	return nil
}
