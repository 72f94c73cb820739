package config

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// FuzzParse feeds arbitrary documents to the loader. Properties: it never panics; an error is a
// list of problems, none empty, none at a line the document does not have; an accepted document
// yields a configuration that validates, and that marshals to YAML which loads back to the same
// YAML (nothing is lost or invented on the way).
func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		"{}",
		"~",
		"chef: {leeway: 5}",
		"chef: {leeway: 500}",
		"store: {driver: postgres, dsn: \"postgres://postgres@127.0.0.1:5432/x\"}",
		"store: {driver: postgres, dsn: \"postgres://postgres@127.0.0.1:5432/x\"}\nserver: {issuer: \"https://auth.example.com\", previous_issuer: \"https://old.example.com\"}",
		"store:\n  drivr: sqlite\n",
		"server:\n  addr: \":8443\"\n  http_addr: 127.0.0.1:8080\n  trusted_proxies: [10.0.0.0/8]\n",
		"upstreams: {pos: \"http://127.0.0.1:9000\"}\nroutes:\n  - {path: \"/api/v2/\", methods: [GET, POST], auth: [chimpy], scopes: [\"rentals\"], upstream: pos}\n",
		"routes:\n  - {path: \"/v2/stores/{store}/offers/{offer}/reserve-voucher-by-price\", methods: [POST], auth: [jackpot.session], consume: true, max_amount_field: price, upstream: pos}\nupstreams: {pos: \"http://127.0.0.1:9000\"}\n",
		"chimpy: {audience_lifetimes: {rentals: 600}}",
		"a: &x {b: *x}",
		"chef: &c {leeway: 1}\njackpot: *c\n",
		"chef: {leeway: 1, leeway: 2}",
		"chef: {cooldown: \"10\"}",
		"chef: {cooldown: 0x10}",
		"routes: [{rate_limit: .nan, path: /x, auth: [a]}]",
		"---\n---\n",
		"[1, 2]",
		"keys: {algorithm: RS256, rotation_interval: 0}",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		cfg, err := Parse(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) == 0 {
				t.Fatalf("not a list of problems: %v", err)
			}
			// Every break YAML counts: \n, \r (alone or before \n, counted twice here), NEL, LS, PS.
			lines := 1
			for _, sep := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
				lines += bytes.Count(data, []byte(sep))
			}
			for _, p := range e.Problems {
				if strings.TrimSpace(p.Msg) == "" {
					t.Fatalf("empty problem in %v", err)
				}
				if p.line < 0 || p.line > lines {
					t.Fatalf("problem at line %d of a %d-line document: %v", p.line, lines, p)
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that does not validate: %v", err)
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of marshalled config failed: %v\n%s", err, out)
		}
		again, err := yaml.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(out) {
			t.Fatalf("round trip differs:\n%s\n---\n%s", out, again)
		}
	})
}
