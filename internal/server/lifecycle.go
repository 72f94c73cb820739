package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/config"
)

// A server's lifetime, in order:
//
//	New    Infrastructure (the token verifier, the websocket hub) is built and started one by
//	       one, before any module is built: modules hold it through app.Services and may use it
//	       from their own Start. Then the modules are built and mounted in module order, the
//	       keyring is loaded, and every app.Starter module is started in module order.
//	Serve  The listeners serve and maintenance runs until ctx ends.
//	stop   One deadline, server.shutdown_timeout, for three groups started in this order and then
//	       running together:
//	         1. infrastructure Shutdowners: the hub refuses new sockets and closes every open one
//	            with 1001 (http.Server.Shutdown does not know hijacked connections);
//	         2. module Shutdowners (doshii's socket health checks);
//	         3. each HTTP server's Shutdown: listeners close, in-flight requests drain.
//	       They run together rather than one after the other so that a socket slow to answer its
//	       close frame cannot spend the deadline the in-flight requests need to drain.
//	Close  Infrastructure is shut down if Serve did not (New failed, or Serve was never called),
//	       background work is cancelled and awaited, then listeners, modules (io.Closer), the
//	       forwarder, the bus, the store and the log are released: each after everything that
//	       uses it.
//
// The hub is infrastructure, not an app.Module: it mounts nothing (the dialects mount their own
// socket endpoints and hand the upgraded connections to it), two dialects share it, and it must
// exist before they are built. It still goes through the module contract's Starter and
// Shutdowner, so the server starts and stops every part the same way.

// infraPart is a piece of infrastructure with a lifetime: started in New, and shut down first
// when it implements app.Shutdowner.
type infraPart struct {
	name string
	part app.Starter
}

// startInfra records p and starts it with the server's background context.
func (s *Server) startInfra(name string, p app.Starter) error {
	s.infra = append(s.infra, infraPart{name, p})
	if err := p.Start(s.bg); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// shutdown runs the graceful shutdown of Serve (see above) and returns when every part has
// finished or sctx has ended.
func (s *Server) shutdown(sctx context.Context) {
	var wg sync.WaitGroup
	run := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	for _, p := range s.infra {
		if sh, ok := p.part.(app.Shutdowner); ok {
			run(func() {
				if err := sh.Shutdown(sctx); err != nil {
					s.log.Warn(p.name+" shutdown did not finish in time", slog.String("error", err.Error()))
				}
			})
		}
	}
	for _, m := range s.modules {
		if sh, ok := m.mod.(app.Shutdowner); ok {
			run(func() {
				if err := sh.Shutdown(sctx); err != nil {
					s.log.Warn("module shutdown", slog.String("module", m.name), slog.String("error", err.Error()))
				}
			})
		}
	}
	for _, hs := range s.servers {
		run(func() {
			if err := hs.Shutdown(sctx); err != nil {
				s.log.Warn("shutdown did not drain in time; closing connections", slog.String("error", err.Error()))
				hs.Close()
			}
		})
	}
	wg.Wait()
}

// shutdownInfra shuts infrastructure down in reverse start order, for Close: after Serve's
// shutdown it finds nothing left to do.
func (s *Server) shutdownInfra() {
	for i := len(s.infra) - 1; i >= 0; i-- {
		if sh, ok := s.infra[i].part.(app.Shutdowner); ok {
			ctx, cancel := context.WithTimeout(context.Background(), config.Seconds(s.cfg.Server.ShutdownTimeout))
			_ = sh.Shutdown(ctx)
			cancel()
		}
	}
}
