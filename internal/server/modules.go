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

// moduleConstructors are the modules of posgate, in build order: dialects first (they register
// their authenticators in svc.Auth), the gateway last (it resolves the authenticator names its
// routes list). Adding a module is one line here.
var moduleConstructors = []struct {
	name  string
	build func(*app.Services) (app.Module, error)
}{
	{"oauth", oauth.New},
	{"chimpy", chimpy.New},
	{"jackpot", jackpot.New},
	{"doshii", doshii.New},
	{"chef", chef.New},
	{"orderpay", orderpay.New},
	{"console", console.New},
	{"gateway", gateway.New}, // last
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
