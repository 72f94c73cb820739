package gateway

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/app"
	"github.com/posgate/posgate/internal/auth"
	"github.com/posgate/posgate/internal/clock"
	"github.com/posgate/posgate/internal/config"
)

func buildGateway(t *testing.T, upstreams map[string]string, routes ...config.Route) (*Gateway, error) {
	t.Helper()
	cfg := config.Default()
	cfg.Upstreams = upstreams
	cfg.Routes = routes
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	fwd, err := NewForwarder(cfg, testKey, log, clock.System{})
	if err != nil {
		return nil, err
	}
	reg := auth.NewRegistry()
	reg.Register("test.key", keyAuth{})
	reg.Register("test.venue", venueAuth{})
	tokens := newFakeTokens()
	return NewGateway(&app.Services{Config: cfg, Log: log, Auth: reg, Verifier: tokens, Revoker: tokens, Upstream: fwd})
}

func TestConfigErrorsNameTheRouteAndWhatIsAllowed(t *testing.T) {
	ups := map[string]string{"pos": "http://127.0.0.1:9000"}
	ok := config.Route{Path: "/a", Methods: []string{"GET"}, Auth: []string{"test.key"}, Upstream: "pos"}
	with := func(f func(*config.Route)) config.Route { r := ok; f(&r); return r }
	cases := []struct {
		name      string
		upstreams map[string]string
		routes    []config.Route
		want      []string
	}{
		{"unknown authenticator", ups, []config.Route{ok, with(func(r *config.Route) { r.Auth = []string{"jackpot.sesion"} })},
			[]string{"routes[1]", `"jackpot.sesion"`, "known: posgate, test.key, test.venue"}},
		{"unknown upstream", ups, []config.Route{with(func(r *config.Route) { r.Upstream = "pso" })},
			[]string{"routes[0]", `"pso"`, "configured upstreams: pos"}},
		{"no upstreams at all", nil, []config.Route{ok}, []string{"no upstreams are configured"}},
		{"empty auth", ups, []config.Route{with(func(r *config.Route) { r.Auth = nil })}, []string{"auth is empty", "known:"}},
		{"no methods", ups, []config.Route{with(func(r *config.Route) { r.Methods = nil })}, []string{"methods is empty"}},
		{"bad method", ups, []config.Route{with(func(r *config.Route) { r.Methods = []string{"GE T"} })}, []string{`"GE T"`}},
		{"relative path", ups, []config.Route{with(func(r *config.Route) { r.Path = "api/" })}, []string{"must start with /"}},
		{"host pattern", ups, []config.Route{with(func(r *config.Route) { r.Path = "example.com/api" })}, []string{"must start with /"}},
		{"dot segment", ups, []config.Route{with(func(r *config.Route) { r.Path = "/a/../b" })}, []string{"dot segments"}},
		{"bad wildcard", ups, []config.Route{with(func(r *config.Route) { r.Path = "/a/x{id}" })}, []string{"whole segment"}},
		{"wildcard twice", ups, []config.Route{with(func(r *config.Route) { r.Path = "/a/{id}/{id}" })}, []string{"appears twice"}},
		{"duplicate route", ups, []config.Route{ok, ok}, []string{"routes[1]", "already routed by routes[0]"}},
		{"conflicting patterns", ups, []config.Route{
			with(func(r *config.Route) { r.Path = "/x/{a}/b" }), with(func(r *config.Route) { r.Path = "/x/a/{b}" })},
			[]string{"routes[1]", "cannot be routed"}},
		{"tenant header is a credential", ups, []config.Route{with(func(r *config.Route) { r.TenantHeader = "authorization" })}, []string{"credential"}},
		{"tenant header with an underscore", ups, []config.Route{with(func(r *config.Route) { r.TenantHeader = "X_Site" })}, []string{`"X_Site"`, "underscore"}},
		{"negative rate", ups, []config.Route{with(func(r *config.Route) { r.RateLimit = -1 })}, []string{"rate_limit"}},
		{"burst without rate", ups, []config.Route{with(func(r *config.Route) { r.RateBurst = 3 })}, []string{"without rate_limit"}},
		{"bad scope", ups, []config.Route{with(func(r *config.Route) { r.Scopes = []string{"a b"} })}, []string{`scope "a b"`}},
		{"upstream with a path", map[string]string{"pos": "http://127.0.0.1:9000/base"}, []config.Route{ok}, []string{"upstreams.pos", "must not have a path"}},
		{"upstream not http", map[string]string{"pos": "ftp://h"}, []config.Route{ok}, []string{"upstreams.pos", "http or https"}},
		{"upstream without host", map[string]string{"pos": "http://"}, []config.Route{ok}, []string{"upstreams.pos", "no host"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := buildGateway(t, c.upstreams, c.routes...)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestConflictWithADialectEndpointFailsAtMount(t *testing.T) {
	g, err := buildGateway(t, map[string]string{"pos": "http://127.0.0.1:9000"},
		config.Route{Path: "/v2/token", Methods: []string{"POST"}, Auth: []string{"test.key"}, Upstream: "pos"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v2/token", func(http.ResponseWriter, *http.Request) {})
	err = g.Mount(mux, nil)
	if err == nil || !strings.Contains(err.Error(), "routes[0]") {
		t.Fatalf("mount: %v", err)
	}
}

func TestSigningKey(t *testing.T) {
	cfg := config.Default()
	master := make([]byte, 32)
	k1, err := SigningKey(cfg, master)
	if err != nil || len(k1) != 32 {
		t.Fatal(err)
	}
	master2 := append([]byte(nil), master...)
	master2[0] = 1
	k2, _ := SigningKey(cfg, master2)
	if string(k1) == string(k2) {
		t.Fatal("derived key does not depend on the master key")
	}
	if string(k1) == string(master) {
		t.Fatal("derived key is the master key")
	}
	cfg.Gateway.SigningSecret = "c2hvcnQ=" // "short"
	if _, err := SigningKey(cfg, master); err == nil || strings.Contains(err.Error(), "short") {
		t.Fatalf("short secret: %v", err)
	}
	cfg.Gateway.SigningSecret = ""
	if _, err := SigningKey(cfg, nil); err == nil {
		t.Fatal("no secret and no master key accepted")
	}
}
