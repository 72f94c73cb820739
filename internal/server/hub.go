package server

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/events"
	"github.com/posgate/posgate/internal/hub"
	"github.com/posgate/posgate/internal/secret"
	"github.com/posgate/posgate/internal/store"
)

// newHub builds the websocket hub from the hub config section. It records presence and delivers
// the outbox through the store when the store plays those roles.
func newHub(cfg *config.Config, st store.Store, bus events.Bus, clk clock.Clock, log *slog.Logger) *hub.Hub {
	o := hub.OptionsFromConfig(cfg.Hub)
	o.Clock = clk
	o.Log = log
	o.Events = bus
	// A bus that reaches other processes means replicas that share the store.
	_, local := bus.(*events.Local)
	o.HandOff = bus != nil && !local
	// The replica's name is what the admin API shows as holding a socket: the host and process
	// say where to look; the random tail keeps a restarted process distinct.
	host, _ := os.Hostname()
	o.Replica = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), secret.NewID("")[:6])
	if p, ok := st.(hub.Presences); ok {
		o.Presences = p
	}
	if ob, ok := st.(hub.Outbox); ok {
		o.Outbox = ob
	}
	return hub.New(o)
}
