// Package auth turns inbound credentials into a Principal. Each dialect registers Authenticators
// under stable names ("chimpy", "jackpot.apikey", "doshii.venue", "chef.device", "posgate", …) that
// gateway routes list; an Authenticator also renders its dialect's error shape, so a route answers
// failures the way its callers' documentation says.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/posgate/posgate/internal/errs"
)

// Principal is who made a request, whatever the dialect.
type Principal struct {
	Dialect string `json:"dialect"`           // "chimpy", "jackpot", "doshii", "chef", "posgate"
	Means   string `json:"means"`             // the authenticator name that accepted it
	Subject string `json:"subject,omitempty"` // user id, device id, location id, client id…
	Client  string `json:"client,omitempty"`  // internal client id (never an API key)

	Organisation string `json:"organisation,omitempty"`
	Location     string `json:"location,omitempty"`
	Outlet       string `json:"outlet,omitempty"`
	Device       string `json:"device,omitempty"`
	Vendor       string `json:"vendor,omitempty"`

	Scopes []string       `json:"scopes,omitempty"`
	Claims map[string]any `json:"claims,omitempty"` // dialect claims (jackpot amount, notificationKey…)

	// What the gateway needs to act on the credential itself; never sent upstream.
	TokenID   string    `json:"-"` // jti, for consume/revocation
	SessionID string    `json:"-"` // sid (refresh family / device pairing)
	ExpiresAt time.Time `json:"-"` // the credential's expiry (zero: none)
}

// HasScope reports whether p was granted scope s.
func (p *Principal) HasScope(s string) bool {
	for _, x := range p.Scopes {
		if x == s {
			return true
		}
	}
	return false
}

// Authenticator checks one kind of credential.
type Authenticator interface {
	// Authenticate returns the principal behind r's credential. When r carries no credential of this
	// kind at all it returns an error wrapping ErrNoCredential, so the gateway can tell "absent" from
	// "wrong" (a route's means are exactly the listed ones). Other failures are *errs.Error values.
	Authenticate(r *http.Request) (*Principal, error)
	// WriteError writes err in this authenticator's dialect shape (status, headers, body).
	WriteError(w http.ResponseWriter, r *http.Request, err error)
}

// ErrNoCredential means the request carries no credential of the authenticator's kind.
var ErrNoCredential = errs.New(errs.Unauthenticated, "no_credential", "credential is missing")

// IsNoCredential reports whether err means "no credential of this kind".
func IsNoCredential(err error) bool { return errors.Is(err, ErrNoCredential) }

// Registry holds authenticators by name. Dialects register at start; the gateway looks them up
// when it builds its route table, and fails at start on an unknown name.
type Registry struct {
	mu sync.RWMutex
	m  map[string]Authenticator
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{m: map[string]Authenticator{}} }

// Register adds a under name; registering a name twice is a programming error.
func (r *Registry) Register(name string, a Authenticator) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[name]; dup {
		panic(fmt.Sprintf("auth: authenticator %q registered twice", name))
	}
	r.m[name] = a
}

// Get returns the authenticator registered under name.
func (r *Registry) Get(name string) (Authenticator, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.m[name]
	return a, ok
}

// Names lists the registered names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// AddrContextKey is the context key of the client address; its value is a *string. ContextWithAddr
// attaches one; a middleware that already gives each request a context of its own type may answer
// Value(AddrContextKey{}) itself (the server does: no context node per request).
type AddrContextKey struct{}

// WithAddr returns r with the client address (as the server decided it, honouring trusted proxies
// only) attached.
func WithAddr(r *http.Request, addr string) *http.Request {
	return r.WithContext(ContextWithAddr(r.Context(), addr))
}

// ContextWithAddr is WithAddr for a context; Addr reads it from a request carrying this context.
func ContextWithAddr(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, AddrContextKey{}, &addr)
}

// Addr returns the client address attached by WithAddr, or the host part of r.RemoteAddr.
func Addr(r *http.Request) string {
	if a, ok := r.Context().Value(AddrContextKey{}).(*string); ok && a != nil && *a != "" {
		return *a
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
