package app

import (
	"context"
	"net/http"
	"time"
)

// Mux is where a module mounts handlers (an *http.ServeMux satisfies it). Patterns are Go 1.22
// ServeMux patterns ("POST /oauth/token").
type Mux interface {
	Handle(pattern string, handler http.Handler)
}

// Module is a dialect or feature that mounts routes and registers authenticators.
//   - public: the internet-facing mux (dialect endpoints).
//   - admin: the admin API mux, already behind admin-token authentication; patterns are relative to
//     /admin/api/v1 (e.g. "POST /doshii/vendors").
//
// Mount only registers; work that runs in the background starts in Start (Starter). A module adds
// any of the capabilities below by implementing its method: the server finds each by its name, so
// a new module needs no change to the server beyond its line in the module list. A module may
// also implement io.Closer: Close releases what it holds once the server has stopped.
type Module interface {
	Mount(public, admin Mux) error
}

// Starter is a module with background work (subscriptions, loops, connection hubs). The server
// calls Start once, after every module is mounted and the keyring is loaded, before it serves;
// ctx is cancelled when the server closes. Start returns promptly, leaving its goroutines running.
type Starter interface {
	Start(ctx context.Context) error
}

// Shutdowner is a module with something to end when a graceful shutdown begins: calls it holds
// open, hijacked connections (http.Server.Shutdown does not close those). The server calls it
// while in-flight requests drain; ctx ends at server.shutdown_timeout.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// Maintainer is a module with periodic housekeeping. The server runs every task once when it
// starts serving and then every task.Every until it closes; tasks of one period run one after the
// other. A failure is logged and the task runs again at its next period.
type Maintainer interface {
	Maintenance() []Task
}

// Task is one periodic housekeeping job.
type Task struct {
	Name  string        // what it does, for the log ("refresh tokens")
	Every time.Duration // CleanupEvery when zero
	Run   func(ctx context.Context) error
}

// CleanupEvery is the period of cleanups that only keep tables small: expiry is enforced on read,
// so this period is not a security property.
const CleanupEvery = 10 * time.Minute

// AudienceReserver is a module that mints posgate tokens for an audience behind its own endpoint,
// with its own client authentication, throttle and lifetime. No other way to a token may reach
// that audience: the OAuth token endpoint never mints for it, the admin API refuses it in a
// client, and the chimpy authenticator refuses tokens carrying it — a client_credentials token
// with aud "jackpot" would otherwise carry exactly the claims jackpot's m2m check accepts. The
// server gathers the lists into Services.Reserved.
type AudienceReserver interface {
	ReservedAudiences() []string
}

// TokenLifetimer is a module that mints posgate tokens. MaxTokenLifetime is the longest such a
// token is accepted: its lifetime plus any window in which an expired one still is (chef's
// renewal). The keyring keeps a retired signing key published for the longest of them.
type TokenLifetimer interface {
	MaxTokenLifetime() time.Duration
}

// AdminPrefix is where the server mounts the admin API; the routes a module mounts on the admin
// mux are relative to it.
const AdminPrefix = "/admin/api/v1"

// Demoer is a module that can seed an example credential set for `posgate serve --demo`. Demo
// creates it (idempotently) and returns ready-to-paste curl lines for baseURL; the secrets in them
// are shown on the terminal only, never logged.
type Demoer interface {
	Demo(ctx context.Context, baseURL string) ([]string, error)
}

// MethodNotAllowedWriter is a module whose public endpoints answer a wrong method in their own
// error shape. The server then answers, for every "METHOD /path" the module mounts, the other
// methods with 405 and an Allow header (httpx.AllowMux), the body written by
// WriteMethodNotAllowed (the header is already set). Modules without it (the gateway, which
// answers its own routes) are mounted as they are.
type MethodNotAllowedWriter interface {
	WriteMethodNotAllowed(w http.ResponseWriter, r *http.Request, allow string)
}
