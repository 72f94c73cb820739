package server

import (
	"log/slog"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/console"
	"github.com/posgate/posgate/internal/dialect/chef"
	"github.com/posgate/posgate/internal/dialect/chimpy"
	"github.com/posgate/posgate/internal/dialect/doshii"
	"github.com/posgate/posgate/internal/dialect/jackpot"
	"github.com/posgate/posgate/internal/dialect/orderpay"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/oauth"
)

// moduleConstructor builds one module from the services and the modules built before it.
type moduleConstructor struct {
	name  string
	build func(svc *app.Services, built []app.Module) (app.Module, error)
}

// modules are the modules of posgate, in build order: dialects first (they register their
// authenticators in svc.Auth), the gateway last (it resolves the authenticator names its routes
// list). Adding a module is one line here; what else it does (background work, shutdown,
// cleanups, reserved audiences, token lifetimes) the server learns from the app interfaces it
// implements.
func modules() []moduleConstructor {
	return []moduleConstructor{
		{"outbox", only(newOutboxHousekeeping)}, // the hub's outbox: expiry and retention
		{"oauth", only(oauth.New)},
		{"chimpy", only(chimpy.New)},
		{"jackpot", only(jackpot.New)},
		{"doshii", only(doshii.New)},
		{"chef", only(chef.New)},
		{"orderpay", only(orderpay.New)},
		{"console", func(svc *app.Services, built []app.Module) (app.Module, error) {
			// chef's device pairing, doshii's locations, orderpay's outlets
			return console.New(svc, first[console.Devices](built), first[console.Locations](built), first[console.Outlets](built))
		}},
		{"gateway", only(gateway.New)}, // last
	}
}

// only adapts a constructor that needs nothing but the services.
func only(build func(*app.Services) (app.Module, error)) func(*app.Services, []app.Module) (app.Module, error) {
	return func(svc *app.Services, _ []app.Module) (app.Module, error) { return build(svc) }
}

// first returns the first of built that implements T (the zero T when none does): how a module
// receives another as the narrow interface it declares.
func first[T any](built []app.Module) T {
	for _, m := range built {
		if t, ok := m.(T); ok {
			return t
		}
	}
	var zero T
	return zero
}

// upstreamForwarder is the gateway's reverse proxy as the server holds it: modules forward
// through it (svc.Upstream), and the server closes its idle connections when it closes.
type upstreamForwarder interface {
	app.Forwarder
	Close()
}

// newForwarder builds the gateway's reverse proxy, which dialects that forward calls themselves
// (chef) use through svc.Upstream.
func newForwarder(cfg *config.Config, master []byte, log *slog.Logger, clk clock.Clock) (upstreamForwarder, error) {
	return gateway.NewForwarder(cfg, master, log, clk)
}
