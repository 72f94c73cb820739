package server_test

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/posgate/posgate/internal/config"
	"github.com/posgate/posgate/internal/server"
	"github.com/posgate/posgate/internal/server/servertest"
)

// The authenticator names the configuration accepts in routes are exactly those the dialects
// register: config.Validate checks route auth lists against the list before anything starts.
func TestConfigAuthenticatorsAreTheRegisteredOnes(t *testing.T) {
	inst := servertest.Start(t, servertest.Options{})
	got := slices.Sorted(slices.Values(inst.Svc.Auth.Names()))
	want := slices.Sorted(slices.Values(config.Authenticators))
	if !slices.Equal(got, want) {
		t.Fatalf("registered %v, config.Authenticators %v", got, want)
	}
}

// A configuration posgate refuses leaves no data dir behind, whether the problem is found by the
// configuration checks, by the checks of what it names (a TLS file, a port) or only while the
// modules mount (a route that takes a dialect's endpoint).
func TestARefusedConfigurationLeavesNoDataDir(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	route := func(path, auth string) config.Route {
		return config.Route{Path: path, Methods: []string{"POST"}, Auth: []string{auth}, Upstream: "pos"}
	}
	for _, tc := range []struct {
		name string
		set  func(*config.Config)
		want string
	}{
		{"unknown authenticator", func(c *config.Config) { c.Routes = []config.Route{route("/api/", "nobody")} }, `unknown authenticator "nobody"`},
		{"route takes a dialect endpoint", func(c *config.Config) { c.Routes = []config.Route{route("/v2/token", "chimpy")} }, "routes[0]"},
		{"missing TLS files", func(c *config.Config) {
			c.Server.HTTPAddr, c.Server.Addr, c.Server.TLSCert, c.Server.TLSKey = "", "127.0.0.1:0", "/nonexistent/cert.pem", "/nonexistent/key.pem"
		}, "server.tls_cert"},
		{"port in use", func(c *config.Config) { c.Server.HTTPAddr = busy.Addr().String() }, "server.http_addr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			cfg := config.Default()
			cfg.Server.DataDir = dir + string(filepath.Separator) // a trailing slash names the same dir
			cfg.Server.Addr = ""
			cfg.Server.HTTPAddr = "127.0.0.1:0"
			cfg.Upstreams = map[string]string{"pos": "http://127.0.0.1:9"}
			tc.set(cfg)
			cfg.Resolve()
			_, err := server.New(context.Background(), server.Options{Config: cfg, Log: server.NewLogger(io.Discard, "error"), Out: io.Discard,
				Getenv: func(string) string { return "" }})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want %q", err, tc.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				entries, _ := os.ReadDir(dir)
				t.Errorf("the data dir was left behind (%v): %v", err, entries)
			}
		})
	}
	// A data dir that existed before is never removed.
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Server.DataDir, cfg.Server.Addr, cfg.Server.HTTPAddr = dir, "", "127.0.0.1:0"
	cfg.Upstreams = map[string]string{"pos": "http://127.0.0.1:9"}
	cfg.Routes = []config.Route{route("/v2/token", "chimpy")}
	cfg.Resolve()
	if _, err := server.New(context.Background(), server.Options{Config: cfg, Log: server.NewLogger(io.Discard, "error"), Out: io.Discard,
		Getenv: func(string) string { return "" }}); err == nil {
		t.Fatal("accepted")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("an existing data dir was removed: %v", err)
	}
}

// A data dir path this start did not create is left alone when the start fails, even when it
// does not resolve to a directory: here a dangling symlink the operator put there.
func TestAFailedStartKeepsADataDirSymlink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(filepath.Join(t.TempDir(), "not", "there"), dir); err != nil {
		t.Skip("no symlinks here:", err)
	}
	cfg := config.Default()
	cfg.Server.DataDir, cfg.Server.Addr, cfg.Server.HTTPAddr = dir, "", "127.0.0.1:0"
	cfg.Resolve()
	_, err := server.New(context.Background(), server.Options{Config: cfg, Log: server.NewLogger(io.Discard, "error"), Out: io.Discard,
		Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), "data dir") {
		t.Fatalf("New: %v; want a data dir error", err)
	}
	if _, err := os.Lstat(dir); err != nil {
		t.Fatalf("the symlink was removed: %v", err)
	}
}
