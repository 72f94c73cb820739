package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

func TestDefaultIsValid(t *testing.T) {
	cfg, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Path != filepath.Join("posgate-data", "posgate.db") {
		t.Errorf("store.path = %q", cfg.Store.Path)
	}
	if cfg.Server.Addr != ":8443" || cfg.Server.HTTPAddr != "" {
		t.Errorf("listen = %q/%q", cfg.Server.Addr, cfg.Server.HTTPAddr)
	}
}

// The defaults documented in config.go comments and DESIGN.md.
func TestDefaultsAsDocumented(t *testing.T) {
	want := map[string]string{
		"server.data_dir": "./posgate-data", "server.addr": ":8443", "server.http_addr": "",
		"server.read_header_timeout": "5", "server.read_timeout": "30", "server.write_timeout": "90",
		"server.idle_timeout": "120", "server.shutdown_timeout": "30", "server.max_body_bytes": "1048576",
		"server.max_header_bytes": "16384", "server.log_level": "info", "server.audit_retention": "7776000", "server.gc_percent": "400", "server.memory_limit": "0",
		"store.driver": "sqlite", "keys.algorithm": "EdDSA", "keys.rotation_interval": "7776000",
		"keys.revocation_resync": "5", "oauth.access_lifetime": "3600", "gateway.upstream_timeout": "30",
		"chef.approval_timeout": "60", "chef.cooldown": "10", "chef.token_lifetime": "3600", "chef.leeway": "0",
		"chef.max_pending": "100", "chef.max_pending_per_address": "5", "chef.pending_retention": "3600", "chef.max_batch": "20", "chef.renew_window": "2592000", "chef.upstream": "pos",
		"chimpy.access_lifetime": "3600", "chimpy.refresh_idle": "2592000", "chimpy.refresh_absolute": "31536000",
		"chimpy.refresh_grace": "0", "jackpot.session_lifetime": "3600", "jackpot.m2m_lifetime": "3600",
		"jackpot.iat_past": "300", "jackpot.iat_future": "60", "jackpot.key_overlap": "86400",
		"doshii.prefix": "/pos/v3", "doshii.past_window": "600", "doshii.future_window": "60", "doshii.key_overlap": "86400",
		"doshii.offline_after": "90", "doshii.event_ttl": "600",
		"orderpay.ticket_lifetime": "300", "orderpay.request_wait": "30", "orderpay.request_ttl": "600",
		"hub.ping_interval": "30", "hub.write_timeout": "10", "hub.max_message": "1048576", "hub.send_queue": "64",
		"hub.lease": "60", "hub.outbox_retention": "86400",
		"throttle.window": "300", "throttle.per_address": "20", "throttle.per_address_ident": "5",
		"throttle.per_identity": "100", "throttle.identity_backoff": "60",
	}
	got := map[string]string{}
	for _, k := range AllKeys() {
		got[k.Name] = k.Default
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("default %s = %q, want %q", k, got[k], v)
		}
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "posgate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedenceFileEnvFlags(t *testing.T) {
	file := writeFile(t, `
server: {data_dir: /tmp/from-file, addr: "127.0.0.1:9443"}
chef: {approval_timeout: 30, leeway: 5}
upstreams: {pos: "http://127.0.0.1:9000"}
routes:
  - {path: "/api/v2/", methods: [GET, POST], auth: [chimpy], scopes: ["rentals"], upstream: pos}
`)
	cfg, err := Load(Options{
		File: file,
		Environ: []string{"POSGATE_CHEF_APPROVAL_TIMEOUT=45", "POSGATE_STORE_DRIVER=sqlite", "PATH=/bin",
			"POSGATE_MASTER_KEY=ignored", "POSGATE_ADMIN_TOKEN=ignored", "POSGATE_TEST_PG=x", "POSGATE_TEST_WHATEVER=1",
			"POSGATE_UPSTREAMS_BACKOFFICE=http://127.0.0.1:9100", "POSGATE_SERVER_TRUSTED_PROXIES=10.0.0.0/8, 192.168.1.1"},
		Flags: map[string]string{"server.data_dir": "/tmp/from-flag"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.DataDir != "/tmp/from-flag" {
		t.Errorf("data_dir = %q (flag must win)", cfg.Server.DataDir)
	}
	if cfg.Store.Path != "/tmp/from-flag/posgate.db" {
		t.Errorf("store.path = %q (derived from the final data dir)", cfg.Store.Path)
	}
	if cfg.Chef.ApprovalTimeout != 45 || cfg.Chef.Leeway != 5 || cfg.Chef.Cooldown != 10 {
		t.Errorf("chef = %+v (env over file over default)", cfg.Chef)
	}
	if cfg.Server.Addr != "127.0.0.1:9443" {
		t.Errorf("addr = %q", cfg.Server.Addr)
	}
	if cfg.Upstreams["pos"] != "http://127.0.0.1:9000" || cfg.Upstreams["backoffice"] != "http://127.0.0.1:9100" {
		t.Errorf("upstreams = %v", cfg.Upstreams)
	}
	if !reflect.DeepEqual(cfg.Server.TrustedProxies, []string{"10.0.0.0/8", "192.168.1.1"}) {
		t.Errorf("trusted_proxies = %q", cfg.Server.TrustedProxies)
	}
	if len(cfg.Routes) != 1 || cfg.Routes[0].Path != "/api/v2/" || !reflect.DeepEqual(cfg.Routes[0].Methods, []string{"GET", "POST"}) {
		t.Errorf("routes = %+v", cfg.Routes)
	}
}

func TestHTTPAddrAloneTurnsHTTPSOff(t *testing.T) {
	cfg, err := Load(Options{Flags: map[string]string{"server.http_addr": "127.0.0.1:8080"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Addr != "" {
		t.Errorf("addr = %q, want HTTPS off", cfg.Server.Addr)
	}
	cfg, err = Load(Options{Flags: map[string]string{"server.http_addr": "127.0.0.1:8080", "server.addr": ":9443"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Addr != ":9443" {
		t.Errorf("addr = %q, want both listeners", cfg.Server.Addr)
	}
}

func TestPostgresFromEnvOnly(t *testing.T) {
	cfg, err := Load(Options{Environ: []string{"POSGATE_STORE_DRIVER=postgres", "POSGATE_STORE_DSN=postgres://postgres@127.0.0.1:5432/x",
		"POSGATE_SERVER_ISSUER=https://auth.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Driver != "postgres" || cfg.Store.Path != "" {
		t.Errorf("store = %+v", cfg.Store)
	}
}

// Every bad input gets an error naming the key, the value and what is allowed.
func TestErrorsNameKeyValueAndAllowed(t *testing.T) {
	cases := []struct {
		name    string
		file    string
		env     []string
		flags   map[string]string
		want    []string
		notWant []string
	}{
		{name: "leeway out of range", file: "chef: {leeway: 500}", want: []string{"chef.leeway: 500 is out of range (0–120 seconds)"}},
		{name: "env out of range", env: []string{"POSGATE_CHEF_LEEWAY=121"}, want: []string{"chef.leeway: 121 is out of range (0–120 seconds)"}},
		{name: "unknown key", file: "store:\n  drivr: sqlite\n", want: []string{`store.drivr`, "line 2", `unknown key "drivr"`, "driver, path, dsn"}},
		{name: "unknown section", file: "stroe: {driver: sqlite}", want: []string{`unknown key "stroe"`, "server, store"}},
		{name: "unknown route key", file: "routes:\n  - {path: /a, auth: [x], upstreem: pos}\n", want: []string{`routes[0].upstreem`}},
		{name: "duplicate key", file: "chef:\n  leeway: 1\n  leeway: 2\n", want: []string{"chef.leeway", "repeated"}},
		{name: "not a number", file: "chef: {cooldown: soon}", want: []string{"chef.cooldown", `"soon"`, "a whole number"}},
		{name: "quoted number", file: `chef: {cooldown: "10"}`, want: []string{"chef.cooldown", `"10"`, "a whole number"}},
		{name: "empty value", file: "chef: {cooldown: }", want: []string{"chef.cooldown", "empty value"}},
		{name: "list for scalar", file: "chef: {cooldown: [1]}", want: []string{"chef.cooldown", "single value"}},
		{name: "driver", env: []string{"POSGATE_STORE_DRIVER=mysql"}, want: []string{`store.driver: "mysql" is not allowed (sqlite or postgres)`}},
		{name: "postgres without dsn", env: []string{"POSGATE_STORE_DRIVER=postgres"}, want: []string{"store.dsn: must be set"}},
		{name: "dsn hidden", env: []string{"POSGATE_STORE_DRIVER=postgres", "POSGATE_STORE_DSN=mysql://u:hunter2@h/db"}, want: []string{"store.dsn", "value hidden"}, notWant: []string{"hunter2"}},
		{name: "unknown env", env: []string{"POSGATE_CHEF_LEEWAYY=1"}, want: []string{"POSGATE_CHEF_LEEWAYY", "not a posgate setting"}},
		{name: "unknown env section", env: []string{"POSGATE_STROE_DRIVER=sqlite"}, want: []string{"POSGATE_STROE_DRIVER"}},
		{name: "env not a number", env: []string{"POSGATE_OAUTH_ACCESS_LIFETIME=1h"}, want: []string{"POSGATE_OAUTH_ACCESS_LIFETIME", "oauth.access_lifetime", `"1h"`, "whole number"}},
		{name: "algorithm", file: "keys: {algorithm: HS256}", want: []string{`keys.algorithm: "HS256" is not allowed (EdDSA, ES256 or RS256)`}},
		{name: "log level", file: "server: {log_level: loud}", want: []string{`server.log_level: "loud" is not allowed (debug, info, warn, error)`}},
		{name: "addr", flags: map[string]string{"server.addr": "8443"}, want: []string{`server.addr: "8443" is not allowed (HOST:PORT`}},
		{name: "no listener", file: `server: {addr: ""}`, want: []string{"set at least one listen address"}},
		{name: "upstream url", file: `upstreams: {pos: "ftp://x"}`, want: []string{`upstreams.pos: "ftp://x" is not allowed`}},
		{name: "route upstream", file: "routes: [{path: /a/, auth: [chimpy], upstream: nowhere}]", want: []string{`routes[0].upstream: unknown upstream "nowhere"; no upstreams are configured`}},
		{name: "route path", file: "routes: [{path: a, auth: [chimpy]}]", want: []string{`routes[0].path: path "a" must start with /`}},
		{name: "proxies", file: "server: {trusted_proxies: [nope]}", want: []string{`server.trusted_proxies[0]: "nope" is not an IP address or CIDR`}},
		{name: "tls pair", file: "server: {tls_cert: a.pem}", want: []string{"server.tls_cert and server.tls_key"}},
		{name: "retention vs approval window", file: "chef: {approval_timeout: 60, pending_retention: 119}", want: []string{"chef.pending_retention: 119 must be at least twice chef.approval_timeout (60)"}},
		{name: "per-address cap out of range", file: "chef: {max_pending_per_address: 0}", want: []string{"chef.max_pending_per_address: 0 is out of range (1–100000)"}},
		{name: "approval vs write timeout", file: "server: {write_timeout: 30}\nchef: {approval_timeout: 60}", want: []string{"chef.approval_timeout: 60 must be below server.write_timeout (30)"}},
		{name: "rotation", file: "keys: {rotation_interval: 60}", want: []string{"keys.rotation_interval: 60 is not allowed"}},
		{name: "signing secret hidden", file: `gateway: {signing_secret: "c2hvcnQ="}`, want: []string{"gateway.signing_secret: (value hidden)"}, notWant: []string{"c2hvcnQ"}},
		{name: "two documents", file: "chef: {leeway: 1}\n---\nchef: {leeway: 2}\n", want: []string{"more than one YAML document"}},
		{name: "body limit", file: "server: {max_body_bytes: 10}", want: []string{"server.max_body_bytes: 10 is out of range (1024–1073741824 bytes)"}},
		{name: "audit retention", file: "server: {audit_retention: 3600}", want: []string{"server.audit_retention: 3600 is out of range (86400–315360000 seconds)"}},
		{name: "doshii prefix", file: `doshii: {prefix: "/pos/v3/"}`, want: []string{`doshii.prefix: "/pos/v3/" is not allowed`}},
		{name: "audience lifetime", file: "chimpy: {audience_lifetimes: {rentals: 0}}", want: []string{"chimpy.audience_lifetimes.rentals: 0 is out of range"}},
		{name: "several at once", file: "chef: {leeway: 500, cooldown: -1}", want: []string{"chef.leeway: 500", "chef.cooldown: -1 is out of range (0–3600 seconds)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Environ: tc.env, Flags: tc.flags}
			if tc.file != "" {
				o.File = writeFile(t, tc.file)
			}
			_, err := Load(o)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nleaks %q", err, w)
				}
			}
		})
	}
}

func TestEveryKeyHasEnvAndIsSettable(t *testing.T) {
	for _, k := range AllKeys() {
		if !strings.HasPrefix(k.Env, "POSGATE_") || strings.Contains(k.Env, ".") {
			t.Errorf("%s: env %q", k.Name, k.Env)
		}
		cfg := Default()
		v := map[string]string{"int": "7", "string": "x", "bool": "true", "float": "1.5", "list": "a,b"}[k.Kind]
		if err := Set(cfg, k.Name, v); err != nil {
			t.Errorf("Set(%s): %v", k.Name, err)
		}
		f, _ := field(cfg, k.Name)
		if got := formatValue(f); got != v {
			t.Errorf("%s after Set(%q) = %q", k.Name, v, got)
		}
	}
}

// Every key is documented in docs/configuration.md with its environment variable.
func TestEveryKeyIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Skipf("docs/configuration.md not written yet: %v", err)
	}
	for _, k := range AllKeys() {
		if !strings.Contains(string(doc), k.Env) {
			t.Errorf("docs/configuration.md does not mention %s (%s)", k.Env, k.Name)
		}
	}
}

// A configuration marshalled to YAML loads back to the same configuration.
func TestRoundTrip(t *testing.T) {
	cfg := Default()
	cfg.Upstreams = map[string]string{"pos": "http://127.0.0.1:9000"}
	cfg.Routes = []Route{{Path: "/api/", Methods: []string{"GET"}, Auth: []string{"chimpy"}, Upstream: "pos", RateLimit: 2.5}}
	cfg.Chimpy.AudienceLifetimes = map[string]int{"rentals": 600}
	cfg.Resolve()
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	again, err := yaml.Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(data) {
		t.Errorf("round trip differs:\n%s\n%s", data, again)
	}
}
