package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/exampleupstream"
	"github.com/posgate/posgate/internal/gateway"
	"github.com/posgate/posgate/internal/oauth"
)

// Demo routing: `serve --demo` starts the example upstream on a loopback port and routes to it
// what the configuration leaves unrouted.
const (
	demoUpstream = "posgate-example"
	demoRoute    = "/example/orders"
)

// startDemoUpstream starts the example upstream (on 127.0.0.1, a free port) and points at it the
// demo route and, when the configuration names no upstream for them, chef's data calls. It
// changes cfg before the modules and the forwarder read it.
func (s *Server) startDemoUpstream(cfg *config.Config, master []byte) error {
	key, err := gateway.SigningKey(cfg, master)
	if err != nil {
		return err
	}
	h, err := exampleupstream.New(key)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: example upstream: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.demoUpstream = srv
	go srv.Serve(ln)
	u := "http://" + ln.Addr().String()
	s.demoUpstreamURL = u

	if cfg.Upstreams == nil {
		cfg.Upstreams = map[string]string{}
	}
	cfg.Upstreams[demoUpstream] = u
	chefUp := cfg.Chef.Upstream
	if chefUp == "" {
		chefUp = "pos"
	}
	if cfg.Upstreams[chefUp] == "" {
		cfg.Upstreams[chefUp] = u
	}
	if !slices.ContainsFunc(cfg.Routes, func(r config.Route) bool { return r.Path == demoRoute }) {
		cfg.Routes = append(cfg.Routes, config.Route{Path: demoRoute, Methods: []string{http.MethodGet}, Auth: []string{gateway.PosgateAuthName},
			Audience: oauth.DemoAudience, Scopes: []string{oauth.DemoScope}, Upstream: demoUpstream})
		s.demoRouted = true
	}
	return nil
}

// closeDemoUpstream stops the example upstream, if one runs.
func (s *Server) closeDemoUpstream() {
	if s.demoUpstream != nil {
		s.demoUpstream.Close()
	}
}

// demo seeds each module's example credentials and prints their lines (never to the log): a
// script to paste, in order, into a shell. The first lines set what the others use: the
// certificate to trust, the admin token.
func (s *Server) demo(ctx context.Context) {
	base := s.BaseURL()
	out := s.out
	fmt.Fprintf(out, "\nposgate demo credentials (shown once; they are not logged). Paste the lines below, in order, into bash (needs curl, jq and openssl):\n\n")
	if s.httpsURL != "" && base == s.httpsURL && s.cfg.Server.TLSCert == "" {
		fmt.Fprintf(out, "# trust posgate's self-signed certificate in this shell's curl calls:\nexport CURL_CA_BUNDLE=%s\n", shellQuote(absPath(filepath.Join(s.cfg.Server.DataDir, CertFile))))
	}
	if s.adminTokenPath != "" {
		fmt.Fprintf(out, "ADMIN_TOKEN=$(cat %s)\n", shellQuote(absPath(s.adminTokenPath)))
	} else {
		fmt.Fprintln(out, `ADMIN_TOKEN="$POSGATE_ADMIN_TOKEN"   # the admin token posgate was started with`)
	}
	n := 0
	for _, m := range s.modules {
		d, ok := m.mod.(app.Demoer)
		if !ok {
			continue
		}
		lines, err := d.Demo(ctx, base)
		if err != nil {
			fmt.Fprintf(out, "# %s: demo failed: %v\n", m.name, err)
			continue
		}
		fmt.Fprintf(out, "\n# --- %s\n", m.name)
		for _, l := range lines {
			fmt.Fprintln(out, l)
		}
		n++
	}
	if n == 0 {
		fmt.Fprintln(out, "# (no module offers a demo)")
	}
	if s.demoRouted {
		fmt.Fprintf(out, "\n# --- gateway\n# GET %s goes to the example upstream (%s) for a posgate token of audience %s with scope %s ($POSGATE_TOKEN above):\n",
			demoRoute, s.demoUpstreamURL, oauth.DemoAudience, oauth.DemoScope)
		fmt.Fprintf(out, "%s %s%s -H \"Authorization: Bearer $POSGATE_TOKEN\"; echo\n", oauth.DemoCurl, strings.TrimSuffix(base, "/"), demoRoute)
	}
	fmt.Fprintln(out)
}

// absPath is p made absolute, so a pasted line works from any directory; p itself if that fails.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:=@%,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
