package config

import (
	"strings"
	"testing"
)

// TestPostgresNeedsIssuer: replicas share a PostgreSQL store, so none may derive its own issuer
// from its listen address; SQLite (one process) keeps deriving it.
func TestPostgresNeedsIssuer(t *testing.T) {
	pg := []string{"POSGATE_STORE_DRIVER=postgres", "POSGATE_STORE_DSN=postgres://postgres@127.0.0.1:5432/x"}
	_, err := Load(Options{Environ: pg})
	if err == nil || !strings.Contains(err.Error(), "server.issuer: must be set with store.driver postgres") ||
		!strings.Contains(err.Error(), "https://auth.example.com") {
		t.Fatalf("postgres without issuer: %v", err)
	}
	if _, err := Load(Options{Environ: append(pg, "POSGATE_SERVER_ISSUER=https://auth.example.com")}); err != nil {
		t.Fatalf("postgres with issuer: %v", err)
	}
	cfg, err := Load(Options{})
	if err != nil || cfg.Server.Issuer != "" {
		t.Fatalf("sqlite: issuer %q, %v (want it left to the server to derive)", cfg.Server.Issuer, err)
	}
}

func TestPreviousIssuer(t *testing.T) {
	cases := []struct {
		name string
		file string
		want string // "" when valid
	}{
		{"moves the issuer", "store: {driver: postgres, dsn: \"postgres://h/db\"}\nserver: {issuer: https://new.example.com, previous_issuer: https://old.example.com}", ""},
		{"on sqlite", "server: {issuer: https://new.example.com, previous_issuer: https://old.example.com}", "server.previous_issuer: is set but store.driver is sqlite"},
		{"without issuer", "server: {previous_issuer: https://old.example.com}", "server.previous_issuer: is set but server.issuer is empty or the same URL"},
		{"same as issuer", "server: {issuer: https://a.example.com, previous_issuer: https://a.example.com}", "server.previous_issuer: is set but"},
		{"not a URL", "server: {issuer: https://a.example.com, previous_issuer: old}", `server.previous_issuer: "old" is not allowed`},
		{"issuer with query", "server: {issuer: \"https://a.example.com/?x=1\"}", `server.issuer: "https://a.example.com/?x=1" is not allowed`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(Options{File: writeFile(t, tc.file)})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
