package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/posgate/posgate/client/identity"
	"github.com/posgate/posgate/internal/exampleupstream"
)

// simulateUpstream runs the example upstream (internal/exampleupstream): the POS API the
// walkthroughs in docs/ route to. It checks posgate's identity signature with the key the
// gateway signs with, so it reads the same configuration and data directory as `posgate serve`.
func simulateUpstream(args []string, env Env) int {
	const name = "posgate simulate upstream"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	addr := fs.String("addr", "127.0.0.1:9000", "listen address (plain HTTP: keep it on loopback or a private network)")
	file := fs.String("config", "", "posgate's YAML configuration file, for gateway.signing_secret")
	dataDir := fs.String("data-dir", "", "posgate's data directory, whose master key the signing key is derived from; default ./posgate-data")
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: %s [--addr HOST:PORT] [--config FILE] [--data-dir DIR]\n", name)
		fs.PrintDefaults()
	}
	if code, ok := parseSim(fs, args, env); !ok {
		return code
	}
	key, err := upstreamSigningKey(*file, *dataDir, env)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	h, err := exampleupstream.New(key)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(env.Stderr, "%s: %v\n", name, err)
		return 1
	}
	out := &lineWriter{w: env.Stdout}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		caller := "-"
		if p, err := identity.DecodePrincipal(r.Header.Get(identity.HeaderPrincipal)); err == nil && sw.status < 400 {
			caller = p.Dialect + " " + p.Subject
		}
		out.printf("%s %s -> %d caller=%s", r.Method, r.URL.Path, sw.status, caller)
	})}
	return runSim(env, name, "listening on http://"+ln.Addr().String()+" (answers what it was asked and who posgate says the caller is)", func(ctx context.Context) error {
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return ctx.Err()
	})
}

// statusWriter remembers the status a handler wrote, for the request line.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}
